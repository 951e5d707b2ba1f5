//! What each staged node looks like: owner, permission bits, modification time, and which
//! directories the action may not write to. All from the tree's node properties, with BuildBox's
//! defaults, and checked before anything is written.

use crate::proto::build::bazel::remote::execution::v2 as reapi;

use super::error::{Result, StagingError};

/// Staged files and directories carry this mtime unless a node property says otherwise:
/// 2011-11-11 11:11:11 UTC, as BuildBox stages them.
pub const DEFAULT_MTIME: i64 = 1321009871;

/// Permission bits of a staged file that is executable / is not.
pub const EXECUTABLE_MODE: u32 = 0o755;
/// See [`EXECUTABLE_MODE`].
pub const REGULAR_MODE: u32 = 0o644;
/// Permission bits of staged directories.
pub const DIRECTORY_MODE: u32 = 0o755;

/// The directory node property that makes a subtree read-only to the action (`"true"`), or
/// writable again below a read-only one (`"false"`).
pub const SUBTREE_READ_ONLY: &str = "SubtreeReadOnly";

/// Who owns staged files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Owner {
    /// Owning user.
    pub uid: u32,
    /// Owning group.
    pub gid: u32,
}

impl Owner {
    /// The effective user and group of this process (read once: the daemon never changes them).
    pub fn current() -> Self {
        static CURRENT: std::sync::OnceLock<Owner> = std::sync::OnceLock::new();
        *CURRENT.get_or_init(|| Owner {
            uid: nix::unistd::geteuid().as_raw(),
            gid: nix::unistd::getegid().as_raw(),
        })
    }
}

/// A modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mtime {
    /// Seconds since the epoch.
    pub seconds: i64,
    /// Nanoseconds, below 10⁹.
    pub nanos: u32,
}

impl Mtime {
    /// BuildBox's default, [`DEFAULT_MTIME`].
    pub const DEFAULT: Mtime = Mtime { seconds: DEFAULT_MTIME, nanos: 0 };

    /// The `timespec` form for `utimensat`/`futimens`.
    pub fn timespec(self) -> nix::sys::time::TimeSpec {
        nix::sys::time::TimeSpec::new(self.seconds, i64::from(self.nanos))
    }
}

/// Everything about a staged inode except its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Attrs {
    /// Permission bits (never setuid or setgid).
    pub mode: u32,
    /// Modification time.
    pub mtime: Mtime,
    /// Owner.
    pub owner: Owner,
}

impl Attrs {
    /// A staged file's attributes: `unix_mode` and `mtime` node properties win over
    /// `is_executable` and the default mtime. `path` names the file in errors.
    pub fn of_file(node: &reapi::FileNode, owner: Owner, path: &str) -> Result<Attrs> {
        let properties = node.node_properties.as_ref();
        let default_mode = if node.is_executable { EXECUTABLE_MODE } else { REGULAR_MODE };
        let mode = properties.and_then(|p| p.unix_mode).map_or(default_mode, permission_bits);
        let mtime = mtime(properties, path)?;
        Ok(Attrs { mode, mtime, owner })
    }

    /// A staged symlink's attributes (only the owner and mtime apply).
    pub fn of_symlink(node: &reapi::SymlinkNode, owner: Owner, path: &str) -> Result<Attrs> {
        Ok(Attrs { mode: 0o777, mtime: mtime(node.node_properties.as_ref(), path)?, owner })
    }

    /// A staged directory's attributes (BuildBox ignores directory mtime and mode; so does rebox).
    pub fn of_directory(owner: Owner) -> Attrs {
        Attrs { mode: DIRECTORY_MODE, mtime: Mtime::DEFAULT, owner }
    }
}

/// The permission bits of a `unix_mode`, without setuid and setgid: a staged file must never
/// grant privileges on the host (which BuildBox's hardlink staging does).
fn permission_bits(unix_mode: u32) -> u32 {
    unix_mode & 0o1777
}

fn mtime(properties: Option<&reapi::NodeProperties>, path: &str) -> Result<Mtime> {
    let Some(timestamp) = properties.and_then(|p| p.mtime.as_ref()) else {
        return Ok(Mtime::DEFAULT);
    };
    match u32::try_from(timestamp.nanos) {
        Ok(nanos) if nanos < 1_000_000_000 => Ok(Mtime { seconds: timestamp.seconds, nanos }),
        _ => Err(StagingError::BadProperty {
            path: path.to_owned(),
            reason: format!("mtime nanos {} is not in 0..1000000000", timestamp.nanos),
        }),
    }
}

/// The directory's own `SubtreeReadOnly` setting, if it has one. `path` names it in errors.
pub fn subtree_read_only(directory: &reapi::Directory, path: &str) -> Result<Option<bool>> {
    let properties = directory.node_properties.as_ref().map(|p| p.properties.as_slice()).unwrap_or_default();
    let Some(property) = properties.iter().find(|p| p.name == SUBTREE_READ_ONLY) else {
        return Ok(None);
    };
    match property.value.as_str() {
        "true" => Ok(Some(true)),
        "false" => Ok(Some(false)),
        other => Err(StagingError::BadProperty {
            path: path.to_owned(),
            reason: format!("{SUBTREE_READ_ONLY} must be \"true\" or \"false\", not {other:?}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OWNER: Owner = Owner { uid: 1000, gid: 100 };

    fn file(executable: bool, properties: Option<reapi::NodeProperties>) -> reapi::FileNode {
        reapi::FileNode {
            name: "f".into(),
            digest: None,
            is_executable: executable,
            node_properties: properties,
        }
    }

    #[test]
    fn defaults_follow_buildbox() {
        let plain = Attrs::of_file(&file(false, None), OWNER, "f").unwrap();
        assert_eq!((plain.mode, plain.mtime, plain.owner), (0o644, Mtime::DEFAULT, OWNER));
        assert_eq!(Attrs::of_file(&file(true, None), OWNER, "f").unwrap().mode, 0o755);
        assert_eq!(Mtime::DEFAULT.seconds, 1321009871);
    }

    #[test]
    fn node_properties_win_and_setuid_is_dropped() {
        let properties = reapi::NodeProperties {
            properties: vec![],
            mtime: Some(prost_types::Timestamp { seconds: 1_500_000_000, nanos: 7 }),
            unix_mode: Some(0o104_751),
        };
        let attrs = Attrs::of_file(&file(false, Some(properties)), OWNER, "f").unwrap();
        assert_eq!(attrs.mode, 0o751, "file type bits and setuid are not permission bits to stage");
        assert_eq!(attrs.mtime, Mtime { seconds: 1_500_000_000, nanos: 7 });
    }

    #[test]
    fn bad_mtime_is_refused_naming_the_file() {
        let properties = reapi::NodeProperties {
            mtime: Some(prost_types::Timestamp { seconds: 1, nanos: -1 }),
            ..Default::default()
        };
        let error = Attrs::of_file(&file(false, Some(properties)), OWNER, "dir/f").unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        assert!(error.to_string().contains("dir/f") && error.to_string().contains("nanos"), "{error}");
    }

    #[test]
    fn subtree_read_only_values() {
        let with = |value: &str| reapi::Directory {
            node_properties: Some(reapi::NodeProperties {
                properties: vec![reapi::NodeProperty { name: SUBTREE_READ_ONLY.into(), value: value.into() }],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(subtree_read_only(&with("true"), ".").unwrap(), Some(true));
        assert_eq!(subtree_read_only(&with("false"), ".").unwrap(), Some(false));
        assert_eq!(subtree_read_only(&reapi::Directory::default(), ".").unwrap(), None);
        let error = subtree_read_only(&with("yes"), "a/b").unwrap_err();
        assert!(error.to_string().contains("a/b") && error.to_string().contains("\"yes\""), "{error}");
    }
}
