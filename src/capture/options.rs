//! What a capture records, and how.

use crate::proto::build::bazel::remote::execution::v2::command::OutputDirectoryFormat;

/// The node properties to record, as LocalCAS's `node_properties` and `unix_mode_mask` ask.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Properties {
    /// Record modification times (`mtime`), of files and directories, to the microsecond.
    pub mtime: bool,
    /// Record permission bits (`unix_mode`), of files and directories.
    pub unix_mode: bool,
    /// Bits cleared from every recorded `unix_mode` (`0o222` records everything read-only).
    pub unix_mode_mask: u32,
}

impl Properties {
    /// The selection named by a request: `mtime` and `unix_mode` are recognised (case matters,
    /// as in buildbox-casd); other names are ignored. The mask only matters with `unix_mode`.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>, unix_mode_mask: Option<u32>) -> Self {
        let mut properties = Self { unix_mode_mask: unix_mode_mask.unwrap_or(0), ..Self::default() };
        for name in names {
            match name {
                "mtime" => properties.mtime = true,
                "unix_mode" => properties.unix_mode = true,
                _ => {}
            }
        }
        properties
    }

    /// Whether any property is recorded at all.
    pub fn any(&self) -> bool {
        self.mtime || self.unix_mode
    }
}

/// How a capture treats the files it reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureOptions {
    /// The node properties to record.
    pub properties: Properties,
    /// The client gives the files up (LocalCAS `move_files`): a file of 32 KiB or more with a
    /// single link, owned by this process's user, on the store's filesystem, is moved into the
    /// store instead of copied, and is gone from its directory afterwards. Others are copied.
    pub move_files: bool,
}

/// Which descriptions of a captured directory to store and return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    /// A REAPI `Tree` message (`tree_digest`).
    TreeOnly,
    /// The root `Directory` message (`root_directory_digest`).
    DirectoryOnly,
    /// Both.
    TreeAndDirectory,
}

impl OutputFormat {
    /// The format a request's `output_directory_format` asks for. Values this build does not
    /// know give both, a superset REAPI allows (and what buildbox-casd does).
    pub fn from_proto(value: i32) -> Self {
        match OutputDirectoryFormat::try_from(value) {
            Ok(OutputDirectoryFormat::TreeOnly) => OutputFormat::TreeOnly,
            Ok(OutputDirectoryFormat::DirectoryOnly) => OutputFormat::DirectoryOnly,
            _ => OutputFormat::TreeAndDirectory,
        }
    }

    /// Whether a `Tree` message is wanted.
    pub fn tree(self) -> bool {
        self != OutputFormat::DirectoryOnly
    }

    /// Whether the root directory's digest is wanted.
    pub fn root_directory(self) -> bool {
        self != OutputFormat::TreeOnly
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn property_names_are_case_sensitive_and_unknown_ones_ignored() {
        let selected = Properties::from_names(["mtime", "MTime", "bogus", ""], Some(0o222));
        assert_eq!(selected, Properties { mtime: true, unix_mode: false, unix_mode_mask: 0o222 });
        assert!(!Properties::from_names(["unix_mode "], None).any());
    }

    #[test]
    fn unknown_formats_give_both() {
        assert_eq!(OutputFormat::from_proto(0), OutputFormat::TreeOnly);
        assert_eq!(OutputFormat::from_proto(1), OutputFormat::DirectoryOnly);
        assert_eq!(OutputFormat::from_proto(2), OutputFormat::TreeAndDirectory);
        assert_eq!(OutputFormat::from_proto(5), OutputFormat::TreeAndDirectory);
        assert!(OutputFormat::TreeOnly.tree() && !OutputFormat::TreeOnly.root_directory());
    }
}
