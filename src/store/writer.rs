//! Streaming writes: content goes to a private temporary file and becomes an object only once its
//! digest is verified, by a hard link that never replaces an existing file. A reader therefore
//! sees a complete, correct blob or nothing, even if the writer is killed half-way; concurrent
//! writers of one blob all succeed and exactly one of them (the one whose link succeeds) adds its
//! size to the usage.
//!
//! Objects are not fsync'ed (neither are buildbox-casd's): a crash of the process cannot expose a
//! partial object, but a power loss may leave a linked object whose data never reached the disk.
//! `rebox cas verify` finds such objects.

use std::ffi::CStr;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::fstatat;

use super::error::{IoContext, Result, StoreError};
use super::fan_out::make_fan_out_dir;
use super::layout::RelativeObjectPath;
use super::tmp::TempFile;
use super::touch::{is_denied, touch_at};
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
    temp: TempFile,
}

impl Store {
    /// Starts writing a blob. With `expected`, the content must match it (hash and size); a stream
    /// longer than `expected` says is refused as soon as it overflows.
    pub fn writer(&self, expected: Option<Digest>) -> Result<BlobWriter> {
        let _writing = self.inner.writing.begin();
        if let Some(expected) = &expected {
            self.inner.function.check(expected)?;
            // Refuse early what cannot fit, rather than after receiving it all.
            self.inner.admit(expected.size(), || self.contains(expected))?;
        }
        let temp = self.inner.tmp.create_file(OBJECT_MODE)?;
        Ok(BlobWriter {
            store: Arc::clone(&self.inner),
            expected,
            hasher: self.inner.function.hasher(),
            temp,
        })
    }
}

impl Store {
    /// Publishes `data`, whose digest the caller has just computed from these very bytes, without
    /// hashing it again (a [`BlobWriter`] would).
    pub(super) fn write_hashed(&self, digest: &Digest, data: &[u8]) -> Result<()> {
        self.inner.admit(digest.size(), || self.contains(digest))?;
        let temp = self.inner.tmp.create_file(OBJECT_MODE)?;
        temp.file().write_all(data).at("write temporary file", temp.display_path())?;
        publish(&self.inner, digest, |dir, name| temp.link_at(dir, name))
    }
}

impl BlobWriter {
    /// Appends `data` to the blob.
    pub fn write_all(&mut self, data: &[u8]) -> Result<()> {
        let _writing = self.store.writing.begin();
        let written = self.hasher.size() + data.len() as u64;
        if let Some(expected) = self.expected.filter(|e| written > e.size()) {
            return Err(StoreError::SizeMismatch { expected, actual: written, path: None });
        }
        self.temp.file().write_all(data).at("write temporary file", self.temp.display_path())?;
        self.hasher.update(data);
        Ok(())
    }

    /// Bytes written so far.
    pub fn written(&self) -> u64 {
        self.hasher.size()
    }

    /// Verifies the content against the expected digest, if any, and publishes it as an object.
    /// Returns the blob's digest. Succeeds too if the object was already present.
    pub fn commit(self) -> Result<Digest> {
        let _writing = self.store.writing.begin();
        let actual = self.hasher.clone().finish();
        if let Some(expected) = self.expected {
            if actual.size() != expected.size() {
                return Err(StoreError::SizeMismatch { expected, actual: actual.size(), path: None });
            }
            if actual != expected {
                return Err(StoreError::DigestMismatch { expected, actual: Box::new(actual), path: None });
            }
        }
        // Dropping the temporary file afterwards leaves the content in the object alone.
        publish(&self.store, &actual, |dir, name| self.temp.link_at(dir, name))?;
        Ok(actual)
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

/// Publishes verified content as the object for `digest`: `link` gives it a name (relative to
/// `cas/objects`) and must fail with `EEXIST` if the name is taken. Never replaces a good object;
/// counts the object in the usage if this call created it.
pub(super) fn publish(
    store: &Inner,
    digest: &Digest,
    link: impl Fn(std::os::fd::BorrowedFd<'_>, &CStr) -> io::Result<()>,
) -> Result<()> {
    let relative = RelativeObjectPath::new(digest);
    let name = relative.as_c_str();
    let objects = store.objects_dir.as_fd();
    let object = || store.layout.object_path(digest);
    store.admit(digest.size(), || stored_size(store, name) == Some(digest.size()))?;
    for _ in 0..PUBLISH_ATTEMPTS {
        match link(objects, name) {
            Ok(()) => {
                store.add_usage(digest.size());
                store.notify_added(digest);
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                make_fan_out_dir(objects, relative.fan_out())
                    .map_err(|errno| StoreError::io("create directory", object(), errno.into()))?;
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let existing = stored_size(store, name);
                if existing == Some(digest.size()) {
                    // Already stored (by an earlier or a concurrent writer): this use counts as an
                    // access for the LRU clock.
                    store.notify_present(digest);
                    return match touch_at(objects, relative.as_bytes()) {
                        Err(e) if !is_denied(&e) => Err(StoreError::io("touch", object(), e)),
                        _ => Ok(()),
                    };
                }
                // Something else is in the way (a truncated or tampered object): remove it and
                // link again. Concurrent writers may race here; only one removal and one link win.
                if let Some(existing) = existing {
                    match nix::unistd::unlinkat(objects, name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
                        Ok(()) => store.sub_usage(existing),
                        Err(Errno::ENOENT) => {}
                        Err(errno) => {
                            return Err(StoreError::io("remove corrupt object", object(), errno.into()));
                        }
                    }
                }
            }
            Err(e) => return Err(StoreError::io("link object", object(), e)),
        }
    }
    Err(StoreError::io("link object", object(), io::Error::other("it kept changing under this writer")))
}

/// The length of the regular file at `name` under `cas/objects`, if there is one.
fn stored_size(store: &Inner, name: &CStr) -> Option<u64> {
    let stat = fstatat(store.objects_dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
    let is_file = nix::sys::stat::SFlag::from_bits_truncate(stat.st_mode) & nix::sys::stat::SFlag::S_IFMT
        == nix::sys::stat::SFlag::S_IFREG;
    is_file.then(|| u64::try_from(stat.st_size).unwrap_or(0))
}
