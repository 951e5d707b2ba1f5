//! Digests capture may take as known instead of hashing the file again.

use std::fs::Metadata;
use std::path::Path;

use crate::digest::Digest;
use crate::proto::build::bazel::remote::execution::v2 as reapi;

/// A directory whose capture is known without walking it (say, one of a lazy stage that the
/// action never looked into): recorded as is, when no node properties are asked for.
#[derive(Debug, Clone)]
pub struct KnownDirectory {
    /// Its Directory digest.
    pub digest: Digest,
    /// It and every directory below it, with their messages (for a Tree).
    pub directories: Vec<(Digest, reapi::Directory)>,
    /// Every file blob below it (all must be in the store for it to be used).
    pub files: Vec<Digest>,
}

/// A source of digests for files whose content is already known, such as files of a live stage
/// that still are exactly what was staged. Capture asks it about every regular file before
/// reading it; `None` means "hash it".
///
/// `path` is the file's absolute path on the host (as the kernel names it, with every symlink of
/// the captured path resolved), `metadata` its `lstat` (taken from the opened file, which was
/// opened without following symlinks). An answer must be exact: a wrong digest is recorded as is.
pub trait KnownDigests: Sync {
    /// The digest of the file at `path`, if it is known without reading the file.
    fn lookup(&self, path: &Path, metadata: &Metadata) -> Option<Digest>;

    /// The directory at `path` (`metadata` from `fstat` of it, opened without following a
    /// symlink), if its capture with no node properties is known without reading it.
    fn directory(&self, _path: &Path, _metadata: &Metadata) -> Option<KnownDirectory> {
        None
    }
}
