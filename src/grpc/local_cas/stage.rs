//! StageTree.

use tonic::{Status, Streaming};

use super::LocalCas;
use crate::grpc::Shared;
use crate::proto::build::buildgrid::*;

type StageStream = <LocalCas as crate::proto::build::buildgrid::local_content_addressable_storage_server::LocalContentAddressableStorage>::StageTreeStream;

pub async fn stage_tree(
    _shared: &Shared,
    _requests: Streaming<StageTreeRequest>,
) -> Result<StageStream, Status> {
    Err(Status::unimplemented("StageTree is not implemented yet"))
}
