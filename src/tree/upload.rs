//! Building a tree from a local directory: a thin front for [`crate::capture`], which is the one
//! implementation (the rules buildbox-casd follows, parallel hashing, symlinks never followed).

use std::path::Path;

use crate::capture::{CaptureError, CaptureOptions, Properties, capture_directory};
use crate::digest::Digest;
use crate::proto::build::bazel::remote::execution::v2 as reapi;
use crate::store::Store;

/// Which node properties to record, as REAPI's `output_node_properties` names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadOptions {
    /// Record each file's and directory's modification time (`mtime`), to the microsecond.
    pub mtime: bool,
    /// Record each file's and directory's permission bits (`unix_mode`).
    pub unix_mode: bool,
}

/// Stores every file under `path` and the Directory messages describing it; returns the root's
/// digest, the same buildbox-casd's CaptureTree gives. Sockets, FIFOs and devices are refused.
pub fn upload_dir(store: &Store, path: &Path, options: UploadOptions) -> Result<Digest, CaptureError> {
    let properties = Properties { mtime: options.mtime, unix_mode: options.unix_mode, unix_mode_mask: 0 };
    capture_directory(store, path, &CaptureOptions { properties, move_files: false })
}

/// The wire form of a digest.
pub fn to_proto(digest: &Digest) -> reapi::Digest {
    reapi::Digest { hash: digest.hash_hex(), size_bytes: digest.size_i64() }
}
