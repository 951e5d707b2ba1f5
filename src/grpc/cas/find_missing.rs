//! FindMissingBlobs, served on rebox's own wire types ([`super::find_missing_wire`]): the
//! request arrives as parsed digests and the answer leaves as the missing ones.

use std::sync::Arc;

use prost::Message;
use tonic::codegen::BoxFuture;
use tonic::server::UnaryService;
use tonic::{Request, Response, Status};

use super::find_missing_wire::{FindMissingRequest, FindMissingResponse};
use crate::grpc::Shared;
use crate::grpc::blocking::blocking;
use crate::grpc::request::{check_digest_function, check_instance};
use crate::proto::build::bazel::remote::execution::v2 as reapi;

/// The digests of the request that are not in the CAS, in request order. A malformed digest
/// fails the call (buildbox-casd reports it missing instead, which hides client bugs).
pub async fn find_missing(
    shared: &Shared,
    request: FindMissingRequest,
) -> Result<FindMissingResponse, Status> {
    check_instance(shared, &request.instance_name)?;
    let function = check_digest_function(shared, request.digest_function)?;
    let malformed = |index: usize, error| Status::invalid_argument(format!("blob_digests[{index}]: {error}"));
    if let Some((index, error)) = request.malformed {
        return Err(malformed(index, error));
    }
    for (index, digest) in request.digests.iter().enumerate() {
        function.check(digest).map_err(|error| malformed(index, error))?;
    }
    let store = shared.store.clone();
    let mut digests = request.digests;
    let missing = blocking(move || {
        store.retain_missing_to_upload(&mut digests);
        digests
    })
    .await?;
    Ok(FindMissingResponse { missing })
}

/// FindMissingBlobs as a unary gRPC method over the wire types, for `CasServer` to serve.
#[derive(Debug, Clone)]
pub struct FindMissingMethod {
    shared: Arc<Shared>,
}

impl FindMissingMethod {
    /// The method over `shared`.
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

impl UnaryService<FindMissingRequest> for FindMissingMethod {
    type Response = FindMissingResponse;
    type Future = BoxFuture<Response<FindMissingResponse>, Status>;

    fn call(&mut self, request: Request<FindMissingRequest>) -> Self::Future {
        let shared = Arc::clone(&self.shared);
        Box::pin(async move { find_missing(&shared, request.into_inner()).await.map(Response::new) })
    }
}

/// [`find_missing`] for a request already decoded into the generated types (the generated
/// server's path, which `CasServer` does not take): through the wire form, so that both paths
/// parse and answer alike.
pub async fn find_missing_generated(
    shared: &Shared,
    request: reapi::FindMissingBlobsRequest,
) -> Result<reapi::FindMissingBlobsResponse, Status> {
    let request = FindMissingRequest::decode(request.encode_to_vec().as_slice())?;
    let response = find_missing(shared, request).await?;
    let mut encoded = Vec::with_capacity(response.encoded_len());
    response.encode(&mut encoded);
    reapi::FindMissingBlobsResponse::decode(encoded.as_slice())
        .map_err(|e| Status::internal(format!("FindMissingBlobsResponse: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{Digest, DigestFunction};
    use crate::store::Store;

    fn proto(digest: &Digest) -> reapi::Digest {
        reapi::Digest { hash: digest.hash_hex(), size_bytes: digest.size_i64() }
    }

    #[tokio::test]
    async fn the_generated_servers_path_answers_as_the_wire_path_does() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), DigestFunction::Sha256).unwrap();
        let present = store.put_bytes(b"present").unwrap();
        let absent = DigestFunction::Sha256.hash_bytes(b"absent");
        let shared = Shared::new(store, "");
        let request = reapi::FindMissingBlobsRequest {
            blob_digests: vec![proto(&absent), proto(&present), proto(&absent)],
            ..Default::default()
        };
        let response = find_missing_generated(&shared, request).await.unwrap();
        assert_eq!(response.missing_blob_digests, [proto(&absent), proto(&absent)]);

        let mut short = proto(&absent);
        short.hash.truncate(40);
        let request = reapi::FindMissingBlobsRequest {
            blob_digests: vec![proto(&present), short],
            ..Default::default()
        };
        let error = find_missing_generated(&shared, request).await.unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        assert!(
            error.message().starts_with("blob_digests[1]: ")
                && error.message().contains("SHA256 hashes have 64"),
            "{}",
            error.message()
        );
    }
}
