//! GetLocalServerDetails, GetInstanceNameFor{Remote,Remotes,Namespace}, GetLocalDiskUsage.
//!
//! rebox casd has no remote proxy yet: asking for an instance that proxies to a remote is refused
//! with UNIMPLEMENTED naming the remote; asking with no remote at all names the local instance.

use tonic::Status;

use crate::grpc::Shared;
use crate::proto::build::buildgrid::*;

/// Who and where this server is: clients compare it with themselves to know whether they share
/// the host and user (and so may use the storage directly).
pub async fn local_server_details(
    shared: &Shared,
    request: GetLocalServerDetailsRequest,
) -> Result<LocalServerDetails, Status> {
    check_instance(shared, &request.instance_name)?;
    let hostname = nix::unistd::gethostname()
        .map_err(|errno| Status::internal(format!("cannot read the host name: {errno}")))?
        .to_string_lossy()
        .into_owned();
    Ok(LocalServerDetails {
        hostname,
        process_uid: i64::from(nix::unistd::getuid().as_raw()),
        storage_root: shared.store.root().join("cas").to_string_lossy().into_owned(),
    })
}

/// The instance to use for a remote CAS given by URL.
pub async fn instance_name_for_remote(
    shared: &Shared,
    request: GetInstanceNameForRemoteRequest,
) -> Result<GetInstanceNameForRemoteResponse, Status> {
    if !request.url.is_empty() {
        return Err(no_proxy("CAS", &request.url));
    }
    Ok(GetInstanceNameForRemoteResponse { instance_name: shared.instance_name.clone() })
}

/// The instance to use for a set of remotes (BuildStream asks this when remotes are configured).
pub async fn instance_name_for_remotes(
    shared: &Shared,
    request: GetInstanceNameForRemotesRequest,
) -> Result<GetInstanceNameForRemotesResponse, Status> {
    let remotes = [
        ("CAS", &request.content_addressable_storage),
        ("Remote Asset", &request.remote_asset),
        ("Action Cache", &request.action_cache),
        ("Execution", &request.execution),
    ];
    for (service, remote) in remotes {
        if let Some(remote) = remote.as_ref().filter(|remote| !remote.url.is_empty()) {
            return Err(no_proxy(service, &remote.url));
        }
    }
    Ok(GetInstanceNameForRemotesResponse { instance_name: shared.instance_name.clone() })
}

/// Namespaced instances (a CAS view for a chroot) are a buildbox-casd feature rebox does not have.
pub async fn instance_name_for_namespace(
    _shared: &Shared,
    request: GetInstanceNameForNamespaceRequest,
) -> Result<GetInstanceNameForNamespaceResponse, Status> {
    Err(Status::unimplemented(format!(
        "GetInstanceNameForNamespace (an instance for namespace root {:?}) is not supported by rebox casd",
        request.root
    )))
}

/// Bytes stored, and the quota (0: none), as BuildStream polls them for its status line. The
/// quota is the effective one, lowered by `--reserved`; it is reported as at least 1 byte, since
/// 0 would read as "no quota".
pub async fn local_disk_usage(
    shared: &Shared,
    _request: GetLocalDiskUsageRequest,
) -> Result<GetLocalDiskUsageResponse, Status> {
    let quota = shared.expiry.as_ref().map_or(0, |expiry| expiry.limits().high.max(1));
    Ok(GetLocalDiskUsageResponse {
        size_bytes: i64::try_from(shared.store.usage()).unwrap_or(i64::MAX),
        quota_bytes: i64::try_from(quota).unwrap_or(i64::MAX),
    })
}

/// Requests may name this server's instance or leave the name empty.
fn check_instance(shared: &Shared, name: &str) -> Result<(), Status> {
    if name.is_empty() || name == shared.instance_name {
        Ok(())
    } else {
        Err(Status::invalid_argument(format!(
            "unknown instance name {name:?}: this server serves {:?}",
            shared.instance_name
        )))
    }
}

fn no_proxy(service: &str, url: &str) -> Status {
    Status::unimplemented(format!(
        "rebox casd cannot proxy to the remote {service} at {url}: remote servers are not supported yet"
    ))
}
