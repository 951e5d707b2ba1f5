//! Writers' temporary files, and the removal of those left behind by writers that died.
//!
//! Several processes may open one store root at once (the daemon and `rebox` commands), so start-up
//! clean-up must remove the temporary files of dead writers and never those of live ones. Each
//! [`Store`](super::Store) therefore writes into a private directory `cas/tmp/rebox-<pid>-<nonce>`
//! on which it holds an exclusive `flock` for its whole life. The kernel drops that lock when the
//! holder dies, SIGKILL included, so "can the lock be taken?" answers "is the owner gone?" exactly.
//! Pids alone would be fooled by pid reuse (and by pid namespaces), file ages by slow writers.
//! Only `rebox-*` directories are ever touched: anything else in `cas/tmp` is not ours to judge.

use std::collections::hash_map::RandomState;
use std::fs::{self, File, OpenOptions};
use std::hash::BuildHasher;
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::error::{IoContext, Result, StoreError};

/// Prefix of the private directories; nothing else in `cas/tmp` is touched.
const PREFIX: &str = "rebox-";

/// How many fresh names to try before giving up on creating a private directory.
const CREATE_ATTEMPTS: usize = 64;

/// A store's private, locked directory for temporary files. Dropping it removes the directory.
#[derive(Debug)]
pub struct TmpDir {
    path: PathBuf,
    /// Held (never read) for as long as the directory is in use: it marks the owner as alive.
    _lock: Flock<File>,
    next_file: AtomicU64,
}

impl TmpDir {
    /// Creates and locks a new private directory under `tmp` (which must exist).
    pub fn create(tmp: &Path) -> Result<Self> {
        for _ in 0..CREATE_ATTEMPTS {
            let path = tmp.join(format!("{PREFIX}{}-{:016x}", process::id(), nonce()));
            match fs::create_dir(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(StoreError::io("create directory", path, e)),
            }
            // Between mkdir and flock another process's clean-up may take the lock and remove the
            // directory: then start again under a new name.
            let dir = match File::open(&path) {
                Ok(dir) => dir,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(StoreError::io("open directory", path, e)),
            };
            let lock = match Flock::lock(dir, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => lock,
                Err((_, Errno::EWOULDBLOCK)) => continue,
                Err((_, errno)) => return Err(StoreError::io("lock directory", path, errno.into())),
            };
            if still_at(&lock, &path)? {
                return Ok(Self { path, _lock: lock, next_file: AtomicU64::new(0) });
            }
        }
        Err(StoreError::io(
            "create a private temporary directory in",
            tmp,
            io::Error::other(format!("{CREATE_ATTEMPTS} attempts failed")),
        ))
    }

    /// The directory's path.
    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Creates a new, empty, owner-only temporary file.
    pub fn create_file(&self) -> Result<(PathBuf, File)> {
        let n = self.next_file.fetch_add(1, Ordering::Relaxed);
        let path = self.path.join(format!("blob-{n}"));
        let file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path);
        let file = file.at("create temporary file", &path)?;
        Ok((path, file))
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        // Best effort: a leftover is removed by the next store to open the root.
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// Whether the locked directory is still the one at `path` (a clean-up may have removed it).
fn still_at(dir: &File, path: &Path) -> Result<bool> {
    let locked = dir.metadata().at("stat directory", path)?;
    match fs::symlink_metadata(path) {
        Ok(current) => {
            Ok(locked.nlink() > 0 && current.dev() == locked.dev() && current.ino() == locked.ino())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(StoreError::io("stat directory", path, e)),
    }
}

/// A random-enough nonce for directory names (uniqueness is enforced by `mkdir` anyway).
fn nonce() -> u64 {
    RandomState::new().hash_one(std::time::SystemTime::now())
}

/// Removes the private directories under `tmp` whose owners are gone; returns how many.
pub fn remove_abandoned(tmp: &Path) -> Result<usize> {
    let entries = match fs::read_dir(tmp) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(StoreError::io("list directory", tmp, e)),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry.at("list directory", tmp)?;
        let is_ours = entry.file_name().to_str().is_some_and(|name| name.starts_with(PREFIX));
        if !is_ours || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        let dir = match File::open(&path) {
            Ok(dir) => dir,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::io("open directory", path, e)),
        };
        match Flock::lock(dir, FlockArg::LockExclusiveNonblock) {
            // Its owner is gone. Remove it while holding the lock, so that a store that has just
            // created it (and not yet locked it) notices and picks another name.
            Ok(_lock) => match fs::remove_dir_all(&path) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StoreError::io("remove directory", path, e)),
            },
            Err((_, Errno::EWOULDBLOCK)) => {}
            Err((_, errno)) => return Err(StoreError::io("lock directory", path, errno.into())),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn live_directories_survive_clean_up_and_dead_ones_do_not() {
        let tmp = tempfile::tempdir().unwrap();
        let live = TmpDir::create(tmp.path()).unwrap();
        let (file, _) = live.create_file().unwrap();
        // A directory whose owner died: same shape, no lock held.
        let dead = tmp.path().join("rebox-1-dead");
        fs::create_dir(&dead).unwrap();
        fs::write(dead.join("blob-0"), b"partial").unwrap();
        // Not ours: never touched.
        let foreign = tmp.path().join("other-tool");
        fs::create_dir(&foreign).unwrap();

        assert_eq!(remove_abandoned(tmp.path()).unwrap(), 1);
        assert!(!dead.exists());
        assert!(file.exists(), "a live writer's file was removed");
        assert!(foreign.exists());

        let live_path = live.path().to_owned();
        drop(live);
        assert!(!live_path.exists(), "a dropped TmpDir removes its directory");
    }

    #[test]
    fn temporary_files_are_owner_only_and_distinct() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = TmpDir::create(tmp.path()).unwrap();
        let (a, _) = dir.create_file().unwrap();
        let (b, _) = dir.create_file().unwrap();
        assert_ne!(a, b);
        assert_eq!(fs::metadata(&a).unwrap().mode() & 0o7777, 0o600);
    }
}
