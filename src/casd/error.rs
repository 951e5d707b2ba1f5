//! Why the daemon could not start or failed while serving.

use std::io;
use std::path::PathBuf;

use super::bind::BindError;
use crate::expiry::ExpiryError;
use crate::store::StoreError;

/// A failure of `rebox casd`; printed as one line, exit status 1.
#[derive(Debug, thiserror::Error)]
pub enum CasdError {
    /// A flag's value is wrong, or flags contradict each other.
    #[error("{flag}: {message}")]
    BadFlag {
        /// The flag, e.g. `--quota-low`.
        flag: &'static str,
        /// What is wrong.
        message: String,
    },
    /// A feature buildbox-casd has and rebox casd does not, yet.
    #[error("{0}")]
    Unsupported(String),
    /// The cache directory could not be created or resolved.
    #[error("cannot use cache directory {}: {source}", path.display())]
    CacheDir {
        /// The directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The quota policy could not start.
    #[error(transparent)]
    Expiry(#[from] ExpiryError),
    /// A listener could not be made.
    #[error(transparent)]
    Bind(#[from] BindError),
    /// The async runtime or the signal handlers could not be set up.
    #[error("cannot start: {0}")]
    Setup(#[source] io::Error),
    /// A server stopped with an error.
    #[error("serving {address} failed: {source}")]
    Serve {
        /// The address it served.
        address: String,
        /// The underlying error.
        source: tonic::transport::Error,
    },
}
