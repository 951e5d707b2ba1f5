//! Writing an ActionResult's outputs from the embedded store into a host directory (what
//! `rebox exec` does with them): files with their executable bit, directories from their root
//! Directory (read and validated as a [`Tree`]), symlinks as symlinks. An existing file or
//! symlink at an output path is replaced; an existing directory is merged into.

use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use super::error::ActionError;
use super::paths::normalise;
use crate::digest::Digest;
use crate::grpc::request::parse_digest;
use crate::proto::build::bazel::remote::execution::v2 as reapi;
use crate::store::Store;
use crate::tree::Tree;

/// One output written, for the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The output's path, as in the result.
    pub path: String,
    /// `file`, `directory` or `symlink`.
    pub kind: &'static str,
    /// The file's or the root Directory's digest, or the symlink's target.
    pub detail: String,
}

/// Writes every output of `result` under `dest`.
pub fn materialise(
    store: &Store,
    result: &reapi::ActionResult,
    dest: &Path,
) -> Result<Vec<Written>, ActionError> {
    let mut written = Vec::new();
    for file in &result.output_files {
        let path = host_path(dest, &file.path)?;
        let digest = digest(store, file.digest.as_ref(), &file.path)?;
        write_file(store, &digest, file.is_executable, &path)?;
        written.push(Written { path: file.path.clone(), kind: "file", detail: digest.to_string() });
    }
    for directory in &result.output_directories {
        let path = host_path(dest, &directory.path)?;
        let Some(root) = directory.root_directory_digest.as_ref() else {
            return Err(ActionError::Invalid(format!(
                "output directory {:?} has no root_directory_digest",
                directory.path
            )));
        };
        let root = digest(store, Some(root), &directory.path)?;
        write_tree(store, &root, &path)?;
        written.push(Written { path: directory.path.clone(), kind: "directory", detail: root.to_string() });
    }
    for link in result
        .output_symlinks
        .iter()
        .chain(&result.output_file_symlinks)
        .chain(&result.output_directory_symlinks)
    {
        let path = host_path(dest, &link.path)?;
        make_parent(&path)?;
        remove_non_directory(&path)?;
        symlink(&link.target, &path).map_err(|e| ActionError::io("create symlink", &path, e))?;
        written.push(Written { path: link.path.clone(), kind: "symlink", detail: link.target.clone() });
    }
    Ok(written)
}

fn host_path(dest: &Path, path: &str) -> Result<PathBuf, ActionError> {
    let components = normalise(&[], path, "output path")?;
    if components.is_empty() {
        return Err(ActionError::Invalid(format!("output path {path:?} names the destination itself")));
    }
    Ok(dest.join(components.join("/")))
}

fn digest(store: &Store, digest: Option<&reapi::Digest>, path: &str) -> Result<Digest, ActionError> {
    let digest = digest.ok_or_else(|| ActionError::Invalid(format!("output {path:?} has no digest")))?;
    parse_digest(digest, store.digest_function())
        .map_err(|source| ActionError::Digest { what: "output", source })
}

fn write_file(store: &Store, digest: &Digest, executable: bool, path: &Path) -> Result<(), ActionError> {
    make_parent(path)?;
    remove_non_directory(path)?;
    let data = store.read(digest)?;
    fs::write(path, data).map_err(|e| ActionError::io("write", path, e))?;
    let mode = if executable { 0o755 } else { 0o644 };
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).map_err(|e| ActionError::io("chmod", path, e))
}

fn write_tree(store: &Store, root: &Digest, dest: &Path) -> Result<(), ActionError> {
    let tree = Tree::read(store, root).map_err(|e| ActionError::Invalid(e.to_string()))?;
    for (relative, directory) in tree.paths() {
        let dir = if relative == "." { dest.to_owned() } else { dest.join(&relative) };
        remove_non_directory(&dir)?;
        fs::create_dir_all(&dir).map_err(|e| ActionError::io("create directory", &dir, e))?;
        for file in &directory.files {
            let digest = digest(store, file.digest.as_ref(), &file.name)?;
            write_file(store, &digest, file.is_executable, &dir.join(&file.name))?;
        }
        for link in &directory.symlinks {
            let path = dir.join(&link.name);
            remove_non_directory(&path)?;
            symlink(&link.target, &path).map_err(|e| ActionError::io("create symlink", &path, e))?;
        }
    }
    Ok(())
}

fn make_parent(path: &Path) -> Result<(), ActionError> {
    match path.parent() {
        Some(parent) => {
            fs::create_dir_all(parent).map_err(|e| ActionError::io("create directory", parent, e))
        }
        None => Ok(()),
    }
}

/// Removes a file or symlink at `path` (not a directory), so a new one can take its place.
fn remove_non_directory(path: &Path) -> Result<(), ActionError> {
    match fs::symlink_metadata(path) {
        Ok(metadata) if !metadata.is_dir() => {
            fs::remove_file(path).map_err(|e| ActionError::io("replace", path, e))
        }
        _ => Ok(()),
    }
}
