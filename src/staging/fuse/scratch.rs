//! The scratch dir of a FUSE stage: one private file per inode the action wrote, named by the
//! inode's number, on the cache's filesystem. It holds the file's bytes and its times; mode and
//! owner stay in memory (the scratch files are 0600, the daemon's own, in a 0700 dir).

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::time::SystemTime;

use nix::fcntl::{AtFlags, OFlag, openat};
use nix::sys::stat::{FileStat, Mode, UtimensatFlags, fstatat, futimens, utimensat};
use nix::sys::statvfs::{Statvfs, fstatvfs};
use nix::sys::time::TimeSpec;
use nix::unistd::{UnlinkatFlags, unlinkat};

use super::node::Ino;

/// A stage's scratch dir, open.
#[derive(Debug)]
pub struct Scratch {
    dir: OwnedFd,
}

impl Scratch {
    /// Opens the (existing, empty) scratch dir at `path`.
    pub fn open(path: &Path) -> io::Result<Self> {
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let dir = nix::fcntl::open(path, flags, Mode::empty())?;
        Ok(Self { dir })
    }

    /// Creates the empty scratch file of `ino`, open to read and write.
    pub fn create(&self, ino: Ino) -> io::Result<File> {
        let flags = OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        Ok(File::from(openat(
            self.dir.as_fd(),
            name(ino).as_c_str(),
            flags,
            Mode::from_bits_truncate(0o600),
        )?))
    }

    /// Opens the scratch file of `ino` to read and write.
    pub fn open_file(&self, ino: Ino) -> io::Result<File> {
        let flags = OFlag::O_RDWR | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        Ok(File::from(openat(self.dir.as_fd(), name(ino).as_c_str(), flags, Mode::empty())?))
    }

    /// The scratch file's `stat` (its size and times are the staged file's).
    pub fn stat(&self, ino: Ino) -> io::Result<FileStat> {
        Ok(fstatat(self.dir.as_fd(), name(ino).as_c_str(), AtFlags::AT_SYMLINK_NOFOLLOW)?)
    }

    /// Sets the scratch file's access and modification times (`None` leaves one as it is).
    pub fn set_times(
        &self,
        ino: Ino,
        atime: Option<SystemTime>,
        mtime: Option<SystemTime>,
    ) -> io::Result<()> {
        let (atime, mtime) = (timespec(atime), timespec(mtime));
        Ok(utimensat(
            self.dir.as_fd(),
            name(ino).as_c_str(),
            &atime,
            &mtime,
            UtimensatFlags::NoFollowSymlink,
        )?)
    }

    /// Removes the scratch file of `ino` (open descriptors keep working).
    pub fn remove(&self, ino: Ino) -> io::Result<()> {
        Ok(unlinkat(self.dir.as_fd(), name(ino).as_c_str(), UnlinkatFlags::NoRemoveDir)?)
    }

    /// Copies `from` (a CAS object) into a new scratch file for `ino`, with the given times.
    pub fn copy_up(
        &self,
        ino: Ino,
        from: &mut File,
        atime: SystemTime,
        mtime: SystemTime,
    ) -> io::Result<File> {
        let mut file = self.create(ino)?;
        let copied = io::copy(from, &mut file)
            .and_then(|_| Ok(futimens(file.as_fd(), &timespec(Some(atime)), &timespec(Some(mtime)))?));
        if let Err(error) = copied {
            let _ = self.remove(ino);
            return Err(error);
        }
        Ok(file)
    }

    /// The filesystem's figures, for `statfs` on the stage.
    pub fn statvfs(&self) -> io::Result<Statvfs> {
        Ok(fstatvfs(self.dir.as_fd())?)
    }
}

fn name(ino: Ino) -> CString {
    CString::new(ino.to_string()).expect("digits have no NUL")
}

/// A time for `utimensat`: `None` leaves it unchanged.
fn timespec(time: Option<SystemTime>) -> TimeSpec {
    match time {
        None => TimeSpec::UTIME_OMIT,
        Some(time) => {
            let (seconds, nanos) = match time.duration_since(SystemTime::UNIX_EPOCH) {
                Ok(after) => (after.as_secs() as i64, i64::from(after.subsec_nanos())),
                Err(before) => {
                    let before = before.duration();
                    let nanos = i64::from(before.subsec_nanos());
                    if nanos == 0 {
                        (-(before.as_secs() as i64), 0)
                    } else {
                        (-(before.as_secs() as i64) - 1, 1_000_000_000 - nanos)
                    }
                }
            };
            TimeSpec::new(seconds, nanos)
        }
    }
}

/// A `stat` time as a `SystemTime`.
pub fn system_time(seconds: i64, nanos: i64) -> SystemTime {
    let nanos = nanos.clamp(0, 999_999_999) as u32;
    if seconds >= 0 {
        SystemTime::UNIX_EPOCH + std::time::Duration::new(seconds as u64, nanos)
    } else {
        SystemTime::UNIX_EPOCH - std::time::Duration::from_secs(seconds.unsigned_abs())
            + std::time::Duration::from_nanos(u64::from(nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_round_trip_before_and_after_the_epoch() {
        for (s, n) in [(0, 0), (1321009871, 5), (-1, 999_999_999), (-5, 0), (-5, 1)] {
            let time = system_time(s, n);
            let spec = timespec(Some(time));
            assert_eq!((spec.tv_sec(), spec.tv_nsec()), (s, n), "{s}.{n}");
        }
    }

    #[test]
    fn copies_up_with_times_and_removes() {
        let tmp = tempfile::tempdir().unwrap();
        let scratch = Scratch::open(tmp.path()).unwrap();
        let source_path = tmp.path().join("source");
        std::fs::write(&source_path, b"staged bytes").unwrap();
        let mtime = system_time(1321009871, 0);
        let mut source = File::open(&source_path).unwrap();
        drop(scratch.copy_up(7, &mut source, mtime, mtime).unwrap());
        assert_eq!(std::fs::read(tmp.path().join("7")).unwrap(), b"staged bytes");
        let stat = scratch.stat(7).unwrap();
        assert_eq!((stat.st_mtime, stat.st_mode & 0o777, stat.st_size), (1321009871, 0o600, 12));
        assert!(scratch.create(7).is_err(), "never over an existing scratch file");
        scratch.remove(7).unwrap();
        assert!(scratch.open_file(7).is_err());
    }
}
