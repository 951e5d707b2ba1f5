//! Existence checks: `contains` (no side effect) and `find_missing` (touches what it finds).
//!
//! `contains` asks the filesystem. `find_missing` first asks the in-memory [`PresenceIndex`]:
//! a digest it has never seen stored costs no syscall; one it knows costs an `fstatat`, relative
//! to the open `cas/objects` directory with a path built on the stack, plus a `utimensat` if not
//! touched in the last minute. Large batches are split across threads.
//!
//! [`PresenceIndex`]: super::presence_index::PresenceIndex

use std::os::fd::AsFd;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::fcntl::AtFlags;
use nix::sys::stat::{SFlag, fstatat};
use rayon::prelude::*;

use super::Store;
use super::layout::RelativeObjectPath;
use super::touch::touch_at;
use crate::digest::Digest;

/// Objects used less than this many seconds ago are not touched again: the LRU clock needs no
/// finer grain, and repeated queries for the same blobs (the common case) then cost one `fstatat`
/// each instead of two syscalls.
const TOUCH_GRANULARITY: i64 = 60;

/// Batches smaller than this are checked on the calling thread (thread hand-off costs more).
const PARALLEL_MIN: usize = 512;

impl Store {
    /// Whether the blob is stored (a regular file of the digest's length at its path). The empty
    /// blob always counts as present, as REAPI asks of servers.
    pub fn contains(&self, digest: &Digest) -> bool {
        *digest == self.inner.empty || self.stored_with_size(digest)
    }

    /// The digests of `digests` that are not stored, in order, as the filesystem says. Present
    /// ones are marked used (their mtime is the LRU clock, to a minute's grain).
    pub fn find_missing(&self, digests: &[Digest]) -> Vec<Digest> {
        self.find_missing_with(digests, Trust::Filesystem)
    }

    /// Like [`Store::find_missing`], for a client deciding what to upload (FindMissingBlobs): a
    /// digest this process has never seen stored is reported missing without asking the
    /// filesystem, so a blob another process stored since this one opened the root may be
    /// reported missing. Uploading it again is harmless; where a false "missing" would not be
    /// (staging, action results), use [`Store::find_missing`].
    pub fn find_missing_to_upload(&self, digests: &[Digest]) -> Vec<Digest> {
        self.find_missing_with(digests, Trust::Index)
    }

    /// [`Store::find_missing_to_upload`] in place: keeps only the missing digests of `digests`,
    /// in order. A large batch is answered without a second list as large as the first.
    pub fn retain_missing_to_upload(&self, digests: &mut Vec<Digest>) {
        let present = self.presence_with(digests, Trust::Index);
        let mut present = present.iter();
        digests.retain(|_| present.next() == Some(&false));
    }

    fn find_missing_with(&self, digests: &[Digest], trust: Trust) -> Vec<Digest> {
        let present = self.presence_with(digests, trust);
        digests.iter().zip(present).filter(|(_, present)| !present).map(|(digest, _)| *digest).collect()
    }

    /// Whether each digest of `digests` is present; present ones are marked used.
    fn presence_with(&self, digests: &[Digest], trust: Trust) -> Vec<bool> {
        let now = now_seconds();
        let present = |digest: &Digest| self.present_and_touched(digest, now, trust);
        let presence = if digests.len() < PARALLEL_MIN {
            digests.iter().map(present).collect()
        } else {
            digests.par_iter().with_min_len(PARALLEL_MIN / 2).map(present).collect()
        };
        self.inner.notify_used(digests);
        presence
    }

    /// Whether the blob is stored, as far as this process knows; if so, marks it used.
    pub(crate) fn touch_if_present(&self, digest: &Digest) -> bool {
        let present = self.present_and_touched(digest, now_seconds(), Trust::Index);
        if present {
            self.inner.notify_present(digest);
        }
        present
    }

    /// Whether the blob is stored (with [`Trust::Index`]: and known to this process); if so,
    /// and its mtime is older than [`TOUCH_GRANULARITY`] before `now`, sets it to now. A touch
    /// that fails (say, on a read-only store) leaves the answer unchanged. The empty blob is
    /// written if it is missing, so that what is reported present can always be read straight
    /// from `cas/objects` (as BuildStream does).
    fn present_and_touched(&self, digest: &Digest, now: i64, trust: Trust) -> bool {
        let is_empty = *digest == self.inner.empty;
        let index = self.inner.present.as_ref();
        if trust == Trust::Index && !is_empty && index.is_some_and(|index| !index.may_contain(digest)) {
            return false;
        }
        let relative = RelativeObjectPath::new(digest);
        match self.stat_object(&relative, digest) {
            Some(mtime) => {
                if let Some(index) = index.filter(|_| trust == Trust::Filesystem) {
                    index.insert(digest);
                }
                if now.saturating_sub(mtime) >= TOUCH_GRANULARITY {
                    let _ = touch_at(self.inner.objects_dir.as_fd(), relative.as_bytes());
                }
                true
            }
            None if is_empty => self.writer(None).and_then(|w| w.commit()).is_ok(),
            None => {
                // Removed behind this process's back.
                if let Some(index) = index {
                    index.remove(digest);
                }
                false
            }
        }
    }

    fn stored_with_size(&self, digest: &Digest) -> bool {
        self.stat_object(&RelativeObjectPath::new(digest), digest).is_some()
    }

    /// The mtime (in seconds) of the regular file of `digest`'s length at `relative`, if any.
    fn stat_object(&self, relative: &RelativeObjectPath, digest: &Digest) -> Option<i64> {
        let stat = fstatat(self.inner.objects_dir.as_fd(), relative.as_bytes(), AtFlags::AT_SYMLINK_NOFOLLOW);
        stat.ok()
            .filter(|s| {
                SFlag::from_bits_truncate(s.st_mode) & SFlag::S_IFMT == SFlag::S_IFREG
                    && u64::try_from(s.st_size) == Ok(digest.size())
            })
            .map(|s| s.st_mtime)
    }
}

/// Which source an absence is taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trust {
    /// Every digest is looked up on disk.
    Filesystem,
    /// A digest missing from the presence index is taken as absent.
    Index,
}

/// Seconds since the epoch.
fn now_seconds() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_secs()).unwrap_or(i64::MAX)
}
