//! `build.bazel.remote.execution.v2.Capabilities`: what this daemon supports, as buildbox-casd
//! answers it (see `tests/grpc_remote_peer.rs`), with one deliberate difference.
//!
//! buildbox-casd leaves `max_batch_total_size_bytes` at 0 ("no limit") although it refuses
//! messages over gRPC's 4 MiB; rebox states its real limit, [`MAX_BATCH_TOTAL_SIZE`]. BuildBox
//! clients only ever lower their own 1 MiB default to what a server states, so they are unaffected.

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::Shared;
use super::request::check_instance;
use crate::proto::build::bazel::remote::execution::v2 as reapi;
use crate::proto::build::bazel::semver::SemVer;
use reapi::capabilities_server::Capabilities;

/// The most blob bytes one BatchUpdateBlobs or BatchReadBlobs may carry. It leaves room within
/// [`super::MAX_MESSAGE_SIZE`] for the per-blob digests and statuses of a batch of small blobs.
pub const MAX_BATCH_TOTAL_SIZE: usize = super::MAX_MESSAGE_SIZE - 4 * 1024 * 1024;

/// The oldest and newest REAPI versions served, as buildbox-casd 1.4.25 reports them.
const LOW_API_VERSION: (i32, i32) = (2, 1);
const HIGH_API_VERSION: (i32, i32) = (2, 12);

/// The Capabilities service of one daemon.
#[derive(Debug)]
pub struct CapabilitiesService {
    shared: Arc<Shared>,
}

impl CapabilitiesService {
    /// The service describing `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

#[tonic::async_trait]
impl Capabilities for CapabilitiesService {
    async fn get_capabilities(
        &self,
        request: Request<reapi::GetCapabilitiesRequest>,
    ) -> Result<Response<reapi::ServerCapabilities>, Status> {
        check_instance(&self.shared, &request.get_ref().instance_name)?;
        Ok(Response::new(server_capabilities(&self.shared)))
    }
}

/// The capabilities of the daemon described by `shared`.
pub fn server_capabilities(shared: &Shared) -> reapi::ServerCapabilities {
    let function = shared.store.digest_function().proto_value();
    let cache = reapi::CacheCapabilities {
        digest_functions: vec![function],
        action_cache_update_capabilities: Some(reapi::ActionCacheUpdateCapabilities { update_enabled: true }),
        max_batch_total_size_bytes: MAX_BATCH_TOTAL_SIZE as i64,
        // Symlinks are stored as given; staging refuses nothing for being absolute (as BuildBox).
        symlink_absolute_path_strategy: reapi::symlink_absolute_path_strategy::Value::Allowed as i32,
        // Only identity: no compressed-blobs resources, no compressed batches.
        ..Default::default()
    };
    let execution = shared.execution_enabled.then(|| reapi::ExecutionCapabilities {
        digest_function: function,
        exec_enabled: true,
        digest_functions: vec![function],
        ..Default::default()
    });
    let version = |(major, minor)| SemVer { major, minor, ..Default::default() };
    reapi::ServerCapabilities {
        cache_capabilities: Some(cache),
        execution_capabilities: execution,
        low_api_version: Some(version(LOW_API_VERSION)),
        high_api_version: Some(version(HIGH_API_VERSION)),
        ..Default::default()
    }
}
