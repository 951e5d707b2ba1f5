//! The tree most FUSE staging tests stage, and the checks they make on a stage and on the CAS.

use std::collections::BTreeSet;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use rebox::digest::Digest;
use rebox::proto::build::bazel::remote::execution::v2 as reapi;
use rebox::staging::Owner;
use rebox::store::Store;

use crate::staging_support::{dir, executable, file, file_with, put_dir, symlink};

/// The mtime of staged nodes without an `mtime` property, as `(seconds, nanoseconds)`.
pub const DEFAULT_MTIME: (i64, i64) = (1321009871, 0);

/// 3 MiB of a pattern that changes from byte to byte, so a misplaced page shows.
pub fn big_content() -> Vec<u8> {
    (0..3u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect()
}

/// Executables, node properties, symlinks, a shared blob, a large file and nested dirs.
pub fn sample_tree(store: &Store) -> Digest {
    let deep = reapi::Directory { files: vec![file(store, "deep", b"deep\n")], ..Default::default() };
    let sub = reapi::Directory {
        files: vec![executable(store, "tool", b"#!/bin/sh\necho tool\n")],
        directories: vec![dir(store, "nested", &deep)],
        symlinks: vec![symlink("up", "../plain")],
        ..Default::default()
    };
    let dated = reapi::SymlinkNode {
        node_properties: Some(reapi::NodeProperties {
            mtime: Some(prost_types::Timestamp { seconds: 1_400_000_000, nanos: 7 }),
            ..Default::default()
        }),
        ..symlink("dated", "nowhere")
    };
    put_dir(
        store,
        &reapi::Directory {
            files: vec![
                file(store, "big", &big_content()),
                file(store, "dup", b"hello\n"),
                file(store, "empty", b""),
                executable(store, "exe", b"#!/bin/sh\necho hi\n"),
                file(store, "plain", b"hello\n"),
                file_with(store, "props", b"props\n", Some((1_500_000_000, 5)), Some(0o600)),
                file_with(store, "setuid", b"suid\n", None, Some(0o4750)),
            ],
            directories: vec![dir(store, "sub", &sub)],
            symlinks: vec![symlink("abs", "/etc/passwd"), dated, symlink("link", "plain")],
            ..Default::default()
        },
    )
}

/// Checks the mode (but of a symlink), mtime and owner of what is at `path`.
pub fn check(path: &Path, mode: u32, mtime: (i64, i64), owner: Owner) {
    let m = fs::symlink_metadata(path).unwrap();
    if !m.file_type().is_symlink() {
        assert_eq!(m.mode() & 0o7777, mode, "{}", path.display());
    }
    assert_eq!((m.mtime(), m.mtime_nsec()), mtime, "{}", path.display());
    assert_eq!((m.uid(), m.gid()), (owner.uid, owner.gid), "{}", path.display());
}

/// Every object in the store still matches its digest, is 0444 and has one link.
pub fn assert_cas_intact(store: &Store) -> BTreeSet<Digest> {
    let objects: BTreeSet<Digest> = store.objects().unwrap().into_iter().map(|o| o.digest).collect();
    for digest in &objects {
        assert!(store.verify(digest).unwrap(), "object {digest} changed");
        let metadata = fs::metadata(store.object_path(digest)).unwrap();
        assert_eq!(metadata.mode() & 0o7777, 0o444, "object {digest} mode changed");
        assert_eq!(metadata.nlink(), 1, "object {digest} gained links");
    }
    objects
}
