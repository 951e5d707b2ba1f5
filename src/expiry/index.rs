//! The in-memory LRU order of the store's objects, so that expiry never rescans the disk.
//!
//! Built once from a scan (oldest mtime first), then kept up to date by the store's hooks. A lazy
//! queue: every object has a sequence number, its position in `queue`; using an object pushes it
//! again at the back with a new number, leaving a stale copy behind that is skipped when it
//! reaches the front and dropped by an occasional compaction. Taking the oldest is O(1) amortised,
//! a use is one hash lookup and at most one push.
//!
//! With `--protect-session-blobs`, objects stored or used in this session leave the queue for
//! good (their number becomes [`PROTECTED`]): they can never be expired, so they are never
//! looked at again.
//!
//! Memory: ~90 bytes per object (a 32-byte key and 16-byte entry in the map, a 32-byte key in
//! the queue), so 1M objects take ~90 MB.

use std::collections::{HashMap, HashSet, VecDeque, hash_map};
use std::hash::{BuildHasherDefault, Hash, Hasher};

use crate::digest::{Digest, DigestFunction};

/// Sequence number of an object that is never expired.
const PROTECTED: u64 = u64::MAX;

/// The first sequence number of a new index: room below it for every object a scan can find.
const FIRST_SEQ: u64 = 1 << 62;

/// The queue is compacted when it holds more than twice the live objects plus this.
const COMPACT_SLACK: usize = 4096;

/// The first 32 bytes of an object's hash (zero-padded for shorter hashes): the map key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key([u8; 32]);

impl Key {
    fn of(digest: &Digest) -> Self {
        let hash = digest.hash_bytes();
        let mut key = [0u8; 32];
        let len = hash.len().min(32);
        key[..len].copy_from_slice(&hash[..len]);
        Key(key)
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // The key is a cryptographic hash already: its first bytes are as good as any hash of it.
        let mut first = [0u8; 8];
        first.copy_from_slice(&self.0[..8]);
        state.write_u64(u64::from_le_bytes(first));
    }
}

/// Passes [`Key`]'s precomputed `u64` through.
#[derive(Debug, Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only reached through `write_u64` in practice; fold anything else in.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

type KeyMap<V> = HashMap<Key, V, BuildHasherDefault<KeyHasher>>;

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The object's position in the queue, or [`PROTECTED`].
    seq: u64,
    /// The object's size in bytes.
    size: u64,
}

/// Objects in least-recently-used order.
#[derive(Debug)]
pub struct LruIndex {
    entries: KeyMap<Entry>,
    /// Keys by sequence number: `queue[i]` has number `head_seq + i`.
    queue: VecDeque<Key>,
    head_seq: u64,
    /// Hash bytes beyond the first 32, for SHA-384 and SHA-512 stores.
    tails: KeyMap<Box<[u8]>>,
    /// Hash length in bytes of the store's digest function.
    hash_len: usize,
    protect_session: bool,
    /// While a scan is being loaded: what was removed meanwhile, so the scan does not bring it back.
    removed_while_loading: Option<HashSet<Key, BuildHasherDefault<KeyHasher>>>,
}

impl LruIndex {
    /// An empty index of a store hashing with `function`; with `protect_session`, what this
    /// session stores or uses is never expired.
    pub fn new(function: DigestFunction, protect_session: bool) -> Self {
        Self {
            entries: KeyMap::default(),
            queue: VecDeque::new(),
            head_seq: FIRST_SEQ,
            tails: KeyMap::default(),
            hash_len: function.hex_len() / 2,
            protect_session,
            removed_while_loading: None,
        }
    }

    /// Objects known.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no object is known.
    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Queue slots in use, stale ones included.
    #[cfg(test)]
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// A new object, stored in this session: the most recently used one.
    pub fn add(&mut self, digest: &Digest) {
        let key = self.remember(digest);
        if self.protect_session {
            self.entries.insert(key, Entry { seq: PROTECTED, size: digest.size() });
        } else {
            self.push(key, digest.size());
        }
    }

    /// A use of each of `digests`; unknown ones are ignored. An object is moved to the back only
    /// if it is not among the most recent eighth of the queue already: recent objects are far
    /// from expiry, and repeated lookups of the same objects then cost no queue growth.
    pub fn touch(&mut self, digests: &[Digest]) {
        let recent = self.entries.len() as u64 / 8;
        for digest in digests {
            let key = Key::of(digest);
            let Some(entry) = self.entries.get_mut(&key) else { continue };
            if entry.seq == PROTECTED {
                continue;
            }
            if self.protect_session {
                entry.seq = PROTECTED;
                continue;
            }
            let next = self.head_seq + self.queue.len() as u64;
            if next - entry.seq > recent {
                entry.seq = next;
                self.queue.push_back(key);
            }
        }
        self.compact_if_sparse();
    }

    /// Forgets an object (it was removed from the store).
    pub fn remove(&mut self, digest: &Digest) {
        let key = Key::of(digest);
        self.entries.remove(&key);
        self.tails.remove(&key);
        if let Some(removed) = &mut self.removed_while_loading {
            removed.insert(key);
        }
    }

    /// Starts loading a scan (call it before the scan starts): until [`LruIndex::finish_load`],
    /// removals are remembered so that the scan's (older) view cannot bring an object back.
    pub fn begin_load(&mut self) {
        self.removed_while_loading = Some(HashSet::default());
    }

    /// Makes room for `objects` more objects at once.
    pub fn reserve(&mut self, objects: usize) {
        self.entries.reserve(objects);
        self.queue.reserve(objects);
    }

    /// Objects found by a scan, **newest first**; each goes before everything already queued
    /// (all of it older than what this session did). Objects known already are left alone.
    pub fn load_newest_first(&mut self, digests: impl IntoIterator<Item = Digest>) {
        for digest in digests {
            let key = Key::of(&digest);
            let removed = self.removed_while_loading.as_ref().is_some_and(|r| r.contains(&key));
            if removed || self.entries.contains_key(&key) {
                continue;
            }
            self.remember(&digest);
            self.head_seq -= 1;
            self.queue.push_front(key);
            self.entries.insert(key, Entry { seq: self.head_seq, size: digest.size() });
        }
    }

    /// Ends loading.
    pub fn finish_load(&mut self) {
        self.removed_while_loading = None;
    }

    /// Takes the least recently used objects that may be expired out of the index, oldest first:
    /// at most `max` of them, and no more once they add up to `bytes`. None means nothing else may
    /// be expired.
    pub fn pop_oldest(&mut self, max: usize, bytes: u64) -> Vec<Digest> {
        let mut oldest = Vec::with_capacity(max.min(self.entries.len()));
        let mut total = 0u64;
        while oldest.len() < max && total < bytes {
            let Some(key) = self.queue.pop_front() else { break };
            let seq = self.head_seq;
            self.head_seq += 1;
            // Skipped: stale copies (used again since, or removed) and protected objects.
            if let hash_map::Entry::Occupied(entry) = self.entries.entry(key)
                && entry.get().seq == seq
            {
                let size = entry.remove().size;
                let tail = if self.hash_len > 32 { self.tails.remove(&key) } else { None };
                oldest.push(self.digest_of(&key, tail.as_deref(), size));
                total = total.saturating_add(size);
            }
        }
        oldest
    }

    /// The full digest hash is needed to name the object again: keep what does not fit the key.
    fn remember(&mut self, digest: &Digest) -> Key {
        let key = Key::of(digest);
        let hash = digest.hash_bytes();
        if hash.len() > 32 {
            self.tails.insert(key, hash[32..].into());
        }
        key
    }

    fn digest_of(&self, key: &Key, tail: Option<&[u8]>, size: u64) -> Digest {
        match tail {
            Some(tail) => Digest::from_raw(&[&key.0[..], tail].concat(), size),
            None => Digest::from_raw(&key.0[..self.hash_len.min(32)], size),
        }
    }

    fn push(&mut self, key: Key, size: u64) {
        let seq = self.head_seq + self.queue.len() as u64;
        self.queue.push_back(key);
        self.entries.insert(key, Entry { seq, size });
        self.compact_if_sparse();
    }

    fn compact_if_sparse(&mut self) {
        if self.queue.len() > 2 * self.entries.len() + COMPACT_SLACK {
            self.compact();
        }
    }

    /// Drops stale queue slots and renumbers the live ones, keeping their order.
    fn compact(&mut self) {
        let entries = &mut self.entries;
        let (mut old, mut new) = (self.head_seq, self.head_seq);
        self.queue.retain(|key| {
            let live = entries.get_mut(key).filter(|entry| entry.seq == old);
            old += 1;
            match live {
                Some(entry) => {
                    entry.seq = new;
                    new += 1;
                    true
                }
                None => false,
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::DigestFunction;

    fn blob(n: u32) -> Digest {
        DigestFunction::Sha256.hash_bytes(&n.to_le_bytes())
    }

    fn pop_all(index: &mut LruIndex) -> Vec<Digest> {
        index.pop_oldest(usize::MAX, u64::MAX)
    }

    #[test]
    fn oldest_first_and_a_use_moves_to_the_back() {
        let mut index = LruIndex::new(DigestFunction::Sha256, false);
        for n in 0..4 {
            index.add(&blob(n));
        }
        index.touch(&[blob(0)]);
        assert_eq!(pop_all(&mut index), vec![blob(1), blob(2), blob(3), blob(0)]);
        assert!(index.is_empty());
    }

    #[test]
    fn popping_stops_at_a_count_or_a_byte_total() {
        let mut index = LruIndex::new(DigestFunction::Sha256, false);
        let sized = |n: u32| Digest::from_raw(blob(n).hash_bytes(), 10);
        for n in 0..10 {
            index.add(&sized(n));
        }
        assert_eq!(index.pop_oldest(2, u64::MAX), vec![sized(0), sized(1)]);
        assert_eq!(index.pop_oldest(100, 25), vec![sized(2), sized(3), sized(4)]);
        assert_eq!(index.pop_oldest(100, 1), vec![sized(5)]);
        assert!(index.pop_oldest(100, 0).is_empty());
        assert_eq!(index.len(), 4);
    }

    #[test]
    fn loaded_objects_come_before_this_sessions_and_keep_their_order() {
        let mut index = LruIndex::new(DigestFunction::Sha256, false);
        index.begin_load();
        index.add(&blob(10));
        index.remove(&blob(2));
        // Scan: 1 oldest, then 2 (removed meanwhile), then 10 (re-stored in this session).
        index.load_newest_first([blob(10), blob(2), blob(1)]);
        index.finish_load();
        assert_eq!(pop_all(&mut index), vec![blob(1), blob(10)]);
    }

    #[test]
    fn protected_session_objects_are_never_popped() {
        let mut index = LruIndex::new(DigestFunction::Sha256, true);
        index.load_newest_first([blob(2), blob(1), blob(0)]);
        index.add(&blob(3));
        index.touch(&[blob(1), blob(99)]);
        assert_eq!(index.pop_oldest(1, u64::MAX), vec![blob(0)]);
        assert_eq!(pop_all(&mut index), vec![blob(2)]);
        assert!(pop_all(&mut index).is_empty());
        assert_eq!(index.len(), 2, "blobs 1 and 3 stay known");
    }

    #[test]
    fn repeated_touches_do_not_grow_the_queue_without_bound() {
        let mut index = LruIndex::new(DigestFunction::Sha256, false);
        let blobs: Vec<Digest> = (0..1000).map(blob).collect();
        for digest in &blobs {
            index.add(digest);
        }
        for _ in 0..100 {
            index.touch(&blobs);
            index.touch(&blobs[..10]);
        }
        assert!(index.queued() <= 2 * index.len() + COMPACT_SLACK, "{} slots", index.queued());
        // Every object is still there exactly once.
        let mut popped = pop_all(&mut index);
        popped.sort();
        let mut expected = blobs.clone();
        expected.sort();
        assert_eq!(popped, expected);
    }

    #[test]
    fn compaction_keeps_the_order() {
        let mut index = LruIndex::new(DigestFunction::Sha256, false);
        let blobs: Vec<Digest> = (0..100).map(blob).collect();
        for digest in &blobs {
            index.add(digest);
        }
        // Stale slots from touching the oldest half (each moved to the back in turn).
        for digest in &blobs[..50] {
            index.touch(std::slice::from_ref(digest));
        }
        index.compact();
        assert_eq!(index.queued(), 100);
        let expected: Vec<Digest> = blobs[50..].iter().chain(&blobs[..50]).copied().collect();
        assert_eq!(pop_all(&mut index), expected);
    }

    #[test]
    fn long_and_short_hashes_come_back_whole() {
        for function in DigestFunction::ALL {
            let mut index = LruIndex::new(function, false);
            let digest = function.hash_bytes(b"abc");
            index.add(&digest);
            assert_eq!(pop_all(&mut index), vec![digest], "{function}");
        }
    }

    #[test]
    #[ignore = "a million objects; prints its timings: cargo test --release --lib expiry::index -- --ignored --nocapture"]
    fn a_million_objects_are_indexed_used_and_expired() {
        use std::time::Instant;
        let digests: Vec<Digest> = (0..1_000_000).map(blob).collect();
        let start = Instant::now();
        let mut index = LruIndex::new(DigestFunction::Sha256, false);
        index.begin_load();
        index.reserve(digests.len());
        for chunk in digests.rchunks(16 * 1024) {
            index.load_newest_first(chunk.iter().rev().copied());
        }
        index.finish_load();
        let loaded = start.elapsed();
        // A FindMissingBlobs of 100k present digests (the oldest: all move to the back), then
        // again (nothing moves).
        let touch = Instant::now();
        index.touch(&digests[..100_000]);
        let moved = touch.elapsed();
        let touch = Instant::now();
        index.touch(&digests[..100_000]);
        let touched = touch.elapsed();
        let pop = Instant::now();
        let mut popped = 0;
        loop {
            let batch = index.pop_oldest(256, u64::MAX);
            if batch.is_empty() {
                break;
            }
            popped += batch.len();
        }
        let expired = pop.elapsed();
        println!(
            "1M objects: load {loaded:?}, touch 100k {moved:?} (moved) {touched:?} (again), pop all {expired:?}"
        );
        assert_eq!(popped, 1_000_000);
    }
}
