//! Moving a file into the store instead of copying it (LocalCAS's `move_files`).
//!
//! The file is renamed into this store's private temporary directory (so no other name can reach
//! it any more), hashed there, made read-only and published by a no-clobber link like any other
//! object. Only the caller's promise that nothing still writes to it through an open descriptor
//! stands between it and a changed object, which is the promise `move_files` makes.

use std::ffi::CStr;
use std::fs::{self, File, Permissions};
use std::io::{self, Seek};
use std::os::fd::BorrowedFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::time::SystemTime;

use nix::fcntl::{AT_FDCWD, AtFlags, renameat};
use nix::unistd::linkat;

use super::error::{IoContext, Result, StoreError};
use super::writer::{OBJECT_MODE, publish};
use super::{Digest, Store};

impl Store {
    /// Moves the regular file `name` of directory `dir`, which the caller opened as `file`, into
    /// the store, and returns its digest. `Ok(None)` when it cannot be moved (it is on another
    /// filesystem, the directory is not writable, it has other links, it is not this user's, or
    /// it was replaced under that name meanwhile): it is then left where it was, for the caller
    /// to copy. Once moved, the file is gone from `dir` even if the store already held its content.
    pub fn adopt(&self, dir: BorrowedFd<'_>, name: &CStr, file: &File) -> Result<Option<Digest>> {
        let _writing = self.inner.writing.begin();
        let opened = file.metadata().map_err(|e| StoreError::io("stat", name_path(name), e))?;
        if !opened.is_file() || opened.nlink() != 1 || opened.uid() != nix::unistd::geteuid().as_raw() {
            return Ok(None);
        }
        // A fresh name in the private directory. Never over an existing file: ext4 flushes a file
        // renamed over another (`auto_da_alloc`), which costs a disk write each.
        let temp = self.inner.tmp.unique_path();
        if renameat(dir, name, AT_FDCWD, temp.as_path()).is_err() {
            return Ok(None);
        }
        let moved = fs::symlink_metadata(&temp).at("stat", &temp)?;
        if (moved.dev(), moved.ino()) != (opened.dev(), opened.ino()) {
            // Someone put another file under that name since it was opened: give it back.
            let _ = renameat(AT_FDCWD, temp.as_path(), dir, name);
            let _ = fs::remove_file(&temp);
            return Ok(None);
        }
        let result = self.publish_adopted(&temp, file);
        let _ = fs::remove_file(&temp);
        result.map(Some)
    }

    /// Hashes the moved file at `temp` (open as `file`) and publishes it as its object.
    fn publish_adopted(&self, temp: &std::path::Path, file: &File) -> Result<Digest> {
        let digest = hash_file(self, file).at("read", temp)?;
        if self.touch_if_present(&digest) {
            return Ok(digest);
        }
        file.set_permissions(Permissions::from_mode(OBJECT_MODE)).at("set mode of", temp)?;
        // The object's mtime is the LRU clock: it was used just now, whatever the file's said.
        file.set_modified(SystemTime::now()).at("touch", temp)?;
        publish(&self.inner, &digest, |objects, object| {
            linkat(AT_FDCWD, temp, objects, object, AtFlags::empty()).map_err(io::Error::from)
        })?;
        Ok(digest)
    }
}

fn hash_file(store: &Store, mut file: &File) -> io::Result<Digest> {
    file.rewind()?;
    store.digest_function().hash_reader(file)
}

fn name_path(name: &CStr) -> std::path::PathBuf {
    std::path::PathBuf::from(name.to_string_lossy().into_owned())
}
