//! The privileged and hard-to-fake syscalls of staging, behind a small trait (as youki does), so
//! unit tests can record what was done, and make any step fail, without mounting anything.
//!
//! [`RealSys`] is the implementation the daemon uses, on top of `nix`.

use std::fmt;
use std::fs::File;
use std::io;
use std::os::fd::BorrowedFd;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::mount::{MntFlags, MsFlags};

/// The syscalls staging needs that a test may want to observe or refuse.
pub trait Sys: fmt::Debug + Send + Sync {
    /// Whether mounting is worth trying at all; when it is not, no farm is built for nothing.
    fn may_mount(&self) -> bool {
        true
    }
    /// Mounts an overlay filesystem at `target`; `source` tags it in `/proc/self/mountinfo`.
    fn mount_overlay(&self, source: &str, target: &Path, options: &str) -> Result<(), Errno>;
    /// Mounts a FUSE filesystem (type `fuse.rebox`) at `target`, served through the `/dev/fuse`
    /// descriptor named in `options`; `source` tags it in `/proc/self/mountinfo`.
    fn mount_fuse(&self, source: &str, target: &Path, options: &str) -> Result<(), Errno>;
    /// Bind-mounts `path` onto itself (a mount point of its own, which can then be remounted).
    fn bind_onto_itself(&self, path: &Path) -> Result<(), Errno>;
    /// Changes a bind mount to read-only or read-write.
    fn remount_bind(&self, path: &Path, read_only: bool) -> Result<(), Errno>;
    /// Stops mount events under `path` from propagating to or from other mount namespaces.
    fn make_private(&self, path: &Path) -> Result<(), Errno>;
    /// Unmounts `path`; with `detach`, lazily (MNT_DETACH: gone now, freed when no longer busy).
    fn unmount(&self, path: &Path, detach: bool) -> Result<(), Errno>;
    /// `linkat(old_dir, old, new_dir, new, 0)`: never follows a symlink.
    fn link_at(
        &self,
        old_dir: BorrowedFd<'_>,
        old: &str,
        new_dir: BorrowedFd<'_>,
        new: &str,
    ) -> Result<(), Errno>;
    /// Links an open file (made with O_TMPFILE, so it has no name yet) as `new` in `new_dir`.
    fn link_file(&self, file: &File, new_dir: BorrowedFd<'_>, new: &str) -> Result<(), Errno>;
    /// Copies all of `from` (from its current offset) to `to`; returns the bytes copied.
    fn copy(&self, from: &mut File, to: &mut File) -> io::Result<u64>;
}

/// The real syscalls.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealSys;

impl Sys for RealSys {
    fn may_mount(&self) -> bool {
        // Mounting needs CAP_SYS_ADMIN, which only root has (a daemon in a user namespace it
        // owns is root there).
        nix::unistd::geteuid().is_root()
    }

    fn mount_overlay(&self, source: &str, target: &Path, options: &str) -> Result<(), Errno> {
        // No setuid or device file staged or written by the action may take effect on the host.
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        nix::mount::mount(Some(source), target, Some("overlay"), flags, Some(options))
    }

    fn mount_fuse(&self, source: &str, target: &Path, options: &str) -> Result<(), Errno> {
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        nix::mount::mount(Some(source), target, Some(super::fuse::FSTYPE), flags, Some(options))
    }

    fn bind_onto_itself(&self, path: &Path) -> Result<(), Errno> {
        nix::mount::mount(Some(path), path, None::<&str>, MsFlags::MS_BIND, None::<&str>)
    }

    fn remount_bind(&self, path: &Path, read_only: bool) -> Result<(), Errno> {
        // A bind remount sets the mount's flags exactly: keep the overlay's nosuid and nodev.
        let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
        if read_only {
            flags |= MsFlags::MS_RDONLY;
        }
        nix::mount::mount(None::<&str>, path, None::<&str>, flags, None::<&str>)
    }

    fn make_private(&self, path: &Path) -> Result<(), Errno> {
        let flags = MsFlags::MS_PRIVATE | MsFlags::MS_REC;
        nix::mount::mount(None::<&str>, path, None::<&str>, flags, None::<&str>)
    }

    fn unmount(&self, path: &Path, detach: bool) -> Result<(), Errno> {
        // UMOUNT_NOFOLLOW: a symlink planted at a mount point's path can't redirect the unmount.
        let mut flags = MntFlags::UMOUNT_NOFOLLOW;
        if detach {
            flags |= MntFlags::MNT_DETACH;
        }
        nix::mount::umount2(path, flags)
    }

    fn link_at(
        &self,
        old_dir: BorrowedFd<'_>,
        old: &str,
        new_dir: BorrowedFd<'_>,
        new: &str,
    ) -> Result<(), Errno> {
        nix::unistd::linkat(old_dir, old, new_dir, new, AtFlags::empty())
    }

    fn link_file(&self, file: &File, new_dir: BorrowedFd<'_>, new: &str) -> Result<(), Errno> {
        crate::anonymous_file::link(file, new_dir, new)
    }

    fn copy(&self, from: &mut File, to: &mut File) -> io::Result<u64> {
        // File-to-file `io::copy` uses copy_file_range (in-kernel, reflinks where the fs can).
        io::copy(from, to)
    }
}
