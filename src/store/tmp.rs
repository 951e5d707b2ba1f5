//! Writers' temporary files, and the removal of those left behind by writers that died.
//!
//! Several processes may open one store root at once (the daemon and `rebox` commands), so start-up
//! clean-up must remove the temporary files of dead writers and never those of live ones. Each
//! [`Store`](super::Store) writes into a private [`LockedDir`] `cas/tmp/rebox-<pid>-<nonce>`,
//! locked for its whole life (see [`crate::locked_dir`] for why a lock and not pids or ages).
//! Only `rebox-*` directories are ever touched: anything else in `cas/tmp` is not ours to judge.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::error::{IoContext, Result, StoreError};
use crate::locked_dir::{LockedDir, lock_if_abandoned};

/// Prefix of the private directories; nothing else in `cas/tmp` is touched.
const PREFIX: &str = "rebox-";

/// A store's private, locked directory for temporary files. Dropping it removes the directory.
#[derive(Debug)]
pub struct TmpDir {
    dir: LockedDir,
    next_file: AtomicU64,
}

impl TmpDir {
    /// Creates and locks a new private directory under `tmp` (which must exist).
    pub fn create(tmp: &Path) -> Result<Self> {
        let dir = LockedDir::create(tmp, PREFIX, 0o700)
            .map_err(|e| StoreError::io("create a private temporary directory in", tmp, e))?;
        Ok(Self { dir, next_file: AtomicU64::new(0) })
    }

    /// The directory's path.
    #[cfg(test)]
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Creates a new, empty, owner-only temporary file.
    pub fn create_file(&self) -> Result<(PathBuf, File)> {
        let n = self.next_file.fetch_add(1, Ordering::Relaxed);
        let path = self.dir.path().join(format!("blob-{n}"));
        let file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path);
        let file = file.at("create temporary file", &path)?;
        Ok((path, file))
    }
}

impl Drop for TmpDir {
    fn drop(&mut self) {
        // Best effort: a leftover is removed by the next store to open the root.
        let _ = fs::remove_dir_all(self.dir.path());
    }
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
        // Its owner is gone if its lock can be taken. Remove it while holding the lock, so that a
        // store that has just created it (and not yet locked it) notices and picks another name.
        let Some(_lock) = lock_if_abandoned(&path).at("lock directory", &path)? else { continue };
        match fs::remove_dir_all(&path) {
            Ok(()) => removed += 1,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("remove directory", path, e)),
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

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
