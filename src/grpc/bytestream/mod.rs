//! `google.bytestream.ByteStream` over the local store, with REAPI's resource names: streamed
//! reads of blobs ([`read`]) and resumable streamed uploads ([`write`], [`uploads`]).

mod read;
mod resource;
mod uploads;
mod write;

pub use read::READ_FRAME;
pub use resource::{BlobResource, ResourceError, UploadResource};
pub use uploads::{MAX_PARKED, MAX_PARKED_BYTES, PARKED_TTL};

use std::sync::Arc;

use tonic::{Request, Response, Status, Streaming};

use super::Shared;
use super::request::check_instance;
use crate::digest::{Digest, DigestFunction};
use crate::proto::google::bytestream::byte_stream_server::ByteStream;
use crate::proto::google::bytestream::*;
use uploads::Uploads;

/// The ByteStream service of one daemon, with its uploads in progress.
#[derive(Debug)]
pub struct ByteStreamService {
    shared: Arc<Shared>,
    uploads: Arc<Uploads>,
}

impl ByteStreamService {
    /// The service over `shared`, with no upload in progress.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared, uploads: Arc::default() }
    }
}

#[tonic::async_trait]
impl ByteStream for ByteStreamService {
    type ReadStream = read::ReadStream;

    async fn read(&self, request: Request<ReadRequest>) -> Result<Response<Self::ReadStream>, Status> {
        read::read(&self.shared, request.into_inner()).await.map(Response::new)
    }

    async fn write(
        &self,
        request: Request<Streaming<WriteRequest>>,
    ) -> Result<Response<WriteResponse>, Status> {
        write::write(&self.shared, &self.uploads, request.into_inner()).await.map(Response::new)
    }

    async fn query_write_status(
        &self,
        request: Request<QueryWriteStatusRequest>,
    ) -> Result<Response<QueryWriteStatusResponse>, Status> {
        write::query_write_status(&self.shared, &self.uploads, request.into_inner()).await.map(Response::new)
    }
}

/// The digest a resource name names, once its instance and digest function are checked against
/// this daemon's.
fn checked_digest(
    shared: &Shared,
    instance: &str,
    function: Option<DigestFunction>,
    digest: &Digest,
) -> Result<Digest, Status> {
    check_instance(shared, instance)?;
    let store = shared.store.digest_function();
    if let Some(function) = function.filter(|f| *f != store) {
        return Err(Status::invalid_argument(format!(
            "the resource name's digest function {function} is not supported: this server's CAS uses {store}"
        )));
    }
    store.check(digest)?;
    Ok(*digest)
}
