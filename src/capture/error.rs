//! Why a path could not be captured.

use std::io;

use crate::store::StoreError;

/// A capture failure, naming the path concerned (as the client gave it, or the host path of the
/// entry at fault inside a captured directory).
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Without a `root`, paths must be absolute; a `root` must always be.
    #[error("{path:?} is not an absolute path")]
    RelativePath { path: String },
    /// Nothing at the path (or a component of it is not a directory).
    #[error("{path:?}{within}: {source}", within = within(root))]
    NotFound {
        path: String,
        root: Option<String>,
        #[source]
        source: io::Error,
    },
    /// CaptureTree of something that is not a directory.
    #[error("{path:?}{within} is not a directory", within = within(root))]
    NotADirectory { path: String, root: Option<String> },
    /// CaptureFiles of a directory.
    #[error("{path:?}{within} is a directory, not a file", within = within(root))]
    IsADirectory { path: String, root: Option<String> },
    /// The path itself is a symbolic link: capture records symlinks but never follows them.
    #[error(
        "{path:?}{within} is a symbolic link; capture never follows symlinks (name what it points to instead)",
        within = within(root)
    )]
    Symlink { path: String, root: Option<String> },
    /// A socket, FIFO or device node: none can be stored in a tree.
    #[error("{path}: {kind} cannot be captured (only regular files, directories and symlinks can)")]
    Special { path: String, kind: &'static str },
    /// A name or symlink target that is not UTF-8 cannot be put in a REAPI message.
    #[error("{path}: {what} is not valid UTF-8, which REAPI requires")]
    NotUtf8 { path: String, what: &'static str },
    /// Deeper than any real tree; see [`crate::tree::MAX_DEPTH`].
    #[error("{path}: nested deeper than {limit} directories")]
    TooDeep { path: String, limit: usize },
    /// The file changed while it was read (its content no longer matched what was hashed).
    #[error("{path} changed while it was being captured")]
    Changed { path: String },
    /// A filesystem operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    /// Storing the content failed (boxed: store errors are large, capture results many).
    #[error("cannot store {path}: {source}")]
    Store {
        path: String,
        #[source]
        source: Box<StoreError>,
    },
}

fn within(root: &Option<String>) -> String {
    match root {
        Some(root) => format!(" (in root {root:?})"),
        None => String::new(),
    }
}

impl CaptureError {
    /// The gRPC status code for this failure: what buildbox-casd answers where it answers at
    /// all (NOT_FOUND for a missing path or one of the wrong kind, INVALID_ARGUMENT for a
    /// relative one), RESOURCE_EXHAUSTED when the disk is full (BuildStream looks for it).
    pub fn code(&self) -> tonic::Code {
        match self {
            CaptureError::RelativePath { .. } => tonic::Code::InvalidArgument,
            CaptureError::NotFound { .. }
            | CaptureError::NotADirectory { .. }
            | CaptureError::IsADirectory { .. }
            | CaptureError::Symlink { .. } => tonic::Code::NotFound,
            CaptureError::Special { .. } | CaptureError::NotUtf8 { .. } | CaptureError::TooDeep { .. } => {
                tonic::Code::FailedPrecondition
            }
            CaptureError::Changed { .. } => tonic::Code::Aborted,
            CaptureError::Io { source, .. } => io_code(source),
            CaptureError::Store { source, .. } => match source.as_ref() {
                StoreError::Io { source, .. } => io_code(source),
                _ => tonic::Code::Internal,
            },
        }
    }
}

fn io_code(error: &io::Error) -> tonic::Code {
    match error.raw_os_error() {
        Some(libc::ENOSPC | libc::EDQUOT) => tonic::Code::ResourceExhausted,
        Some(libc::EACCES | libc::EPERM) => tonic::Code::PermissionDenied,
        _ => tonic::Code::Internal,
    }
}

impl From<CaptureError> for tonic::Status {
    fn from(error: CaptureError) -> Self {
        tonic::Status::new(error.code(), error.to_string())
    }
}
