//! `--bind` addresses and the listeners made from them.
//!
//! A Unix socket appears at its path only once it is listening: it is bound under a temporary
//! name in the same directory and renamed into place, so "the socket file exists" (what
//! BuildStream polls for) means "connections are accepted". The temporary name is reached through
//! `/proc/self/fd/DIRFD/` so that its length never matters (`sun_path` holds 108 bytes). A stale
//! socket left by a crashed daemon is replaced; a live one (it accepts a connection) is refused.

use std::fmt;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::fcntl::{AtFlags, OFlag, open, renameat};
use nix::sys::stat::{FchmodatFlags, Mode, fchmodat};
use nix::unistd::{Gid, UnlinkatFlags, fchownat, unlinkat};
use tracing::info;

use crate::grpc::client::unix_socket_path;

/// Where to listen: `unix:PATH` or `HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BindAddress {
    /// A Unix socket at a path.
    Unix(PathBuf),
    /// A TCP address; the host may be a name, an IPv4 or a bracketed IPv6 address.
    Tcp {
        /// Host name or address (without brackets).
        host: String,
        /// Port (0: any free port).
        port: u16,
    },
}

impl FromStr for BindAddress {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        if text.starts_with("unix:") {
            return unix_socket_path(text)
                .map(BindAddress::Unix)
                .ok_or_else(|| format!("{text:?} names no socket path (use unix:PATH)"));
        }
        let bad = || format!("{text:?} is not unix:PATH or HOST:PORT");
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("{text:?}: port {port:?} is not a number up to 65535"))?;
        if host.is_empty() || host.contains('/') {
            return Err(bad());
        }
        Ok(BindAddress::Tcp { host: host.to_owned(), port })
    }
}

impl fmt::Display for BindAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindAddress::Unix(path) => write!(f, "unix:{}", path.display()),
            BindAddress::Tcp { host, port } if host.contains(':') => write!(f, "[{host}]:{port}"),
            BindAddress::Tcp { host, port } => write!(f, "{host}:{port}"),
        }
    }
}

/// Why a listener could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BindError {
    /// Another server answers on the socket.
    #[error("another server is already listening on {}", .0.display())]
    InUse(PathBuf),
    /// Something other than a socket is at the path.
    #[error("{} exists and is not a socket", .0.display())]
    NotASocket(PathBuf),
    /// A system call failed.
    #[error("cannot {action} {target}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The address or path concerned.
        target: String,
        /// The underlying error.
        source: io::Error,
    },
}

fn io_error(action: &'static str, target: impl fmt::Display) -> impl FnOnce(io::Error) -> BindError {
    move |source| BindError::Io { action, target: target.to_string(), source }
}

/// Ownership and mode for Unix sockets (`--unix-socket-group`, `--unix-socket-mode`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SocketOptions {
    /// Mode bits, e.g. `0o770`.
    pub mode: Option<u32>,
    /// Group to give the socket.
    pub group: Option<Gid>,
}

/// A listener ready to accept.
#[derive(Debug)]
pub enum Listener {
    /// A Unix socket, and its file (to remove at shutdown).
    Unix(tokio::net::UnixListener, SocketFile),
    /// A TCP socket.
    Tcp(tokio::net::TcpListener),
}

/// The file of a socket this daemon created; removed (if it is still that socket) when dropped.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    id: (u64, u64),
}

impl SocketFile {
    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        // A later daemon may have replaced the file: leave its socket alone.
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.id) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// Listens on `address`. Must run inside a Tokio runtime.
pub async fn bind(address: &BindAddress, options: SocketOptions) -> Result<Listener, BindError> {
    match address {
        BindAddress::Unix(path) => {
            let (listener, file) = bind_unix(path, options)?;
            listener.set_nonblocking(true).map_err(io_error("set non-blocking", address))?;
            let listener =
                tokio::net::UnixListener::from_std(listener).map_err(io_error("listen on", address))?;
            Ok(Listener::Unix(listener, file))
        }
        BindAddress::Tcp { host, port } => {
            let listener = tokio::net::TcpListener::bind((host.as_str(), *port))
                .await
                .map_err(io_error("listen on", address))?;
            if let Ok(local) = listener.local_addr() {
                info!("listening on {address} ({local})");
            }
            Ok(Listener::Tcp(listener))
        }
    }
}

/// Binds a Unix socket under a temporary name and renames it to `path` once it listens.
fn bind_unix(path: &Path, options: SocketOptions) -> Result<(UnixListener, SocketFile), BindError> {
    let name = path.file_name().ok_or_else(|| BindError::NotASocket(path.to_owned()))?;
    let parent = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    check_not_served(path)?;
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let dir: OwnedFd = open(parent, flags, Mode::empty())
        .map_err(|errno| io_error("open directory", parent.display())(errno.into()))?;
    let temp = temporary_name();
    let _ = unlinkat(dir.as_fd(), temp.as_str(), UnlinkatFlags::NoRemoveDir);
    let via_proc = PathBuf::from(format!("/proc/self/fd/{}/{temp}", dir.as_raw_fd()));
    let bind_path = if via_proc.parent().is_some_and(Path::is_dir) { via_proc } else { parent.join(&temp) };
    let listener = UnixListener::bind(&bind_path).map_err(io_error("bind a socket in", parent.display()))?;
    let result = finish_unix(&dir, &temp, name, options);
    if result.is_err() {
        let _ = unlinkat(dir.as_fd(), temp.as_str(), UnlinkatFlags::NoRemoveDir);
    }
    result.map_err(|source| BindError::Io {
        action: "set up socket",
        target: path.display().to_string(),
        source,
    })?;
    let metadata = std::fs::symlink_metadata(path).map_err(io_error("stat", path.display()))?;
    Ok((listener, SocketFile { path: path.to_owned(), id: (metadata.dev(), metadata.ino()) }))
}

/// Applies mode and group to the bound temporary socket, then renames it into place (replacing a
/// stale socket atomically).
fn finish_unix(dir: &OwnedFd, temp: &str, name: &std::ffi::OsStr, options: SocketOptions) -> io::Result<()> {
    if let Some(mode) = options.mode {
        let mode = Mode::from_bits_truncate(mode);
        fchmodat(dir.as_fd(), temp, mode, FchmodatFlags::FollowSymlink)?;
    }
    if let Some(group) = options.group {
        fchownat(dir.as_fd(), temp, None, Some(group), AtFlags::AT_SYMLINK_NOFOLLOW)?;
    }
    renameat(dir.as_fd(), temp, dir.as_fd(), name)?;
    Ok(())
}

/// A temporary socket name unique within this process.
fn temporary_name() -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    format!(".rebox-casd-{}-{}.sock", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
}

/// Refuses a path where a live server listens, or that is not a socket. A socket nobody answers
/// on is a leftover of a crashed run: it is replaced.
fn check_not_served(path: &Path) -> Result<(), BindError> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error("stat", path.display())(e)),
        Ok(metadata) if !metadata.file_type().is_socket() => Err(BindError::NotASocket(path.to_owned())),
        Ok(_) => match UnixStream::connect(path) {
            Ok(_) => Err(BindError::InUse(path.to_owned())),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                info!("replacing the stale socket {}", path.display());
                Ok(())
            }
            Err(e) => Err(io_error("check the existing socket", path.display())(e)),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_like_buildbox_casd() {
        assert_eq!("unix:/run/casd.sock".parse(), Ok(BindAddress::Unix("/run/casd.sock".into())));
        assert_eq!("unix:rel.sock".parse(), Ok(BindAddress::Unix("rel.sock".into())));
        let tcp = |host: &str, port| Ok(BindAddress::Tcp { host: host.to_owned(), port });
        assert_eq!("localhost:50051".parse(), tcp("localhost", 50051));
        assert_eq!("127.0.0.1:0".parse(), tcp("127.0.0.1", 0));
        assert_eq!("[::1]:80".parse(), tcp("::1", 80));
        assert_eq!(tcp("::1", 80).unwrap().to_string(), "[::1]:80");
        for bad in ["unix:", "/tmp/x.sock", "localhost", ":80", "host:http", "host:70000"] {
            let error = bad.parse::<BindAddress>().unwrap_err();
            assert!(error.contains(&format!("{bad:?}")), "{bad}: {error}");
        }
    }

    #[tokio::test]
    async fn a_socket_appears_listening_and_a_live_one_is_not_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("casd.sock");
        let options = SocketOptions { mode: Some(0o700), group: None };
        let Listener::Unix(listener, file) = bind(&BindAddress::Unix(path.clone()), options).await.unwrap()
        else {
            panic!("not a Unix listener");
        };
        let metadata = std::fs::metadata(&path).unwrap();
        assert!(metadata.file_type().is_socket());
        assert_eq!(std::os::unix::fs::PermissionsExt::mode(&metadata.permissions()) & 0o777, 0o700);
        // Listening already: a connection is accepted without any accept loop running yet.
        UnixStream::connect(&path).unwrap();
        assert!(matches!(
            bind(&BindAddress::Unix(path.clone()), SocketOptions::default()).await,
            Err(BindError::InUse(_))
        ));
        // No temporary file is left beside it.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        drop(listener);
        drop(file);
        assert!(!path.exists(), "the socket file is removed with its owner");
    }

    #[tokio::test]
    async fn a_stale_socket_is_replaced_and_a_regular_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("casd.sock");
        drop(UnixListener::bind(&path).unwrap());
        assert!(path.exists(), "a crashed server leaves its socket behind");
        let listener = bind(&BindAddress::Unix(path.clone()), SocketOptions::default()).await.unwrap();
        UnixStream::connect(&path).unwrap();
        drop(listener);
        std::fs::write(&path, "data").unwrap();
        let error = bind(&BindAddress::Unix(path.clone()), SocketOptions::default()).await.unwrap_err();
        assert!(matches!(error, BindError::NotASocket(_)), "{error}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "data");
    }

    #[tokio::test]
    async fn a_path_longer_than_sun_path_works() {
        let dir = tempfile::tempdir().unwrap();
        let deep = dir.path().join("d".repeat(100));
        std::fs::create_dir(&deep).unwrap();
        let path = deep.join("casd.sock");
        assert!(path.as_os_str().len() > 108);
        let _listener = bind(&BindAddress::Unix(path.clone()), SocketOptions::default()).await.unwrap();
        assert!(std::fs::metadata(&path).unwrap().file_type().is_socket());
    }
}
