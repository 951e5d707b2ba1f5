//! Trees through the real store and filesystem: every malformed-tree case is refused with
//! INVALID_ARGUMENT naming the entry and its directory, and local directories round-trip.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use proptest::prelude::*;
use prost::Message;
use rebox::digest::{Digest, DigestFunction};
use rebox::proto::build::bazel::remote::execution::v2 as reapi;
use rebox::store::Store;
use rebox::tree::{Tree, TreeError, UploadOptions, to_proto, upload_dir};

fn store(dir: &Path) -> Store {
    Store::open(dir, DigestFunction::Sha256).expect("open store")
}

fn file(name: &str, digest: &Digest) -> reapi::FileNode {
    reapi::FileNode { name: name.into(), digest: Some(to_proto(digest)), ..Default::default() }
}

fn dir_node(name: &str, digest: &Digest) -> reapi::DirectoryNode {
    reapi::DirectoryNode { name: name.into(), digest: Some(to_proto(digest)) }
}

fn link(name: &str, target: &str) -> reapi::SymlinkNode {
    reapi::SymlinkNode { name: name.into(), target: target.into(), node_properties: None }
}

fn put_dir(store: &Store, directory: &reapi::Directory) -> Digest {
    store.put_bytes(&directory.encode_to_vec()).expect("store directory")
}

/// Each case: a root built from a bad directory, the code and the words the error must contain.
#[test]
fn every_bad_tree_is_refused_naming_entry_and_path() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store(tmp.path());
    let blob = store.put_bytes(b"content").unwrap();
    let empty = put_dir(&store, &reapi::Directory::default());
    let files = |names: &[&str]| reapi::Directory {
        files: names.iter().map(|n| file(n, &blob)).collect(),
        ..Default::default()
    };
    let with_digest = |hash: &str, size: i64| reapi::Directory {
        files: vec![reapi::FileNode {
            name: "f".into(),
            digest: Some(reapi::Digest { hash: hash.into(), size_bytes: size }),
            ..Default::default()
        }],
        ..Default::default()
    };
    let sha1 = DigestFunction::Sha1.hash_bytes(b"x");
    let missing_dir = DigestFunction::Sha256.hash_bytes(b"never stored");
    let not_a_directory = store.put_bytes(&[0xff, 0xff, 0xff]).unwrap();

    let cases: Vec<(&str, reapi::Directory, tonic::Code, &[&str])> = vec![
        ("empty name", files(&[""]), tonic::Code::InvalidArgument, &["\"\"", "empty"]),
        (
            "dot",
            reapi::Directory { directories: vec![dir_node(".", &empty)], ..Default::default() },
            tonic::Code::InvalidArgument,
            &["\".\""],
        ),
        (
            "dot-dot",
            reapi::Directory { directories: vec![dir_node("..", &empty)], ..Default::default() },
            tonic::Code::InvalidArgument,
            &["\"..\""],
        ),
        ("slash", files(&["a/b"]), tonic::Code::InvalidArgument, &["\"a/b\"", "'/'"]),
        (
            "NUL",
            reapi::Directory { symlinks: vec![link("a\0b", "t")], ..Default::default() },
            tonic::Code::InvalidArgument,
            &["NUL"],
        ),
        ("unsorted", files(&["b", "a"]), tonic::Code::InvalidArgument, &["\"a\"", "out of order"]),
        ("duplicate file", files(&["a", "a"]), tonic::Code::InvalidArgument, &["\"a\"", "more than once"]),
        (
            "file and directory",
            reapi::Directory {
                files: vec![file("x", &blob)],
                directories: vec![dir_node("x", &empty)],
                ..Default::default()
            },
            tonic::Code::InvalidArgument,
            &["\"x\"", "more than once"],
        ),
        (
            "directory and symlink",
            reapi::Directory {
                directories: vec![dir_node("y", &empty)],
                symlinks: vec![link("y", "t")],
                ..Default::default()
            },
            tonic::Code::InvalidArgument,
            &["\"y\"", "more than once"],
        ),
        (
            "uppercase hash",
            with_digest(&"A".repeat(64), 1),
            tonic::Code::InvalidArgument,
            &["\"f\"", "lowercase"],
        ),
        ("negative size", with_digest(&"a".repeat(64), -1), tonic::Code::InvalidArgument, &["\"f\"", "size"]),
        (
            "hash of another function",
            with_digest(&sha1.hash_hex(), 1),
            tonic::Code::InvalidArgument,
            &["SHA256"],
        ),
        (
            "no digest",
            reapi::Directory {
                files: vec![reapi::FileNode { name: "f".into(), ..Default::default() }],
                ..Default::default()
            },
            tonic::Code::InvalidArgument,
            &["\"f\"", "missing"],
        ),
        (
            "empty symlink target",
            reapi::Directory { symlinks: vec![link("s", "")], ..Default::default() },
            tonic::Code::InvalidArgument,
            &["\"s\"", "target is empty"],
        ),
        (
            "missing subdirectory",
            reapi::Directory { directories: vec![dir_node("gone", &missing_dir)], ..Default::default() },
            tonic::Code::FailedPrecondition,
            &["missing from the CAS"],
        ),
        (
            "undecodable subdirectory",
            reapi::Directory { directories: vec![dir_node("junk", &not_a_directory)], ..Default::default() },
            tonic::Code::InvalidArgument,
            &["not a valid Directory"],
        ),
    ];

    for (case, bad, code, words) in cases {
        // Put the bad directory two levels down, so the error must name its path.
        let bad = put_dir(&store, &bad);
        let middle = put_dir(
            &store,
            &reapi::Directory { directories: vec![dir_node("inner", &bad)], ..Default::default() },
        );
        let root = put_dir(
            &store,
            &reapi::Directory { directories: vec![dir_node("sub", &middle)], ..Default::default() },
        );
        let error = Tree::read(&store, &root).expect_err(case);
        let message = error.to_string();
        assert_eq!(error.code(), code, "{case}: {message}");
        let expected_dir = match case {
            "missing subdirectory" => "sub/inner/gone",
            "undecodable subdirectory" => "sub/inner/junk",
            _ => "sub/inner",
        };
        assert!(message.contains(&format!("{expected_dir:?}")), "{case}: path not named in {message}");
        for word in words {
            assert!(message.contains(word), "{case}: {word:?} not in {message}");
        }
        let status = tonic::Status::from(error);
        assert_eq!(status.code(), code, "{case}");
    }
}

#[test]
fn missing_root_is_failed_precondition() {
    let tmp = tempfile::tempdir().unwrap();
    let store = store(tmp.path());
    let root = DigestFunction::Sha256.hash_bytes(b"absent");
    let error = Tree::read(&store, &root).unwrap_err();
    assert!(matches!(error, TreeError::Missing { .. }), "{error}");
    assert_eq!(error.code(), tonic::Code::FailedPrecondition);
}

#[test]
fn special_files_are_refused_by_upload() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input");
    fs::create_dir(&input).unwrap();
    nix::unistd::mkfifo(&input.join("pipe"), nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    let store = store(&tmp.path().join("cas"));
    let error = upload_dir(&store, &input, UploadOptions::default()).unwrap_err().to_string();
    assert!(error.contains("pipe") && error.contains("FIFO"), "{error}");
}

#[test]
fn node_properties_are_recorded_when_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input");
    fs::create_dir(&input).unwrap();
    fs::write(input.join("f"), b"x").unwrap();
    fs::set_permissions(input.join("f"), fs::Permissions::from_mode(0o640)).unwrap();
    let when = std::time::UNIX_EPOCH + std::time::Duration::new(1_321_009_871, 5_678_901);
    fs::File::options().write(true).open(input.join("f")).unwrap().set_modified(when).unwrap();
    let store = store(&tmp.path().join("cas"));

    let plain = Tree::read(&store, &upload_dir(&store, &input, UploadOptions::default()).unwrap()).unwrap();
    assert_eq!(plain.root_directory().files[0].node_properties, None);

    let options = UploadOptions { mtime: true, unix_mode: true };
    let tree = Tree::read(&store, &upload_dir(&store, &input, options).unwrap()).unwrap();
    let properties = tree.root_directory().files[0].node_properties.clone().unwrap();
    assert_eq!(properties.unix_mode, Some(0o640));
    let mtime = properties.mtime.unwrap();
    // Truncated to the microsecond, as buildbox-casd records it (tests/capture_oracle.rs).
    assert_eq!((mtime.seconds, mtime.nanos), (1_321_009_871, 5_678_000));
}

/// A generated directory tree.
#[derive(Debug, Clone)]
enum Node {
    File { content: Vec<u8>, executable: bool },
    Symlink(String),
    Dir(BTreeMap<String, Node>),
}

fn name() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9_.-]{1,6}".prop_filter("not . or ..", |n| n != "." && n != "..")
}

fn node() -> impl Strategy<Value = Node> {
    let leaf = prop_oneof![
        (prop::collection::vec(any::<u8>(), 0..64), any::<bool>())
            .prop_map(|(content, executable)| Node::File { content, executable }),
        "[a-z/.]{1,12}".prop_map(Node::Symlink),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop::collection::btree_map(name(), inner, 0..6).prop_map(Node::Dir)
    })
}

fn materialise(path: &Path, node: &Node) {
    match node {
        Node::File { content, executable } => {
            fs::write(path, content).unwrap();
            let mode = if *executable { 0o755 } else { 0o644 };
            fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
        }
        Node::Symlink(target) => symlink(target, path).unwrap(),
        Node::Dir(entries) => {
            fs::create_dir(path).unwrap();
            for (name, child) in entries {
                materialise(&path.join(name), child);
            }
        }
    }
}

/// Rebuilds the generated shape from the store, following only the tree's own digests.
fn read_back(store: &Store, tree: &Tree, directory: &reapi::Directory) -> Node {
    let mut entries = BTreeMap::new();
    for f in &directory.files {
        let digest =
            rebox::tree::node_digest(".", &f.name, f.digest.as_ref(), DigestFunction::Sha256).unwrap();
        let content = store.read(&digest).unwrap();
        entries.insert(f.name.clone(), Node::File { content, executable: f.is_executable });
    }
    for s in &directory.symlinks {
        entries.insert(s.name.clone(), Node::Symlink(s.target.clone()));
    }
    for d in &directory.directories {
        let digest =
            rebox::tree::node_digest(".", &d.name, d.digest.as_ref(), DigestFunction::Sha256).unwrap();
        entries.insert(d.name.clone(), read_back(store, tree, tree.directory(&digest).unwrap()));
    }
    Node::Dir(entries)
}

fn same(a: &Node, b: &Node) -> bool {
    match (a, b) {
        (Node::File { content: c1, executable: e1 }, Node::File { content: c2, executable: e2 }) => {
            c1 == c2 && e1 == e2
        }
        (Node::Symlink(t1), Node::Symlink(t2)) => t1 == t2,
        (Node::Dir(d1), Node::Dir(d2)) => {
            d1.len() == d2.len() && d1.iter().zip(d2).all(|((n1, c1), (n2, c2))| n1 == n2 && same(c1, c2))
        }
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn local_trees_round_trip_through_the_store(entries in prop::collection::btree_map(name(), node(), 0..8)) {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("input");
        let shape = Node::Dir(entries);
        materialise(&input, &shape);
        let store = store(&tmp.path().join("cas"));

        let root = upload_dir(&store, &input, UploadOptions::default()).unwrap();
        let tree = Tree::read(&store, &root).unwrap();
        prop_assert!(same(&read_back(&store, &tree, tree.root_directory()), &shape));
        // Canonical encoding: the same directory always has the same digest.
        prop_assert_eq!(upload_dir(&store, &input, UploadOptions::default()).unwrap(), root);
        // Every path is listed once, parents first.
        let paths = tree.paths();
        prop_assert_eq!(paths[0].0.as_str(), ".");
    }
}
