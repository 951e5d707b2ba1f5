//! Directories whose existence says "my owner is alive": the mechanism behind start-up clean-up
//! of the store's temporary files and of staging's per-daemon dirs.
//!
//! Several processes may use one cache at once (daemons, `rebox` commands), so clean-up must
//! remove what dead processes left and never what live ones use. Each process holds an exclusive
//! `flock` on its own `PREFIX<pid>-<nonce>` dir for as long as it lives; the kernel drops the lock
//! when the process dies (SIGKILL included), so "can the lock be taken?" answers "is the owner
//! gone?" exactly. Pids alone would be fooled by pid reuse and pid namespaces, file ages by slow
//! owners.

use std::collections::hash_map::RandomState;
use std::fs::{self, DirBuilder, File, Permissions};
use std::hash::BuildHasher;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// How many fresh names to try before giving up.
const CREATE_ATTEMPTS: usize = 64;

/// A directory locked by this process for its whole life. Dropping it releases the lock; the
/// directory itself stays until its owner or a later clean-up removes it.
#[derive(Debug)]
pub struct LockedDir {
    path: PathBuf,
    name: String,
    lock: Flock<File>,
}

impl LockedDir {
    /// Creates and locks a new `PREFIX<pid>-<nonce>` dir under `parent` (which must exist), with
    /// permission bits `mode` once locked.
    pub fn create(parent: &Path, prefix: &str, mode: u32) -> io::Result<Self> {
        for _ in 0..CREATE_ATTEMPTS {
            let name = format!("{prefix}{}-{:016x}", std::process::id(), nonce());
            let path = parent.join(&name);
            match DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(context("create directory", &path, e)),
            }
            // Between mkdir and flock another process's clean-up may take the lock and remove
            // the dir: then start again under a new name.
            let dir = match File::open(&path) {
                Ok(dir) => dir,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(context("open directory", &path, e)),
            };
            let lock = match Flock::lock(dir, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => lock,
                Err((_, Errno::EWOULDBLOCK)) => continue,
                Err((_, errno)) => return Err(context("lock directory", &path, errno.into())),
            };
            if still_at(&lock, &path)? {
                fs::set_permissions(&path, Permissions::from_mode(mode))
                    .map_err(|e| context("chmod", &path, e))?;
                return Ok(Self { path, name, lock });
            }
        }
        Err(context("create a locked directory in", parent, io::Error::other("too many attempts")))
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory's name in its parent.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The open directory, for `*at` calls.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.lock.as_fd()
    }
}

/// Tries to take the lock of a (possibly dead) owner's dir: `Some` if its owner is gone. The
/// caller holds the lock while it cleans up, so that a process just creating that dir notices.
pub fn lock_if_abandoned(path: &Path) -> io::Result<Option<Flock<File>>> {
    let dir = match File::open(path) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(context("open directory", path, e)),
    };
    match Flock::lock(dir, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, errno)) => Err(context("lock directory", path, errno.into())),
    }
}

/// A random-enough nonce for names (uniqueness is enforced by `mkdir` anyway).
pub fn nonce() -> u64 {
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// Whether the locked dir is still the one at `path` (a clean-up may have removed it).
fn still_at(dir: &File, path: &Path) -> io::Result<bool> {
    let locked = dir.metadata().map_err(|e| context("stat directory", path, e))?;
    match fs::symlink_metadata(path) {
        Ok(now) => Ok(locked.nlink() > 0 && now.dev() == locked.dev() && now.ino() == locked.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(context("stat directory", path, e)),
    }
}

fn context(action: &str, path: &Path, error: io::Error) -> io::Error {
    io::Error::new(error.kind(), format!("cannot {action} {}: {error}", path.display()))
}
