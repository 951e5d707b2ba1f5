//! FetchTree and UploadTree.

use tonic::Status;

use crate::grpc::Shared;
use crate::proto::build::buildgrid::*;

pub async fn fetch_tree(_shared: &Shared, _request: FetchTreeRequest) -> Result<FetchTreeResponse, Status> {
    Err(Status::unimplemented("FetchTree is not implemented yet"))
}

pub async fn upload_tree(
    _shared: &Shared,
    _request: UploadTreeRequest,
) -> Result<UploadTreeResponse, Status> {
    Err(Status::unimplemented("UploadTree is not implemented yet"))
}
