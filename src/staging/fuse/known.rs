//! What a FUSE stage knows without reading anything: the digest of a file still as staged (its
//! content is still the CAS object), and the Directory digest of a directory whose entries the
//! action never looked at (nothing below it can have changed).

use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use prost::Message;

use super::fs::Shared;
use super::node::{Content, Dir, Kind};
use crate::digest::{Digest, DigestFunction};
use crate::proto::build::bazel::remote::execution::v2 as reapi;
use crate::staging::build::parse_digest;
use crate::tree::DirectorySource;

/// An untouched staged directory, as capture would record it.
#[derive(Debug, Clone)]
pub struct Subtree {
    /// Its Directory digest.
    pub digest: Digest,
    /// It and every directory below it, with their messages.
    pub directories: Vec<(Digest, reapi::Directory)>,
    /// The digests of every file below it.
    pub files: Vec<Digest>,
}

/// The known-digest lookup of one live FUSE stage.
#[derive(Debug, Clone)]
pub struct FuseKnown {
    shared: Arc<Shared>,
    device: u64,
    stage: PathBuf,
    /// Whether a staged Directory, with everything below it, carries no node properties and is
    /// encoded as capture encodes (only then does capture, asked for no properties, record the
    /// same message).
    plain: Arc<Mutex<HashMap<Digest, bool>>>,
}

impl FuseKnown {
    pub(super) fn new(shared: Arc<Shared>, device: u64, stage: PathBuf) -> Self {
        Self { shared, device, stage, plain: Arc::default() }
    }

    /// The stage directory.
    pub fn stage(&self) -> &Path {
        &self.stage
    }

    /// The digest of the file with `metadata` (its `lstat` through the mount), if its content is
    /// still the staged blob.
    pub fn file(&self, metadata: &Metadata) -> Option<Digest> {
        if metadata.dev() != self.device || !metadata.is_file() {
            return None;
        }
        let model = self.shared.model();
        match model.node(metadata.ino()).ok()?.kind {
            Kind::File(Content::Cas(digest)) if digest.size() == metadata.len() => Some(digest),
            _ => None,
        }
    }

    /// The staged directory with `metadata`, if the action never read its entries and it is
    /// recorded the same way by a capture asking for no node properties.
    pub fn directory(&self, metadata: &Metadata) -> Option<Subtree> {
        if metadata.dev() != self.device || !metadata.is_dir() {
            return None;
        }
        let (digest, tree, function) = {
            let model = self.shared.model();
            match &model.node(metadata.ino()).ok()?.kind {
                Kind::Dir(Dir { entries: None, source: Some(digest), .. }) => {
                    (*digest, model.tree.clone(), model.store.digest_function())
                }
                _ => return None,
            }
        };
        if !self.is_plain(tree.as_ref(), function, &digest) {
            return None;
        }
        let mut subtree = Subtree { digest, directories: Vec::new(), files: Vec::new() };
        collect(tree.as_ref(), &digest, &mut subtree)?;
        Some(subtree)
    }

    fn is_plain(&self, tree: &dyn DirectorySource, function: DigestFunction, digest: &Digest) -> bool {
        if let Some(&plain) = self.plain.lock().unwrap_or_else(|p| p.into_inner()).get(digest) {
            return plain;
        }
        let Some(directory) = tree.directory(digest) else { return false };
        // Capture re-encodes the messages it records: a staged message in another encoding
        // (unknown fields, say) would be recorded under another digest.
        let plain = function.hash_bytes(&directory.encode_to_vec()) == *digest
            && directory.node_properties.is_none()
            && directory.files.iter().all(|f| f.node_properties.is_none())
            && directory.symlinks.iter().all(|s| s.node_properties.is_none())
            && directory
                .directories
                .iter()
                .all(|d| parse_digest(d.digest.as_ref()).is_some_and(|d| self.is_plain(tree, function, &d)));
        self.plain.lock().unwrap_or_else(|p| p.into_inner()).insert(*digest, plain);
        plain
    }
}

fn collect(tree: &dyn DirectorySource, digest: &Digest, subtree: &mut Subtree) -> Option<()> {
    let directory = tree.directory(digest)?;
    subtree.directories.push((*digest, (*directory).clone()));
    subtree.files.extend(directory.files.iter().filter_map(|f| parse_digest(f.digest.as_ref())));
    for child in &directory.directories {
        collect(tree, &parse_digest(child.digest.as_ref())?, subtree)?;
    }
    Some(())
}
