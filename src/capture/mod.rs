//! Capture: importing directories and files from the filesystem into the CAS, as LocalCAS's
//! CaptureTree and CaptureFiles do, with digests equal to buildbox-casd's for the same input.
//!
//! The rules, learnt from buildbox-casd 1.4.25 (and checked against it by `tests/capture_oracle.rs`):
//! a file is executable when its owner may execute it; names are sorted by their bytes; symlinks
//! are recorded with their target as is, never followed, and carry no node properties; `mtime`
//! is recorded to the microsecond (truncated) and `unix_mode` as the mode's low twelve bits less
//! `unix_mode_mask`, both on files and on directories; every Directory message is stored, and a
//! `Tree` message lists each distinct subdirectory once, ordered by digest. Unlike buildbox-casd,
//! which silently drops them (or, for CaptureFiles of a FIFO, hangs), sockets, FIFOs and devices
//! are refused with an error naming them.
//!
//! Files are hashed and stored in parallel (rayon). A file a [`KnownDigests`] vouches for is not
//! read at all; with `move_files`, files are moved into the store rather than copied.

mod directory;
mod error;
mod file;
mod known;
mod options;
mod resolve;

pub use error::CaptureError;
pub use file::CapturedFile;
pub use known::{KnownDigests, KnownDirectory};
pub use options::{CaptureOptions, OutputFormat, Properties};
pub use resolve::Target;

use std::fs::File;
use std::path::Path;

use prost::Message;

use crate::digest::Digest;
use crate::proto::build::bazel::remote::execution::v2 as reapi;
use crate::store::Store;
use directory::Walk;

/// A captured directory: its root Directory's digest, and its Tree message's when one was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapturedDirectory {
    /// The digest of the root `Directory` message (always stored, whatever the format).
    pub root_directory: Digest,
    /// The digest of the stored `Tree` message, if the format asks for one.
    pub tree: Option<Digest>,
}

/// Captures the directory `target` names into `store` (CaptureTree for one path).
pub fn capture_tree(
    store: &Store,
    target: &Target,
    options: &CaptureOptions,
    format: OutputFormat,
    known: Option<&dyn KnownDigests>,
) -> Result<CapturedDirectory, CaptureError> {
    let dir = target.open_dir()?;
    capture_open_directory(store, &dir, &target.host_path(), options, format, known)
}

/// Captures the directory at `path` (followed if it is a symlink) into `store`; returns the
/// root Directory's digest. For local callers; clients' paths go through [`capture_tree`].
pub fn capture_directory(
    store: &Store,
    path: &Path,
    options: &CaptureOptions,
) -> Result<Digest, CaptureError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir =
        File::options().read(true).custom_flags(libc::O_DIRECTORY).open(path).map_err(|source| {
            CaptureError::Io { action: "open", path: path.display().to_string(), source }
        })?;
    let captured = capture_open_directory(store, &dir, path, options, OutputFormat::DirectoryOnly, None)?;
    Ok(captured.root_directory)
}

/// Captures the regular file `target` names into `store` (CaptureFiles for one path).
pub fn capture_file(
    store: &Store,
    target: &Target,
    options: &CaptureOptions,
    known: Option<&dyn KnownDigests>,
) -> Result<CapturedFile, CaptureError> {
    let (file, metadata) = target.open_file()?;
    let (parent, name) = target.parent_and_name();
    let name = name.expect("open_file only opens targets that have a name");
    file::capture_file(store, options, known, (parent, name), &target.host_path(), file, &metadata)
}

fn capture_open_directory(
    store: &Store,
    dir: &File,
    host_path: &Path,
    options: &CaptureOptions,
    format: OutputFormat,
    known: Option<&dyn KnownDigests>,
) -> Result<CapturedDirectory, CaptureError> {
    let walk = Walk::new(store, options, known, format.tree());
    let (root_directory, root) = walk.directory(dir, host_path, 0)?;
    let tree = if format.tree() {
        let tree = tree_message(root, walk.into_subdirectories());
        let digest = store.put_bytes(&tree.encode_to_vec()).map_err(|source| CaptureError::Store {
            path: host_path.display().to_string(),
            source: Box::new(source),
        })?;
        Some(digest)
    } else {
        None
    };
    Ok(CapturedDirectory { root_directory, tree })
}

/// The Tree message of `root`: each distinct subdirectory once, in digest order (as
/// buildbox-casd writes it, so that Tree digests are equal too).
fn tree_message(root: reapi::Directory, mut subdirectories: Vec<(Digest, reapi::Directory)>) -> reapi::Tree {
    subdirectories.sort_unstable_by_key(|a| a.0);
    subdirectories.dedup_by(|a, b| a.0 == b.0);
    reapi::Tree { root: Some(root), children: subdirectories.into_iter().map(|(_, d)| d).collect() }
}
