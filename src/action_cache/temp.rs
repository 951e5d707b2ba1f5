//! Temporary files for ActionCache updates: written anonymously, named only just before the
//! rename that publishes them, so a crash leaves a name behind only between two syscalls.

use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use nix::fcntl::AT_FDCWD;

use super::ActionCacheError;
use crate::anonymous_file;
use crate::locked_dir::nonce;

/// Prefix of the names this module gives; nothing else in `tmp` is touched.
const PREFIX: &str = "rebox-";

/// A named temporary file older than this was left by a writer that died between naming and
/// renaming it (which takes microseconds).
const STALE_AFTER: Duration = Duration::from_secs(60);

/// Writes `data` to a new file in `tmp` and returns its (fresh, unique) name there.
pub fn write_named(tmp: &Path, data: &[u8]) -> Result<PathBuf, ActionCacheError> {
    let path = tmp.join(format!("{PREFIX}{}-{:016x}", std::process::id(), nonce()));
    let unnamed = anonymous_file::create(AT_FDCWD, tmp, 0o644)
        .map_err(|errno| ActionCacheError::io("create a temporary file in", tmp, errno.into()))?;
    match unnamed {
        Some(mut file) => {
            file.write_all(data).map_err(|e| ActionCacheError::io("write a temporary file in", tmp, e))?;
            anonymous_file::link(&file, AT_FDCWD, path.as_path())
                .map_err(|errno| ActionCacheError::io("name temporary file", &path, errno.into()))?;
        }
        // No unnamed files on this filesystem: a named file from the start.
        None => {
            let written = File::create_new(&path).and_then(|mut file| file.write_all(data));
            if let Err(e) = written {
                let _ = fs::remove_file(&path);
                return Err(ActionCacheError::io("write", &path, e));
            }
        }
    }
    Ok(path)
}

/// Removes `rebox-*` files in `tmp` older than [`STALE_AFTER`]; best effort.
pub fn remove_stale(tmp: &Path) {
    let Ok(entries) = fs::read_dir(tmp) else { return };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let ours = entry.file_name().to_str().is_some_and(|name| name.starts_with(PREFIX));
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|mtime| now.duration_since(mtime).is_ok_and(|age| age > STALE_AFTER));
        if ours && old {
            let _ = fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_named_file_holds_the_data_and_only_stale_leftovers_are_removed() {
        let tmp = tempfile::tempdir().unwrap();
        let path = write_named(tmp.path(), b"result").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"result");
        assert!(path.file_name().unwrap().to_str().unwrap().starts_with(PREFIX));

        let stale = tmp.path().join(format!("{PREFIX}1-dead"));
        fs::write(&stale, b"left by a crash").unwrap();
        File::open(&stale).unwrap().set_modified(SystemTime::now() - 2 * STALE_AFTER).unwrap();
        let foreign = tmp.path().join("buildbox-entry");
        fs::write(&foreign, b"not ours").unwrap();
        File::open(&foreign).unwrap().set_modified(SystemTime::now() - 2 * STALE_AFTER).unwrap();

        remove_stale(tmp.path());
        assert!(!stale.exists(), "a stale leftover stays");
        assert!(path.exists(), "a fresh file was removed");
        assert!(foreign.exists(), "another tool's file was removed");
    }
}
