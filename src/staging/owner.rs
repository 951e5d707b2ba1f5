//! The live daemon's own directory under `cas/staging`, and how a dead daemon's is recognised.
//!
//! Several daemons may serve one cache at once (BuildStream starts one per session), so start-up
//! clean-up must only remove what dead daemons left. As the store does for its temporary files,
//! each daemon holds an exclusive `flock` on its own `rebox-<pid>-<nonce>` dir for as long as it
//! lives; the kernel drops the lock when the process dies (SIGKILL included), so "can the lock be
//! taken?" answers "is the owner gone?" exactly.

use std::collections::hash_map::RandomState;
use std::fs::{self, DirBuilder, File, Permissions};
use std::hash::BuildHasher;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::error::{Context, Result, StagingError};
use super::layout::OWNER_PREFIX;

/// Mode of `cas/staging` and of owner dirs: others may pass through to a stage they own, but
/// not list or create anything.
pub const PASS_THROUGH_MODE: u32 = 0o711;

/// How many fresh names to try before giving up.
const CREATE_ATTEMPTS: usize = 64;

/// A live daemon's locked dir. Dropping it releases the lock (the dir stays until clean-up).
#[derive(Debug)]
pub struct OwnerDir {
    path: PathBuf,
    name: String,
    lock: Flock<File>,
    next: AtomicU64,
}

impl OwnerDir {
    /// Creates and locks a new owner dir under `staging` (created if need be).
    pub fn create(staging: &Path) -> Result<Self> {
        create_dir_with_mode(staging, PASS_THROUGH_MODE)?;
        for _ in 0..CREATE_ATTEMPTS {
            let name = format!("{OWNER_PREFIX}{}-{:016x}", std::process::id(), nonce());
            let path = staging.join(&name);
            match DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(StagingError::io("create directory", path, e)),
            }
            let dir = match File::open(&path) {
                Ok(dir) => dir,
                // A concurrent clean-up found it unlocked and removed it: try another name.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StagingError::io("open directory", path, e)),
            };
            let lock = match Flock::lock(dir, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => lock,
                Err((_, Errno::EWOULDBLOCK)) => continue,
                Err((_, errno)) => return Err(StagingError::errno("lock directory", path, errno)),
            };
            if !still_at(&lock, &path)? {
                continue;
            }
            // Only now, locked, open it to others' traversal (umask can't narrow an explicit chmod).
            fs::set_permissions(&path, Permissions::from_mode(PASS_THROUGH_MODE)).at("chmod", &path)?;
            return Ok(Self { path, name, lock, next: AtomicU64::new(1) });
        }
        Err(StagingError::io("create a staging directory in", staging, io::Error::other("too many attempts")))
    }

    /// The dir's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The dir's name (`rebox-<pid>-<nonce>`), which also tags this daemon's mounts.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The open dir, for `*at` calls.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.lock.as_fd()
    }

    /// A number not used before by this daemon, for names inside the dir.
    pub fn next_number(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
}

/// Whether the locked dir is still the one at `path` (a clean-up may have removed it).
fn still_at(dir: &File, path: &Path) -> Result<bool> {
    let locked = dir.metadata().at("stat directory", path)?;
    match fs::symlink_metadata(path) {
        Ok(now) => Ok(locked.nlink() > 0 && now.dev() == locked.dev() && now.ino() == locked.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StagingError::io("stat directory", path, e)),
    }
}

/// Tries to take the lock of a (possibly dead) owner dir: `Some` if its owner is gone. The lock
/// is held by the caller while it cleans up, so that a daemon just creating that dir notices.
pub fn lock_if_abandoned(path: &Path) -> Result<Option<Flock<File>>> {
    let dir = match File::open(path) {
        Ok(dir) => dir,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StagingError::io("open directory", path, e)),
    };
    match Flock::lock(dir, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(lock)),
        Err((_, Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, errno)) => Err(StagingError::errno("lock directory", path, errno)),
    }
}

/// Creates `path` (and missing parents) with `mode` if it does not exist; leaves an existing one.
pub fn create_dir_with_mode(path: &Path, mode: u32) -> Result<()> {
    match DirBuilder::new().mode(0o700).create(path) {
        Ok(()) => fs::set_permissions(path, Permissions::from_mode(mode)).at("chmod", path),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                fs::create_dir_all(parent).at("create directory", parent)?;
            }
            create_dir_with_mode(path, mode)
        }
        Err(e) => Err(StagingError::io("create directory", path, e)),
    }
}

/// A random-enough nonce for names (uniqueness is enforced by `mkdir` anyway).
pub fn nonce() -> u64 {
    RandomState::new().hash_one(std::time::SystemTime::now())
}
