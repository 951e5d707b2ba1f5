//! rebox's gRPC services started in-process on a Unix socket in a temporary directory, and a
//! channel to them, for integration tests. Include with
//! `#[path = "support/server.rs"] mod server;`.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rebox::digest::DigestFunction;
use rebox::grpc::{Shared, client, routes};
use rebox::store::Store;
use tokio::net::UnixListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Server};

/// A running server; dropping it stops the server and removes its directory.
#[derive(Debug)]
pub struct TestServer {
    /// The state the services share (its store is the server's).
    pub shared: Arc<Shared>,
    /// A channel to the server.
    pub channel: Channel,
    /// `unix:PATH` of the socket.
    pub url: String,
    stop: Option<oneshot::Sender<()>>,
    dir: tempfile::TempDir,
}

/// What to start a server with.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The instance name served.
    pub instance_name: String,
    /// Whether the daemon runs actions.
    pub execution_enabled: bool,
}

impl TestServer {
    /// A server with the default options: instance `""`, SHA-256, no execution.
    pub async fn start() -> Self {
        Self::start_with(Options::default()).await
    }

    /// A server with `options`; its store is at `DIR/cache`, its socket `DIR/casd.sock`.
    pub async fn start_with(options: Options) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(&dir.path().join("cache"), DigestFunction::Sha256).expect("open store");
        let shared = Arc::new(Shared {
            execution_enabled: options.execution_enabled,
            ..Shared::new(store, options.instance_name)
        });
        let socket = dir.path().join("casd.sock");
        let incoming = UnixListenerStream::new(UnixListener::bind(&socket).expect("bind socket"));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = Server::builder().add_routes(routes(Arc::clone(&shared)));
        tokio::spawn(server.serve_with_incoming_shutdown(incoming, async {
            let _ = stopped.await;
        }));
        let url = format!("unix:{}", socket.display());
        let channel = client::connect(&url).await.expect("connect to the test server");
        Self { shared, channel, url, stop: Some(stop), dir }
    }

    /// The store the server serves.
    pub fn store(&self) -> &Store {
        &self.shared.store
    }

    /// The store's root (buildbox-casd's `CACHE_DIR`).
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("cache")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Every regular file under `dir`, recursively, sorted.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return files };
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            files.extend(files_under(&path));
        } else {
            files.push(path);
        }
    }
    files.sort();
    files
}
