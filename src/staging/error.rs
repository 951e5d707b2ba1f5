//! Why a tree could not be staged or unstaged.

use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use crate::digest::Digest;
use crate::store::StoreError;
use crate::tree::TreeError;

/// A staging failure, naming the path, blob or property concerned.
#[derive(Debug, thiserror::Error)]
pub enum StagingError {
    /// The tree is malformed or incomplete (refused before anything was written).
    #[error(transparent)]
    Tree(#[from] TreeError),
    /// A file's blob is not in the CAS (checked before anything was written, or met by the
    /// action in a lazily checked stage, where it can also be a directory's).
    #[error("input {path:?} ({digest}) is missing from the CAS")]
    MissingBlob { path: String, digest: Digest },
    /// A node property staging must honour has a value it can't apply.
    #[error("invalid tree: {path:?}: {reason}")]
    BadProperty { path: String, reason: String },
    /// The request itself is unusable.
    #[error("{0}")]
    BadRequest(String),
    /// The stage path given by the client can't be staged into.
    #[error("cannot stage in {}: {reason}", path.display())]
    BadTarget { path: PathBuf, reason: &'static str },
    /// No live stage has this id (already unstaged, or cleaned up at shutdown).
    #[error("no live stage with id {0}")]
    UnknownStage(u64),
    /// A filesystem operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// As many FUSE stages as allowed are live already.
    #[error("too many live FUSE stages ({limit}): unstage some first")]
    TooManyStages { limit: usize },
}

impl StagingError {
    /// An [`StagingError::Io`] for `action` on `path`.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        StagingError::Io { action, path: path.into(), source }
    }

    /// An [`StagingError::Io`] from an errno.
    pub(crate) fn errno(action: &'static str, path: impl Into<PathBuf>, errno: Errno) -> Self {
        Self::io(action, path, errno.into())
    }

    /// The gRPC status code for this error.
    pub fn code(&self) -> tonic::Code {
        match self {
            StagingError::Tree(e) => e.code(),
            StagingError::MissingBlob { .. } => tonic::Code::FailedPrecondition,
            StagingError::BadProperty { .. }
            | StagingError::BadRequest(_)
            | StagingError::BadTarget { .. } => tonic::Code::InvalidArgument,
            StagingError::UnknownStage(_) => tonic::Code::NotFound,
            StagingError::TooManyStages { .. } => tonic::Code::ResourceExhausted,
            StagingError::Io { source, .. } if crate::store::is_out_of_space(source) => {
                tonic::Code::ResourceExhausted
            }
            StagingError::Store(e) => e.code(),
            StagingError::Io { .. } => tonic::Code::Internal,
        }
    }
}

impl From<StagingError> for tonic::Status {
    fn from(error: StagingError) -> Self {
        tonic::Status::new(error.code(), error.to_string())
    }
}

/// Shorthand for staging results.
pub type Result<T, E = StagingError> = std::result::Result<T, E>;

/// Attaches an action and a path to an error.
pub(crate) trait Context<T> {
    /// Maps the error to [`StagingError::Io`].
    fn at(self, action: &'static str, path: &Path) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn at(self, action: &'static str, path: &Path) -> Result<T> {
        self.map_err(|source| StagingError::io(action, path, source))
    }
}

impl<T> Context<T> for nix::Result<T> {
    fn at(self, action: &'static str, path: &Path) -> Result<T> {
        self.map_err(|errno| StagingError::errno(action, path, errno))
    }
}
