//! Streaming writes: content goes to a private temporary file and becomes an object only once its
//! digest is verified, by a hard link that never replaces an existing file. A reader therefore
//! sees a complete, correct blob or nothing, even if the writer is killed half-way; concurrent
//! writers of one blob all succeed and exactly one of them (the one whose link succeeds) adds its
//! size to the usage.
//!
//! Objects are not fsync'ed (neither are buildbox-casd's): a crash of the process cannot expose a
//! partial object, but a power loss may leave a linked object whose data never reached the disk.
//! `rebox cas verify` finds such objects.

use std::fs::{self, File, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::error::{IoContext, Result, StoreError};
use super::touch::{is_denied, touch_path};
use super::{Inner, Store};
use crate::digest::{Digest, Hasher};

/// Mode of every object: read-only for all, never writable, setuid or setgid.
pub const OBJECT_MODE: u32 = 0o444;

/// How often publishing retries after finding (and removing) a corrupt object in the way.
const PUBLISH_ATTEMPTS: usize = 3;

/// A blob being written. [`BlobWriter::commit`] verifies and publishes it; dropping the writer
/// without committing discards what was written.
#[derive(Debug)]
pub struct BlobWriter {
    store: Arc<Inner>,
    expected: Option<Digest>,
    hasher: Hasher,
    file: File,
    /// The temporary file; `None` once it has been published or removed.
    temp: Option<PathBuf>,
}

impl Store {
    /// Starts writing a blob. With `expected`, the content must match it (hash and size); a stream
    /// longer than `expected` says is refused as soon as it overflows.
    pub fn writer(&self, expected: Option<Digest>) -> Result<BlobWriter> {
        if let Some(expected) = &expected {
            self.inner.function.check(expected)?;
            // Refuse early what cannot fit, rather than after receiving it all.
            self.inner.admit(expected.size(), || self.contains(expected))?;
        }
        let (temp, file) = self.inner.tmp.create_file()?;
        Ok(BlobWriter {
            store: Arc::clone(&self.inner),
            expected,
            hasher: self.inner.function.hasher(),
            file,
            temp: Some(temp),
        })
    }
}

impl BlobWriter {
    /// Appends `data` to the blob.
    pub fn write_all(&mut self, data: &[u8]) -> Result<()> {
        let written = self.hasher.size() + data.len() as u64;
        if let Some(expected) = self.expected.filter(|e| written > e.size()) {
            return Err(StoreError::SizeMismatch { expected, actual: written, path: None });
        }
        self.file.write_all(data).at("write temporary file", self.temp_path())?;
        self.hasher.update(data);
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.hasher.size()
    }

    /// Verifies the content against the expected digest, if any, and publishes it as an object.
    /// Returns the blob's digest. Succeeds too if the object was already present.
    pub fn commit(mut self) -> Result<Digest> {
        let actual = self.hasher.clone().finish();
        if let Some(expected) = self.expected {
            if actual.size() != expected.size() {
                return Err(StoreError::SizeMismatch { expected, actual: actual.size(), path: None });
            }
            if actual != expected {
                return Err(StoreError::DigestMismatch { expected, actual: Box::new(actual), path: None });
            }
        }
        let temp = self.temp_path().to_owned();
        self.file.set_permissions(Permissions::from_mode(OBJECT_MODE)).at("set mode of", &temp)?;
        publish(&self.store, &temp, &actual)?;
        self.temp = None;
        // The link (or the object already there) holds the content now.
        fs::remove_file(&temp).at("remove temporary file", &temp)?;
        Ok(actual)
    }

    fn temp_path(&self) -> &Path {
        self.temp.as_deref().unwrap_or(Path::new("(published)"))
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            // Best effort: the next store to open the root removes any leftover.
            let _ = fs::remove_file(temp);
        }
    }
}

/// `io::Write` over [`BlobWriter::write_all`], for `io::copy` and friends; store errors travel
/// inside the `io::Error`.
impl Write for BlobWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        BlobWriter::write_all(self, data).map_err(io::Error::other)?;
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Links the verified temporary file `temp` as the object for `digest`, without ever replacing
/// a good object, and counts it in the usage if this call created it.
fn publish(store: &Inner, temp: &Path, digest: &Digest) -> Result<()> {
    let object = store.layout.object_path(digest);
    store.admit(digest.size(), || fs::symlink_metadata(&object).is_ok_and(|m| m.len() == digest.size()))?;
    for _ in 0..PUBLISH_ATTEMPTS {
        match fs::hard_link(temp, &object) {
            Ok(()) => {
                store.add_usage(digest.size());
                store.notify_added(digest);
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let fan_out = object.parent().expect("object paths have a fan-out directory");
                fs::create_dir_all(fan_out).at("create directory", fan_out)?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let existing = fs::symlink_metadata(&object);
                if existing.as_ref().is_ok_and(|m| m.is_file() && m.len() == digest.size()) {
                    // Already stored (by an earlier or a concurrent writer): this use counts as an
                    // access for the LRU clock.
                    store.notify_used(std::slice::from_ref(digest));
                    return match touch_path(&object) {
                        Err(e) if !is_denied(&e) => Err(StoreError::io("touch", object, e)),
                        _ => Ok(()),
                    };
                }
                // Something else is in the way (a truncated or tampered object): remove it and
                // link again. Concurrent writers may race here; only one removal and one link win.
                if let Ok(existing) = existing {
                    match fs::remove_file(&object) {
                        Ok(()) => store.sub_usage(existing.len()),
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(StoreError::io("remove corrupt object", object, e)),
                    }
                }
            }
            Err(e) => return Err(StoreError::io("link object", object, e)),
        }
    }
    Err(StoreError::io("link object", object, io::Error::other("it kept changing under this writer")))
}
