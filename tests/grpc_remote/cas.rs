//! ContentAddressableStorage: FindMissingBlobs, BatchUpdateBlobs, BatchReadBlobs, GetTree and
//! the unsupported SplitBlob/SpliceBlob.

use prost::Message;
use reapi::batch_update_blobs_request::Request as UpdateBlob;
use rebox::digest::Digest;
use rebox::grpc::capabilities::MAX_BATCH_TOTAL_SIZE;
use rebox::proto::build::bazel::remote::execution::v2 as reapi;
use tonic::Code;

use crate::server::{Options, TestServer, files_under};
use crate::{cas_client, digest, proto};

fn update(data: &[u8]) -> UpdateBlob {
    UpdateBlob { digest: Some(proto(&digest(data))), data: data.to_vec().into(), compressor: 0 }
}

#[tokio::test(flavor = "multi_thread")]
async fn find_missing_reports_absent_blobs_in_request_order() {
    let server = TestServer::start().await;
    let present = server.store().put_bytes(b"present").unwrap();
    let (absent1, absent2) = (digest(b"absent 1"), digest(b"absent 2"));
    let request = reapi::FindMissingBlobsRequest {
        blob_digests: [absent2, present, absent1, absent2, digest(b"")].iter().map(proto).collect(),
        ..Default::default()
    };
    let response = cas_client(&server.channel).find_missing_blobs(request).await.unwrap().into_inner();
    let missing: Vec<_> = [absent2, absent1, absent2].iter().map(proto).collect();
    assert_eq!(response.missing_blob_digests, missing, "the empty blob always counts as present");
}

#[tokio::test(flavor = "multi_thread")]
async fn find_missing_takes_100k_digests_in_one_call() {
    let server = TestServer::start().await;
    let stored: Vec<_> =
        (0..1000).map(|i| server.store().put_bytes(format!("blob {i}").as_bytes()).unwrap()).collect();
    // Made-up digests (hashing 99k blobs in a debug build would dominate the test).
    let absent = |i: u32| Digest::from_raw(&[i.to_be_bytes(), [0xab; 4]].concat().repeat(4), 7);
    let mut digests: Vec<_> = (0..99_000).map(absent).collect();
    digests.extend(&stored);
    let request = reapi::FindMissingBlobsRequest {
        blob_digests: digests.iter().map(proto).collect(),
        ..Default::default()
    };
    assert!(request.encoded_len() > 4 * 1024 * 1024, "over gRPC's default limit");
    let response = cas_client(&server.channel).find_missing_blobs(request).await.unwrap().into_inner();
    assert_eq!(response.missing_blob_digests.len(), 99_000);
    assert_eq!(
        response.missing_blob_digests[..],
        digests[..99_000].iter().map(proto).collect::<Vec<_>>()[..]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_for_another_instance_or_digest_function_are_refused() {
    let server = TestServer::start_with(Options { instance_name: "main".into(), ..Default::default() }).await;
    let mut cas = cas_client(&server.channel);
    let find = |instance: &str, function: i32| reapi::FindMissingBlobsRequest {
        instance_name: instance.into(),
        blob_digests: vec![proto(&digest(b"x"))],
        digest_function: function,
    };
    cas.find_missing_blobs(find("main", 0)).await.unwrap();
    cas.find_missing_blobs(find("main", 1)).await.unwrap();
    for (instance, function, words) in [
        ("", 0, "unknown instance name \"\""),
        ("other", 0, "\"other\""),
        ("main", 2, "digest function SHA1 is not supported"),
        ("main", 77, "value 77"),
    ] {
        let error = cas.find_missing_blobs(find(instance, function)).await.unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{instance:?} {function}");
        assert!(error.message().contains(words), "{}", error.message());
    }
    let update = reapi::BatchUpdateBlobsRequest {
        instance_name: "other".into(),
        requests: vec![update(b"x")],
        ..Default::default()
    };
    assert_eq!(cas.batch_update_blobs(update).await.unwrap_err().code(), Code::InvalidArgument);
    assert!(!server.store().contains(&digest(b"x")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_malformed_digest_fails_find_missing_naming_it() {
    let server = TestServer::start().await;
    let request = reapi::FindMissingBlobsRequest {
        blob_digests: vec![proto(&digest(b"ok")), reapi::Digest { hash: "zz".into(), size_bytes: 1 }],
        ..Default::default()
    };
    let error = cas_client(&server.channel).find_missing_blobs(request).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        error.message().contains("blob_digests[1]") && error.message().contains("\"zz\""),
        "{}",
        error.message()
    );
}

/// A FindMissingBlobsRequest whose hashes are any bytes, not just text.
#[derive(Clone, PartialEq, prost::Message)]
struct BytesFindMissing {
    #[prost(message, repeated, tag = "2")]
    blob_digests: Vec<BytesDigest>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct BytesDigest {
    #[prost(bytes = "vec", tag = "1")]
    hash: Vec<u8>,
    #[prost(int64, tag = "2")]
    size_bytes: i64,
}

/// Field 2 of FindMissingBlobsRequest as a number, where a Digest message belongs.
#[derive(Clone, PartialEq, prost::Message)]
struct NotAFindMissing {
    #[prost(int64, tag = "2")]
    blob_digests: i64,
}

async fn find_missing_as<M: prost::Message + Default + 'static>(
    server: &TestServer,
    request: M,
) -> tonic::Status {
    let mut grpc = tonic::client::Grpc::new(server.channel.clone());
    grpc.ready().await.unwrap();
    let path = "/build.bazel.remote.execution.v2.ContentAddressableStorage/FindMissingBlobs";
    let codec = tonic_prost::ProstCodec::<M, reapi::FindMissingBlobsResponse>::default();
    grpc.unary(tonic::Request::new(request), path.parse().unwrap(), codec).await.unwrap_err()
}

#[tokio::test(flavor = "multi_thread")]
async fn find_missing_refuses_a_hash_that_is_not_text_or_a_request_that_is_not_one_as_bad_input() {
    // rebox decodes this call itself: the generated decoder would fail both with INTERNAL.
    let server = TestServer::start().await;
    let good = BytesDigest { hash: digest(b"x").hash_hex().into_bytes(), size_bytes: 1 };
    let mut not_text = good.clone();
    not_text.hash[3] = 0xff;
    let error = find_missing_as(&server, BytesFindMissing { blob_digests: vec![good, not_text] }).await;
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        error.message().starts_with("blob_digests[1]: ") && error.message().contains("hexadecimal"),
        "{}",
        error.message()
    );

    let error = find_missing_as(&server, NotAFindMissing { blob_digests: 7 }).await;
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(
        error.message().contains("FindMissingBlobsRequest is not a valid message"),
        "{}",
        error.message()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_update_stores_good_blobs_and_refuses_bad_ones_each_with_its_status() {
    let server = TestServer::start().await;
    let good = update(b"good blob");
    let wrong_hash = UpdateBlob { data: b"other blob!".to_vec().into(), ..update(b"good blob 2") };
    let wrong_size = UpdateBlob {
        digest: Some(reapi::Digest { size_bytes: 99, ..proto(&digest(b"sized")) }),
        ..update(b"sized")
    };
    let malformed =
        UpdateBlob { digest: Some(reapi::Digest { hash: "abc".into(), size_bytes: 1 }), ..update(b"m") };
    let no_digest = UpdateBlob { digest: None, ..update(b"n") };
    let compressed = UpdateBlob { compressor: 1, ..update(b"zstd") };
    let request = reapi::BatchUpdateBlobsRequest {
        requests: vec![
            good.clone(),
            wrong_hash.clone(),
            wrong_size.clone(),
            malformed.clone(),
            no_digest,
            compressed,
        ],
        ..Default::default()
    };
    let response = cas_client(&server.channel).batch_update_blobs(request).await.unwrap().into_inner();
    let statuses: Vec<_> = response.responses.iter().map(|r| r.status.clone().unwrap()).collect();
    assert_eq!(response.responses[1].digest, wrong_hash.digest, "each response names its blob");
    assert_eq!(statuses[0].code, Code::Ok as i32);
    let expected = [
        (1, "hashes to"),
        (2, "has 5 bytes, but digest"),
        (3, "length"),
        (4, "digest is missing"),
        (5, "compressor 1 is not supported"),
    ];
    for (index, words) in expected {
        assert_eq!(statuses[index].code, Code::InvalidArgument as i32, "blob {index}");
        assert!(statuses[index].message.contains(words), "blob {index}: {}", statuses[index].message);
    }
    // Only the good blob reached the objects directory; nothing is left in cas/tmp.
    let objects = files_under(&server.root().join("cas/objects"));
    assert_eq!(objects, vec![server.store().object_path(&digest(b"good blob"))]);
    assert_eq!(std::fs::read(&objects[0]).unwrap(), b"good blob");
    assert!(files_under(&server.root().join("cas/tmp")).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn batches_over_4_mib_pass_both_ways() {
    let server = TestServer::start().await;
    let blobs: Vec<Vec<u8>> = (0..3u8).map(|i| vec![i; 2 * 1024 * 1024 + 1]).collect();
    let request = reapi::BatchUpdateBlobsRequest {
        requests: blobs.iter().map(|b| update(b)).collect(),
        ..Default::default()
    };
    let mut cas = cas_client(&server.channel);
    let response = cas.batch_update_blobs(request).await.unwrap().into_inner();
    assert!(response.responses.iter().all(|r| r.status.as_ref().unwrap().code == 0));
    let digests: Vec<_> = blobs.iter().map(|b| proto(&digest(b))).collect();
    let read = reapi::BatchReadBlobsRequest { digests: digests.clone(), ..Default::default() };
    let response = cas.batch_read_blobs(read).await.unwrap().into_inner();
    for ((response, blob), digest) in response.responses.iter().zip(&blobs).zip(&digests) {
        assert_eq!(response.digest.as_ref(), Some(digest));
        assert_eq!(&response.data, blob);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_read_gives_each_blob_its_status() {
    let server = TestServer::start().await;
    let present = server.store().put_bytes(b"present").unwrap();
    let absent = digest(b"absent");
    let malformed = reapi::Digest { hash: "zz".into(), size_bytes: 1 };
    let request = reapi::BatchReadBlobsRequest {
        digests: vec![proto(&present), proto(&absent), malformed, proto(&digest(b""))],
        ..Default::default()
    };
    let response = cas_client(&server.channel).batch_read_blobs(request).await.unwrap().into_inner();
    let codes: Vec<i32> = response.responses.iter().map(|r| r.status.as_ref().unwrap().code).collect();
    let expected = [Code::Ok, Code::NotFound, Code::InvalidArgument, Code::Ok];
    assert_eq!(codes, expected.map(|c| c as i32));
    assert_eq!(response.responses[0].data, b"present");
    assert!(response.responses[1].status.as_ref().unwrap().message.contains(&absent.to_string()));
    assert!(response.responses[3].data.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn batch_read_over_the_batch_limit_is_refused() {
    let server = TestServer::start().await;
    let huge = reapi::Digest { size_bytes: MAX_BATCH_TOTAL_SIZE as i64 + 1, ..proto(&digest(b"h")) };
    let request = reapi::BatchReadBlobsRequest { digests: vec![huge], ..Default::default() };
    let error = cas_client(&server.channel).batch_read_blobs(request).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().contains("ByteStream"), "{}", error.message());
}

fn file(name: &str, digest: &rebox::digest::Digest) -> reapi::FileNode {
    reapi::FileNode { name: name.into(), digest: Some(proto(digest)), ..Default::default() }
}

fn dir_node(name: &str, digest: &rebox::digest::Digest) -> reapi::DirectoryNode {
    reapi::DirectoryNode { name: name.into(), digest: Some(proto(digest)) }
}

/// root/{a/{c}, b/{c, c2 = c}}: `c` is shared by three paths.
struct SharedTree {
    root: reapi::Directory,
    a: reapi::Directory,
    b: reapi::Directory,
    c: reapi::Directory,
    root_digest: rebox::digest::Digest,
}

fn shared_tree(server: &TestServer) -> SharedTree {
    let store = server.store();
    let put = |d: &reapi::Directory| store.put_bytes(&d.encode_to_vec()).unwrap();
    let content = store.put_bytes(b"file content").unwrap();
    let c = reapi::Directory { files: vec![file("f", &content)], ..Default::default() };
    let a = reapi::Directory { directories: vec![dir_node("c", &put(&c))], ..Default::default() };
    let b = reapi::Directory {
        directories: vec![dir_node("c", &put(&c)), dir_node("c2", &put(&c))],
        ..Default::default()
    };
    let root = reapi::Directory {
        directories: vec![dir_node("a", &put(&a)), dir_node("b", &put(&b))],
        ..Default::default()
    };
    let root_digest = put(&root);
    SharedTree { root, a, b, c, root_digest }
}

async fn get_tree(
    server: &TestServer,
    request: reapi::GetTreeRequest,
) -> Result<Vec<reapi::GetTreeResponse>, tonic::Status> {
    let mut stream = cas_client(&server.channel).get_tree(request).await?.into_inner();
    let mut pages = Vec::new();
    while let Some(page) = stream.message().await? {
        pages.push(page);
    }
    Ok(pages)
}

#[tokio::test(flavor = "multi_thread")]
async fn get_tree_lists_each_directory_once_parents_first_in_pages() {
    let server = TestServer::start().await;
    let tree = shared_tree(&server);
    let request = |page_size, page_token: &str| reapi::GetTreeRequest {
        root_digest: Some(proto(&tree.root_digest)),
        page_size,
        page_token: page_token.into(),
        ..Default::default()
    };
    let all = get_tree(&server, request(0, "")).await.unwrap();
    assert_eq!(all.len(), 1);
    let walk = [tree.root.clone(), tree.a.clone(), tree.c.clone(), tree.b.clone()];
    assert_eq!(all[0].directories, walk, "depth first, name order, the shared c once");
    assert_eq!(all[0].next_page_token, "");

    let pages = get_tree(&server, request(3, "")).await.unwrap();
    let shape: Vec<_> = pages.iter().map(|p| (p.directories.len(), p.next_page_token.as_str())).collect();
    assert_eq!(shape, [(3, "3"), (1, "")]);

    let resumed = get_tree(&server, request(1, "1")).await.unwrap();
    let directories: Vec<_> = resumed.iter().flat_map(|p| p.directories.clone()).collect();
    assert_eq!(directories, walk[1..], "a token resumes where its page starts");
    assert_eq!(resumed.last().unwrap().next_page_token, "");

    for (token, words) in [("x", "not one this server issued"), ("4", "past the end"), ("-1", "not one")] {
        let error = get_tree(&server, request(1, token)).await.unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{token}");
        assert!(error.message().contains(words), "{token}: {}", error.message());
    }
    let error = get_tree(&server, request(-1, "")).await.unwrap_err();
    assert!(error.message().contains("page_size -1"), "{}", error.message());
}

#[tokio::test(flavor = "multi_thread")]
async fn get_tree_omits_missing_subtrees_and_refuses_bad_ones() {
    let server = TestServer::start().await;
    let store = server.store();
    let put = |d: &reapi::Directory| store.put_bytes(&d.encode_to_vec()).unwrap();
    let gone = digest(b"never stored");
    let partial = reapi::Directory { directories: vec![dir_node("gone", &gone)], ..Default::default() };
    let request = |root: &rebox::digest::Digest| reapi::GetTreeRequest {
        root_digest: Some(proto(root)),
        ..Default::default()
    };

    let pages = get_tree(&server, request(&put(&partial))).await.unwrap();
    assert_eq!(pages[0].directories, [partial], "REAPI: return the portion present");

    let error = get_tree(&server, request(&gone)).await.unwrap_err();
    assert_eq!(error.code(), Code::NotFound);

    let content = store.put_bytes(b"x").unwrap();
    let escape = reapi::Directory { files: vec![file("..", &content)], ..Default::default() };
    let nested = reapi::Directory { directories: vec![dir_node("sub", &put(&escape))], ..Default::default() };
    let error = get_tree(&server, request(&put(&nested))).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().contains("\"..\"") && error.message().contains("\"sub\""), "{}", error.message());

    let not_a_directory = store.put_bytes(&[0xff, 0xff, 0xff]).unwrap();
    let error = get_tree(&server, request(&not_a_directory)).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().contains("not a valid Directory"), "{}", error.message());
}

#[tokio::test(flavor = "multi_thread")]
async fn split_and_splice_are_unimplemented_with_a_reason() {
    let server = TestServer::start().await;
    let mut grpc = tonic::client::Grpc::new(server.channel.clone());
    for method in ["SplitBlob", "SpliceBlob"] {
        grpc.ready().await.unwrap();
        let path = format!("/build.bazel.remote.execution.v2.ContentAddressableStorage/{method}");
        let codec = tonic_prost::ProstCodec::<reapi::Digest, reapi::Digest>::default();
        let request = tonic::Request::new(proto(&digest(b"x")));
        let error = grpc.unary(request, path.parse().unwrap(), codec).await.unwrap_err();
        assert_eq!(error.code(), Code::Unimplemented, "{method}");
        assert!(error.message().starts_with(&format!("{method} is not supported")), "{}", error.message());
    }
}
