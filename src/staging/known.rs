//! Known digests for capture: which files of a live stage are still exactly what was staged.
//!
//! For an overlay stage the answer is exact and cheap. With `redirect_dir=off` and
//! `metacopy=off`, a path of the stage shows the farm's file at the same path unless the upper dir
//! has an entry there (a write, chmod, truncate, rename or re-creation all put one there, since
//! overlayfs copies a file up before changing it). So a file is unchanged iff the upper dir has
//! nothing at its path and it is the farm's inode at that path; its digest is then the one the
//! tree gives that path. Two `lstat`s per file, no hashing.
//!
//! For a FUSE stage the filesystem itself knows: a file whose content is still its CAS object
//! keeps its digest, and a directory the action never looked into keeps its Directory digest
//! (see `fuse/known.rs`).
//!
//! Copied stages (no overlay) offer no known digests: nothing cheap proves a copy unchanged
//! (timestamps are too coarse to trust), so capture hashes those files.

use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::build::parse_digest;
use super::fuse::FuseKnown;
pub use super::fuse::known::Subtree;
use crate::digest::Digest;
use crate::tree::Tree;

/// The lookup of one live overlay or FUSE stage.
#[derive(Debug, Clone)]
pub struct KnownDigests {
    stage: PathBuf,
    source: Source,
}

#[derive(Debug, Clone)]
enum Source {
    Overlay(Overlay),
    Fuse(FuseKnown),
}

#[derive(Debug, Clone)]
struct Overlay {
    upper: PathBuf,
    farm: PathBuf,
    tree: Arc<Tree>,
}

impl KnownDigests {
    pub(crate) fn new(stage: PathBuf, upper: PathBuf, farm: PathBuf, tree: Arc<Tree>) -> Self {
        Self { stage, source: Source::Overlay(Overlay { upper, farm, tree }) }
    }

    pub(crate) fn fuse(known: FuseKnown) -> Self {
        Self { stage: known.stage().to_owned(), source: Source::Fuse(known) }
    }

    /// The stage directory this lookup answers for.
    pub fn stage(&self) -> &Path {
        &self.stage
    }

    /// The digest of the file at `path` (absolute, under the stage; `metadata` from its `lstat`),
    /// if it is a staged file not changed since staging. `None` means "hash it".
    pub fn get(&self, path: &Path, metadata: &Metadata) -> Option<Digest> {
        match &self.source {
            Source::Overlay(overlay) => overlay.get(&self.stage, path, metadata),
            Source::Fuse(fuse) => fuse.file(metadata),
        }
    }

    /// The directory at `path` (`metadata` from its `lstat`), if it is a staged directory that
    /// nothing has changed below and that carries no node properties: a capture asking for none
    /// records it with the same digest. Only FUSE stages know this.
    pub fn directory(&self, metadata: &Metadata) -> Option<Subtree> {
        match &self.source {
            Source::Overlay(_) => None,
            Source::Fuse(fuse) => fuse.directory(metadata),
        }
    }
}

impl Overlay {
    fn get(&self, stage: &Path, path: &Path, metadata: &Metadata) -> Option<Digest> {
        if !metadata.is_file() {
            return None;
        }
        let relative = path.strip_prefix(stage).ok()?;
        let digest = self.tree_digest(relative)?;
        if metadata.len() != digest.size() {
            return None;
        }
        match std::fs::symlink_metadata(self.upper.join(relative)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            _ => return None, // Copied up (changed), or the upper dir can't tell: hash it.
        }
        let farm = std::fs::symlink_metadata(self.farm.join(relative)).ok()?;
        (farm.ino() == metadata.ino() && farm.is_file()).then_some(digest)
    }

    /// The digest the tree gives the file at `relative`, walking the Directory messages.
    fn tree_digest(&self, relative: &Path) -> Option<Digest> {
        let mut directory = self.tree.root_directory();
        let mut components = relative.components().peekable();
        while let Some(component) = components.next() {
            let Component::Normal(name) = component else { return None };
            let name = name.to_str()?;
            if components.peek().is_none() {
                // Names are validated sorted and unique: binary search.
                let i = directory.files.binary_search_by(|f| f.name.as_str().cmp(name)).ok()?;
                return parse_digest(directory.files[i].digest.as_ref());
            }
            let i = directory.directories.binary_search_by(|d| d.name.as_str().cmp(name)).ok()?;
            directory = self.tree.directory(&parse_digest(directory.directories[i].digest.as_ref())?)?;
        }
        None
    }
}
