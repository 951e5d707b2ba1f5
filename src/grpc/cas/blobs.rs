//! BatchUpdateBlobs and BatchReadBlobs.
//!
//! Batches run on a blocking thread, their blobs in parallel (each is independent syscalls and
//! hashing). Per-blob problems go in that blob's status; only a problem with the request as a
//! whole (instance, digest function, a read batch over the size limit) fails the call.

use rayon::prelude::*;
use tonic::{Code, Status};

use crate::digest::DigestFunction;
use crate::grpc::Shared;
use crate::grpc::blocking::blocking;
use crate::grpc::capabilities::MAX_BATCH_TOTAL_SIZE;
use crate::grpc::request::{check_digest_function, check_instance, parse_digest};
use crate::grpc::status::{rpc_ok, rpc_status, rpc_store_status};
use crate::proto::build::bazel::remote::execution::v2 as reapi;
use crate::proto::google::rpc;
use crate::store::Store;

/// Stores each blob whose data matches its digest; each gets its own status.
pub async fn batch_update(
    shared: &Shared,
    request: reapi::BatchUpdateBlobsRequest,
) -> Result<reapi::BatchUpdateBlobsResponse, Status> {
    check_instance(shared, &request.instance_name)?;
    let function = check_digest_function(shared, request.digest_function)?;
    let store = shared.store.clone();
    let responses = blocking(move || {
        let statuses: Vec<rpc::Status> =
            request.requests.par_iter().map(|blob| update_one(&store, function, blob)).collect();
        request
            .requests
            .into_iter()
            .zip(statuses)
            .map(|(blob, status)| reapi::batch_update_blobs_response::Response {
                digest: blob.digest,
                status: Some(status),
            })
            .collect()
    })
    .await?;
    Ok(reapi::BatchUpdateBlobsResponse { responses })
}

fn update_one(
    store: &Store,
    function: DigestFunction,
    blob: &reapi::batch_update_blobs_request::Request,
) -> rpc::Status {
    let Some(digest) = &blob.digest else {
        return rpc_status(Code::InvalidArgument, "digest is missing");
    };
    let digest = match parse_digest(digest, function) {
        Ok(digest) => digest,
        Err(e) => return rpc_status(Code::InvalidArgument, e.to_string()),
    };
    if blob.compressor != reapi::compressor::Value::Identity as i32 {
        return rpc_status(
            Code::InvalidArgument,
            format!("blob {digest}: compressor {} is not supported; send it uncompressed", blob.compressor),
        );
    }
    match store.put_bytes_expecting(&digest, &blob.data) {
        Ok(()) => rpc_ok(),
        Err(e) => rpc_store_status(&e),
    }
}

/// Reads each blob; a missing one gets `NOT_FOUND` in its own status.
pub async fn batch_read(
    shared: &Shared,
    request: reapi::BatchReadBlobsRequest,
) -> Result<reapi::BatchReadBlobsResponse, Status> {
    check_instance(shared, &request.instance_name)?;
    let function = check_digest_function(shared, request.digest_function)?;
    let total: u64 = request.digests.iter().map(|d| u64::try_from(d.size_bytes).unwrap_or(0)).sum();
    if total > MAX_BATCH_TOTAL_SIZE as u64 {
        return Err(Status::invalid_argument(format!(
            "BatchReadBlobs asks for {total} bytes, over the {MAX_BATCH_TOTAL_SIZE}-byte batch limit \
             (max_batch_total_size_bytes); read large blobs with ByteStream"
        )));
    }
    let store = shared.store.clone();
    let responses = blocking(move || {
        request.digests.into_par_iter().map(|digest| read_one(&store, function, digest)).collect()
    })
    .await?;
    Ok(reapi::BatchReadBlobsResponse { responses })
}

fn read_one(
    store: &Store,
    function: DigestFunction,
    proto: reapi::Digest,
) -> reapi::batch_read_blobs_response::Response {
    let (data, status) = match parse_digest(&proto, function) {
        Err(e) => (Vec::new(), rpc_status(Code::InvalidArgument, e.to_string())),
        Ok(digest) => match store.read(&digest) {
            Ok(data) => (data, rpc_ok()),
            Err(e) => (Vec::new(), rpc_store_status(&e)),
        },
    };
    reapi::batch_read_blobs_response::Response {
        digest: Some(proto),
        data,
        compressor: reapi::compressor::Value::Identity as i32,
        status: Some(status),
    }
}
