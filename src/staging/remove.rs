//! Removing what staging made: scratch dirs, copied stages, unfinished farms.

use std::fs::{self, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::error::{Result, StagingError};

/// Removes `path` and everything below it, never following a symlink. Directories the action
/// made unwritable (chmod 0555) are opened up first, which matters when the daemon is not root.
/// A path that does not exist is fine.
pub fn remove_tree(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => {
            open_up(path);
            fs::remove_dir_all(path)
                .or_else(not_found_is_fine)
                .map_err(|e| StagingError::io("remove", path, e))
        }
        Err(e) => Err(StagingError::io("remove", path, e)),
    }
}

/// Removes what is inside the directory `path`, keeping the directory.
pub fn empty_dir(path: &Path) -> Result<()> {
    let entries = fs::read_dir(path).map_err(|e| StagingError::io("list directory", path, e))?;
    for entry in entries {
        let entry = entry.map_err(|e| StagingError::io("list directory", path, e))?;
        let child = entry.path();
        let is_dir = entry.file_type().is_ok_and(|t| t.is_dir());
        if is_dir {
            remove_tree(&child)?;
        } else {
            fs::remove_file(&child)
                .or_else(not_found_is_fine)
                .map_err(|e| StagingError::io("remove", &child, e))?;
        }
    }
    Ok(())
}

/// Gives the owner full access to every directory below `path` (symlinks are not followed).
fn open_up(path: &Path) {
    let Ok(metadata) = fs::symlink_metadata(path) else { return };
    if !metadata.is_dir() {
        return;
    }
    let _ = fs::set_permissions(path, Permissions::from_mode(0o700));
    if let Ok(entries) = fs::read_dir(path) {
        for entry in entries.flatten() {
            open_up(&entry.path());
        }
    }
}

fn not_found_is_fine(e: io::Error) -> io::Result<()> {
    if e.kind() == io::ErrorKind::NotFound { Ok(()) } else { Err(e) }
}
