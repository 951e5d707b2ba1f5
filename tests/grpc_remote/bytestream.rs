//! ByteStream: reads with offset and limit, verified streamed writes, early completion, and
//! resumable uploads with QueryWriteStatus.

use std::time::Duration;

use rebox::digest::Digest;
use rebox::grpc::MAX_MESSAGE_SIZE;
use rebox::grpc::bytestream::READ_FRAME;
use rebox::proto::google::bytestream::byte_stream_client::ByteStreamClient;
use rebox::proto::google::bytestream::*;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::{Code, Status};

use crate::digest;
use crate::server::{Options, TestServer, files_under};

fn client(server: &TestServer) -> ByteStreamClient<Channel> {
    ByteStreamClient::new(server.channel.clone())
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
}

fn read_name(digest: &Digest) -> String {
    format!("blobs/{}/{}", digest.hash_hex(), digest.size())
}

fn upload_name(uuid: &str, digest: &Digest) -> String {
    format!("uploads/{uuid}/blobs/{}/{}", digest.hash_hex(), digest.size())
}

/// Deterministic, incompressible-looking test data.
fn data(len: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// The requests writing `data` at `offset` in `chunk`-byte pieces, the last with `finish`.
fn requests(name: &str, data: &[u8], offset: usize, chunk: usize, finish: bool) -> Vec<WriteRequest> {
    let pieces: Vec<&[u8]> = if data.is_empty() { vec![&[]] } else { data.chunks(chunk).collect() };
    let count = pieces.len();
    let mut position = offset;
    pieces
        .into_iter()
        .enumerate()
        .map(|(index, piece)| {
            let request = WriteRequest {
                resource_name: if index == 0 { name.to_owned() } else { String::new() },
                write_offset: position as i64,
                finish_write: finish && index + 1 == count,
                data: piece.to_vec().into(),
            };
            position += piece.len();
            request
        })
        .collect()
}

async fn write(server: &TestServer, requests: Vec<WriteRequest>) -> Result<WriteResponse, Status> {
    client(server).write(tokio_stream::iter(requests)).await.map(|r| r.into_inner())
}

async fn read(server: &TestServer, name: &str, offset: i64, limit: i64) -> Result<Vec<Vec<u8>>, Status> {
    let request = ReadRequest { resource_name: name.to_owned(), read_offset: offset, read_limit: limit };
    let mut stream = client(server).read(request).await?.into_inner();
    let mut frames = Vec::new();
    while let Some(response) = stream.message().await? {
        frames.push(response.data);
    }
    Ok(frames)
}

async fn query(server: &TestServer, name: &str) -> Result<QueryWriteStatusResponse, Status> {
    let request = QueryWriteStatusRequest { resource_name: name.to_owned() };
    client(server).query_write_status(request).await.map(|r| r.into_inner())
}

/// Polls QueryWriteStatus until it reports `committed` bytes (or fails after 10 s).
async fn wait_for_committed(server: &TestServer, name: &str, committed: i64) {
    for _ in 0..1000 {
        if query(server, name).await.is_ok_and(|s| s.committed_size == committed) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{name} never reported {committed} bytes committed: {:?}", query(server, name).await);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_written_blob_reads_back_in_frames() {
    let server = TestServer::start().await;
    let blob = data(3 * READ_FRAME + 12345);
    let digest = digest(&blob);
    let response =
        write(&server, requests(&upload_name("u", &digest), &blob, 0, 256 * 1024, true)).await.unwrap();
    assert_eq!(response.committed_size, blob.len() as i64);
    assert_eq!(std::fs::read(server.store().object_path(&digest)).unwrap(), blob);

    let frames = read(&server, &read_name(&digest), 0, 0).await.unwrap();
    assert_eq!(frames.len(), 4);
    assert!(frames.iter().all(|f| f.len() <= READ_FRAME));
    assert_eq!(frames.concat(), blob);
    // With the instance prefix and the digest function segment too.
    let named = TestServer::start_with(Options { instance_name: "main".into(), ..Default::default() }).await;
    named.store().put_bytes(&blob).unwrap();
    let name = format!("main/blobs/sha256/{}/{}", digest.hash_hex(), digest.size());
    assert_eq!(read(&named, &name, 0, 0).await.unwrap().concat(), blob);
}

#[tokio::test(flavor = "multi_thread")]
async fn reads_honour_offset_and_limit() {
    let server = TestServer::start().await;
    let blob = data(2 * READ_FRAME + 10);
    let stored = server.store().put_bytes(&blob).unwrap();
    let name = read_name(&stored);
    let size = blob.len() as i64;
    let cases: [(i64, i64, &[u8]); 6] = [
        (0, 0, &blob),
        (10, 100, &blob[10..110]),
        (READ_FRAME as i64 - 5, 10, &blob[READ_FRAME - 5..READ_FRAME + 5]),
        (size - 3, 0, &blob[blob.len() - 3..]),
        (size - 3, 1000, &blob[blob.len() - 3..]),
        (size, 0, &[]),
    ];
    for (offset, limit, expected) in cases {
        let frames = read(&server, &name, offset, limit).await.unwrap();
        assert!(!frames.is_empty(), "at least one response");
        assert_eq!(frames.concat(), expected, "offset {offset} limit {limit}");
    }
    let empty = read(&server, &read_name(&digest(b"")), 0, 0).await.unwrap();
    assert_eq!(empty, vec![Vec::<u8>::new()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_reads_fail_with_clear_statuses() {
    let server = TestServer::start().await;
    let absent = digest(b"absent");
    let digest = server.store().put_bytes(b"twelve bytes").unwrap();
    let name = read_name(&digest);
    let cases: [(String, i64, i64, Code, String); 8] = [
        (read_name(&absent), 0, 0, Code::NotFound, absent.to_string()),
        (name.clone(), 13, 0, Code::OutOfRange, "past the end".into()),
        (name.clone(), -1, 0, Code::OutOfRange, "read_offset -1".into()),
        (name.clone(), 0, -1, Code::InvalidArgument, "read_limit -1".into()),
        (format!("other/{name}"), 0, 0, Code::InvalidArgument, "\"other\"".into()),
        (format!("blobs/blake3/{}/12", digest.hash_hex()), 0, 0, Code::InvalidArgument, "BLAKE3".into()),
        (format!("{name}/trailing"), 0, 0, Code::InvalidArgument, "is not of the form".into()),
        (
            format!("blobs/{}/12", &digest.hash_hex()[..40]),
            0,
            0,
            Code::InvalidArgument,
            "40 hex digits".into(),
        ),
    ];
    for (name, offset, limit, code, words) in cases {
        let error = read(&server, &name, offset, limit).await.unwrap_err();
        assert_eq!(error.code(), code, "{name} {offset} {limit}: {}", error.message());
        assert!(error.message().contains(&words), "{name}: {}", error.message());
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_uploads_are_refused_and_store_nothing() {
    let server = TestServer::start().await;
    let blob = data(1000);
    let digest = digest(&blob);
    let name = upload_name("u", &digest);
    let mut wrong = blob.clone();
    wrong[500] ^= 1;
    let mut bad_offset = requests(&name, &blob, 0, 100, true);
    bad_offset[3].write_offset += 1;
    let mut renamed = requests(&name, &blob, 0, 100, true);
    renamed[2].resource_name = upload_name("other", &digest);
    let cases: [(&str, Vec<WriteRequest>, &str); 7] = [
        ("wrong content", requests(&name, &wrong, 0, 100, true), "hashes to"),
        ("too short", requests(&name, &blob[..900], 0, 100, true), "has 900 bytes"),
        ("too long", requests(&name, &[&blob[..], b"x"].concat(), 0, 100, true), "more than the 1000"),
        ("bad offset", bad_offset, "write_offset 301 should be 300"),
        ("renamed", renamed, "differs from the stream's first"),
        ("no requests", vec![], "no WriteRequest"),
        ("other instance", requests(&format!("x/{name}"), &blob, 0, 100, true), "\"x\""),
    ];
    for (case, requests, words) in cases {
        let error = write(&server, requests).await.unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument, "{case}: {}", error.message());
        assert!(error.message().contains(words), "{case}: {}", error.message());
        assert!(files_under(&server.root().join("cas/objects")).is_empty(), "{case}: nothing stored");
        assert!(files_under(&server.root().join("cas/tmp")).is_empty(), "{case}: no temporary file left");
        assert_eq!(query(&server, &name).await.unwrap_err().code(), Code::NotFound, "{case}: not resumable");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn writing_a_present_blob_completes_at_once() {
    let server = TestServer::start().await;
    let blob = data(4096);
    let digest = server.store().put_bytes(&blob).unwrap();
    // The client sends one piece and keeps its stream open: the server must not wait for more.
    let (sender, receiver) = mpsc::channel(4);
    sender.send(requests(&upload_name("u", &digest), &blob[..100], 0, 100, false).remove(0)).await.unwrap();
    let mut writer = client(&server);
    let call = writer.write(ReceiverStream::new(receiver));
    let response =
        tokio::time::timeout(Duration::from_secs(10), call).await.expect("answered early").unwrap();
    assert_eq!(response.into_inner().committed_size, 4096);
    drop(sender);
    let status = query(&server, &upload_name("any", &digest)).await.unwrap();
    assert_eq!((status.committed_size, status.complete), (4096, true));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_upload_resumes_where_query_write_status_says() {
    let server = TestServer::start().await;
    let blob = data(10_000);
    let digest = digest(&blob);
    let name = upload_name("resume-me", &digest);
    assert_eq!(query(&server, &name).await.unwrap_err().code(), Code::NotFound);

    let response = write(&server, requests(&name, &blob[..6000], 0, 1000, false)).await.unwrap();
    assert_eq!(response.committed_size, 6000, "a stream closed before finish_write reports its bytes");
    let status = query(&server, &name).await.unwrap();
    assert_eq!((status.committed_size, status.complete), (6000, false));
    assert!(!server.store().contains(&digest));

    let error = write(&server, requests(&name, &blob[5000..], 5000, 1000, true)).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument);
    assert!(error.message().contains("6000 bytes committed"), "{}", error.message());
    let other = upload_name("another-upload", &digest);
    let error = write(&server, requests(&other, &blob[6000..], 6000, 1000, true)).await.unwrap_err();
    assert!(error.message().contains("start at 0"), "{}", error.message());

    let response = write(&server, requests(&name, &blob[6000..], 6000, 1000, true)).await.unwrap();
    assert_eq!(response.committed_size, 10_000);
    let status = query(&server, &name).await.unwrap();
    assert_eq!((status.committed_size, status.complete), (10_000, true));
    assert_eq!(server.store().read(&digest).unwrap(), blob);
    assert!(files_under(&server.root().join("cas/tmp")).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_broken_upload_is_kept_for_resuming_and_streams_before_finish() {
    let server = TestServer::start().await;
    let blob = data(3 * 65536);
    let digest = digest(&blob);
    let name = upload_name("broken", &digest);
    let (sender, receiver) = mpsc::channel(4);
    let mut writer = client(&server);
    let call = tokio::spawn(async move { writer.write(ReceiverStream::new(receiver)).await });
    for request in requests(&name, &blob[..2 * 65536], 0, 65536, false) {
        sender.send(request).await.unwrap();
    }
    // The bytes reach the writer while the stream is open: nothing waits for the whole blob.
    wait_for_committed(&server, &name, 2 * 65536).await;
    let error =
        write(&server, requests(&name, &blob[2 * 65536..], 2 * 65536, 65536, true)).await.unwrap_err();
    assert_eq!(error.code(), Code::Aborted, "the upload is busy: {}", error.message());

    // The connection's call is cancelled mid-upload.
    call.abort();
    drop(sender);
    let _ = call.await;
    wait_for_committed(&server, &name, 2 * 65536).await;
    let mut resumed = None;
    for _ in 0..1000 {
        // The server may still be noticing the cancellation (ABORTED while the call is active).
        match write(&server, requests(&name, &blob[2 * 65536..], 2 * 65536, 65536, true)).await {
            Err(e) if e.code() == Code::Aborted => tokio::time::sleep(Duration::from_millis(10)).await,
            other => {
                resumed = Some(other.unwrap());
                break;
            }
        }
    }
    assert_eq!(resumed.expect("resumed").committed_size, blob.len() as i64);
    assert_eq!(server.store().read(&digest).unwrap(), blob);
}
