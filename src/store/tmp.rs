//! Writers' temporary files, and the removal of those left behind by writers that died.
//!
//! Where the filesystem allows, a temporary file is anonymous (`O_TMPFILE`): it has no name until
//! it is linked as an object, so creating it takes no directory lock (on ext4 the lock of one
//! shared directory serialised every parallel writer), there is no name to unlink afterwards,
//! and the kernel frees it if the writer dies. Elsewhere it is a named file in the private
//! directory below.
//!
//! Several processes may open one store root at once (the daemon and `rebox` commands), so start-up
//! clean-up must remove the temporary files of dead writers and never those of live ones. Each
//! [`Store`](super::Store) writes into a private [`LockedDir`] `cas/tmp/rebox-<pid>-<nonce>`,
//! locked for its whole life (see [`crate::locked_dir`] for why a lock and not pids or ages).
//! Only `rebox-*` directories are ever touched: anything else in `cas/tmp` is not ours to judge.

use std::ffi::CStr;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use nix::fcntl::{AT_FDCWD, AtFlags};
use nix::unistd::linkat;

use super::error::{IoContext, Result, StoreError};
use crate::anonymous_file;
use crate::locked_dir::{LockedDir, lock_if_abandoned};

/// Prefix of the private directories; nothing else in `cas/tmp` is touched.
const PREFIX: &str = "rebox-";

/// A store's private, locked directory for temporary files. Dropping it removes the directory.
#[derive(Debug)]
pub struct TmpDir {
    dir: LockedDir,
    next_file: AtomicU64,
    /// Whether anonymous files are used; cleared for good the first time the filesystem refuses.
    anonymous: AtomicBool,
}

/// A temporary file being written: anonymous, or named in the private directory. Dropping it
/// discards it (the named one is removed).
#[derive(Debug)]
pub struct TempFile {
    file: File,
    path: Option<PathBuf>,
}

impl TmpDir {
    /// Creates and locks a new private directory under `tmp` (which must exist).
    pub fn create(tmp: &Path) -> Result<Self> {
        let dir = LockedDir::create(tmp, PREFIX, 0o700)
            .map_err(|e| StoreError::io("create a private temporary directory in", tmp, e))?;
        let anonymous = anonymous_file::linkable();
        Ok(Self { dir, next_file: AtomicU64::new(0), anonymous: AtomicBool::new(anonymous) })
    }

    /// The directory's path.
    #[cfg(test)]
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Creates a new, empty temporary file with permission bits `mode` (its descriptor is
    /// writable whatever `mode` says).
    pub fn create_file(&self, mode: u32) -> Result<TempFile> {
        if self.anonymous.load(Ordering::Relaxed) {
            match anonymous_file::create(self.dir.fd(), ".", mode) {
                Ok(Some(file)) => return Ok(TempFile { file, path: None }),
                // Not supported by this filesystem (or kernel): use named files from now on.
                Ok(None) => self.anonymous.store(false, Ordering::Relaxed),
                Err(errno) => {
                    return Err(StoreError::io("create temporary file in", self.dir.path(), errno.into()));
                }
            }
        }
        let path = self.unique_path();
        let file = OpenOptions::new().read(true).write(true).create_new(true).mode(mode).open(&path);
        let file = file.at("create temporary file", &path)?;
        Ok(TempFile { file, path: Some(path) })
    }

    /// A fresh name in the private directory, for a file the caller creates.
    pub fn unique_path(&self) -> PathBuf {
        let n = self.next_file.fetch_add(1, Ordering::Relaxed);
        self.dir.path().join(format!("blob-{n}"))
    }
}

impl TempFile {
    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// A path naming the file, for error messages.
    pub fn display_path(&self) -> &Path {
        self.path.as_deref().unwrap_or(Path::new("(anonymous temporary file)"))
    }

    /// Gives the file the name `name` in directory `dir`; fails with `EEXIST` if that is taken.
    pub fn link_at(&self, dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
        match &self.path {
            Some(path) => linkat(AT_FDCWD, path.as_path(), dir, name, AtFlags::empty()),
            None => anonymous_file::link(&self.file, dir, name),
        }
        .map_err(io::Error::from)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            // Best effort: the next store to open the root removes any leftover.
            let _ = fs::remove_file(path);
        }
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
    use std::io::Write;
    use std::os::fd::AsFd;
    use std::os::unix::fs::MetadataExt;

    use super::*;

    #[test]
    fn live_directories_survive_clean_up_and_dead_ones_do_not() {
        let tmp = tempfile::tempdir().unwrap();
        let live = TmpDir::create(tmp.path()).unwrap();
        let file = live.unique_path();
        fs::write(&file, b"being written").unwrap();
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
    fn temporary_files_are_anonymous_where_supported_and_leave_nothing_behind() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = TmpDir::create(tmp.path()).unwrap();
        let temp = dir.create_file(0o444).unwrap();
        temp.file().write_all(b"content").unwrap();
        assert!(temp.path.is_none(), "O_TMPFILE works on this machine's filesystems");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 0, "an anonymous file has no name");

        let target = File::open(tmp.path()).unwrap();
        temp.link_at(target.as_fd(), c"linked").unwrap();
        let linked = tmp.path().join("linked");
        assert_eq!(fs::read(&linked).unwrap(), b"content");
        assert_eq!(fs::metadata(&linked).unwrap().mode() & 0o7777, 0o444);
        let again = temp.link_at(target.as_fd(), c"linked").unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
    }

    #[test]
    fn named_temporary_files_are_distinct_and_removed_when_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = TmpDir::create(tmp.path()).unwrap();
        dir.anonymous.store(false, Ordering::Relaxed);
        let a = dir.create_file(0o444).unwrap();
        let b = dir.create_file(0o444).unwrap();
        let (a_path, b_path) = (a.path.clone().unwrap(), b.path.clone().unwrap());
        assert_ne!(a_path, b_path);
        assert_eq!(fs::metadata(&a_path).unwrap().mode() & 0o7777, 0o444);
        drop(a);
        assert!(!a_path.exists(), "a dropped named temporary file is removed");
    }
}
