//! One regular file: opened without following symlinks, described as a FileNode, its content
//! stored (or its digest taken as known).

use std::cell::RefCell;
use std::ffi::CStr;
use std::fs::{File, Metadata};
use std::io::{self, Read, Seek};
use std::os::fd::BorrowedFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, SFlag};

use super::{CaptureError, CaptureOptions, KnownDigests, Properties};
use crate::digest::Digest;
use crate::proto::build::bazel::remote::execution::v2 as reapi;
use crate::store::{Store, StoreError};

/// Files up to this size are read whole into memory, hashed and stored from there (one read);
/// larger ones are hashed streaming, and read again only if the store lacks them.
const IN_MEMORY_MAX: u64 = 4 * 1024 * 1024;

/// Read size for streamed hashing.
const CHUNK: usize = 256 * 1024;

/// With `move_files`, smaller files are copied all the same: moving one costs more metadata
/// operations (rename, chmod, utimes, link, unlink) than writing a few kilobytes saves.
const MOVE_MIN: u64 = 32 * 1024;

thread_local! {
    /// Each capture thread's buffer for whole small files (reused: no allocation per file).
    static BUFFER: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A captured file: what a FileNode (or a CaptureFiles response) says about it.
#[derive(Debug, Clone, PartialEq)]
pub struct CapturedFile {
    /// The content's digest.
    pub digest: Digest,
    /// Whether its owner may execute it.
    pub is_executable: bool,
    /// The recorded node properties, if any were asked for.
    pub node_properties: Option<reapi::NodeProperties>,
}

/// Opens `name` in `dir` to read, without following a symlink, blocking on a FIFO or becoming
/// the controlling terminal; fails unless it is a regular file. `path` names it in errors.
pub(crate) fn open_regular(
    dir: BorrowedFd<'_>,
    name: &CStr,
    path: &str,
) -> Result<(File, Metadata), CaptureError> {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC;
    let fd = openat(dir, name, flags, Mode::empty()).map_err(|errno| match errno {
        Errno::ELOOP => CaptureError::Symlink { path: path.to_owned(), root: None },
        Errno::ENXIO => CaptureError::Special { path: path.to_owned(), kind: "a socket" },
        errno => CaptureError::Io { action: "open", path: path.to_owned(), source: errno.into() },
    })?;
    let file = File::from(fd);
    let metadata = file.metadata().map_err(|source| CaptureError::Io {
        action: "stat",
        path: path.to_owned(),
        source,
    })?;
    if !metadata.is_file() {
        // Replaced by something else since the directory was read.
        let kind = SFlag::from_bits_truncate(metadata.mode()) & SFlag::S_IFMT;
        return Err(CaptureError::Special { path: path.to_owned(), kind: kind_of(kind) });
    }
    Ok((file, metadata))
}

/// What kind of special file a file type is, for messages.
pub(crate) fn kind_of(kind: SFlag) -> &'static str {
    match kind {
        SFlag::S_IFSOCK => "a socket",
        SFlag::S_IFIFO => "a FIFO",
        SFlag::S_IFCHR => "a character device",
        SFlag::S_IFBLK => "a block device",
        SFlag::S_IFDIR => "a directory",
        SFlag::S_IFLNK => "a symbolic link",
        _ => "a file of unknown type",
    }
}

/// Captures the opened regular file `file` (named `name` in `dir`, at `host_path`): its digest
/// comes from `known` if it knows it, else from its content, which is stored (moved in when
/// `options.move_files` allows).
pub(crate) fn capture_file(
    store: &Store,
    options: &CaptureOptions,
    known: Option<&dyn KnownDigests>,
    location: (BorrowedFd<'_>, &CStr),
    host_path: &Path,
    file: File,
    metadata: &Metadata,
) -> Result<CapturedFile, CaptureError> {
    let path = || host_path.display().to_string();
    let digest = match known.and_then(|k| k.lookup(host_path, metadata)) {
        Some(digest) => {
            // Known, but the store must hold it (expiry may have taken it since staging).
            if store.find_missing_to_upload(&[digest]).is_empty() {
                digest
            } else {
                store_content(store, file, metadata, &path)?
            }
        }
        None if options.move_files && movable(metadata) => {
            match store.adopt(location.0, location.1, &file).map_err(|e| store_error(e, &path))? {
                Some(digest) => digest,
                None => store_content(store, file, metadata, &path)?,
            }
        }
        None => store_content(store, file, metadata, &path)?,
    };
    Ok(CapturedFile {
        digest,
        is_executable: metadata.mode() & 0o100 != 0,
        node_properties: node_properties(metadata, &options.properties),
    })
}

/// Whether moving the file into the store pays ([`MOVE_MIN`]) and is safe: a single link (no
/// other name could change the object later), owned by this process's user (so it can be made
/// read-only).
fn movable(metadata: &Metadata) -> bool {
    metadata.len() >= MOVE_MIN && metadata.nlink() == 1 && metadata.uid() == nix::unistd::geteuid().as_raw()
}

/// Stores the content of `file` (copying it), returning its digest.
fn store_content(
    store: &Store,
    mut file: File,
    metadata: &Metadata,
    path: &dyn Fn() -> String,
) -> Result<Digest, CaptureError> {
    let read_error = |source| CaptureError::Io { action: "read", path: path(), source };
    if metadata.len() <= IN_MEMORY_MAX {
        return BUFFER.with_borrow_mut(|buffer| {
            buffer.clear();
            file.read_to_end(buffer).map_err(read_error)?;
            store.put_bytes(buffer).map_err(|e| store_error(e, path))
        });
    }
    let mut hasher = store.digest_function().hasher();
    let mut chunk = vec![0u8; CHUNK];
    loop {
        match file.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => hasher.update(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_error(e)),
        }
    }
    let digest = hasher.finish();
    if store.find_missing_to_upload(&[digest]).is_empty() {
        return Ok(digest);
    }
    file.rewind().map_err(read_error)?;
    store.put_reader(file, Some(&digest)).map_err(|e| store_error(e, path))
}

fn store_error(error: StoreError, path: &dyn Fn() -> String) -> CaptureError {
    match error {
        StoreError::DigestMismatch { .. } | StoreError::SizeMismatch { .. } => {
            CaptureError::Changed { path: path() }
        }
        StoreError::Input { source } => CaptureError::Io { action: "read", path: path(), source },
        source => CaptureError::Store { path: path(), source: Box::new(source) },
    }
}

/// The node properties `selected` asks for, as buildbox-casd records them: `mtime` truncated to
/// the microsecond, `unix_mode` as the permission bits (with setuid, setgid and sticky) minus the
/// mask. `None` when none is asked for.
pub(crate) fn node_properties(metadata: &Metadata, selected: &Properties) -> Option<reapi::NodeProperties> {
    if !selected.any() {
        return None;
    }
    Some(reapi::NodeProperties {
        properties: Vec::new(),
        mtime: selected.mtime.then(|| prost_types::Timestamp {
            seconds: metadata.mtime(),
            // Nanoseconds are in [0, 1e9), so this fits; truncated to microseconds like
            // buildbox-casd, whose digests rebox's must equal.
            nanos: (metadata.mtime_nsec() / 1000 * 1000) as i32,
        }),
        unix_mode: selected.unix_mode.then(|| metadata.mode() & 0o7777 & !selected.unix_mode_mask),
    })
}
