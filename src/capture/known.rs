//! Digests capture may take as known instead of hashing the file again.

use std::fs::Metadata;
use std::path::Path;

use crate::digest::Digest;

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
}
