//! Where a stage gets a tree's Directory messages from: a [`Tree`] read whole, or a
//! [`LazyTree`] that reads each directory from the store the first time it is asked for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::digest::Digest;
use crate::proto::build::bazel::remote::execution::v2 as reapi;
use crate::store::Store;

use super::walk::{join, read_directory};
use super::{Tree, TreeError, parse_digest, validate_directory};

/// A tree's Directory messages, by digest.
pub trait DirectorySource: std::fmt::Debug + Send + Sync {
    /// The root directory's digest.
    fn root(&self) -> Digest;

    /// The Directory with this digest, if it is part of the tree and can be had.
    fn directory(&self, digest: &Digest) -> Option<Arc<reapi::Directory>>;
}

impl DirectorySource for Tree {
    fn root(&self) -> Digest {
        Tree::root(self)
    }

    fn directory(&self, digest: &Digest) -> Option<Arc<reapi::Directory>> {
        self.directory_arc(digest)
    }
}

/// A tree known to be valid as a whole (validated whole by an earlier run, see
/// `staging::remembered`) whose directories are read from the store only when asked for. Each
/// one is still checked as it is read ([`validate_directory`]): what a stage serves never rests
/// on the earlier check alone.
#[derive(Debug)]
pub struct LazyTree {
    root: Digest,
    store: Store,
    read: Mutex<HashMap<Digest, Arc<reapi::Directory>>>,
}

impl LazyTree {
    /// The tree under `root`, whose root directory is read (and checked) now.
    pub fn open(store: Store, root: Digest) -> Result<Self, TreeError> {
        let directory = read_checked(&store, ".", &root)?;
        let read = Mutex::new(HashMap::from([(root, Arc::new(directory))]));
        Ok(Self { root, store, read })
    }
}

impl DirectorySource for LazyTree {
    fn root(&self) -> Digest {
        self.root
    }

    fn directory(&self, digest: &Digest) -> Option<Arc<reapi::Directory>> {
        if let Some(found) = self.read.lock().unwrap_or_else(|p| p.into_inner()).get(digest) {
            return Some(found.clone());
        }
        // Read outside the lock: another thread asking for the same one reads it too, harmlessly.
        match read_checked(&self.store, &digest.to_string(), digest) {
            Ok(directory) => {
                let directory = Arc::new(directory);
                let mut read = self.read.lock().unwrap_or_else(|p| p.into_inner());
                Some(read.entry(*digest).or_insert(directory).clone())
            }
            Err(error) => {
                tracing::warn!(root = %self.root, %error, "cannot serve a directory of a remembered tree");
                None
            }
        }
    }
}

fn read_checked(store: &Store, dir: &str, digest: &Digest) -> Result<reapi::Directory, TreeError> {
    let directory = read_directory(store, dir, digest)?;
    validate_directory(&directory, dir, store.digest_function())?;
    Ok(directory)
}

/// The first path (depth first, in name order) at which a file with content `digest`, or a
/// directory with that Directory digest, appears in the tree, reading directories from `source`
/// as it goes.
pub fn first_path_of(source: &dyn DirectorySource, digest: &Digest) -> Option<String> {
    fn walk(
        source: &dyn DirectorySource,
        path: &str,
        at: &Digest,
        wanted: &Digest,
        depth: usize,
    ) -> Option<String> {
        let directory = source.directory(at)?;
        if let Some(file) =
            directory.files.iter().find(|f| parse_digest(f.digest.as_ref()).as_ref() == Some(wanted))
        {
            return Some(join(path, &file.name));
        }
        if depth >= super::MAX_DEPTH {
            return None;
        }
        directory.directories.iter().find_map(|node| {
            let child = parse_digest(node.digest.as_ref())?;
            let child_path = join(path, &node.name);
            if child == *wanted {
                return Some(child_path);
            }
            walk(source, &child_path, &child, wanted, depth + 1)
        })
    }
    walk(source, ".", &source.root(), digest, 0)
}
