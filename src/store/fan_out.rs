//! The 256 fan-out directories of `cas/objects` (`00` to `ff`), made by the daemon when it starts
//! rather than by the writes that first need them.
//!
//! Making a directory costs far more than linking a file into one: a directory inode and a data
//! block to allocate (on ext4 without a journal, past every inode of the chosen group freed in the
//! last minutes: 1.6 ms a directory was seen here) and the exclusive lock of `cas/objects`. Made
//! lazily, a new cache's first few hundred writes each paid for one, and its first 30 calls in the
//! casd bench's expiry section took 450 ms of the daemon's CPU instead of 100. One-shot commands
//! leave them to their writes: a few blobs need a few directories. A writer still makes a missing
//! one (removed behind the store's back), so this is an optimisation and its failure no error.

use std::os::fd::{AsFd, BorrowedFd};

use nix::NixPath;
use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{Mode, fstatat, mkdirat};

use super::Store;

/// Mode of a fan-out directory.
const FAN_OUT_MODE: u32 = 0o755;

/// The last fan-out directory made: once it exists, all of them were made.
const LAST: &str = "ff";

impl Store {
    /// Makes every missing fan-out directory, in order, unless the last one exists already: an
    /// existing store costs one `fstatat`.
    pub fn make_fan_out_dirs(&self) {
        let objects = self.inner.objects_dir.as_fd();
        if fstatat(objects, LAST, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok() {
            return;
        }
        for byte in 0..=u8::MAX {
            let name = format!("{byte:02x}");
            if let Err(errno) = make_fan_out_dir(objects, name.as_str()) {
                let path = self.inner.layout.objects().join(&name);
                return tracing::debug!("{}: left for the first write to make ({errno})", path.display());
            }
        }
    }
}

/// Makes the fan-out directory `name` in `objects` (`cas/objects`), unless it exists already.
pub(super) fn make_fan_out_dir<P: ?Sized + NixPath>(objects: BorrowedFd<'_>, name: &P) -> nix::Result<()> {
    match mkdirat(objects, name, Mode::from_bits_truncate(FAN_OUT_MODE)) {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(errno) => Err(errno),
    }
}
