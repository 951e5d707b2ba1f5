//! Trees remembered as valid across processes (`Stages::remember_trees`, the embedded runner):
//! a new process stages a remembered tree through FUSE reading only the directories the action
//! enters, still with its `SubtreeReadOnly` mounts, and still checks each directory it reads.
//! Needs root and /dev/fuse.

mod staging_support;

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rebox::digest::Digest;
use rebox::proto::build::bazel::remote::execution::v2 as reapi;
use rebox::staging::{Method, StageRequest, StagingMode};
use rebox::store::Store;
use staging_support::*;

const SUBDIRS: usize = 40;
const FILES: usize = 60;

/// A tree big enough to be remembered: `data/dNN/fNN` (40 x 60 files), and `ro/x` under
/// `SubtreeReadOnly`. Returns the root and the digest of `data/d39`.
fn big_tree(store: &Store) -> (Digest, Digest) {
    let mut subdirs = Vec::new();
    let mut last = None;
    for d in 0..SUBDIRS {
        let files =
            (0..FILES).map(|f| file(store, &format!("f{f:02}"), format!("{d}/{f}").as_bytes())).collect();
        let directory = reapi::Directory { files, ..Default::default() };
        last = Some(put_dir(store, &directory));
        subdirs.push(dir(store, &format!("d{d:02}"), &directory));
    }
    let data = reapi::Directory { directories: subdirs, ..Default::default() };
    let ro = reapi::Directory {
        files: vec![file(store, "x", b"x")],
        node_properties: read_only("true"),
        ..Default::default()
    };
    let root = reapi::Directory {
        directories: vec![dir(store, "data", &data), dir(store, "ro", &ro)],
        ..Default::default()
    };
    (put_dir(store, &root), last.unwrap())
}

fn fuse(root: Digest) -> StageRequest {
    StageRequest { root, path: None, credentials: None, mode: StagingMode::Fuse }
}

/// Stages as the embedded runner does: blobs checked lazily, trees remembered.
fn remembering(store: &Store) -> Cleaning {
    let stages = Cleaning::new(store);
    stages.set_lazy_blob_check(true);
    stages.remember_trees();
    stages
}

fn record(store: &Store, root: &Digest) -> PathBuf {
    store.root().join("cas/staging-trees").join(format!("{}-{}", root.hash_hex(), root.size()))
}

/// Writes a record of `root` by hand.
fn forge_record(store: &Store, root: &Digest, content: &[u8]) {
    fs::create_dir_all(record(store, root).parent().unwrap()).unwrap();
    fs::write(record(store, root), content).unwrap();
}

/// How listing `dir` fails (it must).
fn listing_error(dir: &Path) -> std::io::Error {
    fs::read_dir(dir).and_then(|mut entries| entries.next().transpose()).unwrap_err()
}

#[test]
fn a_tree_validated_whole_is_remembered_and_the_next_process_reads_only_what_it_enters() {
    if fuse_skipped() {
        return;
    }
    let (_tmp, store) = store();
    let (root, untouched) = big_tree(&store);

    let first = remembering(&store);
    let staged = first.stage(&fuse(root)).unwrap();
    assert_eq!(staged.method, Method::Fuse);
    assert!(record(&store, &root).is_file(), "the tree is remembered once validated whole");
    first.unstage(staged.id).unwrap();
    drop(first);

    // Gone from the CAS: a stage that reads the whole tree refuses it...
    assert!(store.remove(&untouched).unwrap());
    let reading_whole = Cleaning::new(&store);
    reading_whole.set_lazy_blob_check(true);
    let error = reading_whole.stage(&fuse(root)).unwrap_err();
    assert!(error.to_string().contains("data/d39"), "{error}");

    // ...one of a process remembering it reads only what the action enters.
    let next = remembering(&store);
    let staged = next.stage(&fuse(root)).unwrap();
    let s = &staged.dir;
    assert_eq!(fs::read(s.join("data/d07/f03")).unwrap(), b"7/3");
    let data = fs::metadata(s.join("data")).unwrap();
    assert_eq!(data.nlink(), 2 + SUBDIRS as u64, "a directory's links count its subdirectories");
    assert_eq!(fs::metadata(s.join("data/d00")).unwrap().nlink(), 2);
    let listed = fs::read_dir(s.join("data")).unwrap().count();
    assert_eq!(listed, SUBDIRS);

    // SubtreeReadOnly is applied from the record.
    let refused = fs::write(s.join("ro/x"), b"changed").unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc::EROFS), "{refused}");
    fs::write(s.join("data/d00/new"), b"writable").unwrap();

    // Entering the directory whose blob went fails, and its owner is told which.
    assert!(next.missing_blob(staged.id).is_none());
    let failed = listing_error(&s.join("data/d39"));
    assert_eq!(failed.raw_os_error(), Some(libc::EIO), "{failed}");
    let missing = next.missing_blob(staged.id).expect("the missing directory is told");
    assert_eq!(missing.code(), tonic::Code::FailedPrecondition);
    assert!(missing.to_string().contains("\"data/d39\""), "{missing}");
    next.unstage(staged.id).unwrap();
}

#[test]
fn each_directory_of_a_remembered_tree_is_still_checked_as_it_is_read() {
    if fuse_skipped() {
        return;
    }
    let (_tmp, store) = store();
    let bad = reapi::Directory { files: vec![file(&store, "..", b"escape")], ..Default::default() };
    let good = reapi::Directory { files: vec![file(&store, "ok", b"ok")], ..Default::default() };
    let root = reapi::Directory {
        directories: vec![dir(&store, "bad", &bad), dir(&store, "good", &good)],
        ..Default::default()
    };
    let root = put_dir(&store, &root);
    // Refused when read whole, so never remembered...
    let stages = remembering(&store);
    let error = stages.stage(&fuse(root)).unwrap_err();
    assert!(error.to_string().contains("\"..\""), "{error}");
    assert!(!record(&store, &root).exists());

    // ...and a record forged for it serves the good part only.
    forge_record(&store, &root, b"rebox staging-tree 1\n");
    let staged = stages.stage(&fuse(root)).unwrap();
    assert_eq!(fs::read(staged.dir.join("good/ok")).unwrap(), b"ok");
    let failed = listing_error(&staged.dir.join("bad"));
    assert_eq!(failed.raw_os_error(), Some(libc::EIO), "{failed}");
    stages.unstage(staged.id).unwrap();
}

#[test]
fn a_record_of_other_checks_is_ignored() {
    if fuse_skipped() {
        return;
    }
    let (_tmp, store) = store();
    let (root, untouched) = big_tree(&store);
    assert!(store.remove(&untouched).unwrap());
    forge_record(&store, &root, b"rebox staging-tree 0\n");
    let error = remembering(&store).stage(&fuse(root)).unwrap_err();
    assert!(error.to_string().contains("data/d39"), "read whole: {error}");
}
