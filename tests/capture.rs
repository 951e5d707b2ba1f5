//! CaptureTree and CaptureFiles through a real tonic client on a Unix socket, checked against the
//! filesystem and the store they leave. (Equality with buildbox-casd's digests is
//! `capture_oracle.rs`'s concern; FetchTree and friends are `capture_fetch_upload.rs`'s.)

#[path = "capture/support.rs"]
mod support;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::time::{Duration, Instant};

use prost::Message;
use rebox::proto::build::bazel::remote::execution::v2 as reapi;
use rebox::proto::build::buildgrid::*;
use rebox::tree::Tree;
use support::{Daemon, digest, object, set_mtime, wire_digest, write};

fn code(status: &Option<rebox::proto::google::rpc::Status>) -> i32 {
    status.as_ref().expect("a status").code
}

fn tree_request(paths: &[&str], format: i32) -> CaptureTreeRequest {
    CaptureTreeRequest {
        path: paths.iter().map(|p| p.to_string()).collect(),
        output_directory_format: format,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn output_formats_give_tree_root_directory_or_both() {
    let daemon = Daemon::start().await;
    let input = tempfile::tempdir().unwrap();
    let dir = input.path().join("out");
    fs::create_dir_all(dir.join("sub/subsub")).unwrap();
    write(&dir.join("tool"), b"#!/bin/sh\n", 0o755);
    write(&dir.join("sub/data"), b"data", 0o644);
    write(&dir.join("sub/subsub/more"), b"more", 0o644);
    symlink("sub/data", dir.join("link")).unwrap();
    let path = dir.to_str().unwrap();
    let mut client = daemon.client.clone();

    let tree_only = client.capture_tree(tree_request(&[path], 0)).await.unwrap().into_inner().responses;
    let dir_only = client.capture_tree(tree_request(&[path], 1)).await.unwrap().into_inner().responses;
    let both = client.capture_tree(tree_request(&[path], 2)).await.unwrap().into_inner().responses;
    assert_eq!((code(&tree_only[0].status), code(&dir_only[0].status), code(&both[0].status)), (0, 0, 0));
    assert!(tree_only[0].tree_digest.is_some() && tree_only[0].root_directory_digest.is_none());
    assert!(dir_only[0].tree_digest.is_none() && dir_only[0].root_directory_digest.is_some());
    assert_eq!(both[0].tree_digest, tree_only[0].tree_digest);
    assert_eq!(both[0].root_directory_digest, dir_only[0].root_directory_digest);
    assert_eq!(tree_only[0].path, path);

    // The Tree's root is the stored root Directory, its children the two subdirectories, and
    // the whole tree is valid and complete in the store.
    let tree =
        reapi::Tree::decode(object(daemon.cache(), tree_only[0].tree_digest.as_ref().unwrap()).as_slice())
            .unwrap();
    let root_digest = dir_only[0].root_directory_digest.clone().unwrap();
    assert_eq!(wire_digest(&tree.root.as_ref().unwrap().encode_to_vec()), root_digest);
    assert_eq!(tree.children.len(), 2);
    let stored = Tree::read(&daemon.store, &digest(&root_digest)).unwrap();
    let root = stored.root_directory();
    let names = |nodes: Vec<&str>| nodes.join(",");
    assert_eq!(names(root.files.iter().map(|f| f.name.as_str()).collect()), "tool");
    assert!(root.files[0].is_executable);
    assert_eq!(root.symlinks[0].target, "sub/data");
    assert_eq!(stored.file_digests().len(), 3);
    for file in stored.file_digests() {
        assert!(daemon.store.contains(&file));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_path_is_answered_with_its_own_status() {
    let daemon = Daemon::start().await;
    let input = tempfile::tempdir().unwrap();
    let good = input.path().join("good");
    fs::create_dir(&good).unwrap();
    write(&input.path().join("file"), b"f", 0o644);
    let at = |p: &str| input.path().join(p).to_str().unwrap().to_owned();
    let paths = [at("good"), at("missing"), at("file"), "relative/path".to_owned(), String::new()];
    let request =
        CaptureTreeRequest { path: paths.to_vec(), output_directory_format: 1, ..Default::default() };
    let responses = daemon.client.clone().capture_tree(request).await.unwrap().into_inner().responses;
    let codes: Vec<i32> = responses.iter().map(|r| code(&r.status)).collect();
    assert_eq!(codes, [0, 5, 5, 3, 3]);
    for (response, path) in responses.iter().zip(&paths) {
        assert_eq!(&response.path, path);
    }
    let message = |i: usize| responses[i].status.clone().unwrap().message;
    assert!(message(1).contains("missing") && message(1).contains("No such file"), "{}", message(1));
    assert!(message(2).contains("file") && message(2).contains("not a directory"), "{}", message(2));
    assert!(message(3).contains("relative/path") && message(3).contains("absolute"), "{}", message(3));
    assert!(responses[1].root_directory_digest.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn root_confines_every_path_and_symlink() {
    let daemon = Daemon::start().await;
    let input = tempfile::tempdir().unwrap();
    let root = input.path().join("root");
    let outside = input.path().join("outside");
    fs::create_dir_all(root.join("dir")).unwrap();
    fs::create_dir_all(&outside).unwrap();
    write(&root.join("dir/inside"), b"inside", 0o644);
    write(&outside.join("secret"), b"outside the root", 0o644);
    // Ways out, all of which must resolve inside the root instead.
    symlink(&outside, root.join("abs-escape")).unwrap();
    symlink("../outside", root.join("rel-escape")).unwrap();
    symlink("dir", root.join("dir-link")).unwrap();
    let root_str = root.to_str().unwrap().to_owned();
    let outside_str = outside.to_str().unwrap().to_owned();
    let paths = [
        "dir",
        "/dir",
        "../../dir",
        "abs-escape/.",
        "rel-escape/.",
        "../outside",
        &outside_str,
        "dir-link/.",
        "dir-link",
    ];
    let request = CaptureTreeRequest {
        root: root_str.clone(),
        path: paths.iter().map(|p| p.to_string()).collect(),
        output_directory_format: 1,
        ..Default::default()
    };
    let responses = daemon.client.clone().capture_tree(request).await.unwrap().into_inner().responses;
    let codes: Vec<i32> = responses.iter().map(|r| code(&r.status)).collect();
    // Inside: the first three and dir-link/. (a symlink met on the way, staying inside); every
    // escape finds nothing; a symlink as the path itself is not followed.
    assert_eq!(codes, [0, 0, 0, 5, 5, 5, 5, 0, 5]);
    let dir_digest = responses[0].root_directory_digest.clone();
    assert!(responses[1..3].iter().chain([&responses[7]]).all(|r| r.root_directory_digest == dir_digest));
    assert!(responses[8].status.clone().unwrap().message.contains("symbolic link"));
    assert!(!daemon.store.contains(&digest(&wire_digest(b"outside the root"))), "read outside the root");

    let relative_root =
        CaptureTreeRequest { root: "relative".into(), path: vec!["dir".into()], ..Default::default() };
    let responses = daemon.client.clone().capture_tree(relative_root).await.unwrap().into_inner().responses;
    assert_eq!(code(&responses[0].status), 3);
    let files = CaptureFilesRequest {
        root: root_str,
        path: vec!["dir/inside".into(), "abs-escape/secret".into(), "../outside/secret".into()],
        ..Default::default()
    };
    let responses = daemon.client.clone().capture_files(files).await.unwrap().into_inner().responses;
    assert_eq!(responses.iter().map(|r| code(&r.status)).collect::<Vec<_>>(), [0, 5, 5]);
    assert_eq!(responses[0].digest, Some(wire_digest(b"inside")));
}

#[tokio::test(flavor = "multi_thread")]
async fn symlinks_are_recorded_never_followed() {
    let daemon = Daemon::start().await;
    let input = tempfile::tempdir().unwrap();
    let dir = input.path().join("out");
    fs::create_dir_all(&dir).unwrap();
    write(&input.path().join("target-file"), b"not to be read", 0o644);
    fs::create_dir(input.path().join("target-dir")).unwrap();
    write(&input.path().join("target-dir/f"), b"not to be read either", 0o644);
    symlink(input.path().join("target-file"), dir.join("to-file")).unwrap();
    symlink("../target-dir", dir.join("to-dir")).unwrap();
    symlink("nowhere", dir.join("dangling")).unwrap();
    let path = dir.to_str().unwrap();
    let responses =
        daemon.client.clone().capture_tree(tree_request(&[path], 1)).await.unwrap().into_inner().responses;
    let tree =
        Tree::read(&daemon.store, &digest(responses[0].root_directory_digest.as_ref().unwrap())).unwrap();
    let root = tree.root_directory();
    assert!(root.files.is_empty() && root.directories.is_empty());
    let links: Vec<(&str, &str)> =
        root.symlinks.iter().map(|s| (s.name.as_str(), s.target.as_str())).collect();
    let target_file = input.path().join("target-file");
    assert_eq!(
        links,
        [("dangling", "nowhere"), ("to-dir", "../target-dir"), ("to-file", target_file.to_str().unwrap())]
    );
    assert!(!daemon.store.contains(&digest(&wire_digest(b"not to be read"))));
    assert!(!daemon.store.contains(&digest(&wire_digest(b"not to be read either"))));

    // A symlink as the captured path itself is refused, for trees and files alike.
    let link = dir.join("to-dir");
    let responses = daemon
        .client
        .clone()
        .capture_tree(tree_request(&[link.to_str().unwrap()], 1))
        .await
        .unwrap()
        .into_inner()
        .responses;
    assert_eq!(code(&responses[0].status), 5);
    assert!(responses[0].status.clone().unwrap().message.contains("symbolic link"));
    let files = CaptureFilesRequest {
        path: vec![dir.join("to-file").to_str().unwrap().into()],
        ..Default::default()
    };
    let responses = daemon.client.clone().capture_files(files).await.unwrap().into_inner().responses;
    assert_eq!(code(&responses[0].status), 5);
    assert!(responses[0].digest.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn sockets_and_fifos_are_refused_naming_them() {
    let daemon = Daemon::start().await;
    let input = tempfile::tempdir().unwrap();
    let with_fifo = input.path().join("with-fifo");
    let with_socket = input.path().join("with-socket");
    fs::create_dir_all(with_fifo.join("deep")).unwrap();
    fs::create_dir_all(&with_socket).unwrap();
    write(&with_fifo.join("fine"), b"fine", 0o644);
    nix::unistd::mkfifo(&with_fifo.join("deep/pipe"), nix::sys::stat::Mode::from_bits_truncate(0o644))
        .unwrap();
    let _listener = std::os::unix::net::UnixListener::bind(with_socket.join("sock")).unwrap();
    let paths = [with_fifo.to_str().unwrap(), with_socket.to_str().unwrap()];
    let responses =
        daemon.client.clone().capture_tree(tree_request(&paths, 1)).await.unwrap().into_inner().responses;
    for (response, (name, kind)) in responses.iter().zip([("deep/pipe", "FIFO"), ("sock", "socket")]) {
        let status = response.status.clone().unwrap();
        assert_eq!(status.code, tonic::Code::FailedPrecondition as i32);
        assert!(status.message.contains(name) && status.message.contains(kind), "{}", status.message);
    }

    // CaptureFiles of a FIFO answers at once (buildbox-casd blocks forever opening it).
    let files = CaptureFilesRequest {
        path: vec![
            with_fifo.join("deep/pipe").to_str().unwrap().into(),
            with_socket.join("sock").to_str().unwrap().into(),
        ],
        ..Default::default()
    };
    let started = Instant::now();
    let mut client = daemon.client.clone();
    let call = client.capture_files(files);
    let responses = tokio::time::timeout(Duration::from_secs(10), call).await.expect("no hang").unwrap();
    assert!(started.elapsed() < Duration::from_secs(10));
    let codes: Vec<i32> = responses.into_inner().responses.iter().map(|r| code(&r.status)).collect();
    assert_eq!(codes, [9, 9]);
}

/// The tree CaptureTree records for `path` with these node properties.
async fn capture_with(daemon: &Daemon, path: &str, names: &[&str], mask: Option<u32>) -> Tree {
    let request = CaptureTreeRequest {
        path: vec![path.to_owned()],
        node_properties: names.iter().map(|n| n.to_string()).collect(),
        unix_mode_mask: mask,
        output_directory_format: 1,
        ..Default::default()
    };
    let response =
        daemon.client.clone().capture_tree(request).await.unwrap().into_inner().responses.remove(0);
    Tree::read(&daemon.store, &digest(response.root_directory_digest.as_ref().unwrap())).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn node_properties_record_mtime_to_the_microsecond_and_masked_modes() {
    let daemon = Daemon::start().await;
    let input = tempfile::tempdir().unwrap();
    let dir = input.path().join("out");
    fs::create_dir_all(dir.join("sub")).unwrap();
    write(&dir.join("setuid-tool"), b"x", 0o4755);
    write(&dir.join("sub/data"), b"y", 0o640);
    symlink("data", dir.join("sub/link")).unwrap();
    set_mtime(&dir.join("setuid-tool"), 1_321_009_871, 987_654_321);
    fs::set_permissions(dir.join("sub"), fs::Permissions::from_mode(0o750)).unwrap();
    set_mtime(&dir.join("sub"), 1_400_000_000, 1_999);
    let path = dir.to_str().unwrap().to_owned();
    let capture =
        |names: &'static [&'static str], mask: Option<u32>| capture_with(&daemon, &path, names, mask);

    let plain = capture(&[], Some(0o222)).await;
    assert!(plain.root_directory().files[0].node_properties.is_none());
    assert!(plain.root_directory().node_properties.is_none());

    let tree = capture(&["mtime", "unix_mode"], Some(0o022)).await;
    let tool = &tree.root_directory().files[0];
    assert!(tool.is_executable);
    let properties = tool.node_properties.clone().unwrap();
    let mtime = properties.mtime.unwrap();
    assert_eq!((mtime.seconds, mtime.nanos), (1_321_009_871, 987_654_000));
    assert_eq!(properties.unix_mode, Some(0o4755 & !0o022));
    let (sub_path, sub) = tree.paths().into_iter().find(|(p, _)| p == "sub").unwrap();
    assert_eq!(sub_path, "sub");
    let sub_properties = sub.node_properties.clone().unwrap();
    assert_eq!(sub_properties.unix_mode, Some(0o750));
    assert_eq!(sub_properties.mtime.map(|t| (t.seconds, t.nanos)), Some((1_400_000_000, 1_000)));
    assert_eq!(sub.files[0].node_properties.clone().unwrap().unix_mode, Some(0o640));
    assert!(sub.symlinks[0].node_properties.is_none(), "symlinks carry no properties");

    // The mask never changes is_executable.
    let masked = capture(&["unix_mode"], Some(0o111)).await;
    let tool = &masked.root_directory().files[0];
    assert!(tool.is_executable);
    assert_eq!(tool.node_properties.clone().unwrap().unix_mode, Some(0o4644));
    assert!(tool.node_properties.clone().unwrap().mtime.is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn capture_files_describes_each_file() {
    let daemon = Daemon::start().await;
    let input = tempfile::tempdir().unwrap();
    write(&input.path().join("tool"), b"#!/bin/sh\n", 0o750);
    write(&input.path().join("data"), b"data", 0o604);
    set_mtime(&input.path().join("data"), 1_000_000_000, 123_456_789);
    fs::create_dir(input.path().join("dir")).unwrap();
    let at = |p: &str| input.path().join(p).to_str().unwrap().to_owned();
    let request = CaptureFilesRequest {
        path: vec![at("tool"), at("data"), at("dir"), at("data/")],
        node_properties: vec!["mtime".into(), "unix_mode".into()],
        unix_mode_mask: Some(0o002),
        ..Default::default()
    };
    let responses = daemon.client.clone().capture_files(request).await.unwrap().into_inner().responses;
    assert_eq!(responses.iter().map(|r| code(&r.status)).collect::<Vec<_>>(), [0, 0, 5, 5]);
    assert_eq!(responses[0].digest, Some(wire_digest(b"#!/bin/sh\n")));
    assert!(responses[0].is_executable && !responses[1].is_executable);
    let data = responses[1].node_properties.clone().unwrap();
    assert_eq!(data.unix_mode, Some(0o604));
    assert_eq!(data.mtime.map(|t| (t.seconds, t.nanos)), Some((1_000_000_000, 123_456_000)));
    assert!(responses[2].status.clone().unwrap().message.contains("is a directory"));
    assert_eq!(daemon.store.read(&digest(&wire_digest(b"data"))).unwrap(), b"data");
    assert_eq!(responses[3].path, at("data/"));
}

/// `len` bytes that differ with `seed`.
fn content(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8 ^ seed).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn move_files_moves_single_link_files_into_the_store() {
    let daemon = Daemon::start().await;
    // On the store's filesystem, so that a rename can move it.
    let input = tempfile::tempdir_in(daemon.cache()).unwrap();
    let dir = input.path().join("out");
    fs::create_dir_all(dir.join("sub")).unwrap();
    let (moved, also_moved, linked) = (content(40_000, 1), content(100_000, 2), content(50_000, 3));
    write(&dir.join("moved"), &moved, 0o755);
    write(&dir.join("sub/also-moved"), &also_moved, 0o644);
    write(&dir.join("linked"), &linked, 0o644);
    fs::hard_link(dir.join("linked"), input.path().join("second-link")).unwrap();
    write(&dir.join("small"), b"small files are copied", 0o644);
    let before = daemon.store.usage();

    let request = CaptureTreeRequest {
        path: vec![dir.to_str().unwrap().into()],
        move_files: true,
        output_directory_format: 1,
        ..Default::default()
    };
    let responses = daemon.client.clone().capture_tree(request).await.unwrap().into_inner().responses;
    assert_eq!(code(&responses[0].status), 0);
    assert!(!dir.join("moved").exists() && !dir.join("sub/also-moved").exists(), "moved away");
    assert_eq!(fs::read(dir.join("linked")).unwrap(), linked, "a file with other links stays");
    assert_eq!(fs::read(dir.join("small")).unwrap(), b"small files are copied");
    let tree =
        Tree::read(&daemon.store, &digest(responses[0].root_directory_digest.as_ref().unwrap())).unwrap();
    let node = tree.root_directory().files.iter().find(|f| f.name == "moved").unwrap();
    assert!(node.is_executable);
    let object = daemon.store.object_path(&digest(node.digest.as_ref().unwrap()));
    assert_eq!(fs::read(&object).unwrap(), moved);
    let metadata = fs::metadata(&object).unwrap();
    assert_eq!(metadata.mode() & 0o7777, 0o444, "objects are read-only");
    assert!(metadata.modified().unwrap().elapsed().unwrap() < Duration::from_secs(60), "touched");
    for blob in [&moved, &also_moved, &linked, &b"small files are copied".to_vec()] {
        assert_eq!(&daemon.store.read(&digest(&wire_digest(blob))).unwrap(), blob);
    }
    let added = (moved.len() + also_moved.len() + linked.len() + 22) as u64;
    assert_eq!(
        daemon.store.usage(),
        before
            + added
            + responses[0].root_directory_digest.as_ref().unwrap().size_bytes as u64
            + sub_size(&tree)
    );

    let file = input.path().join("single");
    let single = content(33_000, 4);
    write(&file, &single, 0o600);
    let request = CaptureFilesRequest {
        path: vec![file.to_str().unwrap().into()],
        move_files: true,
        ..Default::default()
    };
    let responses = daemon.client.clone().capture_files(request).await.unwrap().into_inner().responses;
    assert_eq!(responses[0].digest, Some(wire_digest(&single)));
    assert!(!file.exists());
    assert_eq!(daemon.store.read(&digest(&wire_digest(&single))).unwrap(), single);
}

/// The encoded size of the tree's one subdirectory.
fn sub_size(tree: &Tree) -> u64 {
    let node = &tree.root_directory().directories[0];
    node.digest.as_ref().unwrap().size_bytes as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn whole_request_failures() {
    let daemon = Daemon::start_with_instance("main").await;
    let input = tempfile::tempdir().unwrap();
    let path = input.path().to_str().unwrap().to_owned();
    let both = CaptureTreeRequest {
        path: vec![path.clone()],
        skip_upload: true,
        bypass_local_cache: true,
        ..Default::default()
    };
    let status = daemon.client.clone().capture_tree(both).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("skip_upload"));
    let both = CaptureFilesRequest {
        path: vec![path.clone()],
        skip_upload: true,
        bypass_local_cache: true,
        ..Default::default()
    };
    assert_eq!(
        daemon.client.clone().capture_files(both).await.unwrap_err().code(),
        tonic::Code::InvalidArgument
    );

    let elsewhere =
        CaptureTreeRequest { instance_name: "other".into(), path: vec![path.clone()], ..Default::default() };
    let status = daemon.client.clone().capture_tree(elsewhere).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("other"));
    for instance_name in ["", "main"] {
        let request = CaptureTreeRequest {
            instance_name: instance_name.into(),
            path: vec![path.clone()],
            ..Default::default()
        };
        let responses = daemon.client.clone().capture_tree(request).await.unwrap().into_inner().responses;
        assert_eq!(code(&responses[0].status), 0);
    }
    // skip_upload or bypass_local_cache alone: captured locally all the same.
    let bypass = CaptureTreeRequest {
        path: vec![path],
        bypass_local_cache: true,
        output_directory_format: 1,
        ..Default::default()
    };
    let responses = daemon.client.clone().capture_tree(bypass).await.unwrap().into_inner().responses;
    assert!(daemon.store.contains(&digest(responses[0].root_directory_digest.as_ref().unwrap())));
}

/// A known-digest source for tests: vouches for files by name, and records what it was asked.
struct Vouch {
    digests: Vec<(&'static str, rebox::digest::Digest)>,
    asked: std::sync::Mutex<Vec<(std::path::PathBuf, u64)>>,
}

impl rebox::capture::KnownDigests for Vouch {
    fn lookup(&self, path: &std::path::Path, metadata: &fs::Metadata) -> Option<rebox::digest::Digest> {
        self.asked.lock().unwrap().push((path.to_owned(), metadata.ino()));
        let name = path.file_name()?.to_str()?;
        self.digests.iter().find(|(n, _)| *n == name).map(|(_, d)| *d)
    }
}

#[test]
fn known_digests_are_taken_without_reading_the_file() {
    use rebox::capture::{CaptureOptions, OutputFormat, Target, capture_file, capture_tree};
    let tmp = tempfile::tempdir().unwrap();
    let store =
        rebox::store::Store::open(&tmp.path().join("cache"), rebox::digest::DigestFunction::Sha256).unwrap();
    let dir = tmp.path().join("stage");
    fs::create_dir_all(dir.join("sub")).unwrap();
    write(&dir.join("vouched"), b"real content, never read", 0o644);
    write(&dir.join("sub/unstored"), b"hashed after all", 0o755);
    write(&dir.join("unknown"), b"hashed", 0o644);
    symlink(&dir, tmp.path().join("stage-link")).unwrap();
    // The digest vouched for is stored; the other one is not, so that file is hashed instead.
    let stored = store.put_bytes(b"what the stage recorded").unwrap();
    let not_stored = digest(&wire_digest(b"expired since staging"));
    let known =
        Vouch { digests: vec![("vouched", stored), ("unstored", not_stored)], asked: Default::default() };

    // Through a symlinked parent: lookups get the real host path.
    let target = Target::resolve(None, &format!("{}/.", tmp.path().join("stage-link").display())).unwrap();
    let options = CaptureOptions::default();
    let captured =
        capture_tree(&store, &target, &options, OutputFormat::DirectoryOnly, Some(&known)).unwrap();
    let tree = Tree::read(&store, &captured.root_directory).unwrap();
    let file = |directory: &reapi::Directory, name: &str| {
        digest(directory.files.iter().find(|f| f.name == name).unwrap().digest.as_ref().unwrap())
    };
    assert_eq!(file(tree.root_directory(), "vouched"), stored);
    assert!(!store.contains(&digest(&wire_digest(b"real content, never read"))), "the vouched file was read");
    assert_eq!(file(tree.root_directory(), "unknown"), digest(&wire_digest(b"hashed")));
    let (_, sub) = tree.paths().into_iter().find(|(p, _)| p == "sub").unwrap();
    assert_eq!(file(sub, "unstored"), digest(&wire_digest(b"hashed after all")));
    assert!(sub.files[0].is_executable);

    let mut asked = known.asked.lock().unwrap().clone();
    asked.sort();
    let expected: Vec<(std::path::PathBuf, u64)> = ["sub/unstored", "unknown", "vouched"]
        .iter()
        .map(|p| (dir.join(p), fs::metadata(dir.join(p)).unwrap().ino()))
        .collect();
    assert_eq!(asked, expected);

    let file_target = Target::resolve(None, dir.join("vouched").to_str().unwrap()).unwrap();
    let captured = capture_file(&store, &file_target, &options, Some(&known)).unwrap();
    assert_eq!(captured.digest, stored);
    assert!(!captured.is_executable);
}
