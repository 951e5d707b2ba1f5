//! Reading blobs, and checking stored content against its digest.

use std::fs::File;
use std::io::{self, Read};

use super::Store;
use super::error::{IoContext, Result, StoreError};
use super::touch::{is_denied, touch_file};
use crate::digest::Digest;

/// Whether opening an object counts as a use for the LRU clock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// A real use: touch the object's mtime.
    Use,
    /// Maintenance (verification): leave the mtime alone.
    Inspect,
}

impl Store {
    /// Opens a blob for reading and marks it used (mtime, the LRU clock). The file's length is
    /// checked against the digest; its content is not (see [`Store::read_verified`]).
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        self.open_object(digest, Access::Use)
    }

    /// A blob's content.
    pub fn read(&self, digest: &Digest) -> Result<Vec<u8>> {
        let file = self.open_blob(digest)?;
        self.read_all(digest, file)
    }

    /// A blob's content, re-hashed and refused if it does not match `digest`.
    pub fn read_verified(&self, digest: &Digest) -> Result<Vec<u8>> {
        let data = self.read(digest)?;
        let actual = self.inner.function.hash_bytes(&data);
        if actual != *digest {
            let path = Some(self.object_path(digest));
            return Err(StoreError::DigestMismatch { expected: *digest, actual: Box::new(actual), path });
        }
        Ok(data)
    }

    /// The digest of what is stored under `digest`, re-hashed from disk (streamed). Does not count
    /// as a use. A stored object whose length is wrong is reported as [`StoreError::SizeMismatch`].
    pub fn rehash(&self, digest: &Digest) -> Result<Digest> {
        let file = self.open_object(digest, Access::Inspect)?;
        let path = self.object_path(digest);
        self.inner.function.hash_reader(file).at("read", &path)
    }

    /// Whether the object stored under `digest` still has that digest: `Ok(false)` for a corrupt
    /// object, an error if it is missing or unreadable.
    pub fn verify(&self, digest: &Digest) -> Result<bool> {
        match self.rehash(digest) {
            Ok(actual) => Ok(actual == *digest),
            Err(StoreError::SizeMismatch { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn open_object(&self, digest: &Digest, access: Access) -> Result<File> {
        let path = self.object_path(digest);
        let file = match File::open(&path) {
            Ok(file) => file,
            // REAPI servers behave as if the empty blob were always present: store it on demand.
            Err(e) if e.kind() == io::ErrorKind::NotFound && *digest == self.inner.empty => {
                self.put_bytes(&[])?;
                File::open(&path).at("open", &path)?
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StoreError::NotFound { digest: *digest, path });
            }
            Err(e) => return Err(StoreError::io("open", path, e)),
        };
        let metadata = file.metadata().at("stat", &path)?;
        if !metadata.is_file() {
            return Err(StoreError::io("read", path, io::Error::other("not a regular file")));
        }
        if metadata.len() != digest.size() {
            let path = Some(path);
            return Err(StoreError::SizeMismatch { expected: *digest, actual: metadata.len(), path });
        }
        if access == Access::Use {
            match touch_file(&file) {
                Err(e) if !is_denied(&e) => return Err(StoreError::io("touch", path, e)),
                _ => {}
            }
            self.inner.notify_used(std::slice::from_ref(digest));
        }
        Ok(file)
    }

    fn read_all(&self, digest: &Digest, mut file: File) -> Result<Vec<u8>> {
        let mut data = Vec::with_capacity(usize::try_from(digest.size()).unwrap_or(0));
        file.read_to_end(&mut data).at("read", &self.object_path(digest))?;
        if data.len() as u64 != digest.size() {
            // Changed between the length check and the read: only tampering can do that.
            let (expected, actual, path) = (*digest, data.len() as u64, Some(self.object_path(digest)));
            return Err(StoreError::SizeMismatch { expected, actual, path });
        }
        Ok(data)
    }
}
