//! Existence checks: `contains` (no side effect) and `find_missing` (touches what it finds).
//!
//! One `lstat` per digest (plus a `utimensat` for the present ones) is all it costs; large batches
//! are split across threads, since each check is an independent syscall.

use std::fs;
use std::path::Path;

use rayon::prelude::*;

use super::Store;
use super::touch::touch_path;
use crate::digest::Digest;

/// Batches smaller than this are checked on the calling thread (thread hand-off costs more).
const PARALLEL_MIN: usize = 512;

impl Store {
    /// Whether the blob is stored (a regular file of the digest's length at its path). The empty
    /// blob always counts as present, as REAPI asks of servers.
    pub fn contains(&self, digest: &Digest) -> bool {
        *digest == self.inner.empty || self.stored_with_size(digest)
    }

    /// The digests of `digests` that are not stored, in order. Present ones are marked used (their
    /// mtime is the LRU clock), as buildbox-casd's FindMissingBlobs does.
    pub fn find_missing(&self, digests: &[Digest]) -> Vec<Digest> {
        let missing = |digest: &&Digest| !self.touch_if_present(digest);
        if digests.len() < PARALLEL_MIN {
            digests.iter().filter(missing).copied().collect()
        } else {
            digests.par_iter().with_min_len(PARALLEL_MIN / 2).filter(missing).copied().collect()
        }
    }

    /// Whether the blob is stored; if so, marks it used. A touch that fails (say, on a read-only
    /// store) leaves the answer unchanged. The empty blob is written if it is missing, so that
    /// what is reported present can always be read straight from `cas/objects` (as BuildStream does).
    pub(crate) fn touch_if_present(&self, digest: &Digest) -> bool {
        let path = self.object_path(digest);
        if is_object_of(&path, digest) {
            let _ = touch_path(&path);
            return true;
        }
        *digest == self.inner.empty && self.writer(None).and_then(|writer| writer.commit()).is_ok()
    }

    fn stored_with_size(&self, digest: &Digest) -> bool {
        is_object_of(&self.object_path(digest), digest)
    }
}

/// Whether `path` is a regular file of `digest`'s length.
fn is_object_of(path: &Path, digest: &Digest) -> bool {
    fs::symlink_metadata(path).is_ok_and(|m| m.is_file() && m.len() == digest.size())
}
