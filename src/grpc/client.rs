//! Connecting to a gRPC server by the URLs BuildBox uses: `unix:PATH`, `unix://PATH`,
//! `http://HOST:PORT` (and `https://` when TLS is configured later).

use std::path::PathBuf;

use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL is not one rebox understands.
    #[error("server address {0:?} is not unix:PATH or http://HOST:PORT")]
    BadUrl(String),
    /// The transport failed.
    #[error("cannot connect to {url}: {source}")]
    Transport {
        url: String,
        #[source]
        source: tonic::transport::Error,
    },
}

/// A gRPC channel to `url`.
pub async fn connect(url: &str) -> Result<Channel, ConnectError> {
    let transport = |source| ConnectError::Transport { url: url.to_owned(), source };
    if let Some(path) = unix_socket_path(url) {
        // The authority is ignored for Unix sockets; tonic only needs a well-formed URI.
        let endpoint = Endpoint::from_static("http://localhost");
        let connector = tower::service_fn(move |_: Uri| {
            let path = path.clone();
            async move { Ok::<_, std::io::Error>(TokioIo::new(UnixStream::connect(path).await?)) }
        });
        return endpoint.connect_with_connector(connector).await.map_err(transport);
    }
    if url.starts_with("http://") || url.starts_with("https://") {
        let endpoint =
            Endpoint::from_shared(url.to_owned()).map_err(|_| ConnectError::BadUrl(url.to_owned()))?;
        return endpoint.connect().await.map_err(transport);
    }
    Err(ConnectError::BadUrl(url.to_owned()))
}

/// The socket path of a `unix:PATH` or `unix://PATH` URL.
pub fn unix_socket_path(url: &str) -> Option<PathBuf> {
    let path = url.strip_prefix("unix://").or_else(|| url.strip_prefix("unix:"))?;
    (!path.is_empty()).then(|| PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::unix_socket_path;

    #[test]
    fn unix_urls() {
        assert_eq!(unix_socket_path("unix:/run/casd.sock").unwrap().to_str(), Some("/run/casd.sock"));
        assert_eq!(unix_socket_path("unix:///run/casd.sock").unwrap().to_str(), Some("/run/casd.sock"));
        assert_eq!(unix_socket_path("unix:rel.sock").unwrap().to_str(), Some("rel.sock"));
        assert!(unix_socket_path("unix:").is_none());
        assert!(unix_socket_path("http://localhost:1").is_none());
    }
}
