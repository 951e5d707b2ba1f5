//! `build.bazel.remote.execution.v2.ActionCache` over the local [`crate::action_cache`].
//!
//! GetActionResult answers `NOT_FOUND` for an action with no stored result and also, as
//! buildbox-casd does, for a stored result whose outputs are no longer all in the CAS; the message
//! says which. The `inline_stdout`, `inline_stderr` and `inline_output_files` hints are not acted
//! on: REAPI lets a server leave inlined content empty, and clients then fetch the blobs by digest.
//! A result is returned exactly as it was stored (including any `stdout_raw` it was stored with).
//!
//! UpdateActionResult stores the result as given once its digests are well formed; like
//! buildbox-casd it does not require the outputs to be in the CAS yet (GetActionResult checks).

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::Shared;
use super::request::{check_digest_function, check_instance, required_digest};
use crate::action_cache::{ActionCache, Lookup, check_well_formed};
use crate::proto::build::bazel::remote::execution::v2 as reapi;
use reapi::action_cache_server::ActionCache as ActionCacheApi;

/// The ActionCache service of one daemon.
#[derive(Debug)]
pub struct ActionCacheService {
    shared: Arc<Shared>,
    cache: ActionCache,
}

impl ActionCacheService {
    /// The service over the ActionCache beside `shared`'s store.
    pub fn new(shared: Arc<Shared>) -> Self {
        let cache = ActionCache::new(shared.store.clone());
        Self { shared, cache }
    }
}

#[tonic::async_trait]
impl ActionCacheApi for ActionCacheService {
    async fn get_action_result(
        &self,
        request: Request<reapi::GetActionResultRequest>,
    ) -> Result<Response<reapi::ActionResult>, Status> {
        let request = request.into_inner();
        check_instance(&self.shared, &request.instance_name)?;
        let function = check_digest_function(&self.shared, request.digest_function)?;
        let action = required_digest(request.action_digest.as_ref(), "action_digest", function)?;
        let cache = self.cache.clone();
        let lookup = tokio::task::spawn_blocking(move || cache.get(&action))
            .await
            .map_err(|e| Status::internal(format!("ActionCache lookup failed: {e}")))??;
        match lookup {
            Lookup::Hit(result) => Ok(Response::new(*result)),
            Lookup::NotCached => Err(Status::not_found(format!("no ActionResult for action {action}"))),
            Lookup::Incomplete(missing) => {
                Err(Status::not_found(format!("the ActionResult for action {action} is unusable: {missing}")))
            }
            Lookup::Corrupt { path, reason } => Err(Status::not_found(format!(
                "the ActionResult for action {action} ({}) is unreadable: {reason}",
                path.display()
            ))),
        }
    }

    async fn update_action_result(
        &self,
        request: Request<reapi::UpdateActionResultRequest>,
    ) -> Result<Response<reapi::ActionResult>, Status> {
        let request = request.into_inner();
        check_instance(&self.shared, &request.instance_name)?;
        let function = check_digest_function(&self.shared, request.digest_function)?;
        let action = required_digest(request.action_digest.as_ref(), "action_digest", function)?;
        let result =
            request.action_result.ok_or_else(|| Status::invalid_argument("action_result is missing"))?;
        check_well_formed(&result, function)
            .map_err(|e| Status::invalid_argument(format!("action_result: {e}")))?;
        let cache = self.cache.clone();
        let stored = tokio::task::spawn_blocking(move || cache.put(&action, &result).map(|()| result))
            .await
            .map_err(|e| Status::internal(format!("ActionCache update failed: {e}")))??;
        Ok(Response::new(stored))
    }
}
