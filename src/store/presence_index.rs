//! The objects this process knows to be stored, in memory: FindMissingBlobs answers "missing"
//! for a digest absent from it without a syscall. On tmpfs and ext4 a lookup of an absent name is
//! the dearest part of FindMissingBlobs (the kernel builds and drops a dentry for each), and most
//! digests a client asks about are absent.
//!
//! The index may say "present" wrongly (an object removed behind this process's back) but is
//! never trusted for that: a present answer is checked by `fstatat` (which also yields the mtime
//! the LRU clock needs). It may say "absent" wrongly only for objects another process stored
//! after this one opened the store; a client told such a blob is missing uploads it again, which
//! is harmless and puts it in the index. Both directions heal on the next write or lookup.
//!
//! Keys are the first 16 bytes of the hash (uniformly random, so they are their own hash), in
//! sharded sets so parallel writers and lookups rarely meet: about 20 to 40 bytes an object
//! (hash tables grow by doubling), so some 20 to 40 MB per million objects.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::RwLock;

use crate::digest::Digest;

/// Shards: enough that two cores' worth of writers seldom wait on each other.
const SHARDS: usize = 64;

/// Bytes of the hash kept per object.
const KEY_BYTES: usize = 16;

/// One shard: a set of keys.
type Shard = RwLock<HashSet<u128, BuildHasherDefault<KeyHasher>>>;

/// See the module documentation.
#[derive(Debug)]
pub struct PresenceIndex {
    shards: Box<[Shard]>,
}

impl PresenceIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self { shards: (0..SHARDS).map(|_| RwLock::default()).collect() }
    }

    /// Records that `digest` is stored.
    pub fn insert(&self, digest: &Digest) {
        let key = key(digest);
        self.shard(key).write().unwrap_or_else(|e| e.into_inner()).insert(key);
    }

    /// Records that `digest` is no longer stored.
    pub fn remove(&self, digest: &Digest) {
        let key = key(digest);
        self.shard(key).write().unwrap_or_else(|e| e.into_inner()).remove(&key);
    }

    /// Whether `digest` may be stored; `false` means it is not, as far as this process knows.
    pub fn may_contain(&self, digest: &Digest) -> bool {
        let key = key(digest);
        self.shard(key).read().unwrap_or_else(|e| e.into_inner()).contains(&key)
    }

    fn shard(&self, key: u128) -> &Shard {
        // The high half picks the shard, the low half is the hash inside it.
        &self.shards[(key >> 64) as usize % SHARDS]
    }
}

fn key(digest: &Digest) -> u128 {
    let mut bytes = [0u8; KEY_BYTES];
    let hash = digest.hash_bytes();
    let len = hash.len().min(KEY_BYTES);
    bytes[..len].copy_from_slice(&hash[..len]);
    u128::from_le_bytes(bytes)
}

/// Keys are already uniformly random: their low 64 bits are the hash.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // The index only hashes keys (`write_u128`); the trait wants this too.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u128(&mut self, key: u128) {
        self.0 = key as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::DigestFunction;

    #[test]
    fn inserted_digests_are_found_and_removed_ones_are_not() {
        let index = PresenceIndex::new();
        let digests: Vec<_> =
            (0..1000u32).map(|i| DigestFunction::Sha256.hash_bytes(&i.to_le_bytes())).collect();
        for digest in &digests[..500] {
            index.insert(digest);
        }
        assert!(digests[..500].iter().all(|d| index.may_contain(d)));
        assert!(!digests[500..].iter().any(|d| index.may_contain(d)));
        index.remove(&digests[0]);
        assert!(!index.may_contain(&digests[0]));
        assert!(index.may_contain(&digests[1]));
    }
}
