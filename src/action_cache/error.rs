//! Why an ActionCache operation failed.

use std::io;
use std::path::{Path, PathBuf};

/// An error reading or writing ActionCache entries, naming the file concerned.
#[derive(Debug, thiserror::Error)]
pub enum ActionCacheError {
    /// A filesystem operation failed.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "read".
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

impl ActionCacheError {
    pub(crate) fn io(action: &'static str, path: &Path, source: io::Error) -> Self {
        ActionCacheError::Io { action, path: path.to_owned(), source }
    }
}

impl From<ActionCacheError> for tonic::Status {
    fn from(error: ActionCacheError) -> Self {
        let ActionCacheError::Io { source, .. } = &error;
        let out_of_space = matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT));
        let code = if out_of_space { tonic::Code::ResourceExhausted } else { tonic::Code::Internal };
        tonic::Status::new(code, error.to_string())
    }
}
