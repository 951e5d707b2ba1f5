//! FetchTree and UploadTree, local-only until rebox talks to a remote CAS: both check that the
//! tree is valid and complete in the local CAS (FetchTree its files too when asked, UploadTree
//! always), answering NOT_FOUND for what is missing, as buildbox-casd without a remote does.
//! A tree with a bad entry is refused with INVALID_ARGUMENT naming it.

use tonic::Status;

use super::blobs::check_instance;
use crate::digest::Digest;
use crate::grpc::Shared;
use crate::grpc::blocking::blocking;
use crate::grpc::request::required_digest;
use crate::proto::build::buildgrid::*;
use crate::store::Store;
use crate::tree::{Tree, TreeError};

pub async fn fetch_tree(shared: &Shared, request: FetchTreeRequest) -> Result<FetchTreeResponse, Status> {
    check_instance(shared, &request.instance_name)?;
    let root = required_digest(request.root_digest.as_ref(), "root_digest", shared.store.digest_function())?;
    let store = shared.store.clone();
    let with_files = request.fetch_file_blobs;
    blocking(move || check_complete(&store, &root, with_files, "fetch")).await??;
    Ok(FetchTreeResponse {})
}

pub async fn upload_tree(shared: &Shared, request: UploadTreeRequest) -> Result<UploadTreeResponse, Status> {
    check_instance(shared, &request.instance_name)?;
    let root = required_digest(request.root_digest.as_ref(), "root_digest", shared.store.digest_function())?;
    let store = shared.store.clone();
    blocking(move || check_complete(&store, &root, true, "upload")).await??;
    Ok(UploadTreeResponse {})
}

/// Checks that the tree under `root` is valid and its directories (and, `with_files`, its files)
/// are all in `store`, which marks them used.
fn check_complete(store: &Store, root: &Digest, with_files: bool, verb: &str) -> Result<(), Status> {
    let tree = Tree::read(store, root).map_err(|error| match error {
        TreeError::Missing { .. } => {
            Status::not_found(format!("cannot {verb} tree {root}: {error}, and no remote CAS is configured"))
        }
        error => error.into(),
    })?;
    if !with_files {
        return Ok(());
    }
    let missing = store.find_missing(&tree.file_digests());
    let Some(first) = missing.first() else { return Ok(()) };
    let path = file_path(&tree, first).unwrap_or_else(|| "?".to_owned());
    Err(Status::not_found(format!(
        "cannot {verb} tree {root}: {} file blob(s) missing from the local CAS, such as {path:?} ({first}), \
         and no remote CAS is configured",
        missing.len()
    )))
}

/// The path (from the tree's root) of a file with content `digest`.
fn file_path(tree: &Tree, digest: &Digest) -> Option<String> {
    let hash = digest.hash_hex();
    tree.paths().into_iter().find_map(|(dir, directory)| {
        let file = directory.files.iter().find(|f| f.digest.as_ref().is_some_and(|d| d.hash == hash))?;
        Some(if dir == "." { file.name.clone() } else { format!("{dir}/{}", file.name) })
    })
}
