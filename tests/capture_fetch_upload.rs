//! FetchTree, UploadTree, FetchMissingBlobs and UploadMissingBlobs through a real tonic client
//! on a Unix socket. With no remote CAS, each checks the local CAS and reports what it lacks.

#[path = "capture/support.rs"]
mod support;

use prost::Message;
use rebox::proto::build::bazel::remote::execution::v2 as reapi;
use rebox::proto::build::buildgrid::*;
use rebox::tree::to_proto;
use support::{Daemon, wire_digest};

fn code(status: &Option<rebox::proto::google::rpc::Status>) -> i32 {
    status.as_ref().expect("a status").code
}

/// Stores `directory` and returns its wire digest.
fn put_directory(daemon: &Daemon, directory: &reapi::Directory) -> reapi::Digest {
    to_proto(&daemon.store.put_bytes(&directory.encode_to_vec()).unwrap())
}

fn file_node(name: &str, content: &[u8]) -> reapi::FileNode {
    reapi::FileNode { name: name.into(), digest: Some(wire_digest(content)), ..Default::default() }
}

#[tokio::test(flavor = "multi_thread")]
async fn fetch_and_upload_tree_check_the_tree_is_complete_locally() {
    let daemon = Daemon::start().await;
    let mut client = daemon.client.clone();
    daemon.store.put_bytes(b"present").unwrap();
    let sub = reapi::Directory { files: vec![file_node("absent-file", b"absent")], ..Default::default() };
    let sub_digest = put_directory(&daemon, &sub);
    let root = reapi::Directory {
        files: vec![file_node("present-file", b"present")],
        directories: vec![reapi::DirectoryNode { name: "sub".into(), digest: Some(sub_digest) }],
        ..Default::default()
    };
    let root_digest = put_directory(&daemon, &root);
    let fetch = |digest: &reapi::Digest, files: bool| FetchTreeRequest {
        root_digest: Some(digest.clone()),
        fetch_file_blobs: files,
        ..Default::default()
    };

    client.fetch_tree(fetch(&root_digest, false)).await.expect("directories are all present");
    let status = client.fetch_tree(fetch(&root_digest, true)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert!(status.message().contains("sub/absent-file"), "{}", status.message());
    let upload = UploadTreeRequest { root_digest: Some(root_digest.clone()), ..Default::default() };
    assert_eq!(client.upload_tree(upload.clone()).await.unwrap_err().code(), tonic::Code::NotFound);
    daemon.store.put_bytes(b"absent").unwrap();
    client.fetch_tree(fetch(&root_digest, true)).await.expect("complete now");
    client.upload_tree(upload).await.expect("complete now");

    let missing = wire_digest(b"no such directory");
    let status = client.fetch_tree(fetch(&missing, false)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::NotFound);
    assert!(status.message().contains(&missing.hash), "{}", status.message());

    // A tree with a bad entry is refused, naming it.
    let bad = reapi::Directory { files: vec![file_node("..", b"present")], ..Default::default() };
    let bad_digest = put_directory(&daemon, &bad);
    let status = client.fetch_tree(fetch(&bad_digest, false)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("\"..\""), "{}", status.message());
    let status = client
        .upload_tree(UploadTreeRequest { root_digest: Some(bad_digest), ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);

    let malformed = reapi::Digest { hash: "zz".into(), size_bytes: 1 };
    let status = client.fetch_tree(fetch(&malformed, false)).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("root_digest"), "{}", status.message());
    let status = client.fetch_tree(FetchTreeRequest::default()).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_blob_requests_report_what_the_local_cas_lacks() {
    let daemon = Daemon::start().await;
    let mut client = daemon.client.clone();
    daemon.store.put_bytes(b"here").unwrap();
    let digests = vec![wire_digest(b"here"), wire_digest(b"gone"), wire_digest(b"")];
    let fetched = client
        .fetch_missing_blobs(FetchMissingBlobsRequest { blob_digests: digests.clone(), ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(fetched.responses.len(), 1);
    assert_eq!(fetched.responses[0].digest, Some(wire_digest(b"gone")));
    assert_eq!(code(&fetched.responses[0].status), tonic::Code::NotFound as i32);
    let uploaded = client
        .upload_missing_blobs(UploadMissingBlobsRequest { blob_digests: digests, ..Default::default() })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        uploaded.responses.iter().map(|r| r.digest.clone()).collect::<Vec<_>>(),
        [Some(wire_digest(b"gone"))]
    );
    assert!(uploaded.responses[0].status.clone().unwrap().message.contains("no remote"));

    let malformed = vec![wire_digest(b"here"), reapi::Digest { hash: "xyz".into(), size_bytes: 3 }];
    let status = client
        .upload_missing_blobs(UploadMissingBlobsRequest { blob_digests: malformed, ..Default::default() })
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("blob_digests[1]"), "{}", status.message());
}
