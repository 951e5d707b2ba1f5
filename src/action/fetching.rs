//! [`FetchingCas`] (`--disable-localcas`): a decorator over [`EmbeddedCas`] for a server that is a
//! plain REAPI CAS (no LocalCAS): the input tree is fetched into the embedded store over
//! CAS/ByteStream before staging, staging and capture happen in-process, and every captured blob
//! the server lacks is uploaded back.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use prost::Message;

use super::cas::{ActionCas, DirectoryDigests, StageOptions};
use super::connection::{BATCH_LIMIT, CasConnection};
use super::embedded::EmbeddedCas;
use super::error::ActionError;
use crate::capture::{CapturedFile, OutputFormat, Properties};
use crate::digest::{Digest, DigestFunction};
use crate::grpc::request::parse_digest;
use crate::proto::build::bazel::remote::execution::v2 as reapi;
use crate::tree::Tree;

/// The embedded store, filled from and emptied into a remote CAS.
#[derive(Debug)]
pub struct FetchingCas {
    local: EmbeddedCas,
    remote: CasConnection,
}

impl FetchingCas {
    /// Works in `local` against `remote`.
    pub fn new(local: EmbeddedCas, remote: CasConnection) -> Self {
        Self { local, remote }
    }

    /// Copies the tree under `root` (Directory messages, then files) into the local store.
    fn fetch_tree(&self, root: &Digest) -> Result<(), ActionError> {
        let store = self.local.store();
        let function = store.digest_function();
        let mut files = HashSet::new();
        let mut level = vec![*root];
        let mut seen = HashSet::new();
        while !level.is_empty() {
            let mut next = Vec::new();
            for (digest, data) in self.fetch(&level, "directory")? {
                let directory = reapi::Directory::decode(data.as_slice())
                    .map_err(|e| ActionError::Invalid(format!("directory {digest} does not decode: {e}")))?;
                for node in &directory.directories {
                    let child = node_digest(node.digest.as_ref(), function)?;
                    if seen.insert(child) {
                        next.push(child);
                    }
                }
                for node in &directory.files {
                    files.insert(node_digest(node.digest.as_ref(), function)?);
                }
                store.put_bytes_expecting(&digest, &data)?;
            }
            level = next;
        }
        let missing: Vec<Digest> = files.into_iter().filter(|d| !store.contains(d)).collect();
        for (digest, data) in self.fetch(&missing, "input file")? {
            store.put_bytes_expecting(&digest, &data)?;
        }
        Ok(())
    }

    /// Reads `digests` from the server: small ones in batches, large ones streamed.
    fn fetch(&self, digests: &[Digest], what: &'static str) -> Result<Vec<(Digest, Vec<u8>)>, ActionError> {
        let mut blobs = Vec::with_capacity(digests.len());
        for batch in batches(digests) {
            match batch {
                [large] if large.size() as usize > BATCH_LIMIT => {
                    blobs.push((*large, self.remote.read_blob(large, what)?))
                }
                small => blobs.extend(self.remote.read_blobs(small, what)?),
            }
        }
        Ok(blobs)
    }

    /// Uploads those of `digests` (in the local store) the server lacks.
    fn upload_missing(&self, digests: &[Digest]) -> Result<(), ActionError> {
        let store = self.local.store();
        let missing = self.remote.find_missing(digests)?;
        for batch in batches(&missing) {
            match batch {
                [large] if large.size() as usize > BATCH_LIMIT => {
                    self.remote.upload_blob(store.read(large)?)?;
                }
                small => {
                    let blobs =
                        small.iter().map(|d| Ok((*d, store.read(d)?))).collect::<Result<_, ActionError>>()?;
                    self.remote.upload_batch(blobs)?;
                }
            }
        }
        Ok(())
    }
}

/// `digests` in groups of at most [`BATCH_LIMIT`] bytes; a larger blob is a group of its own.
fn batches(digests: &[Digest]) -> Vec<&[Digest]> {
    let mut groups = Vec::new();
    let (mut start, mut size) = (0, 0usize);
    for (i, digest) in digests.iter().enumerate() {
        let blob = digest.size() as usize;
        if i > start && size + blob > BATCH_LIMIT {
            groups.push(&digests[start..i]);
            (start, size) = (i, 0);
        }
        size += blob;
    }
    if start < digests.len() {
        groups.push(&digests[start..]);
    }
    groups
}

fn node_digest(digest: Option<&reapi::Digest>, function: DigestFunction) -> Result<Digest, ActionError> {
    let digest = digest
        .ok_or(ActionError::Digest { what: "tree node", source: crate::digest::DigestError::Missing })?;
    parse_digest(digest, function).map_err(|source| ActionError::Digest { what: "tree node", source })
}

impl ActionCas for FetchingCas {
    fn digest_function(&self) -> DigestFunction {
        self.remote.function()
    }

    fn read_blob(&mut self, digest: &Digest, what: &'static str) -> Result<Vec<u8>, ActionError> {
        self.remote.read_blob(digest, what)
    }

    fn stage(&mut self, root: &Digest, options: &StageOptions) -> Result<PathBuf, ActionError> {
        self.fetch_tree(root)?;
        self.local.stage(root, options)
    }

    fn unstage(&mut self) -> Result<(), ActionError> {
        self.local.unstage()
    }

    fn capture_directories(
        &mut self,
        paths: &[PathBuf],
        properties: Properties,
        format: OutputFormat,
    ) -> Result<Vec<DirectoryDigests>, ActionError> {
        // The root Directory is needed to list the tree's blobs, whatever the format asks.
        let captured = self.local.capture_directories(paths, properties, OutputFormat::TreeAndDirectory)?;
        let mut blobs = Vec::new();
        for digests in &captured {
            let root = digests.root_directory.expect("asked for");
            let tree =
                Tree::read(self.local.store(), &root).map_err(|e| ActionError::Invalid(e.to_string()))?;
            blobs.extend(tree.directories().map(|(d, _)| *d));
            blobs.extend(tree.file_digests());
            blobs.extend(digests.tree);
        }
        blobs.sort_unstable();
        blobs.dedup();
        self.upload_missing(&blobs)?;
        Ok(captured
            .into_iter()
            .map(|d| DirectoryDigests {
                tree: d.tree.filter(|_| format.tree()),
                root_directory: d.root_directory.filter(|_| format.root_directory()),
            })
            .collect())
    }

    fn capture_files(
        &mut self,
        paths: &[PathBuf],
        properties: Properties,
    ) -> Result<Vec<CapturedFile>, ActionError> {
        let captured = self.local.capture_files(paths, properties)?;
        let digests: Vec<Digest> = captured.iter().map(|f| f.digest).collect();
        self.upload_missing(&digests)?;
        Ok(captured)
    }

    fn upload_file(&mut self, path: &Path) -> Result<Digest, ActionError> {
        let digest = self.local.upload_file(path)?;
        self.upload_missing(&[digest])?;
        Ok(digest)
    }

    fn upload_blob(&mut self, data: Vec<u8>) -> Result<Digest, ActionError> {
        self.remote.upload_blob(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_stay_under_the_limit_and_large_blobs_go_alone() {
        let digest = |size: u64| Digest::from_raw(&[0; 32], size);
        let half = BATCH_LIMIT as u64 / 2;
        let digests = [digest(half), digest(half), digest(1), digest(3 * half), digest(1)];
        let sizes: Vec<Vec<u64>> =
            batches(&digests).iter().map(|b| b.iter().map(Digest::size).collect()).collect();
        assert_eq!(sizes, [vec![half, half], vec![1], vec![3 * half], vec![1]]);
        assert!(batches(&[]).is_empty());
    }
}
