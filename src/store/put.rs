//! Storing whole blobs: from memory, from a reader, from a file.

use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use super::Store;
use super::error::{IoContext, Result, StoreError};
use crate::digest::Digest;

/// Read size when copying a stream into the store.
const COPY_CHUNK: usize = 256 * 1024;

impl Store {
    /// Stores `data`; returns its digest. Content already stored is not written again.
    pub fn put_bytes(&self, data: &[u8]) -> Result<Digest> {
        let _writing = self.inner.writing.begin();
        let digest = self.inner.function.hash_bytes(data);
        self.put_hashed(&digest, data)?;
        Ok(digest)
    }

    /// Stores `data`, which must have digest `expected` (else nothing is stored).
    pub fn put_bytes_expecting(&self, expected: &Digest, data: &[u8]) -> Result<()> {
        let _writing = self.inner.writing.begin();
        self.inner.function.check(expected)?;
        if data.len() as u64 != expected.size() {
            return Err(StoreError::SizeMismatch {
                expected: *expected,
                actual: data.len() as u64,
                path: None,
            });
        }
        let actual = self.inner.function.hash_bytes(data);
        if actual != *expected {
            return Err(StoreError::DigestMismatch {
                expected: *expected,
                actual: Box::new(actual),
                path: None,
            });
        }
        self.put_hashed(expected, data)
    }

    /// Stores everything `reader` yields (streamed, never buffered whole); with `expected`, the
    /// content must match it. Returns the digest.
    pub fn put_reader(&self, reader: impl Read, expected: Option<&Digest>) -> Result<Digest> {
        self.copy_in(reader, expected, |source| StoreError::Input { source })
    }

    /// Stores a copy of the file at `path`; with `expected`, its content must match it.
    pub fn put_file(&self, path: &Path, expected: Option<&Digest>) -> Result<Digest> {
        let file = File::open(path).at("open", path)?;
        self.copy_in(file, expected, |source| StoreError::io("read", path, source))
    }

    /// Stores `data`, just hashed to `digest` by the caller, unless the object is present.
    fn put_hashed(&self, digest: &Digest, data: &[u8]) -> Result<()> {
        if self.touch_if_present(digest) {
            return Ok(());
        }
        self.write_hashed(digest, data)
    }

    fn copy_in(
        &self,
        mut reader: impl Read,
        expected: Option<&Digest>,
        read_error: impl Fn(io::Error) -> StoreError,
    ) -> Result<Digest> {
        let _writing = self.inner.writing.begin();
        let mut writer = self.writer(expected.copied())?;
        let mut buffer = vec![0u8; COPY_CHUNK];
        loop {
            match reader.read(&mut buffer) {
                Ok(0) => return writer.commit(),
                Ok(n) => writer.write_all(&buffer[..n])?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(read_error(e)),
            }
        }
    }
}
