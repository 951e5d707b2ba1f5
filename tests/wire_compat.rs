//! Wire compatibility: rebox's own protos must describe exactly the messages, fields, enums and
//! RPCs of the protos BuildStream 2.8.1 ships, for every package rebox implements, because
//! BuildStream, buildbox-run and buildbox-casd talk to rebox with them.
//!
//! BuildStream's protos are read from `$REBOX_BST_PROTOS`, else from the `.peers` venv that
//! `scripts/peers` creates.

// A test crate root resolves `mod` like a `mod.rs`, so the submodules' directory is named explicitly.
#[path = "wire_compat/compare.rs"]
mod compare;
#[path = "wire_compat/descriptors.rs"]
mod descriptors;
#[path = "wire_compat/mutations.rs"]
mod mutations;

use std::path::Path;

use compare::compare;
use descriptors::{IMPLEMENTED_PACKAGES, bst, compile_bst_protos, rebox};

#[test]
fn rebox_protos_match_buildstream_on_the_wire() {
    let differences = compare(bst(), &rebox(), IMPLEMENTED_PACKAGES);
    for difference in &differences {
        eprintln!("{difference}");
    }
    assert!(
        differences.is_empty(),
        "{} wire differences from BuildStream's protos (listed above)",
        differences.len()
    );
}

#[test]
fn both_sets_define_every_implemented_package() {
    let rebox = rebox();
    for package in IMPLEMENTED_PACKAGES {
        assert!(bst().file.iter().any(|f| f.package() == *package), "BuildStream's protos lack {package}");
        assert!(rebox.file.iter().any(|f| f.package() == *package), "rebox's protos lack {package}");
    }
}

#[test]
fn missing_protos_directory_says_to_run_scripts_peers() {
    let missing = Path::new("/nonexistent/rebox-wire-compat/_protos");
    let error = compile_bst_protos(missing).expect_err("a missing directory is an error");
    assert!(error.contains("scripts/peers"), "{error}");
    assert!(error.contains(&missing.display().to_string()), "{error}");
}

#[test]
fn directory_without_protos_is_an_error() {
    let empty = tempfile::tempdir().expect("temporary directory");
    let error = compile_bst_protos(empty.path()).expect_err("no protos is an error");
    assert!(error.contains("no .proto files"), "{error}");
}
