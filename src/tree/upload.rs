//! Building Directory protos from a local directory and storing the whole tree.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use prost::Message;

use crate::digest::Digest;
use crate::proto::build::bazel::remote::execution::v2 as reapi;
use crate::store::Store;

use super::TreeError;
use super::walk::MAX_DEPTH;

/// Which node properties to record, as REAPI's `output_node_properties` names them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UploadOptions {
    /// Record each file's modification time (`mtime`).
    pub mtime: bool,
    /// Record each file's permission bits (`unix_mode`).
    pub unix_mode: bool,
}

/// Stores every file under `path` and the Directory messages describing it; returns the root's digest.
///
/// Names are sorted as REAPI requires; a file is executable when its owner may execute it; symlinks
/// are recorded with their target as is, never followed. Sockets, FIFOs and devices are refused.
pub fn upload_dir(store: &Store, path: &Path, options: UploadOptions) -> Result<Digest, TreeError> {
    upload(store, path, options, 0)
}

fn upload(store: &Store, path: &Path, options: UploadOptions, depth: usize) -> Result<Digest, TreeError> {
    if depth > MAX_DEPTH {
        return Err(TreeError::TooDeep { dir: path.display().to_string(), limit: MAX_DEPTH });
    }
    let mut directory = reapi::Directory::default();
    for entry in fs::read_dir(path).map_err(|e| io_error(path, e))? {
        let entry = entry.map_err(|e| io_error(path, e))?;
        let entry_path = entry.path();
        let name = entry.file_name().into_string().map_err(|_| TreeError::Unsupported {
            path: entry_path.display().to_string(),
            reason: "the name is not valid UTF-8, which REAPI requires".to_owned(),
        })?;
        let metadata = entry.metadata().map_err(|e| io_error(&entry_path, e))?;
        let file_type = metadata.file_type();
        if file_type.is_dir() {
            let digest = upload(store, &entry_path, options, depth + 1)?;
            directory.directories.push(reapi::DirectoryNode { name, digest: Some(to_proto(&digest)) });
        } else if file_type.is_file() {
            let digest = store.put_file(&entry_path, None)?;
            directory.files.push(reapi::FileNode {
                name,
                digest: Some(to_proto(&digest)),
                is_executable: metadata.permissions().mode() & 0o100 != 0,
                node_properties: node_properties(&metadata, options),
            });
        } else if file_type.is_symlink() {
            let target = fs::read_link(&entry_path).map_err(|e| io_error(&entry_path, e))?;
            let target = target.into_os_string().into_string().map_err(|_| TreeError::Unsupported {
                path: entry_path.display().to_string(),
                reason: "the symlink target is not valid UTF-8, which REAPI requires".to_owned(),
            })?;
            directory.symlinks.push(reapi::SymlinkNode { name, target, node_properties: None });
        } else {
            return Err(TreeError::Unsupported {
                path: entry_path.display().to_string(),
                reason: format!("{} can't be stored in a tree", special_kind(&file_type)),
            });
        }
    }
    directory.files.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    directory.directories.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    directory.symlinks.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    Ok(store.put_bytes(&directory.encode_to_vec())?)
}

fn node_properties(metadata: &fs::Metadata, options: UploadOptions) -> Option<reapi::NodeProperties> {
    if !options.mtime && !options.unix_mode {
        return None;
    }
    Some(reapi::NodeProperties {
        properties: Vec::new(),
        mtime: options.mtime.then(|| prost_types::Timestamp {
            seconds: metadata.mtime(),
            nanos: i32::try_from(metadata.mtime_nsec()).unwrap_or(0),
        }),
        unix_mode: options.unix_mode.then(|| metadata.mode() & 0o7777),
    })
}

/// The wire form of a digest.
pub fn to_proto(digest: &Digest) -> reapi::Digest {
    reapi::Digest { hash: digest.hash_hex(), size_bytes: digest.size_i64() }
}

fn special_kind(file_type: &fs::FileType) -> &'static str {
    if file_type.is_socket() {
        "a socket"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_block_device() || file_type.is_char_device() {
        "a device node"
    } else {
        "this kind of file"
    }
}

fn io_error(path: &Path, source: std::io::Error) -> TreeError {
    TreeError::Io { path: path.display().to_string(), source }
}
