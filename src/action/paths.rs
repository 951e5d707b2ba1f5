//! The working directory and output paths of a Command, normalised to paths inside the input
//! root. REAPI paths are relative (outputs to the working directory), `/`-separated; `..` is
//! resolved lexically and may not climb above the input root.

use super::error::ActionError;

/// `base` joined with `path`, normalised: the components of a path relative to the input root
/// (empty for the root itself). `what` names the field in errors.
pub fn normalise(base: &[String], path: &str, what: &str) -> Result<Vec<String>, ActionError> {
    let bad = |reason: &str| ActionError::Invalid(format!("{what} {path:?} {reason}"));
    if path.starts_with('/') {
        return Err(bad("is absolute"));
    }
    if path.contains('\0') {
        return Err(bad("contains a NUL byte"));
    }
    let mut components = base.to_vec();
    for component in path.split('/') {
        match component {
            "" | "." => {}
            ".." => {
                components.pop().ok_or_else(|| bad("climbs above the input root"))?;
            }
            name => components.push(name.to_owned()),
        }
    }
    Ok(components)
}

/// The absolute path inside the sandbox for root-relative `components`.
pub fn absolute(components: &[String]) -> String {
    format!("/{}", components.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|p| (*p).to_owned()).collect()
    }

    #[test]
    fn joins_and_resolves_dot_dot_lexically() {
        let cwd = normalise(&[], "buildstream/build/", "working_directory").unwrap();
        assert_eq!(cwd, strings(&["buildstream", "build"]));
        assert_eq!(normalise(&cwd, "../..", "output path").unwrap(), Vec::<String>::new());
        assert_eq!(
            normalise(&cwd, "./out//a", "output path").unwrap(),
            strings(&["buildstream", "build", "out", "a"])
        );
        assert_eq!(absolute(&normalise(&[], "", "working_directory").unwrap()), "/");
        assert_eq!(absolute(&cwd), "/buildstream/build");
    }

    #[test]
    fn refuses_escapes_and_absolute_paths() {
        let cwd = strings(&["a"]);
        let error = normalise(&cwd, "../../etc", "output path").unwrap_err();
        assert!(
            error.to_string().contains("output path \"../../etc\" climbs above the input root"),
            "{error}"
        );
        let error = normalise(&[], "/etc", "working_directory").unwrap_err();
        assert!(error.to_string().contains("is absolute"), "{error}");
    }
}
