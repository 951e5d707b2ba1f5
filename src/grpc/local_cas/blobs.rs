//! FetchMissingBlobs and UploadMissingBlobs, local-only until rebox talks to a remote CAS: each
//! reports the blobs the local CAS lacks (NOT_FOUND, one entry per blob), since there is nowhere
//! to fetch them from or upload them to. (buildbox-casd without `--cas-remote` answers
//! UNIMPLEMENTED for both.) Also the request checks the tree and capture RPCs share.

use tonic::Status;

use crate::grpc::Shared;
use crate::grpc::request::required_digest;
use crate::grpc::status::rpc_status;
use crate::proto::build::bazel::remote::execution::v2 as reapi;
use crate::proto::build::buildgrid::*;
use crate::proto::google::rpc;

pub async fn fetch_missing(
    shared: &Shared,
    request: FetchMissingBlobsRequest,
) -> Result<FetchMissingBlobsResponse, Status> {
    check_instance(shared, &request.instance_name)?;
    let missing = missing_locally(shared, &request.blob_digests, "to fetch it from").await?;
    let responses = missing
        .into_iter()
        .map(|(digest, status)| fetch_missing_blobs_response::Response {
            digest: Some(digest),
            status: Some(status),
        })
        .collect();
    Ok(FetchMissingBlobsResponse { responses })
}

pub async fn upload_missing(
    shared: &Shared,
    request: UploadMissingBlobsRequest,
) -> Result<UploadMissingBlobsResponse, Status> {
    check_instance(shared, &request.instance_name)?;
    let missing = missing_locally(shared, &request.blob_digests, "to upload it to").await?;
    let responses = missing
        .into_iter()
        .map(|(digest, status)| upload_missing_blobs_response::Response {
            digest: Some(digest),
            status: Some(status),
        })
        .collect();
    Ok(UploadMissingBlobsResponse { responses })
}

/// The blobs of `digests` the local store lacks, each with its NOT_FOUND status. Present ones
/// count as used (LRU), as a FindMissingBlobs would.
async fn missing_locally(
    shared: &Shared,
    digests: &[reapi::Digest],
    purpose: &'static str,
) -> Result<Vec<(reapi::Digest, rpc::Status)>, Status> {
    let parsed = digests
        .iter()
        .enumerate()
        .map(|(i, d)| required_digest(Some(d), &format!("blob_digests[{i}]"), shared.store.digest_function()))
        .collect::<Result<Vec<_>, _>>()?;
    let store = shared.store.clone();
    let missing = tokio::task::spawn_blocking(move || store.find_missing(&parsed))
        .await
        .map_err(|e| Status::internal(format!("blob lookup failed: {e}")))?;
    Ok(missing
        .into_iter()
        .map(|digest| {
            let message =
                format!("blob {digest} is not in the local CAS, and no remote CAS is configured {purpose}");
            (crate::tree::to_proto(&digest), rpc_status(tonic::Code::NotFound, message))
        })
        .collect())
}

/// Refuses a request for an instance this daemon does not serve (as buildbox-casd does).
pub(super) fn check_instance(shared: &Shared, instance_name: &str) -> Result<(), Status> {
    if instance_name.is_empty() || instance_name == shared.instance_name {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!("Invalid instance name {instance_name:?}")))
    }
}
