//! One binary, several names: invoked as `buildbox-casd` or `buildbox-run` (a symlink or a copy
//! named so), rebox behaves as `rebox casd` or `rebox run`, so that a directory of such links
//! first on `PATH` swaps rebox in for BuildBox. A name is a line in [`PERSONALITIES`] and an arm
//! in `cli::main`, which parses only that subcommand's arguments.

use std::ffi::OsStr;
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
    }
}
