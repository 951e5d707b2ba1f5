//! The live daemon's own directory under `cas/staging`, and how a dead daemon's is recognised.
//!
//! Several daemons may serve one cache at once (BuildStream starts one per session), so start-up
//! clean-up must only remove what dead daemons left: each daemon works in its own
//! [`LockedDir`] `rebox-<pid>-<nonce>` (see [`crate::locked_dir`]).

use std::fs::{self, DirBuilder, Permissions};
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::{Context, Result, StagingError};
use super::layout::OWNER_PREFIX;
use crate::locked_dir::LockedDir;

/// Mode of `cas/staging` and of owner dirs: others may pass through to a stage they own, but
/// not list or create anything.
pub const PASS_THROUGH_MODE: u32 = 0o711;

/// A live daemon's locked dir. Dropping it releases the lock (the dir stays until clean-up).
#[derive(Debug)]
pub struct OwnerDir {
    dir: LockedDir,
    next: AtomicU64,
}

impl OwnerDir {
    /// Creates and locks a new owner dir under `staging` (created if need be).
    pub fn create(staging: &Path) -> Result<Self> {
        create_dir_with_mode(staging, PASS_THROUGH_MODE)?;
        // Opened to others' traversal only once locked (umask can't narrow an explicit chmod).
        let dir = LockedDir::create(staging, OWNER_PREFIX, PASS_THROUGH_MODE)
            .map_err(|e| StagingError::io("create a staging directory in", staging, e))?;
        Ok(Self { dir, next: AtomicU64::new(1) })
    }

    /// The dir's path.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The dir's name (`rebox-<pid>-<nonce>`), which also tags this daemon's mounts.
    pub fn name(&self) -> &str {
        self.dir.name()
    }

    /// The open dir, for `*at` calls.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.dir.fd()
    }

    /// A number not used before by this daemon, for names inside the dir.
    pub fn next_number(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }
}

/// Tries to take the lock of a (possibly dead) owner dir: `Some` if its owner is gone.
pub fn lock_if_abandoned(path: &Path) -> Result<Option<nix::fcntl::Flock<std::fs::File>>> {
    crate::locked_dir::lock_if_abandoned(path).map_err(|e| StagingError::io("lock directory", path, e))
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
