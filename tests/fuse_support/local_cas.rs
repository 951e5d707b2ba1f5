//! The LocalCAS service served in-process on a Unix socket, over a given store; a client of it,
//! and captures through it.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use prost::Message;
use rebox::digest::Digest;
use rebox::proto::build::bazel::remote::execution::v2 as reapi;
use rebox::proto::build::buildgrid::{CaptureFilesRequest, CaptureTreeRequest};

use rebox::grpc::{Shared, client::connect, routes};
use rebox::proto::build::buildgrid::local_content_addressable_storage_client::LocalContentAddressableStorageClient;
use rebox::store::Store;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Server};

/// The instance name the in-process daemon serves.
pub const INSTANCE: &str = "main";

/// A LocalCAS server whose stages are all undone when it is dropped.
pub struct Daemon {
    _tmp: tempfile::TempDir,
    socket: PathBuf,
    /// The daemon's state: its store and its stages.
    pub shared: Arc<Shared>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.shared.stages.cleanup_all();
    }
}

impl Daemon {
    /// Serves `store` on a fresh socket (call from a Tokio runtime).
    pub fn start(store: &Store) -> Daemon {
        let tmp = tempfile::tempdir().unwrap();
        let socket = tmp.path().join("casd.sock");
        let shared = Arc::new(Shared::new(store.clone(), INSTANCE));
        let incoming = UnixListenerStream::new(UnixListener::bind(&socket).unwrap());
        let server = Server::builder().add_routes(routes(shared.clone())).serve_with_incoming(incoming);
        tokio::spawn(server);
        Daemon { _tmp: tmp, socket, shared }
    }

    /// A client of it.
    pub async fn client(&self) -> LocalContentAddressableStorageClient<Channel> {
        let url = format!("unix:{}", self.socket.display());
        LocalContentAddressableStorageClient::new(connect(&url).await.unwrap())
    }
}

/// A digest from its proto form.
pub fn digest_of(proto: Option<&reapi::Digest>) -> Digest {
    let proto = proto.expect("a digest");
    Digest::from_str(&format!("{}/{}", proto.hash, proto.size_bytes)).unwrap()
}

/// CaptureTree of `path` asking for `properties`: the root Directory's digest.
pub async fn capture_tree(
    client: &mut LocalContentAddressableStorageClient<Channel>,
    path: &Path,
    properties: &[&str],
) -> Digest {
    let request = CaptureTreeRequest {
        instance_name: INSTANCE.into(),
        path: vec![path.display().to_string()],
        node_properties: properties.iter().map(|p| p.to_string()).collect(),
        output_directory_format: reapi::command::OutputDirectoryFormat::DirectoryOnly as i32,
        ..Default::default()
    };
    let response = client.capture_tree(request).await.unwrap().into_inner();
    let response = &response.responses[0];
    assert_eq!(response.status.as_ref().unwrap().code, 0, "{response:?}");
    digest_of(response.root_directory_digest.as_ref())
}

/// CaptureFiles of `path`: the file's digest.
pub async fn capture_file(client: &mut LocalContentAddressableStorageClient<Channel>, path: &Path) -> Digest {
    let request = CaptureFilesRequest {
        instance_name: INSTANCE.into(),
        path: vec![path.display().to_string()],
        ..Default::default()
    };
    let response = client.capture_files(request).await.unwrap().into_inner();
    let response = &response.responses[0];
    assert_eq!(response.status.as_ref().unwrap().code, 0, "{response:?}");
    digest_of(response.digest.as_ref())
}

/// The digest of the subdirectory `name` in the stored Directory `parent`.
pub fn subdirectory(store: &Store, parent: &Digest, name: &str) -> Digest {
    let directory = reapi::Directory::decode(store.read(parent).unwrap().as_slice()).unwrap();
    digest_of(directory.directories.iter().find(|d| d.name == name).unwrap().digest.as_ref())
}
