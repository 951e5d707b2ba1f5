//! Paths inside the sandbox, and creating them without ever leaving the root.
//!
//! The staged root is hostile input: a symlink in it may point anywhere. Every lookup below the
//! root goes through `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)` relative to the root's
//! descriptor, so `..` and absolute symlinks stay inside it and `/proc/self/fd` tricks are
//! refused; missing directories are created one component at a time relative to the descriptor
//! of their (already resolved) parent.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path};

use nix::errno::Errno;

use crate::sys::{Fd, Follow, Sys};

/// A path inside the sandbox, prepared (in the parent) for a descriptor-relative walk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct InsidePath {
    /// The path as given, for messages.
    pub display: String,
    /// `/` followed by the path, for `chdir` after the pivot.
    pub absolute: CString,
    /// `a`, `a/b`, `a/b/c` for `a/b/c`.
    prefixes: Vec<CString>,
    /// `a`, `b`, `c` for `a/b/c`.
    names: Vec<CString>,
}

impl InsidePath {
    /// Splits `path` (absolute or relative to the root; `.` and empty components ignored).
    /// Refuses `..` (which could only be meant to climb out) and NUL bytes.
    pub(crate) fn parse(path: &Path) -> Result<Self, String> {
        let display = path.display().to_string();
        let mut names = Vec::new();
        for component in path.components() {
            match component {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(name) => names.push(
                    CString::new(name.as_bytes()).map_err(|_| format!("{display:?} contains a NUL byte"))?,
                ),
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(format!("{display:?} contains '..'"));
                }
            }
        }
        let mut prefixes: Vec<CString> = Vec::with_capacity(names.len());
        let mut joined = Vec::new();
        for name in &names {
            if !joined.is_empty() {
                joined.push(b'/');
            }
            joined.extend_from_slice(name.as_bytes());
            prefixes.push(CString::new(joined.clone()).expect("no NUL: checked per component"));
        }
        let mut absolute = vec![b'/'];
        absolute.extend_from_slice(&joined);
        let absolute = CString::new(absolute).expect("no NUL: checked per component");
        Ok(Self { display, absolute, prefixes, names })
    }
}

/// Opens (`O_PATH`) the directory `path` below `root`, creating missing directories (mode 0755).
pub(crate) fn ensure_dir(sys: &impl Sys, root: Fd, path: &InsidePath, follow: Follow) -> Result<Fd, Errno> {
    walk(sys, root, &path.prefixes, &path.names, follow)
}

/// Opens (`O_PATH`) `path` below `root`, creating its missing parents and, when missing, an
/// empty file (mode 0644) for a file bind mount to cover.
pub(crate) fn ensure_file(sys: &impl Sys, root: Fd, path: &InsidePath, follow: Follow) -> Result<Fd, Errno> {
    let (Some(full), Some(name)) = (path.prefixes.last(), path.names.last()) else {
        // The root itself is a directory: a file cannot be mounted over it.
        return Err(Errno::EISDIR);
    };
    let parents = path.names.len() - 1;
    let dir = walk(sys, root, &path.prefixes[..parents], &path.names[..parents], follow)?;
    let result = match sys.open_inside(root, full, follow) {
        Err(Errno::ENOENT) => match sys.create_file_at(dir, name, 0o644) {
            Ok(()) | Err(Errno::EEXIST) => sys.open_inside(root, full, follow),
            Err(errno) => Err(errno),
        },
        other => other,
    };
    sys.close(dir);
    result
}

/// Opens each prefix in turn from `root`, creating it in the previous one when missing.
fn walk(
    sys: &impl Sys,
    root: Fd,
    prefixes: &[CString],
    names: &[CString],
    follow: Follow,
) -> Result<Fd, Errno> {
    let mut dir = sys.open_inside(root, c".", follow)?;
    for (prefix, name) in prefixes.iter().zip(names) {
        let next = match sys.open_inside(root, prefix, follow) {
            Err(Errno::ENOENT) => match sys.mkdir_at(dir, name, 0o755) {
                Ok(()) | Err(Errno::EEXIST) => sys.open_inside(root, prefix, follow),
                Err(errno) => Err(errno),
            },
            other => other,
        };
        sys.close(dir);
        dir = next?;
    }
    Ok(dir)
}
