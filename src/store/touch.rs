//! The LRU clock: an object's mtime is the time it was last used, as buildbox-casd keeps it.

use std::fs::File;
use std::io;
use std::os::fd::BorrowedFd;

use nix::errno::Errno;
use nix::sys::stat::{UtimensatFlags, futimens, utimensat};
use nix::sys::time::TimeSpec;

/// Sets the access and modification times of the object at `relative` under `dir` to now.
pub fn touch_at(dir: BorrowedFd<'_>, relative: &[u8]) -> io::Result<()> {
    let now = TimeSpec::UTIME_NOW;
    utimensat(dir, relative, &now, &now, UtimensatFlags::NoFollowSymlink).map_err(io::Error::from)
}

/// Sets the access and modification times of an open object to now.
pub fn touch_file(file: &File) -> io::Result<()> {
    let now = TimeSpec::UTIME_NOW;
    futimens(file, &now, &now).map_err(io::Error::from)
}

/// Whether a failed touch only means the store is not ours to change (someone else's files, or a
/// read-only mount): reads still work then, only the LRU clock stands still.
pub fn is_denied(error: &io::Error) -> bool {
    matches!(Errno::from_raw(error.raw_os_error().unwrap_or(0)), Errno::EPERM | Errno::EACCES | Errno::EROFS)
}
