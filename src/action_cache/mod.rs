//! The local ActionCache: ActionResults by action digest, on disk beside the CAS, in
//! buildbox-casd's layout so that either daemon can use a cache directory the other wrote.
//!
//! ```text
//! ROOT/actioncache/objects/<first 2 hex digits>/<remaining hex digits>   one serialized ActionResult
//! ROOT/actioncache/tmp/                                                  entries being written
//! ```
//! Entries are keyed by the action digest's hash (the size is not part of the path, as in
//! buildbox-casd). An update writes an anonymous file (`O_TMPFILE`), names it in `tmp` and
//! renames it over the entry at once, so a reader sees the old result or the new one, never a
//! mix, and the last update wins; a writer killed mid-way leaves at most a named `rebox-*` file
//! between two syscalls, which a later update removes once it is a minute old. The directories
//! are created on the first update.
//!
//! A result is only a hit if every blob it refers to is still in the CAS ([`complete`]): expiry
//! may have removed outputs since the result was stored, and a hit whose outputs can't be fetched
//! is worse than a miss.

mod complete;
mod error;
mod temp;

pub use complete::{Missing, check_well_formed, referenced_blobs};
pub use error::ActionCacheError;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use prost::Message;

use crate::digest::Digest;
use crate::proto::build::bazel::remote::execution::v2::ActionResult;
use crate::store::Store;

/// What a lookup found.
#[derive(Debug, Clone, PartialEq)]
pub enum Lookup {
    /// A stored result whose every referenced blob is in the CAS.
    Hit(Box<ActionResult>),
    /// No result is stored for the action.
    NotCached,
    /// A result is stored but a blob it refers to is gone from the CAS.
    Incomplete(Missing),
    /// The stored entry does not decode as an ActionResult (it is then treated as a miss).
    Corrupt {
        /// The entry's file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// The ActionCache of one store root.
#[derive(Debug, Clone)]
pub struct ActionCache {
    store: Store,
    objects: PathBuf,
    tmp: PathBuf,
}

impl ActionCache {
    /// The cache beside `store` (under the same root); nothing is created until the first update.
    pub fn new(store: Store) -> Self {
        let base = store.root().join("actioncache");
        Self { objects: base.join("objects"), tmp: base.join("tmp"), store }
    }

    /// Where the entry for `action` is (or would be) stored.
    pub fn entry_path(&self, action: &Digest) -> PathBuf {
        let hex = action.hash_hex();
        let (fan_out, rest) = hex.split_at(2);
        self.objects.join(fan_out).join(rest)
    }

    /// The result stored for `action`, if there is one and every blob it names is in the CAS.
    /// Those blobs are marked used (the LRU clock), as a hit is about to fetch them.
    pub fn get(&self, action: &Digest) -> Result<Lookup, ActionCacheError> {
        let path = self.entry_path(action);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Lookup::NotCached),
            Err(e) => return Err(ActionCacheError::io("read", &path, e)),
        };
        let result = match ActionResult::decode(bytes.as_slice()) {
            Ok(result) => result,
            Err(e) => return Ok(Lookup::Corrupt { path, reason: e.to_string() }),
        };
        let referenced = match referenced_blobs(&self.store, &result) {
            Ok(referenced) => referenced,
            Err(Missing::Invalid { what, reason }) => {
                return Ok(Lookup::Corrupt { path, reason: format!("{what}: {reason}") });
            }
            Err(missing) => return Ok(Lookup::Incomplete(missing)),
        };
        let digests: Vec<Digest> = referenced.iter().map(|(_, digest)| *digest).collect();
        if let Some(gone) = self.store.find_missing(&digests).first() {
            let what = referenced.iter().find(|(_, d)| d == gone).map(|(what, _)| what.clone());
            return Ok(Lookup::Incomplete(Missing::Blob { what: what.unwrap_or_default(), digest: *gone }));
        }
        Ok(Lookup::Hit(Box::new(result)))
    }

    /// Stores `result` for `action`, replacing any earlier one atomically.
    pub fn put(&self, action: &Digest, result: &ActionResult) -> Result<(), ActionCacheError> {
        let path = self.entry_path(action);
        let fan_out = path.parent().expect("entry paths have a fan-out directory");
        create_dir(fan_out)?;
        create_dir(&self.tmp)?;
        temp::remove_stale(&self.tmp);
        let temp = temp::write_named(&self.tmp, &result.encode_to_vec())?;
        fs::rename(&temp, &path).map_err(|e| {
            let _ = fs::remove_file(&temp);
            ActionCacheError::io("rename temporary file to", &path, e)
        })
    }
}

fn create_dir(path: &Path) -> Result<(), ActionCacheError> {
    fs::create_dir_all(path).map_err(|e| ActionCacheError::io("create directory", path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::DigestFunction;
    use crate::proto::build::bazel::remote::execution::v2 as reapi;
    use crate::tree::to_proto;

    fn cache() -> (tempfile::TempDir, ActionCache) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), DigestFunction::Sha256).unwrap();
        (dir, ActionCache::new(store))
    }

    #[test]
    fn layout_is_buildbox_casds() {
        let (dir, cache) = cache();
        let action = DigestFunction::Sha256.hash_bytes(b"act");
        cache.put(&action, &ActionResult { exit_code: 3, ..Default::default() }).unwrap();
        let hex = action.hash_hex();
        let expected = dir.path().join("actioncache/objects").join(&hex[..2]).join(&hex[2..]);
        assert_eq!(cache.entry_path(&action), expected);
        let stored = ActionResult::decode(fs::read(expected).unwrap().as_slice()).unwrap();
        assert_eq!(stored.exit_code, 3);
        assert_eq!(fs::read_dir(dir.path().join("actioncache/tmp")).unwrap().count(), 0, "no temporary left");
    }

    #[test]
    fn put_replaces_and_get_reads_back() {
        let (_dir, cache) = cache();
        let action = DigestFunction::Sha256.hash_bytes(b"act");
        assert_eq!(cache.get(&action).unwrap(), Lookup::NotCached);
        let first = ActionResult { exit_code: 1, stdout_raw: b"one".to_vec(), ..Default::default() };
        let second = ActionResult { exit_code: 2, ..Default::default() };
        cache.put(&action, &first).unwrap();
        assert_eq!(cache.get(&action).unwrap(), Lookup::Hit(Box::new(first)));
        cache.put(&action, &second).unwrap();
        assert_eq!(cache.get(&action).unwrap(), Lookup::Hit(Box::new(second)), "the last update wins");
    }

    #[test]
    fn a_result_whose_output_is_gone_is_incomplete() {
        let (_dir, cache) = cache();
        let action = DigestFunction::Sha256.hash_bytes(b"act");
        let present = cache.store.put_bytes(b"out").unwrap();
        let result = ActionResult {
            output_files: vec![reapi::OutputFile {
                path: "bin/out".into(),
                digest: Some(to_proto(&present)),
                ..Default::default()
            }],
            ..Default::default()
        };
        cache.put(&action, &result).unwrap();
        assert_eq!(cache.get(&action).unwrap(), Lookup::Hit(Box::new(result.clone())));
        assert!(cache.store.remove(&present).unwrap());
        match cache.get(&action).unwrap() {
            Lookup::Incomplete(missing) => {
                let text = missing.to_string();
                assert!(text.contains("bin/out") && text.contains(&present.to_string()), "{text}");
            }
            other => panic!("expected Incomplete, got {other:?}"),
        }
    }

    #[test]
    fn an_undecodable_entry_is_corrupt_not_an_error() {
        let (_dir, cache) = cache();
        let action = DigestFunction::Sha256.hash_bytes(b"act");
        let path = cache.entry_path(&action);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, [0xff, 0xff, 0xff]).unwrap();
        assert!(matches!(cache.get(&action).unwrap(), Lookup::Corrupt { .. }));
    }
}
