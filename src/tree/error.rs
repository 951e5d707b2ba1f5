//! Why a tree was refused or could not be read.

use crate::digest::{Digest, DigestError};
use crate::store::StoreError;

/// A problem with a Directory tree, naming the entry and the directory it sits in.
///
/// `dir` is the directory's path from the tree's root (`.` for the root itself).
#[derive(Debug, thiserror::Error)]
pub enum TreeError {
    /// A name that could escape or corrupt the staging directory.
    #[error("invalid tree: entry {name:?} in directory {dir:?}: {reason}")]
    BadName { dir: String, name: String, reason: &'static str },
    /// Names must be strictly increasing within each kind of node.
    #[error("invalid tree: entry {name:?} in directory {dir:?} is out of order (after {previous:?})")]
    Unsorted { dir: String, name: String, previous: String },
    /// A name used twice in one directory, within or across files, directories and symlinks.
    #[error("invalid tree: entry {name:?} appears more than once in directory {dir:?}")]
    Duplicate { dir: String, name: String },
    /// A node without a digest, or with one that is malformed for the digest function.
    #[error("invalid tree: entry {name:?} in directory {dir:?} has a bad digest: {source}")]
    BadDigest {
        dir: String,
        name: String,
        #[source]
        source: DigestError,
    },
    /// A symlink whose target can't exist on Linux.
    #[error("invalid tree: symlink {name:?} in directory {dir:?}: {reason}")]
    BadSymlink { dir: String, name: String, reason: &'static str },
    /// A directory blob that does not decode as a Directory message.
    #[error("invalid tree: directory {dir:?} ({digest}) is not a valid Directory message: {source}")]
    Decode {
        dir: String,
        digest: Digest,
        #[source]
        source: prost::DecodeError,
    },
    /// Deeper than any real tree; refused so a hostile tree can't exhaust memory or paths.
    #[error("invalid tree: directory {dir:?} is nested deeper than {limit} levels")]
    TooDeep { dir: String, limit: usize },
    /// A directory blob the store does not hold.
    #[error("directory {dir:?} ({digest}) is missing from the CAS")]
    Missing { dir: String, digest: Digest },
    /// The local directory holds something a tree can't represent.
    #[error("{path}: {reason}")]
    Unsupported { path: String, reason: String },
    /// Reading the local directory failed.
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl TreeError {
    /// The gRPC status code REAPI prescribes for this error.
    pub fn code(&self) -> tonic::Code {
        match self {
            TreeError::Missing { .. } => tonic::Code::FailedPrecondition,
            TreeError::Store(e) => e.code(),
            TreeError::Io { .. } => tonic::Code::Internal,
            _ => tonic::Code::InvalidArgument,
        }
    }
}

impl From<TreeError> for tonic::Status {
    fn from(error: TreeError) -> Self {
        tonic::Status::new(error.code(), error.to_string())
    }
}
