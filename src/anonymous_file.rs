//! Unnamed files (`O_TMPFILE`): written with no name, then given one in a single `linkat` once
//! complete. Nothing half-written is ever visible under a name, a writer that dies leaves
//! nothing behind, and creating one takes no directory lock. The store's blobs, staging's pool
//! variants and ActionCache entries are all written this way.

use std::fs::File;
use std::os::fd::{AsRawFd, BorrowedFd};

use nix::NixPath;
use nix::errno::Errno;
use nix::fcntl::{AT_FDCWD, AtFlags, OFlag};
use nix::sys::stat::Mode;

/// Where an unnamed file can be named for `linkat` without `CAP_DAC_READ_SEARCH`.
const PROC_FDS: &str = "/proc/self/fd";

/// Whether unnamed files can be given names here (`/proc` is mounted).
pub fn linkable() -> bool {
    std::path::Path::new(PROC_FDS).is_dir()
}

/// Creates an unnamed, writable file with permission bits `mode` on the filesystem of the
/// directory `path` (relative to `dir`). `Ok(None)` when that filesystem (or kernel) has no
/// unnamed files: the caller then writes a named temporary file instead.
pub fn create<P: ?Sized + NixPath>(dir: BorrowedFd<'_>, path: &P, mode: u32) -> Result<Option<File>, Errno> {
    let flags = OFlag::O_TMPFILE | OFlag::O_RDWR | OFlag::O_CLOEXEC;
    match nix::fcntl::openat(dir, path, flags, Mode::from_bits_truncate(mode)) {
        Ok(fd) => Ok(Some(File::from(fd))),
        Err(Errno::EOPNOTSUPP | Errno::EISDIR | Errno::EINVAL) => Ok(None),
        Err(errno) => Err(errno),
    }
}

/// Gives the unnamed `file` the name `name` (relative to `dir`); `EEXIST` if it is taken.
pub fn link<P: ?Sized + NixPath>(file: &File, dir: BorrowedFd<'_>, name: &P) -> Result<(), Errno> {
    // Through /proc rather than AT_EMPTY_PATH, which needs CAP_DAC_READ_SEARCH.
    let proc_path = format!("{PROC_FDS}/{}", file.as_raw_fd());
    nix::unistd::linkat(AT_FDCWD, proc_path.as_str(), dir, name, AtFlags::AT_SYMLINK_FOLLOW)
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn an_unnamed_file_gets_its_name_only_when_linked_and_never_over_another() {
        let dir = tempfile::tempdir().unwrap();
        let handle = File::open(dir.path()).unwrap();
        let mut file = create(handle.as_fd(), ".", 0o444).unwrap().expect("O_TMPFILE works here");
        file.write_all(b"content").unwrap();
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "an unnamed file has no name");

        link(&file, handle.as_fd(), "named").unwrap();
        let named = dir.path().join("named");
        assert_eq!(fs::read(&named).unwrap(), b"content");
        assert_eq!(fs::metadata(&named).unwrap().mode() & 0o7777, 0o444);
        assert_eq!(link(&file, handle.as_fd(), "named"), Err(Errno::EEXIST));
    }
}
