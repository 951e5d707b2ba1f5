//! `build.buildgrid.LocalContentAddressableStorage`: buildbox-casd's API for local clients
//! (BuildStream, buildbox-run). Each RPC lives in the file of its concern; this file only routes.

mod blobs;
mod capture;
mod info;
mod stage;
mod tree;

use std::pin::Pin;
use std::sync::Arc;

use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::Shared;
use crate::proto::build::buildgrid::local_content_addressable_storage_server::LocalContentAddressableStorage;
use crate::proto::build::buildgrid::*;

/// The LocalCAS service of one daemon.
#[derive(Debug)]
pub struct LocalCas {
    shared: Arc<Shared>,
}

impl LocalCas {
    /// The service over `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl LocalContentAddressableStorage for LocalCas {
    async fn get_local_server_details(
        &self,
        request: Request<GetLocalServerDetailsRequest>,
    ) -> Reply<LocalServerDetails> {
        info::local_server_details(&self.shared, request.into_inner()).await.map(Response::new)
    }

    async fn fetch_missing_blobs(
        &self,
        request: Request<FetchMissingBlobsRequest>,
    ) -> Reply<FetchMissingBlobsResponse> {
        blobs::fetch_missing(&self.shared, request.into_inner()).await.map(Response::new)
    }

    async fn upload_missing_blobs(
        &self,
        request: Request<UploadMissingBlobsRequest>,
    ) -> Reply<UploadMissingBlobsResponse> {
        blobs::upload_missing(&self.shared, request.into_inner()).await.map(Response::new)
    }

    async fn fetch_tree(&self, request: Request<FetchTreeRequest>) -> Reply<FetchTreeResponse> {
        tree::fetch_tree(&self.shared, request.into_inner()).await.map(Response::new)
    }

    async fn upload_tree(&self, request: Request<UploadTreeRequest>) -> Reply<UploadTreeResponse> {
        tree::upload_tree(&self.shared, request.into_inner()).await.map(Response::new)
    }

    type StageTreeStream = Pin<Box<dyn Stream<Item = Result<StageTreeResponse, Status>> + Send + 'static>>;

    async fn stage_tree(
        &self,
        request: Request<Streaming<StageTreeRequest>>,
    ) -> Reply<Self::StageTreeStream> {
        stage::stage_tree(&self.shared, request.into_inner()).await.map(Response::new)
    }

    async fn capture_tree(&self, request: Request<CaptureTreeRequest>) -> Reply<CaptureTreeResponse> {
        capture::capture_tree(&self.shared, request.into_inner()).await.map(Response::new)
    }

    async fn capture_files(&self, request: Request<CaptureFilesRequest>) -> Reply<CaptureFilesResponse> {
        capture::capture_files(&self.shared, request.into_inner()).await.map(Response::new)
    }

    async fn get_instance_name_for_remote(
        &self,
        request: Request<GetInstanceNameForRemoteRequest>,
    ) -> Reply<GetInstanceNameForRemoteResponse> {
        info::instance_name_for_remote(&self.shared, request.into_inner()).await.map(Response::new)
    }

    async fn get_instance_name_for_remotes(
        &self,
        request: Request<GetInstanceNameForRemotesRequest>,
    ) -> Reply<GetInstanceNameForRemotesResponse> {
        info::instance_name_for_remotes(&self.shared, request.into_inner()).await.map(Response::new)
    }

    async fn get_instance_name_for_namespace(
        &self,
        request: Request<GetInstanceNameForNamespaceRequest>,
    ) -> Reply<GetInstanceNameForNamespaceResponse> {
        info::instance_name_for_namespace(&self.shared, request.into_inner()).await.map(Response::new)
    }

    async fn get_local_disk_usage(
        &self,
        request: Request<GetLocalDiskUsageRequest>,
    ) -> Reply<GetLocalDiskUsageResponse> {
        info::local_disk_usage(&self.shared, request.into_inner()).await.map(Response::new)
    }
}
