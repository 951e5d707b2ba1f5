//! Validated trees kept in memory, so staging a tree again costs no Directory reads.
//!
//! A Tree is named by its root digest, so a cached one never goes stale. Reading and validating
//! a 200-directory tree costs tens of milliseconds (one open, read and LRU touch per Directory
//! blob), far more than mounting its farm; so the last trees staged are kept, up to a total
//! number of entries that bounds the memory they take.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use super::plan::WritabilityChange;
use crate::digest::Digest;
use crate::tree::Tree;

/// At most this many entries (files, directories, symlinks of distinct Directory messages) are
/// kept in all (about 200 bytes each).
pub const MAX_CACHED_ENTRIES: usize = 1_000_000;

/// A tree read, validated and planned.
#[derive(Debug)]
pub struct Prepared {
    /// The validated tree.
    pub tree: Arc<Tree>,
    /// Where `SubtreeReadOnly` changes what the action may write.
    pub changes: Vec<WritabilityChange>,
    entries: usize,
    /// The tree's distinct file digests, once asked for.
    files: std::sync::OnceLock<Vec<Digest>>,
    /// The store's removal count when all of `files` were last found present (`u64::MAX`: never).
    present_at: std::sync::atomic::AtomicU64,
    /// When `files` were last marked used, in seconds since the epoch (0: never).
    used_at: std::sync::atomic::AtomicU64,
}

/// Files of a tree staged again within this many seconds are not marked used again: the LRU
/// order needs no finer grain (as the store's own touches), and marking 20,000 costs ms.
pub const USE_GRANULARITY: u64 = 60;

impl Prepared {
    /// Wraps a validated tree and its plan.
    pub fn new(tree: Tree, changes: Vec<WritabilityChange>) -> Self {
        let entries =
            tree.directories().map(|(_, d)| d.files.len() + d.directories.len() + d.symlinks.len() + 1).sum();
        Self {
            tree: Arc::new(tree),
            changes,
            entries,
            files: std::sync::OnceLock::new(),
            present_at: std::sync::atomic::AtomicU64::new(u64::MAX),
            used_at: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The tree's entries (files, directories, symlinks of its distinct Directory messages).
    pub fn entries(&self) -> usize {
        self.entries
    }

    /// Whether the files are due to be marked used at `now` (seconds since the epoch); if so,
    /// records that they are marked now.
    pub fn take_use_due(&self, now: u64) -> bool {
        let last = self.used_at.load(std::sync::atomic::Ordering::Relaxed);
        now.saturating_sub(last) >= USE_GRANULARITY
            && self
                .used_at
                .compare_exchange(
                    last,
                    now,
                    std::sync::atomic::Ordering::AcqRel,
                    std::sync::atomic::Ordering::Relaxed,
                )
                .is_ok()
    }

    /// The tree's distinct file digests.
    pub fn files(&self) -> &[Digest] {
        self.files.get_or_init(|| self.tree.file_digests())
    }

    /// Whether every file blob was found present when the store's removal count was `removals`.
    pub fn present_at(&self, removals: u64) -> bool {
        self.present_at.load(std::sync::atomic::Ordering::Relaxed) == removals
    }

    /// Records that every file blob was present at removal count `removals`.
    pub fn set_present_at(&self, removals: u64) {
        self.present_at.store(removals, std::sync::atomic::Ordering::Relaxed);
    }
}

/// The last prepared trees, least recently used evicted first.
#[derive(Debug)]
pub struct TreeCache {
    inner: Mutex<Lru>,
    budget: usize,
}

impl Default for TreeCache {
    fn default() -> Self {
        Self::with_budget(MAX_CACHED_ENTRIES)
    }
}

#[derive(Debug, Default)]
struct Lru {
    trees: HashMap<Digest, Arc<Prepared>>,
    /// Least recently used first.
    order: VecDeque<Digest>,
    entries: usize,
}

impl TreeCache {
    /// A cache keeping at most `budget` entries.
    pub fn with_budget(budget: usize) -> Self {
        Self { inner: Mutex::default(), budget }
    }

    /// The prepared tree of `root`, if cached (and marks it used).
    pub fn get(&self, root: &Digest) -> Option<Arc<Prepared>> {
        let mut lru = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let found = lru.trees.get(root)?.clone();
        lru.order.retain(|d| d != root);
        lru.order.push_back(*root);
        Some(found)
    }

    /// Keeps `prepared` (unless it alone is over the budget), evicting the least recently used.
    pub fn insert(&self, prepared: Arc<Prepared>) {
        if prepared.entries > self.budget {
            return;
        }
        let root = prepared.tree.root();
        let mut lru = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if lru.trees.contains_key(&root) {
            return;
        }
        while lru.entries + prepared.entries > self.budget {
            let Some(oldest) = lru.order.pop_front() else { break };
            if let Some(evicted) = lru.trees.remove(&oldest) {
                lru.entries -= evicted.entries;
            }
        }
        lru.entries += prepared.entries;
        lru.order.push_back(root);
        lru.trees.insert(root, prepared);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::DigestFunction;

    #[test]
    fn a_trees_files_are_marked_used_at_most_once_a_minute() {
        let store_dir = tempfile::tempdir().unwrap();
        let store = Store::open(store_dir.path(), DigestFunction::Sha256).unwrap();
        let root = store.put_bytes(&reapi::Directory::default().encode_to_vec()).unwrap();
        let prepared = Prepared::new(Tree::read(&store, &root).unwrap(), Vec::new());
        assert!(prepared.take_use_due(1_000));
        assert!(!prepared.take_use_due(1_000 + USE_GRANULARITY - 1));
        assert!(prepared.take_use_due(1_000 + USE_GRANULARITY));
        assert!(!prepared.take_use_due(1_000 + USE_GRANULARITY));
    }
    use crate::proto::build::bazel::remote::execution::v2 as reapi;
    use crate::store::Store;
    use prost::Message;

    fn prepared(store: &Store, files: usize) -> Arc<Prepared> {
        let directory = reapi::Directory {
            files: (0..files)
                .map(|i| reapi::FileNode {
                    name: format!("f{i:04}"),
                    digest: Some(crate::tree::to_proto(&store.put_bytes(b"x").unwrap())),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        let root = store.put_bytes(&directory.encode_to_vec()).unwrap();
        Arc::new(Prepared::new(Tree::read(store, &root).unwrap(), Vec::new()))
    }

    #[test]
    fn keeps_the_most_recently_used_within_the_budget() {
        let tmp = tempfile::tempdir().unwrap();
        let store = Store::open(tmp.path(), DigestFunction::Sha256).unwrap();
        let cache = TreeCache::with_budget(100);
        let (a, b, c) = (prepared(&store, 40), prepared(&store, 41), prepared(&store, 42));
        cache.insert(a.clone());
        cache.insert(b.clone());
        assert!(cache.get(&a.tree.root()).is_some(), "a is now the most recently used");
        cache.insert(c.clone()); // 41 + 43 entries (files and the directory itself) stay in budget.
        assert!(cache.get(&b.tree.root()).is_none(), "b, least recently used, was evicted");
        assert!(cache.get(&a.tree.root()).is_some() && cache.get(&c.tree.root()).is_some());
        cache.insert(prepared(&store, 200));
        assert!(cache.get(&c.tree.root()).is_some(), "a tree over the whole budget is not kept");
    }
}
