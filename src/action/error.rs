//! Why an action could not be run (as opposed to ran and failed: that is its exit code).

use std::path::PathBuf;

use crate::capture::CaptureError;
use crate::digest::{Digest, DigestError};
use crate::staging::StagingError;
use crate::store::StoreError;

/// A problem running one action, naming what is at fault.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The Action or Command is malformed or asks for something rebox refuses.
    #[error("invalid action: {0}")]
    Invalid(String),
    /// `rebox shell --last-failed` with no failure recorded in this store.
    #[error("no failed action is recorded in {} (rebox exec and rebox run record one when a command fails)", .0.display())]
    NoFailureRecorded(PathBuf),
    /// The record of the last failed action cannot be read.
    #[error("the failed-action record {} is corrupt: {reason}", path.display())]
    CorruptRecord { path: PathBuf, reason: String },
    /// A platform property rebox cannot honour.
    #[error("unsupported platform property {name}={value:?}: {reason}")]
    Platform { name: String, value: String, reason: String },
    /// A blob the action needs is not in the CAS.
    #[error("blob {digest} ({what}) is missing from the CAS")]
    MissingBlob { what: &'static str, digest: Digest },
    /// A digest in the action is malformed.
    #[error("bad {what} digest: {source}")]
    Digest {
        what: &'static str,
        #[source]
        source: DigestError,
    },
    /// A local file could not be read or written.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The CAS server failed or refused a request.
    #[error("{rpc} failed: {status}")]
    Remote { rpc: &'static str, status: String },
    /// Connecting to the CAS server failed.
    #[error(transparent)]
    Connect(Box<crate::grpc::client::ConnectError>),
    /// The embedded store failed.
    #[error(transparent)]
    Store(Box<StoreError>),
    /// Staging the input root failed.
    #[error(transparent)]
    Staging(Box<StagingError>),
    /// Capturing an output failed.
    #[error("cannot capture output {path:?}: {source}")]
    Capture {
        path: String,
        #[source]
        source: Box<CaptureError>,
    },
    /// The sandbox could not be set up or run.
    #[error("sandbox: {0}")]
    Sandbox(String),
    /// The runner was asked to stop (SIGTERM, SIGINT) with this signal.
    #[error("cancelled by signal {0}")]
    Cancelled(i32),
}

impl ActionError {
    /// An [`ActionError::Io`].
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ActionError::Io { action, path: path.into(), source }
    }
}

impl From<crate::grpc::client::ConnectError> for ActionError {
    fn from(error: crate::grpc::client::ConnectError) -> Self {
        ActionError::Connect(Box::new(error))
    }
}

impl From<StoreError> for ActionError {
    fn from(error: StoreError) -> Self {
        ActionError::Store(Box::new(error))
    }
}

impl From<StagingError> for ActionError {
    fn from(error: StagingError) -> Self {
        ActionError::Staging(Box::new(error))
    }
}

impl ActionError {
    /// An [`ActionError::Capture`].
    pub fn capture(path: impl Into<String>, source: CaptureError) -> Self {
        ActionError::Capture { path: path.into(), source: Box::new(source) }
    }
}
