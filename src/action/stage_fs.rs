//! Touching the staged input root from the host: creating the working directory and the parents
//! of outputs before the command runs, and seeing what each output is afterwards.
//!
//! Every path resolves with `openat2(RESOLVE_IN_ROOT)` from the stage's root, so a symlink in
//! the input root (`out -> /etc`) resolves as the sandbox sees it and never reaches the host.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag, OpenHow, ResolveFlag, openat2, readlinkat};
use nix::sys::stat::{Mode, SFlag, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, fchownat};

use super::error::ActionError;

/// What an output path holds after the command ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// Nothing: the output was not produced.
    Missing,
    /// A regular file, at this host path.
    File(PathBuf),
    /// A directory, at this host path.
    Directory(PathBuf),
    /// A symlink, with its target as is.
    Symlink(String),
    /// A socket, FIFO or device.
    Special,
}

/// Creates the directories `components` inside `root` (mode 0755, owned by `owner` when given),
/// keeping those already there.
pub fn make_dirs(root: &Path, components: &[String], owner: Option<(u32, u32)>) -> Result<(), ActionError> {
    let root_fd = open_in(AT_FDCWD, &root.to_string_lossy(), ResolveFlag::empty())
        .map_err(|e| ActionError::io("open the stage", root, e.into()))?;
    for depth in 1..=components.len() {
        let path = components[..depth].join("/");
        match open_in(root_fd.as_fd(), &path, ResolveFlag::RESOLVE_IN_ROOT) {
            Ok(_) => continue,
            Err(Errno::ENOENT) => {}
            Err(Errno::ENOTDIR) => {
                return Err(ActionError::Invalid(format!(
                    "/{path} exists in the input root and is not a directory"
                )));
            }
            Err(errno) => return Err(ActionError::io("open", root.join(&path), errno.into())),
        }
        let parent =
            open_in(root_fd.as_fd(), &components[..depth - 1].join("/"), ResolveFlag::RESOLVE_IN_ROOT)
                .map_err(|e| ActionError::io("open", root.join(&path), e.into()))?;
        let name = c_name(&components[depth - 1])?;
        match mkdirat(parent.as_fd(), name.as_c_str(), Mode::from_bits_truncate(0o755)) {
            Ok(()) | Err(Errno::EEXIST) => {}
            Err(errno) => return Err(ActionError::io("create directory", root.join(&path), errno.into())),
        }
        // EEXIST for a dangling symlink: it resolves to nothing inside the root.
        if let Err(errno) = open_in(root_fd.as_fd(), &path, ResolveFlag::RESOLVE_IN_ROOT) {
            return Err(ActionError::Invalid(format!(
                "/{path} cannot be made a directory in the input root (a dangling symlink?): {errno}"
            )));
        }
        if let Some((uid, gid)) = owner {
            fchownat(
                parent.as_fd(),
                name.as_c_str(),
                Some(Uid::from_raw(uid)),
                Some(Gid::from_raw(gid)),
                AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .map_err(|e| ActionError::io("chown", root.join(&path), e.into()))?;
        }
    }
    Ok(())
}

/// What the output at `components` inside `root` is, never following its final component.
pub fn inspect(root: &Path, components: &[String]) -> Result<Found, ActionError> {
    let root_fd = open_in(AT_FDCWD, &root.to_string_lossy(), ResolveFlag::empty())
        .map_err(|e| ActionError::io("open the stage", root, e.into()))?;
    let Some((name, parents)) = components.split_last() else {
        return Ok(Found::Directory(host_path(root_fd.as_fd(), None)));
    };
    let parent = match open_in(root_fd.as_fd(), &parents.join("/"), ResolveFlag::RESOLVE_IN_ROOT) {
        Ok(parent) => parent,
        Err(Errno::ENOENT | Errno::ENOTDIR) => return Ok(Found::Missing),
        Err(errno) => return Err(ActionError::io("open", root.join(parents.join("/")), errno.into())),
    };
    let c_name = c_name(name)?;
    let stat = match fstatat(parent.as_fd(), c_name.as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(stat) => stat,
        Err(Errno::ENOENT) => return Ok(Found::Missing),
        Err(errno) => return Err(ActionError::io("stat", root.join(components.join("/")), errno.into())),
    };
    Ok(match SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFREG => Found::File(host_path(parent.as_fd(), Some(name))),
        SFlag::S_IFDIR => Found::Directory(host_path(parent.as_fd(), Some(name))),
        SFlag::S_IFLNK => {
            let target = readlinkat(parent.as_fd(), c_name.as_c_str())
                .map_err(|e| ActionError::io("read link", root.join(components.join("/")), e.into()))?;
            Found::Symlink(target.to_string_lossy().into_owned())
        }
        _ => Found::Special,
    })
}

/// The host path of `name` in the open directory `dir`, as the kernel names the directory.
fn host_path(dir: BorrowedFd<'_>, name: Option<&str>) -> PathBuf {
    let dir = std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd())).unwrap_or_default();
    match name {
        Some(name) => dir.join(name),
        None => dir,
    }
}

fn c_name(name: &str) -> Result<CString, ActionError> {
    CString::new(name)
        .map_err(|_| ActionError::Invalid(format!("path component {name:?} contains a NUL byte")))
}

/// Opens a directory `O_PATH`, never through a magic link; `""` is `dir` itself.
fn open_in(dir: BorrowedFd<'_>, path: &str, resolve: ResolveFlag) -> Result<OwnedFd, Errno> {
    let path = if path.is_empty() { "." } else { path };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(resolve | ResolveFlag::RESOLVE_NO_MAGICLINKS);
    loop {
        match openat2(dir, path, how) {
            Err(Errno::EAGAIN) => continue,
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    fn strings(path: &str) -> Vec<String> {
        path.split('/').filter(|c| !c.is_empty()).map(str::to_owned).collect()
    }

    #[test]
    fn makes_dirs_inside_the_root_even_through_symlinks() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), root.path().join("escape")).unwrap();
        symlink("/", root.path().join("abs")).unwrap();
        make_dirs(root.path(), &strings("a/b/c"), None).unwrap();
        make_dirs(root.path(), &strings("abs/y"), None).unwrap();
        assert!(root.path().join("a/b/c").is_dir());
        // `escape` points at an absolute host path, which does not exist inside the root: the
        // sandbox could not use it either, and nothing is made on the host.
        let error = make_dirs(root.path(), &strings("escape/x"), None).unwrap_err();
        assert!(error.to_string().contains("/escape cannot be made a directory"), "{error}");
        assert!(!outside.path().join("x").exists());
        assert!(root.path().join("y").is_dir(), "/abs -> / is the root itself");
        std::fs::write(root.path().join("file"), b"").unwrap();
        let error = make_dirs(root.path(), &strings("file/z"), None).unwrap_err();
        assert!(
            error.to_string().contains("/file exists in the input root and is not a directory"),
            "{error}"
        );
    }

    #[test]
    fn inspects_without_following_the_final_symlink() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("d")).unwrap();
        std::fs::write(root.path().join("d/f"), b"x").unwrap();
        symlink("d", root.path().join("link")).unwrap();
        let canonical = root.path().canonicalize().unwrap();
        assert_eq!(inspect(root.path(), &strings("d/f")).unwrap(), Found::File(canonical.join("d/f")));
        assert_eq!(inspect(root.path(), &strings("link")).unwrap(), Found::Symlink("d".into()));
        assert_eq!(inspect(root.path(), &strings("link/f")).unwrap(), Found::File(canonical.join("d/f")));
        assert_eq!(inspect(root.path(), &strings("")).unwrap(), Found::Directory(canonical.clone()));
        assert_eq!(inspect(root.path(), &strings("nope/f")).unwrap(), Found::Missing);
        assert_eq!(inspect(root.path(), &strings("d/f/g")).unwrap(), Found::Missing);
    }
}
