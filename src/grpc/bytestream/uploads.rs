//! Uploads in progress, so that a Write broken off can be resumed where it stopped.
//!
//! Policy: a Write that ends without `finish_write` (the client closed its stream, or the
//! connection broke) leaves its writer *parked* here, keyed by upload id and digest, with the
//! bytes received so far in its temporary file (on disk, in the store's `cas/tmp`; memory holds
//! only the writer and its hash state). QueryWriteStatus reports those bytes as `committed_size`
//! and a Write with that `write_offset` continues the same writer. At most [`MAX_PARKED`] uploads
//! holding at most [`MAX_PARKED_BYTES`] between them stay parked, each for at most
//! [`PARKED_TTL`]; beyond that the oldest are dropped (their temporary files removed) and the
//! client must start again at offset 0. A Write at offset 0 always starts afresh.
//!
//! While a Write call streams into an upload, the upload is *active*: a second call for it is
//! refused with `ABORTED`, and QueryWriteStatus reports the active call's progress.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tonic::Status;

use crate::digest::Digest;
use crate::store::BlobWriter;

/// Most uploads kept parked at once.
pub const MAX_PARKED: usize = 64;
/// Most bytes the parked uploads' temporary files may hold between them.
pub const MAX_PARKED_BYTES: u64 = 4 * 1024 * 1024 * 1024;
/// How long a parked upload waits for its client to resume it.
pub const PARKED_TTL: Duration = Duration::from_secs(10 * 60);

/// Identifies one upload: the client's upload id and the blob.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UploadKey {
    /// The `{uuid}` segment of the resource name.
    pub uuid: String,
    /// The blob being uploaded.
    pub digest: Digest,
}

/// The uploads of one ByteStream service.
#[derive(Debug, Default)]
pub struct Uploads {
    entries: Mutex<HashMap<UploadKey, Entry>>,
}

#[derive(Debug)]
enum Entry {
    /// A Write call streams into it; `progress` is the bytes written so far.
    Active(Arc<AtomicU64>),
    /// No call holds it: a client may resume at `writer.written()`.
    Parked { writer: Box<BlobWriter>, since: Instant },
}

/// An upload claimed by one Write call. Dropping it releases the upload (nothing to resume);
/// [`Claim::park`] keeps it for a later call instead.
#[derive(Debug)]
pub struct Claim {
    uploads: Arc<Uploads>,
    key: UploadKey,
    progress: Arc<AtomicU64>,
    /// The parked writer to continue, if the call resumes one.
    resumed: Option<BlobWriter>,
    /// Set once parked: the drop then leaves the entry alone.
    parked: bool,
}

impl Uploads {
    /// Claims `key` for a Write call whose first `write_offset` is `offset`.
    ///
    /// Offset 0 starts afresh (dropping any parked writer); any other offset must be exactly
    /// where a parked upload stopped.
    pub fn claim(self: &Arc<Self>, key: &UploadKey, offset: u64) -> Result<Claim, Status> {
        let mut dropped = Vec::new();
        let claim = {
            let mut entries = self.entries.lock().expect("uploads lock");
            expire(&mut entries, Instant::now(), &mut dropped);
            let resumed = match entries.remove(key) {
                Some(Entry::Active(progress)) => {
                    entries.insert(key.clone(), Entry::Active(progress));
                    return Err(Status::aborted(format!(
                        "upload {} of {} is being written by another Write call",
                        key.uuid, key.digest
                    )));
                }
                Some(Entry::Parked { writer, .. }) if writer.written() == offset => Some(*writer),
                Some(Entry::Parked { writer, .. }) if offset == 0 => {
                    dropped.push(*writer);
                    None
                }
                Some(Entry::Parked { writer, since }) => {
                    let committed = writer.written();
                    entries.insert(key.clone(), Entry::Parked { writer, since });
                    return Err(Status::invalid_argument(format!(
                        "write_offset {offset} does not continue upload {} of {}, which has {committed} bytes \
                         committed (QueryWriteStatus tells where to resume)",
                        key.uuid, key.digest
                    )));
                }
                None if offset == 0 => None,
                None => {
                    return Err(Status::invalid_argument(format!(
                        "write_offset {offset}, but no upload {} of {} is in progress to resume: start at 0",
                        key.uuid, key.digest
                    )));
                }
            };
            let progress = Arc::new(AtomicU64::new(resumed.as_ref().map_or(0, BlobWriter::written)));
            entries.insert(key.clone(), Entry::Active(Arc::clone(&progress)));
            Claim { uploads: Arc::clone(self), key: key.clone(), progress, resumed, parked: false }
        };
        drop(dropped);
        Ok(claim)
    }

    /// Drops the parked writer of `key`, if any (the blob arrived by other means).
    pub fn discard(&self, key: &UploadKey) {
        let mut entries = self.entries.lock().expect("uploads lock");
        if matches!(entries.get(key), Some(Entry::Parked { .. })) {
            let dropped = entries.remove(key);
            drop(entries);
            drop(dropped);
        }
    }

    /// Bytes committed so far to the upload `key`, if it is active or parked.
    pub fn committed(&self, key: &UploadKey) -> Option<u64> {
        match self.entries.lock().expect("uploads lock").get(key)? {
            Entry::Active(progress) => Some(progress.load(Ordering::Relaxed)),
            Entry::Parked { writer, .. } => Some(writer.written()),
        }
    }

    /// How many uploads are parked.
    #[cfg(test)]
    fn parked(&self) -> usize {
        let entries = self.entries.lock().expect("uploads lock");
        entries.values().filter(|e| matches!(e, Entry::Parked { .. })).count()
    }

    fn release(&self, key: &UploadKey) {
        let mut entries = self.entries.lock().expect("uploads lock");
        if matches!(entries.get(key), Some(Entry::Active(_))) {
            entries.remove(key);
        }
    }
}

impl Claim {
    /// The parked writer this call continues, if any (taken once).
    pub fn take_resumed(&mut self) -> Option<BlobWriter> {
        self.resumed.take()
    }

    /// Records the bytes written so far, for QueryWriteStatus.
    pub fn set_progress(&self, written: u64) {
        self.progress.store(written, Ordering::Relaxed);
    }

    /// Keeps `writer` for the client to resume, within the limits of the module policy.
    pub fn park(mut self, writer: BlobWriter) {
        self.parked = true;
        let mut dropped = vec![];
        {
            let mut entries = self.uploads.entries.lock().expect("uploads lock");
            if writer.written() == 0 {
                entries.remove(&self.key);
                dropped.push(writer);
            } else {
                entries.insert(
                    self.key.clone(),
                    Entry::Parked { writer: Box::new(writer), since: Instant::now() },
                );
            }
            expire(&mut entries, Instant::now(), &mut dropped);
        }
        drop(dropped);
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        if !self.parked {
            self.uploads.release(&self.key);
        }
    }
}

/// Removes parked uploads past their time, then the oldest while over the count or byte limit.
fn expire(entries: &mut HashMap<UploadKey, Entry>, now: Instant, dropped: &mut Vec<BlobWriter>) {
    let mut parked: Vec<(Instant, u64, UploadKey)> = entries
        .iter()
        .filter_map(|(key, entry)| match entry {
            Entry::Parked { writer, since } => Some((*since, writer.written(), key.clone())),
            Entry::Active(_) => None,
        })
        .collect();
    parked.sort_by_key(|(since, _, _)| *since);
    let mut count = parked.len();
    let mut bytes: u64 = parked.iter().map(|(_, written, _)| written).sum();
    for (since, written, key) in parked {
        let stale = now.duration_since(since) >= PARKED_TTL;
        if !stale && count <= MAX_PARKED && bytes <= MAX_PARKED_BYTES {
            break;
        }
        if let Some(Entry::Parked { writer, .. }) = entries.remove(&key) {
            dropped.push(*writer);
        }
        count -= 1;
        bytes -= written;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::DigestFunction;
    use crate::store::Store;

    fn setup() -> (tempfile::TempDir, Store, Arc<Uploads>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), DigestFunction::Sha256).unwrap();
        (dir, store, Arc::new(Uploads::default()))
    }

    fn key(uuid: &str, data: &[u8]) -> UploadKey {
        UploadKey { uuid: uuid.into(), digest: DigestFunction::Sha256.hash_bytes(data) }
    }

    #[test]
    fn a_parked_upload_resumes_only_where_it_stopped() {
        let (_dir, store, uploads) = setup();
        let key = key("u1", b"hello world");
        let claim = uploads.claim(&key, 0).unwrap();
        let mut writer = store.writer(Some(key.digest)).unwrap();
        writer.write_all(b"hello").unwrap();
        claim.park(writer);
        assert_eq!(uploads.committed(&key), Some(5));

        let wrong = uploads.claim(&key, 3).unwrap_err();
        assert_eq!(wrong.code(), tonic::Code::InvalidArgument);
        assert!(wrong.message().contains("5 bytes committed"), "{}", wrong.message());

        let mut claim = uploads.claim(&key, 5).unwrap();
        let mut writer = claim.take_resumed().expect("the parked writer");
        let busy = uploads.claim(&key, 5).unwrap_err();
        assert_eq!(busy.code(), tonic::Code::Aborted);
        writer.write_all(b" world").unwrap();
        assert_eq!(writer.commit().unwrap(), key.digest);
        drop(claim);
        assert_eq!(uploads.committed(&key), None, "released once done");
    }

    #[test]
    fn offset_zero_restarts_and_unknown_offsets_are_refused() {
        let (dir, store, uploads) = setup();
        let key = key("u2", b"data");
        let error = uploads.claim(&key, 2).unwrap_err();
        assert!(error.message().contains("start at 0"), "{}", error.message());
        let claim = uploads.claim(&key, 0).unwrap();
        let mut writer = store.writer(Some(key.digest)).unwrap();
        writer.write_all(b"da").unwrap();
        claim.park(writer);
        let mut restart = uploads.claim(&key, 0).unwrap();
        assert!(restart.take_resumed().is_none(), "offset 0 starts afresh");
        drop(restart);
        let leftovers = walk_files(&dir.path().join("cas/tmp"));
        assert!(leftovers.is_empty(), "the dropped writer's file is gone: {leftovers:?}");
    }

    #[test]
    fn parked_uploads_are_bounded() {
        let (_dir, store, uploads) = setup();
        let keys: Vec<UploadKey> = (0..MAX_PARKED + 3).map(|i| key(&format!("u{i}"), b"xy")).collect();
        for key in &keys {
            let claim = uploads.claim(key, 0).unwrap();
            let mut writer = store.writer(Some(key.digest)).unwrap();
            writer.write_all(b"x").unwrap();
            claim.park(writer);
        }
        assert_eq!(uploads.parked(), MAX_PARKED);
        assert_eq!(uploads.committed(&keys[0]), None, "the oldest went first");
        assert_eq!(uploads.committed(&keys[MAX_PARKED + 2]), Some(1));
    }

    #[test]
    fn an_empty_writer_is_not_parked() {
        let (_dir, store, uploads) = setup();
        let key = key("u", b"z");
        let claim = uploads.claim(&key, 0).unwrap();
        claim.park(store.writer(Some(key.digest)).unwrap());
        assert_eq!(uploads.committed(&key), None);
    }

    fn walk_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() { out.extend(walk_files(&path)) } else { out.push(path) }
        }
        out
    }
}
