//! CaptureTree and CaptureFiles.

use tonic::Status;

use crate::grpc::Shared;
use crate::proto::build::buildgrid::*;

pub async fn capture_tree(
    _shared: &Shared,
    _request: CaptureTreeRequest,
) -> Result<CaptureTreeResponse, Status> {
    Err(Status::unimplemented("CaptureTree is not implemented yet"))
}

pub async fn capture_files(
    _shared: &Shared,
    _request: CaptureFilesRequest,
) -> Result<CaptureFilesResponse, Status> {
    Err(Status::unimplemented("CaptureFiles is not implemented yet"))
}
