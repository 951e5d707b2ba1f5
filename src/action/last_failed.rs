//! The last action that failed on the embedded store, for `rebox shell --last-failed`.
//!
//! `rebox exec` and `rebox run` (without `--remote`) record an action whose command exited
//! non-zero or timed out: the Action itself goes into the store (its Command and input root are
//! there already) and the file `last-failed` in the store's root names it, with the host paths the
//! run bound into the sandbox (`--host-tools`, `--bind-mount`), which are no part of the Action
//! but of what its command saw. The file is replaced atomically, so concurrent runs leave one
//! whole record, the last written. The record is a `rebox.v1.FailedAction`:
//!
//! ```proto
//! message FailedAction {
//!   build.bazel.remote.execution.v2.Digest action_digest = 1;
//!   repeated HostMount mounts = 2;
//!   int32 exit_code = 3;
//! }
//! message HostMount {
//!   string source = 1; string target = 2; bool writable = 3;
//!   string only_with_inject = 4;  // `--ro-bind-mount=CONTENT:...`'s CONTENT, else empty
//! }
//! ```

use std::io::Write;
use std::path::PathBuf;

use prost::Message;
use rebox_runner_spec::BindMount;

use super::error::ActionError;
use super::execute::Mount;
use crate::digest::Digest;
use crate::proto::build::bazel::remote::execution::v2 as reapi;
use crate::store::Store;

/// The record's file name, in the store's root.
pub const FILE_NAME: &str = "last-failed";

/// A host path bound into the sandbox, as recorded.
#[derive(Clone, PartialEq, Message)]
pub struct HostMount {
    /// Path on the host.
    #[prost(string, tag = "1")]
    pub source: String,
    /// Path inside the sandbox.
    #[prost(string, tag = "2")]
    pub target: String,
    /// Whether the sandbox could write through it.
    #[prost(bool, tag = "3")]
    pub writable: bool,
    /// Bound only for actions with the property `inject` = this (empty: always).
    #[prost(string, tag = "4")]
    pub only_with_inject: String,
}

/// The record in `last-failed`.
#[derive(Clone, PartialEq, Message)]
pub struct FailedAction {
    /// The Action, in the store.
    #[prost(message, optional, tag = "1")]
    pub action_digest: Option<reapi::Digest>,
    /// The host paths the run bound in, in order.
    #[prost(message, repeated, tag = "2")]
    pub mounts: Vec<HostMount>,
    /// The command's exit code.
    #[prost(int32, tag = "3")]
    pub exit_code: i32,
}

impl FailedAction {
    /// The recorded mounts, for a new run of the action.
    pub fn run_mounts(&self) -> Vec<Mount> {
        self.mounts
            .iter()
            .map(|m| Mount {
                mount: BindMount {
                    source: PathBuf::from(&m.source),
                    target: PathBuf::from(&m.target),
                    writable: m.writable,
                },
                only_with_inject: Some(m.only_with_inject.clone()).filter(|c| !c.is_empty()),
            })
            .collect()
    }
}

fn record_path(store: &Store) -> PathBuf {
    store.root().join(FILE_NAME)
}

/// Stores `action` and records it as the last failed one, with the `mounts` its run had.
pub fn record(
    store: &Store,
    action: &reapi::Action,
    mounts: &[Mount],
    exit_code: i32,
) -> Result<Digest, ActionError> {
    let digest = store.put_bytes(&action.encode_to_vec())?;
    let record = FailedAction {
        action_digest: Some(crate::tree::to_proto(&digest)),
        mounts: mounts
            .iter()
            .map(|m| HostMount {
                source: m.mount.source.to_string_lossy().into_owned(),
                target: m.mount.target.to_string_lossy().into_owned(),
                writable: m.mount.writable,
                only_with_inject: m.only_with_inject.clone().unwrap_or_default(),
            })
            .collect(),
        exit_code,
    };
    let path = record_path(store);
    let write = || {
        let mut file = tempfile::NamedTempFile::new_in(store.root())?;
        file.write_all(&record.encode_to_vec())?;
        file.persist(&path).map_err(|e| e.error)?;
        Ok(())
    };
    write().map_err(|e| ActionError::io("write", &path, e))?;
    Ok(digest)
}

/// The last failed action recorded in `store`, and the Action's digest.
pub fn load(store: &Store) -> Result<(FailedAction, Digest), ActionError> {
    let path = record_path(store);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ActionError::NoFailureRecorded(store.root().to_owned()));
        }
        Err(e) => return Err(ActionError::io("read", &path, e)),
    };
    let corrupt = |reason: String| ActionError::CorruptRecord { path: path.clone(), reason };
    let record = FailedAction::decode(bytes.as_slice()).map_err(|e| corrupt(e.to_string()))?;
    let digest = record.action_digest.as_ref().ok_or_else(|| corrupt("no action digest".into()))?;
    let digest = Digest::from_hex(&digest.hash, digest.size_bytes).map_err(|e| corrupt(e.to_string()))?;
    Ok((record, digest))
}
