//! Finding the path a client asked to capture, confined to its `root` when one is given.
//!
//! With a `root`, the path resolves as if `root` were `/` (`openat2` with `RESOLVE_IN_ROOT`):
//! `..`, absolute paths and symlinks met on the way all stay inside it, so nothing outside is
//! ever read, as LocalCAS requires. Without one, the path must be absolute. Either way, symlinks
//! among the path's leading components are followed (a stage dir under `/tmp` may sit behind
//! one), but the final component never is: capture records symlinks, it does not follow them.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{FileStat, Mode, SFlag, fstatat};

use super::CaptureError;
use super::file::{kind_of, open_regular};

/// How often a `RESOLVE_IN_ROOT` lookup is retried when the kernel reports a concurrent rename
/// (`EAGAIN`) that could have let `..` escape.
const RESOLVE_ATTEMPTS: usize = 8;

/// A path to capture, resolved: the directory that holds it, open, and its name there.
#[derive(Debug)]
pub struct Target {
    /// The path as the client gave it.
    path: String,
    /// The root the path was resolved in, if any.
    root: Option<String>,
    /// The directory holding the target (`O_PATH`), or the target itself when `name` is `None`
    /// (a path ending in `.` or `..`, or `/`).
    parent: OwnedFd,
    name: Option<CString>,
    /// A trailing slash: the target must be a directory.
    must_be_dir: bool,
}

impl Target {
    /// Resolves `path`, inside `root` when one is given, up to (not including) its final
    /// component. Fails if `root` or, without one, `path` is relative, or if the directory that
    /// should hold the target does not exist.
    pub fn resolve(root: Option<&str>, path: &str) -> Result<Self, CaptureError> {
        let root = root.filter(|r| !r.is_empty());
        if let Some(root) = root {
            if !root.starts_with('/') {
                return Err(CaptureError::RelativePath { path: root.to_owned() });
            }
        } else if !path.starts_with('/') {
            return Err(CaptureError::RelativePath { path: path.to_owned() });
        }
        let not_found =
            |source| CaptureError::NotFound { path: path.to_owned(), root: root.map(str::to_owned), source };
        let (parent_path, name, must_be_dir) = split(path).ok_or_else(|| not_found(Errno::ENOENT.into()))?;
        let parent = match root {
            Some(root_path) => {
                let root_fd = open_path(AT_FDCWD, root_path, ResolveFlag::empty()).map_err(|errno| {
                    CaptureError::NotFound { path: root_path.to_owned(), root: None, source: errno.into() }
                })?;
                open_path(root_fd.as_fd(), parent_path, ResolveFlag::RESOLVE_IN_ROOT)
            }
            None => open_path(AT_FDCWD, parent_path, ResolveFlag::empty()),
        }
        .map_err(|errno| match errno {
            Errno::ENOSYS => CaptureError::Io {
                action: "resolve inside its root (this needs openat2, Linux 5.6 or later)",
                path: path.to_owned(),
                source: errno.into(),
            },
            errno => not_found(errno.into()),
        })?;
        let name = name.map(|n| CString::new(n).map_err(|_| not_found(Errno::EINVAL.into()))).transpose()?;
        Ok(Self { path: path.to_owned(), root: root.map(str::to_owned), parent, name, must_be_dir })
    }

    /// The path as the client gave it.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The target's absolute path on the host, with every symlink resolved (as the kernel names
    /// the open parent directory), for known-digest lookups and messages.
    pub fn host_path(&self) -> PathBuf {
        let parent = std::fs::read_link(fd_link(self.parent.as_fd())).unwrap_or_else(|_| {
            // No /proc: the textual path is the best there is.
            let root = Path::new(self.root.as_deref().unwrap_or("/"));
            root.join(self.path.trim_start_matches('/'))
        });
        match &self.name {
            Some(name) => parent.join(name.to_str().unwrap_or_default()),
            None => parent,
        }
    }

    /// Opens the target as a directory to read.
    pub fn open_dir(&self) -> Result<File, CaptureError> {
        let Some(name) = &self.name else {
            let fd = openat(self.parent.as_fd(), c".", dir_flags(), Mode::empty()).map_err(|e| self.io(e))?;
            return Ok(File::from(fd));
        };
        let stat = self.lstat(name)?;
        match SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFDIR => {}
            SFlag::S_IFLNK => {
                return Err(CaptureError::Symlink { path: self.path.clone(), root: self.root.clone() });
            }
            _ => return Err(self.not_a_directory()),
        }
        match openat(self.parent.as_fd(), name.as_c_str(), dir_flags() | OFlag::O_NOFOLLOW, Mode::empty()) {
            Ok(fd) => Ok(File::from(fd)),
            // Replaced since the lstat: report what is there now.
            Err(Errno::ELOOP) => {
                Err(CaptureError::Symlink { path: self.path.clone(), root: self.root.clone() })
            }
            Err(Errno::ENOTDIR) => Err(self.not_a_directory()),
            Err(errno) => Err(self.io(errno)),
        }
    }

    /// Opens the target as a regular file to read; also returns its metadata.
    pub fn open_file(&self) -> Result<(File, std::fs::Metadata), CaptureError> {
        let Some(name) = &self.name else {
            return Err(CaptureError::IsADirectory { path: self.path.clone(), root: self.root.clone() });
        };
        let stat = self.lstat(name)?;
        match SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT {
            SFlag::S_IFREG if self.must_be_dir => Err(self.not_a_directory()),
            SFlag::S_IFREG => open_regular(self.parent.as_fd(), name, &self.path),
            SFlag::S_IFDIR => {
                Err(CaptureError::IsADirectory { path: self.path.clone(), root: self.root.clone() })
            }
            SFlag::S_IFLNK => Err(CaptureError::Symlink { path: self.path.clone(), root: self.root.clone() }),
            kind => Err(CaptureError::Special { path: self.path.clone(), kind: kind_of(kind) }),
        }
    }

    /// The directory holding the target and the target's name in it (`None` for a target that
    /// is named by `.`, `..` or `/`).
    pub(crate) fn parent_and_name(&self) -> (BorrowedFd<'_>, Option<&CStr>) {
        (self.parent.as_fd(), self.name.as_deref())
    }

    fn lstat(&self, name: &CStr) -> Result<FileStat, CaptureError> {
        fstatat(self.parent.as_fd(), name, nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|errno| {
            match errno {
                Errno::ENOENT => CaptureError::NotFound {
                    path: self.path.clone(),
                    root: self.root.clone(),
                    source: errno.into(),
                },
                _ => self.io(errno),
            }
        })
    }

    fn not_a_directory(&self) -> CaptureError {
        CaptureError::NotADirectory { path: self.path.clone(), root: self.root.clone() }
    }

    fn io(&self, errno: Errno) -> CaptureError {
        CaptureError::Io { action: "open", path: self.path.clone(), source: errno.into() }
    }
}

/// Splits `path` into the directory holding its target, the target's name (`None` when the
/// target is named by `.`, `..` or `/` and so is that directory itself), and whether a trailing
/// slash asks for a directory. `None` for an empty path.
fn split(path: &str) -> Option<(&str, Option<&str>, bool)> {
    if path.is_empty() {
        return None;
    }
    let trimmed = path.trim_end_matches('/');
    let must_be_dir = trimmed.len() != path.len();
    if trimmed.is_empty() {
        return Some(("/", None, true));
    }
    let (parent, name) = match trimmed.rfind('/') {
        Some(slash) => (&trimmed[..=slash], &trimmed[slash + 1..]),
        None => (".", trimmed),
    };
    if name == "." || name == ".." {
        return Some((trimmed, None, true));
    }
    Some((parent, Some(name), must_be_dir))
}

/// Opens a directory `O_PATH` (no read access needed), following symlinks but never magic links
/// (`/proc/self/fd/...`), with extra `resolve` flags.
fn open_path(dir: BorrowedFd<'_>, path: &str, resolve: ResolveFlag) -> Result<OwnedFd, Errno> {
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(resolve | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    let mut attempts = 0;
    loop {
        match openat2(dir, path, how) {
            Err(Errno::EAGAIN) if attempts < RESOLVE_ATTEMPTS => attempts += 1,
            Err(Errno::ENOSYS) if resolve.is_empty() => {
                // A kernel (or seccomp filter) without openat2: a plain open does the same here.
                return openat(
                    dir,
                    path,
                    OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                    Mode::empty(),
                );
            }
            result => return result,
        }
    }
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC
}

/// `/proc/self/fd/N` for an open descriptor.
fn fd_link(fd: BorrowedFd<'_>) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::split;

    #[test]
    fn paths_split_into_parent_and_final_name() {
        assert_eq!(split("/a/b"), Some(("/a/", Some("b"), false)));
        assert_eq!(split("/a/b/"), Some(("/a/", Some("b"), true)));
        assert_eq!(split("b"), Some((".", Some("b"), false)));
        assert_eq!(split("/b"), Some(("/", Some("b"), false)));
        assert_eq!(split("/"), Some(("/", None, true)));
        assert_eq!(split("//"), Some(("/", None, true)));
        assert_eq!(split("."), Some((".", None, true)));
        assert_eq!(split("a/.."), Some(("a/..", None, true)));
        assert_eq!(split("a//b"), Some(("a//", Some("b"), false)));
        assert_eq!(split(""), None);
    }
}
