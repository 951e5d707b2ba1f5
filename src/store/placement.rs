//! Where the filesystem puts the inodes of new temporary files, and why the store steers it.
//!
//! ext4 gives a new file an inode in the block group of its parent directory. Without a journal
//! (as on this project's machines), it also skips each free inode of that group that was freed in
//! the last one to six minutes, one buffer lookup each (`find_inode_bit` → `recently_deleted`).
//! Expiry frees thousands of objects' inodes in the groups where they were written, so a writer
//! whose directory sits in such a group pays for a scan of the whole group on every file: 1.2 ms
//! a file measured here, against 30–110 µs in a group with room.
//!
//! A directory marked as the top of a hierarchy (`FS_TOPDIR_FL`, `chattr +T`) has its
//! subdirectories spread by the Orlov allocator over groups with more free inodes and blocks than
//! average, instead of next to it. Its search starts at a hash of the new directory's name, so a name
//! used again goes back to the same group: the store's subdirectories have a random part in their
//! names. The store writes into such subdirectories and moves on to a new one every so often, or
//! as soon as creating files there turns slow ([`super::tmp`]), so new files keep landing where
//! nothing was just freed.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

/// `FS_TOPDIR_FL` from `linux/fs.h`: "top of directory hierarchies" (not in the `libc` crate).
const FS_TOPDIR_FL: libc::c_int = 0x0002_0000;

/// Marks `dir` so that its subdirectories are spread over the filesystem. Fails (and changes
/// nothing) where the filesystem has no such flag (tmpfs, btrfs, overlayfs: `ENOTTY`,
/// `EOPNOTSUPP`); callers treat that as "nothing to steer".
pub fn spread_subdirectories(dir: BorrowedFd<'_>) -> io::Result<()> {
    let flags = flags(dir)?;
    if flags & FS_TOPDIR_FL != 0 {
        return Ok(());
    }
    let flags = flags | FS_TOPDIR_FL;
    // SAFETY: FS_IOC_SETFLAGS reads one int through the pointer (the kernel's `long` in its
    // number is historical), which points to a live local for the duration of the call.
    let result = unsafe { libc::ioctl(dir.as_raw_fd(), libc::FS_IOC_SETFLAGS, &flags as *const libc::c_int) };
    if result == 0 { Ok(()) } else { Err(io::Error::last_os_error()) }
}

/// Whether [`spread_subdirectories`] holds for `dir`.
#[cfg(test)]
pub fn spreads_subdirectories(dir: BorrowedFd<'_>) -> io::Result<bool> {
    Ok(flags(dir)? & FS_TOPDIR_FL != 0)
}

/// The inode flags of `dir` (`lsattr`).
fn flags(dir: BorrowedFd<'_>) -> io::Result<libc::c_int> {
    let mut flags: libc::c_int = 0;
    // SAFETY: FS_IOC_GETFLAGS writes one int through the pointer, which points to a live local.
    let result =
        unsafe { libc::ioctl(dir.as_raw_fd(), libc::FS_IOC_GETFLAGS, &mut flags as *mut libc::c_int) };
    if result == 0 { Ok(flags) } else { Err(io::Error::last_os_error()) }
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn a_directory_marked_to_spread_its_subdirectories_says_so() {
        // The tests' temporary directories are on ext4 here (as the store's caches are).
        let dir = tempfile::tempdir().unwrap();
        let handle = File::open(dir.path()).unwrap();
        assert!(!spreads_subdirectories(handle.as_fd()).unwrap());
        spread_subdirectories(handle.as_fd()).unwrap();
        assert!(spreads_subdirectories(handle.as_fd()).unwrap());
        spread_subdirectories(handle.as_fd()).unwrap(); // idempotent
        assert!(spreads_subdirectories(handle.as_fd()).unwrap());
    }

    #[test]
    fn where_there_is_no_such_flag_marking_fails_and_changes_nothing() {
        let dir = tempfile::tempdir_in("/dev/shm").unwrap();
        let handle = File::open(dir.path()).unwrap();
        assert!(spread_subdirectories(handle.as_fd()).is_err(), "tmpfs has no FS_TOPDIR_FL");
    }
}
