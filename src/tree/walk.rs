//! Reading a whole tree from the store, validating every directory once.

use std::collections::HashMap;
use std::sync::Arc;

use prost::Message;

use crate::digest::Digest;
use crate::proto::build::bazel::remote::execution::v2 as reapi;
use crate::store::{Store, StoreError};

use super::{TreeError, parse_digest, validate_directory};

/// Deeper nesting than this is refused: real trees stay far below it, and PATH_MAX (4096 bytes)
/// makes deeper ones unstageable anyway.
pub const MAX_DEPTH: usize = 1024;

/// A validated tree: every distinct Directory under `root`, decoded once.
#[derive(Debug, Clone)]
pub struct Tree {
    root: Digest,
    directories: HashMap<Digest, Arc<reapi::Directory>>,
}

impl Tree {
    /// Reads and validates the tree under `root` from `store`.
    ///
    /// Fails on the first problem, naming the directory's path from the root. Subtrees shared by
    /// several paths (identical directories) are read and checked once.
    pub fn read(store: &Store, root: &Digest) -> Result<Self, TreeError> {
        let function = store.digest_function();
        let mut directories = HashMap::new();
        let mut pending = vec![(".".to_owned(), *root, 0usize)];
        while let Some((path, digest, depth)) = pending.pop() {
            if directories.contains_key(&digest) {
                continue;
            }
            if depth > MAX_DEPTH {
                return Err(TreeError::TooDeep { dir: path, limit: MAX_DEPTH });
            }
            let directory = read_directory(store, &path, &digest)?;
            for (name, child) in validate_directory(&directory, &path, function)? {
                pending.push((join(&path, &name), child, depth + 1));
            }
            directories.insert(digest, Arc::new(directory));
        }
        Ok(Self { root: *root, directories })
    }

    /// The root directory's digest.
    pub fn root(&self) -> Digest {
        self.root
    }

    /// The root Directory message.
    pub fn root_directory(&self) -> &reapi::Directory {
        &self.directories[&self.root]
    }

    /// The Directory message with this digest, if it is part of the tree.
    pub fn directory(&self, digest: &Digest) -> Option<&reapi::Directory> {
        self.directories.get(digest).map(|d| &**d)
    }

    /// The Directory message with this digest, shared.
    pub fn directory_arc(&self, digest: &Digest) -> Option<Arc<reapi::Directory>> {
        self.directories.get(digest).cloned()
    }

    /// Every distinct Directory of the tree, in no particular order.
    pub fn directories(&self) -> impl Iterator<Item = (&Digest, &reapi::Directory)> {
        self.directories.iter().map(|(digest, directory)| (digest, &**directory))
    }

    /// Every directory path of the tree with its Directory, parents before children, in name order.
    pub fn paths(&self) -> Vec<(String, &reapi::Directory)> {
        let mut out = Vec::new();
        let mut pending = vec![(".".to_owned(), self.root_directory())];
        while let Some((path, directory)) = pending.pop() {
            for node in directory.directories.iter().rev() {
                // Validation guarantees every child digest parses and is present.
                if let Some(child) = parse_digest(node.digest.as_ref()).and_then(|d| self.directory(&d)) {
                    pending.push((join(&path, &node.name), child));
                }
            }
            out.push((path, directory));
        }
        out
    }

    /// The digests of every file in the tree, each once.
    pub fn file_digests(&self) -> Vec<Digest> {
        let mut digests: Vec<Digest> = self
            .directories
            .values()
            .flat_map(|d| &d.files)
            .filter_map(|f| parse_digest(f.digest.as_ref()))
            .collect();
        digests.sort_unstable();
        digests.dedup();
        digests
    }
}

pub(super) fn read_directory(
    store: &Store,
    path: &str,
    digest: &Digest,
) -> Result<reapi::Directory, TreeError> {
    let bytes = match store.read(digest) {
        Ok(bytes) => bytes,
        Err(StoreError::NotFound { .. }) => {
            return Err(TreeError::Missing { dir: path.to_owned(), digest: *digest });
        }
        Err(error) => return Err(error.into()),
    };
    reapi::Directory::decode(bytes.as_slice()).map_err(|source| TreeError::Decode {
        dir: path.to_owned(),
        digest: *digest,
        source,
    })
}

/// `parent/name`, with the root written `.`.
pub(crate) fn join(parent: &str, name: &str) -> String {
    if parent == "." { name.to_owned() } else { format!("{parent}/{name}") }
}
