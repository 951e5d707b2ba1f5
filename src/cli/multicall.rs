//! One binary, several names: invoked as `buildbox-casd` (a symlink or a copy named so), rebox
//! behaves as `rebox casd`, so that a directory of such links first on `PATH` swaps rebox in for
//! BuildBox. Adding a name is one line in [`PERSONALITIES`].

use std::ffi::{OsStr, OsString};
use std::path::Path;

/// A name rebox answers to, and the subcommand it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Personality {
    /// The program name (`argv[0]`'s file name).
    pub name: &'static str,
    /// The `rebox` subcommand it runs.
    pub subcommand: &'static str,
    /// The usage line shown under this name.
    pub usage: &'static str,
}

/// Every other name rebox answers to.
pub const PERSONALITIES: &[Personality] = &[
    Personality { name: "buildbox-casd", subcommand: "casd", usage: "buildbox-casd [OPTIONS] CACHE_DIR" },
    Personality { name: "buildbox-run", subcommand: "run", usage: "buildbox-run [OPTIONS]" },
];

/// The personality `argv0` names, if any.
pub fn personality(argv0: &OsStr) -> Option<&'static Personality> {
    let name = Path::new(argv0).file_name()?;
    PERSONALITIES.iter().find(|p| OsStr::new(p.name) == name)
}

/// `NAME ARGS...` as `rebox SUBCOMMAND ARGS...`.
pub fn as_rebox(personality: &Personality, args: Vec<OsString>) -> Vec<OsString> {
    let rest = args.into_iter().skip(1);
    [OsString::from("rebox"), OsString::from(personality.subcommand)].into_iter().chain(rest).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buildbox_casd_by_any_path_is_casd() {
        for argv0 in ["buildbox-casd", "/usr/local/bin/buildbox-casd", "./buildbox-casd"] {
            assert_eq!(personality(OsStr::new(argv0)).map(|p| p.subcommand), Some("casd"), "{argv0}");
        }
        for argv0 in ["rebox", "/usr/bin/rebox", "buildbox-casd-old", "casd", ""] {
            assert_eq!(personality(OsStr::new(argv0)), None, "{argv0}");
        }
        let args = ["/bin/buildbox-casd", "--version", "/"].map(OsString::from).to_vec();
        assert_eq!(as_rebox(&PERSONALITIES[0], args), ["rebox", "casd", "--version", "/"]);
    }
}
