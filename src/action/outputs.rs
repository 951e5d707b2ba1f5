//! Capturing what the command left at its output paths into the ActionResult: regular files,
//! directories and symlinks each in their own field. A symlink is recorded as a symlink, never
//! followed (buildbox-run aborts on one); a missing output is simply absent, as REAPI says.

use std::path::{Path, PathBuf};

use super::cas::ActionCas;
use super::error::ActionError;
use super::plan::{Output, OutputField, Plan};
use super::stage_fs::{Found, inspect};
use crate::proto::build::bazel::remote::execution::v2 as reapi;
use crate::tree::to_proto;

/// Captures every output of `plan` from the stage at `root` into `result`.
pub fn collect(
    cas: &mut dyn ActionCas,
    root: &Path,
    plan: &Plan,
    result: &mut reapi::ActionResult,
) -> Result<(), ActionError> {
    let mut files: Vec<(&Output, PathBuf)> = Vec::new();
    let mut directories: Vec<(&Output, PathBuf)> = Vec::new();
    for output in &plan.outputs {
        match inspect(root, &output.components)? {
            Found::Missing => {}
            Found::File(path) => files.push((output, path)),
            Found::Directory(path) => directories.push((output, path)),
            Found::Symlink(target) => {
                let symlink =
                    reapi::OutputSymlink { path: output.path.clone(), target, node_properties: None };
                match output.field {
                    OutputField::Path => result.output_symlinks.push(symlink),
                    OutputField::File => result.output_file_symlinks.push(symlink),
                    OutputField::Directory => result.output_directory_symlinks.push(symlink),
                }
            }
            Found::Special => {
                return Err(ActionError::Invalid(format!(
                    "output {:?} is a socket, FIFO or device, which an ActionResult cannot hold",
                    output.path
                )));
            }
        }
    }
    let file_paths: Vec<PathBuf> = files.iter().map(|(_, p)| p.clone()).collect();
    for ((output, _), captured) in files.iter().zip(cas.capture_files(&file_paths, plan.properties)?) {
        result.output_files.push(reapi::OutputFile {
            path: output.path.clone(),
            digest: Some(to_proto(&captured.digest)),
            is_executable: captured.is_executable,
            contents: Vec::new(),
            node_properties: captured.node_properties,
        });
    }
    let directory_paths: Vec<PathBuf> = directories.iter().map(|(_, p)| p.clone()).collect();
    let captured = cas.capture_directories(&directory_paths, plan.properties, plan.format)?;
    for ((output, _), digests) in directories.iter().zip(captured) {
        result.output_directories.push(reapi::OutputDirectory {
            path: output.path.clone(),
            tree_digest: digests.tree.as_ref().map(to_proto),
            is_topologically_sorted: false,
            root_directory_digest: digests.root_directory.as_ref().map(to_proto),
        });
    }
    Ok(())
}
