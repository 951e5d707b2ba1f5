//! `build.bazel.remote.execution.v2.ContentAddressableStorage` over the local store. Each RPC
//! lives in the file of its concern; this file only routes.

mod blobs;
mod find_missing;
mod find_missing_wire;
mod server;
mod tree;

pub use server::CasServer;
pub use tree::PAGE_BYTES;

use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::Shared;
use crate::proto::build::bazel::remote::execution::v2 as reapi;
use reapi::content_addressable_storage_server::ContentAddressableStorage;

/// The ContentAddressableStorage service of one daemon.
#[derive(Debug)]
pub struct Cas {
    shared: Arc<Shared>,
}

impl Cas {
    /// The service over `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl ContentAddressableStorage for Cas {
    async fn find_missing_blobs(
        &self,
        request: Request<reapi::FindMissingBlobsRequest>,
    ) -> Reply<reapi::FindMissingBlobsResponse> {
        find_missing::find_missing_generated(&self.shared, request.into_inner()).await.map(Response::new)
    }

    async fn batch_update_blobs(
        &self,
        request: Request<reapi::BatchUpdateBlobsRequest>,
    ) -> Reply<reapi::BatchUpdateBlobsResponse> {
        blobs::batch_update(&self.shared, request.into_inner()).await.map(Response::new)
    }

    async fn batch_read_blobs(
        &self,
        request: Request<reapi::BatchReadBlobsRequest>,
    ) -> Reply<reapi::BatchReadBlobsResponse> {
        blobs::batch_read(&self.shared, request.into_inner()).await.map(Response::new)
    }

    type GetTreeStream = tree::GetTreeStream;

    async fn get_tree(&self, request: Request<reapi::GetTreeRequest>) -> Reply<Self::GetTreeStream> {
        tree::get_tree(&self.shared, request.into_inner()).await.map(Response::new)
    }
}
