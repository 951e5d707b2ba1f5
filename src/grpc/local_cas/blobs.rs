//! FetchMissingBlobs and UploadMissingBlobs.

use tonic::Status;

use crate::grpc::Shared;
use crate::proto::build::buildgrid::*;

pub async fn fetch_missing(
    _shared: &Shared,
    _request: FetchMissingBlobsRequest,
) -> Result<FetchMissingBlobsResponse, Status> {
    Err(Status::unimplemented("FetchMissingBlobs is not implemented yet"))
}

pub async fn upload_missing(
    _shared: &Shared,
    _request: UploadMissingBlobsRequest,
) -> Result<UploadMissingBlobsResponse, Status> {
    Err(Status::unimplemented("UploadMissingBlobs is not implemented yet"))
}
