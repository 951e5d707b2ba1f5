//! GetLocalServerDetails, GetInstanceNameFor{Remote,Remotes,Namespace}, GetLocalDiskUsage.

use tonic::Status;

use crate::grpc::Shared;
use crate::proto::build::buildgrid::*;

pub async fn local_server_details(
    _shared: &Shared,
    _request: GetLocalServerDetailsRequest,
) -> Result<LocalServerDetails, Status> {
    Err(Status::unimplemented("GetLocalServerDetails is not implemented yet"))
}

pub async fn instance_name_for_remote(
    _shared: &Shared,
    _request: GetInstanceNameForRemoteRequest,
) -> Result<GetInstanceNameForRemoteResponse, Status> {
    Err(Status::unimplemented("GetInstanceNameForRemote is not implemented yet"))
}

pub async fn instance_name_for_remotes(
    _shared: &Shared,
    _request: GetInstanceNameForRemotesRequest,
) -> Result<GetInstanceNameForRemotesResponse, Status> {
    Err(Status::unimplemented("GetInstanceNameForRemotes is not implemented yet"))
}

pub async fn instance_name_for_namespace(
    _shared: &Shared,
    _request: GetInstanceNameForNamespaceRequest,
) -> Result<GetInstanceNameForNamespaceResponse, Status> {
    Err(Status::unimplemented("GetInstanceNameForNamespace is not implemented yet"))
}

pub async fn local_disk_usage(
    _shared: &Shared,
    _request: GetLocalDiskUsageRequest,
) -> Result<GetLocalDiskUsageResponse, Status> {
    Err(Status::unimplemented("GetLocalDiskUsage is not implemented yet"))
}
