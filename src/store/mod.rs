//! The local content-addressable store on disk (buildbox-casd's layout).
//!
//! One read-only file per blob at `ROOT/cas/objects/<hh>/<rest of hash>` ([`layout`]); writers
//! stream into private temporary files and publish by an atomic no-clobber link once the digest is
//! verified ([`writer`]), so no partial or wrong blob is ever visible. The total size in use is kept
//! in memory and recovered on open by a parallel scan, which also removes the temporary files of
//! dead writers ([`tmp`]). Object mtimes are the LRU clock for expiry: [`Store::find_missing`] and
//! [`Store::open_blob`] touch them; [`Store::objects`] and [`Store::remove`] are what an expiry
//! policy needs.
//!
//! A [`Store`] is a cheap handle (`Clone`, `Send`, `Sync`); clones share one usage counter and one
//! temporary directory. Several processes may open the same root at once; each keeps its own usage
//! figure, exact for what it wrote or removed itself plus what it found on open.

mod activity;
mod adopt;
mod error;
mod fan_out;
mod layout;
mod placement;
mod presence;
mod presence_index;
mod put;
mod quota;
mod read;
mod scan;
mod tmp;
mod touch;
mod writer;

pub use error::{Result, StoreError, is_out_of_space};
pub use layout::Layout;
pub use quota::{QuotaExceeded, StoreHooks, WeakStore};
pub use scan::ObjectInfo;
pub use writer::{BlobWriter, OBJECT_MODE};

use std::fs;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, fstatat};
use nix::unistd::{UnlinkatFlags, unlinkat};

use crate::digest::{Digest, DigestFunction};
use activity::WriteActivity;
use error::IoContext;
use presence_index::PresenceIndex;
use tmp::TmpDir;

/// A content-addressable store rooted at a directory.
#[derive(Debug, Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// What every clone of a [`Store`] (and every [`BlobWriter`]) shares.
#[derive(Debug)]
struct Inner {
    layout: Layout,
    function: DigestFunction,
    /// The digest of the empty blob under `function`, which is always "present".
    empty: Digest,
    /// Bytes in objects: found on open, plus what this store published, minus what it removed.
    usage: AtomicU64,
    /// Objects this store removed so far.
    removals: AtomicU64,
    /// Calls writing objects now, which expiry gives way to.
    writing: WriteActivity,
    tmp: TmpDir,
    /// `cas/objects`, open (`O_PATH`) for lookups relative to it.
    objects_dir: OwnedFd,
    /// The objects this process knows of ([`presence_index`]); `None` when the store was opened
    /// without a scan, and every lookup asks the filesystem.
    present: Option<PresenceIndex>,
    /// A quota policy watching this store, if any ([`quota`]).
    hooks: OnceLock<Arc<dyn StoreHooks>>,
}

impl Store {
    /// Opens (creating if need be) the store at `root`, hashing with `function`, for a long-lived
    /// process (the daemon). Removes what dead writers left in `cas/tmp`, counts the objects'
    /// total size and indexes them (a parallel scan of `cas/objects`).
    pub fn open(root: &Path, function: DigestFunction) -> Result<Store> {
        Self::open_with(root, function, true)
    }

    /// Like [`Store::open`], without the scan, for a short-lived process (one action, one
    /// command): opening costs the same whatever the store holds. [`Store::usage`] then counts
    /// only what this process stored and removed, and every lookup asks the filesystem.
    pub fn open_unscanned(root: &Path, function: DigestFunction) -> Result<Store> {
        Self::open_with(root, function, false)
    }

    fn open_with(root: &Path, function: DigestFunction, scan: bool) -> Result<Store> {
        let layout = Layout::new(root);
        fs::create_dir_all(layout.objects()).at("create directory", layout.objects())?;
        fs::create_dir_all(layout.tmp()).at("create directory", layout.tmp())?;
        tmp::remove_abandoned(layout.tmp())?;
        let tmp = TmpDir::create(layout.tmp())?;
        let (present, usage) = if scan {
            let present = PresenceIndex::new();
            let usage = scan::total_size(layout.objects(), |digest| present.insert(digest))?;
            (Some(present), usage)
        } else {
            (None, 0)
        };
        let usage = AtomicU64::new(usage);
        let empty = function.hash_bytes(&[]);
        let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let objects_dir = nix::fcntl::open(layout.objects(), flags, Mode::empty())
            .map_err(|errno| StoreError::io("open directory", layout.objects(), errno.into()))?;
        let hooks = OnceLock::new();
        let removals = AtomicU64::new(0);
        Ok(Store {
            inner: Arc::new(Inner {
                layout,
                function,
                empty,
                usage,
                removals,
                writing: WriteActivity::default(),
                tmp,
                objects_dir,
                present,
                hooks,
            }),
        })
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        self.inner.layout.root()
    }

    /// The paths of the store's layout.
    pub fn layout(&self) -> &Layout {
        &self.inner.layout
    }

    /// The digest function blobs are stored under.
    pub fn digest_function(&self) -> DigestFunction {
        self.inner.function
    }

    /// Where the object for `digest` is (or would be) stored.
    pub fn object_path(&self, digest: &Digest) -> PathBuf {
        self.inner.layout.object_path(digest)
    }

    /// Bytes used by objects (their file lengths), as this store knows it.
    pub fn usage(&self) -> u64 {
        self.inner.usage.load(Ordering::Relaxed)
    }

    /// How many objects this store has removed since it was opened: while it is unchanged, what
    /// was found present is still there (unless removed behind the store's back).
    pub fn removals(&self) -> u64 {
        self.inner.removals.load(Ordering::Relaxed)
    }

    /// Calls writing objects right now (storing bytes, a file or a stream, adopting a file).
    pub fn writes_in_progress(&self) -> usize {
        self.inner.writing.count()
    }

    /// Marks `digests` used now, for the quota policy's LRU order, without touching the disk.
    pub fn mark_used(&self, digests: &[Digest]) {
        self.inner.notify_used(digests);
    }

    /// Removes the object for `digest` and takes its size off the usage. Returns whether there
    /// was one to remove. Readers that already opened it keep reading it.
    pub fn remove(&self, digest: &Digest) -> Result<bool> {
        // Relative to the open objects dir: an expiry pass removes hundreds of thousands, and
        // walking the store's whole path twice for each costs more than the unlink.
        let relative = layout::RelativeObjectPath::new(digest);
        let (objects, name) = (self.inner.objects_dir.as_fd(), relative.as_c_str());
        let size = match fstatat(objects, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => u64::try_from(stat.st_size).unwrap_or(0),
            Err(Errno::ENOENT) => return Ok(false),
            Err(errno) => return Err(StoreError::io("stat", self.object_path(digest), errno.into())),
        };
        match unlinkat(objects, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => {
                // Only the remover whose unlink succeeded subtracts: concurrent removes count once.
                self.inner.sub_usage(size);
                self.inner.removals.fetch_add(1, Ordering::Relaxed);
                self.inner.notify_removed(digest);
                Ok(true)
            }
            Err(Errno::ENOENT) => Ok(false),
            Err(errno) => Err(StoreError::io("remove", self.object_path(digest), errno.into())),
        }
    }
}

impl Inner {
    fn add_usage(&self, bytes: u64) {
        self.usage.fetch_add(bytes, Ordering::Relaxed);
    }

    /// Saturating: objects written by other processes since open were never added here.
    fn sub_usage(&self, bytes: u64) {
        let _ =
            self.usage.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |u| Some(u.saturating_sub(bytes)));
    }

    /// `digest`'s object was just created by this process.
    fn notify_added(&self, digest: &Digest) {
        if let Some(present) = &self.present {
            present.insert(digest);
        }
        if let Some(hooks) = self.hooks.get() {
            hooks.added(digest);
        }
    }

    /// `digest`'s object was found stored, and used.
    fn notify_present(&self, digest: &Digest) {
        if let Some(present) = &self.present {
            present.insert(digest);
        }
        self.notify_used(std::slice::from_ref(digest));
    }

    /// `digests` were used (those not stored are ignored by the hooks).
    fn notify_used(&self, digests: &[Digest]) {
        if let Some(hooks) = self.hooks.get() {
            hooks.used(digests);
        }
    }

    /// `digest`'s object is gone.
    fn notify_removed(&self, digest: &Digest) {
        if let Some(present) = &self.present {
            present.remove(digest);
        }
        if let Some(hooks) = self.hooks.get() {
            hooks.removed(digest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_is_shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync + 'static>() {}
        assert_send_sync::<Store>();
        assert_send_sync::<BlobWriter>();
    }
}
