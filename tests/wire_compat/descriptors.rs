//! The two descriptor sets under comparison: BuildStream's protos, compiled here with protox, and
//! rebox's own, embedded in the library by `build.rs`.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use prost::Message;
use prost_types::FileDescriptorSet;

/// Environment variable naming BuildStream's `_protos` directory.
pub const BST_PROTOS_ENV: &str = "REBOX_BST_PROTOS";

/// The packages rebox implements, and so must match BuildStream's exactly.
/// (`buildstream.v2` and `google.api` are BuildStream's own / HTTP-only and not served by rebox.)
pub const IMPLEMENTED_PACKAGES: &[&str] = &[
    "build.bazel.remote.execution.v2",
    "google.bytestream",
    "google.rpc",
    "google.longrunning",
    "build.bazel.semver",
    "build.buildgrid",
    "build.bazel.remote.asset.v1",
];

/// Where BuildStream's protos are: `$REBOX_BST_PROTOS`, else the `.peers` venv that
/// `scripts/peers` creates in the workspace.
pub fn bst_protos_dir() -> PathBuf {
    match std::env::var_os(BST_PROTOS_ENV) {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR"))
            .join(".peers/lib/python3.11/site-packages/buildstream/_protos"),
    }
}

/// Compiles every `.proto` below `dir` (BuildStream's `_protos`) with protox.
pub fn compile_bst_protos(dir: &Path) -> Result<FileDescriptorSet, String> {
    if !dir.is_dir() {
        return Err(format!(
            "BuildStream's protos not found at {}: run scripts/peers to create the .peers venv, \
             or set {BST_PROTOS_ENV} to BuildStream's buildstream/_protos directory",
            dir.display()
        ));
    }
    let mut files = Vec::new();
    collect_protos(dir, dir, &mut files).map_err(|e| format!("reading {}: {e}", dir.display()))?;
    if files.is_empty() {
        return Err(format!("no .proto files under {}", dir.display()));
    }
    files.sort();
    protox::compile(&files, [dir])
        .map_err(|e| format!("compiling BuildStream's protos in {}: {e}", dir.display()))
}

/// `.proto` files below `dir`, as paths relative to `root` (the include directory).
fn collect_protos(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(root, &path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path.strip_prefix(root).expect("entry lies below the directory read").to_owned());
        }
    }
    Ok(())
}

/// BuildStream's descriptor set, compiled once per test run; panics with the reason if unavailable.
pub fn bst() -> &'static FileDescriptorSet {
    static SET: OnceLock<FileDescriptorSet> = OnceLock::new();
    SET.get_or_init(|| compile_bst_protos(&bst_protos_dir()).unwrap_or_else(|e| panic!("{e}")))
}

/// rebox's descriptor set, as the library embeds it.
pub fn rebox() -> FileDescriptorSet {
    FileDescriptorSet::decode(rebox::proto::FILE_DESCRIPTOR_SET)
        .expect("rebox's embedded descriptor set decodes")
}
