//! A FUSE stage of a tree whose blob is missing from the CAS: refused up front (the daemon), or,
//! with the embedded runner's lazy check, staged with that one file failing to open (EIO).
//! Needs root and /dev/fuse.

mod staging_support;

use std::fs;

use rebox::proto::build::bazel::remote::execution::v2 as reapi;
use rebox::staging::{Method, StageRequest, StagingMode};
use rebox::tree::to_proto;
use staging_support::*;

/// A tree holding `present` (stored) and `sub/absent` (never stored).
fn tree_with_an_absent_blob(store: &rebox::store::Store) -> rebox::digest::Digest {
    let absent = store.digest_function().hash_bytes(b"never stored");
    let sub = reapi::Directory {
        files: vec![reapi::FileNode {
            name: "absent".into(),
            digest: Some(to_proto(&absent)),
            ..Default::default()
        }],
        ..Default::default()
    };
    let root = reapi::Directory {
        files: vec![file(store, "present", b"here")],
        directories: vec![dir(store, "sub", &sub)],
        ..Default::default()
    };
    put_dir(store, &root)
}

#[test]
fn a_missing_blob_refuses_the_stage_unless_checked_lazily() {
    if fuse_skipped() {
        return;
    }
    let (_tmp, store) = store();
    let root = tree_with_an_absent_blob(&store);
    let request = StageRequest { root, path: None, credentials: None, mode: StagingMode::Fuse };

    let stages = Cleaning::new(&store);
    let error = stages.stage(&request).unwrap_err();
    assert_eq!(error.code(), tonic::Code::FailedPrecondition, "{error}");
    assert!(error.to_string().contains("\"sub/absent\""), "{error}");
    assert!(stages.live().is_empty());

    stages.set_lazy_blob_check(true);
    let staged = stages.stage(&request).unwrap();
    assert_eq!(staged.method, Method::Fuse);
    assert_eq!(fs::read(staged.dir.join("present")).unwrap(), b"here");
    let size = fs::symlink_metadata(staged.dir.join("sub/absent")).unwrap().len();
    assert_eq!(size, b"never stored".len() as u64, "listed with its digest's size");
    assert!(stages.missing_blob(staged.id).is_none(), "nothing missing met yet");
    let refused = fs::read(staged.dir.join("sub/absent")).unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc::EIO), "{refused}");
    // The owner of the stage learns which blob, as staging would have told it up front.
    let missing = stages.missing_blob(staged.id).expect("the missing blob is told");
    assert_eq!(missing.code(), tonic::Code::FailedPrecondition);
    assert!(missing.to_string().contains("\"sub/absent\""), "{missing}");
    stages.unstage(staged.id).unwrap();
}
