//! Trees a one-shot runner validated whole, remembered in the store from one process to the
//! next, so that staging one of them again through FUSE reads only the directories the action
//! looks into instead of reading and checking the whole tree first (20 ms for 20,000 files).
//!
//! A tree is named by its root digest, so what was found of it never goes stale. A record holds
//! the version of the checks that passed (a rebox checking more finds no record of an older one)
//! and where `SubtreeReadOnly` changes writability, which the stage needs before the action
//! runs. Only trees of at least [`MIN_ENTRIES`] entries are remembered (a small one is read
//! faster than a record is written), at most [`MAX_RECORDS`] of them: beyond that, the half
//! least recently staged are forgotten.
//!
//! ```text
//! ROOT/cas/staging-trees/<hash>-<size>    0600  "rebox staging-tree 1\n", then per change
//!                                               'r' (read-only) or 'w', its path, NUL
//! ```

use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;

use super::plan::WritabilityChange;
use crate::digest::Digest;

/// The first line of a record: bumped whenever staging checks a tree more strictly.
const HEADER: &[u8] = b"rebox staging-tree 1\n";

/// Trees with fewer entries are not remembered.
pub const MIN_ENTRIES: usize = 2_000;

/// Most trees remembered.
pub const MAX_RECORDS: usize = 1_024;

/// The records under one store root.
#[derive(Debug, Clone)]
pub struct RememberedTrees {
    dir: PathBuf,
}

impl RememberedTrees {
    /// The records in `dir` (`ROOT/cas/staging-trees`), made when the first is written.
    pub fn new(dir: &Path) -> Self {
        Self { dir: dir.to_owned() }
    }

    /// The writability changes of `root`, if it was remembered (and marks it staged now).
    pub fn get(&self, root: &Digest) -> Option<Vec<WritabilityChange>> {
        let path = self.path(root);
        let changes = decode(&fs::read(&path).ok()?)?;
        let now = TimeSpec::UTIME_NOW;
        // Only the order of forgetting depends on it.
        let _ = utimensat(nix::fcntl::AT_FDCWD, &path, &now, &now, UtimensatFlags::NoFollowSymlink);
        Some(changes)
    }

    /// Remembers that `root`, of `entries` entries, passed every check, with its writability
    /// changes. Failing to is only logged: the next stage checks the tree again.
    pub fn remember(&self, root: &Digest, entries: usize, changes: &[WritabilityChange]) {
        if entries < MIN_ENTRIES {
            return;
        }
        match self.write(root, changes) {
            Ok(()) => tracing::debug!(%root, entries, "remembered a validated tree"),
            Err(error) => tracing::warn!(%root, %error, "cannot remember a validated tree"),
        }
    }

    fn write(&self, root: &Digest, changes: &[WritabilityChange]) -> io::Result<()> {
        fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir)?;
        let mut record = tempfile::NamedTempFile::with_prefix_in(".new-", &self.dir)?;
        record.write_all(&encode(changes))?;
        record.persist(self.path(root))?;
        self.forget_least_recent()
    }

    /// Past [`MAX_RECORDS`], removes the half least recently staged.
    fn forget_least_recent(&self) -> io::Result<()> {
        let paths: Vec<PathBuf> = fs::read_dir(&self.dir)?.flatten().map(|entry| entry.path()).collect();
        if paths.len() <= MAX_RECORDS {
            return Ok(());
        }
        let mut records: Vec<(std::time::SystemTime, PathBuf)> = paths
            .into_iter()
            .filter_map(|path| Some((fs::symlink_metadata(&path).ok()?.modified().ok()?, path)))
            .collect();
        records.sort_unstable();
        for (_, path) in &records[..records.len() / 2] {
            match fs::remove_file(path) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }

    fn path(&self, root: &Digest) -> PathBuf {
        self.dir.join(format!("{}-{}", root.hash_hex(), root.size()))
    }
}

fn encode(changes: &[WritabilityChange]) -> Vec<u8> {
    let mut out = HEADER.to_vec();
    for change in changes {
        out.push(if change.read_only { b'r' } else { b'w' });
        out.extend_from_slice(change.path.as_bytes());
        out.push(0);
    }
    out
}

/// A record's changes; `None` for a record of other checks, or not one at all.
fn decode(record: &[u8]) -> Option<Vec<WritabilityChange>> {
    let body = record.strip_prefix(HEADER)?;
    let Some(body) = body.strip_suffix(b"\0") else {
        return body.is_empty().then(Vec::new);
    };
    body.split(|&b| b == 0)
        .map(|item| {
            let (&kind, path) = item.split_first()?;
            let read_only = match kind {
                b'r' => true,
                b'w' => false,
                _ => return None,
            };
            let path = std::str::from_utf8(path).ok()?;
            (!path.is_empty()).then(|| WritabilityChange { path: path.to_owned(), read_only })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha256(data: &[u8]) -> Digest {
        crate::digest::DigestFunction::Sha256.hash_bytes(data)
    }

    fn change(path: &str, read_only: bool) -> WritabilityChange {
        WritabilityChange { path: path.to_owned(), read_only }
    }

    #[test]
    fn records_round_trip() {
        for changes in [vec![], vec![change(".", true)], vec![change("a b", true), change("a b/c\nd", false)]]
        {
            assert_eq!(decode(&encode(&changes)), Some(changes));
        }
    }

    #[test]
    fn other_versions_and_garbage_are_no_record() {
        assert_eq!(decode(b"rebox staging-tree 0\n"), None);
        assert_eq!(decode(b""), None);
        assert_eq!(decode(b"rebox staging-tree 1\nxpath\0"), None);
        assert_eq!(decode(b"rebox staging-tree 1\nrpath"), None);
        assert_eq!(decode(b"rebox staging-tree 1\nr\0"), None);
    }

    #[test]
    fn small_trees_are_not_remembered_and_big_ones_are() {
        let dir = tempfile::tempdir().unwrap();
        let trees = RememberedTrees::new(&dir.path().join("staging-trees"));
        let (small, big) = (sha256(b"small"), sha256(b"big"));
        trees.remember(&small, MIN_ENTRIES - 1, &[]);
        trees.remember(&big, MIN_ENTRIES, &[change("ro", true)]);
        assert_eq!(trees.get(&small), None);
        assert_eq!(trees.get(&big), Some(vec![change("ro", true)]));
    }

    #[test]
    fn past_the_limit_the_least_recently_staged_half_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let trees = RememberedTrees::new(dir.path());
        let roots: Vec<Digest> = (0..=MAX_RECORDS).map(|i| sha256(i.to_string().as_bytes())).collect();
        for (i, root) in roots.iter().enumerate() {
            trees.remember(root, MIN_ENTRIES, &[]);
            // Distinct mtimes, oldest first; the last one written is the newest.
            let when = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000 + i as u64);
            fs::File::options().write(true).open(trees.path(root)).unwrap().set_modified(when).unwrap();
        }
        // The write past the limit found the others' mtimes set, its own record the newest.
        let written = roots.len();
        let forgotten = written / 2;
        for (i, root) in roots.iter().enumerate() {
            assert_eq!(trees.path(root).exists(), i >= forgotten, "record {i}");
        }
    }
}
