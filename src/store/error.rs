//! Why a store operation failed.

use std::io;
use std::path::{Path, PathBuf};

use super::QuotaExceeded;
use crate::digest::{Digest, DigestError};

/// An error from the content-addressable store. Each variant names the digest or path concerned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The blob is not in the store.
    #[error("blob {digest} is not in the store (no file {})", path.display())]
    NotFound {
        /// The blob asked for.
        digest: Digest,
        /// Where it would be.
        path: PathBuf,
    },
    /// Content hashes to something other than the digest it was stored or offered under.
    #[error("{}", mismatch(path.as_deref(), &format!("hashes to {actual}, not {expected}")))]
    DigestMismatch {
        /// The digest the content was supposed to have.
        expected: Digest,
        /// The digest it has (boxed: digests are large inline values, errors should stay small).
        actual: Box<Digest>,
        /// The stored object, or `None` for content offered to the store (which was refused).
        path: Option<PathBuf>,
    },
    /// Content is not as long as its digest says.
    #[error("{}", mismatch(path.as_deref(), &format!("has {actual} bytes, but digest {expected} says {}", expected.size())))]
    SizeMismatch {
        /// The digest the content was supposed to have.
        expected: Digest,
        /// The length found (for a stream refused early: the length reached so far).
        actual: u64,
        /// The stored object, or `None` for content offered to the store (which was refused).
        path: Option<PathBuf>,
    },
    /// A filesystem operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "read" or "create directory".
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The stream a blob was being read from failed (nothing was stored).
    #[error("cannot read the blob's input: {source}")]
    Input {
        /// The underlying error.
        source: io::Error,
    },
    /// A digest is malformed or does not fit the store's digest function.
    #[error("bad digest: {0}")]
    BadDigest(#[from] DigestError),
    /// The quota is reached and nothing more can be expired (gRPC: RESOURCE_EXHAUSTED).
    #[error(transparent)]
    QuotaExceeded(#[from] QuotaExceeded),
}

impl StoreError {
    /// The gRPC code REAPI prescribes for this error: bad input is `INVALID_ARGUMENT`, an absent
    /// blob `NOT_FOUND`, a full disk or quota `RESOURCE_EXHAUSTED`, a stored object that no longer
    /// matches its digest `DATA_LOSS`.
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            StoreError::NotFound { .. } => Code::NotFound,
            StoreError::BadDigest(_) => Code::InvalidArgument,
            // Offered content that does not match its digest was refused: the caller's fault.
            StoreError::DigestMismatch { path: None, .. } | StoreError::SizeMismatch { path: None, .. } => {
                Code::InvalidArgument
            }
            // A stored object that no longer matches its digest: the store lost data.
            StoreError::DigestMismatch { .. } | StoreError::SizeMismatch { .. } => Code::DataLoss,
            StoreError::QuotaExceeded(_) => Code::ResourceExhausted,
            StoreError::Io { source, .. } if is_out_of_space(source) => Code::ResourceExhausted,
            StoreError::Io { .. } | StoreError::Input { .. } => Code::Internal,
        }
    }
}

/// Whether an I/O error means the disk (or the user's disk quota) is full.
pub fn is_out_of_space(error: &io::Error) -> bool {
    matches!(error.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
}

/// A mismatch message about a stored object (by its path) or about offered, refused content.
fn mismatch(path: Option<&Path>, what: &str) -> String {
    match path {
        Some(path) => format!("stored object {} {what}", path.display()),
        None => format!("content {what}; not stored"),
    }
}

impl StoreError {
    /// An [`StoreError::Io`] for `action` on `path`.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StoreError::Io { action, path: path.into(), source }
    }
}

/// Shorthand for results of store operations.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Attaches an action and a path to an `io::Result`.
pub(crate) trait IoContext<T> {
    /// Maps an I/O error to [`StoreError::Io`].
    fn at(self, action: &'static str, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for io::Result<T> {
    fn at(self, action: &'static str, path: &Path) -> Result<T> {
        self.map_err(|source| StoreError::io(action, path, source))
    }
}
