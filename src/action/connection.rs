//! [`CasConnection`]: plain REAPI CAS and ByteStream calls to a server, blocking (an async runtime
//! of its own inside): what both the LocalCAS client and `--disable-localcas` need.

use tokio::runtime::Runtime;
use tonic::transport::Channel;

use super::error::ActionError;
use crate::digest::{Digest, DigestFunction};
use crate::grpc::client::connect;
use crate::grpc::request::parse_digest;
use crate::proto::build::bazel::remote::execution::v2 as reapi;
use crate::proto::build::bazel::remote::execution::v2::content_addressable_storage_client::ContentAddressableStorageClient;
use crate::proto::google::bytestream::byte_stream_client::ByteStreamClient;
use crate::proto::google::bytestream::{ReadRequest, WriteRequest};
use crate::tree::to_proto;

/// Blobs up to this size (and batches up to this total) go in one Batch call; larger blobs
/// through ByteStream.
pub const BATCH_LIMIT: usize = 1024 * 1024;
/// ByteStream write chunk.
const CHUNK: usize = 1024 * 1024;

/// A connection to a CAS server for one instance and digest function.
#[derive(Debug)]
pub struct CasConnection {
    runtime: Runtime,
    channel: Channel,
    instance: String,
    function: DigestFunction,
}

/// A failed call as an [`ActionError`].
pub fn remote(rpc: &'static str, status: impl std::fmt::Display) -> ActionError {
    ActionError::Remote { rpc, status: status.to_string() }
}

/// A gRPC error as one readable line: the server's message and the code.
pub fn remote_status(rpc: &'static str, status: tonic::Status) -> ActionError {
    remote(rpc, format!("{} ({:?})", status.message(), status.code()))
}

/// Fails if a per-item `status` is not OK; `item` names the item.
pub fn check_status(
    rpc: &'static str,
    item: &str,
    status: Option<&crate::proto::google::rpc::Status>,
) -> Result<(), ActionError> {
    match status {
        Some(status) if status.code != 0 => {
            Err(remote(rpc, format!("{item}: {} (code {})", status.message, status.code)))
        }
        _ => Ok(()),
    }
}

impl CasConnection {
    /// Connects to `url` (`unix:PATH` or `http://HOST:PORT`).
    pub fn connect(url: &str, instance: &str, function: DigestFunction) -> Result<Self, ActionError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ActionError::io("start an async runtime for", "the CAS client", e))?;
        let channel = runtime.block_on(connect(url))?;
        Ok(Self { runtime, channel, instance: instance.to_owned(), function })
    }

    /// The runtime calls run on.
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The channel to the server.
    pub fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// The instance name.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The digest function.
    pub fn function(&self) -> DigestFunction {
        self.function
    }

    fn cas(&self) -> ContentAddressableStorageClient<Channel> {
        ContentAddressableStorageClient::new(self.channel.clone()).max_decoding_message_size(usize::MAX)
    }

    /// Parses a digest the server sent.
    pub fn parse(&self, digest: Option<&reapi::Digest>, rpc: &'static str) -> Result<Digest, ActionError> {
        let digest = digest.ok_or_else(|| remote(rpc, "a response has no digest"))?;
        parse_digest(digest, self.function).map_err(|e| remote(rpc, e))
    }

    /// Reads the blob `digest`; `what` names it in errors.
    pub fn read_blob(&self, digest: &Digest, what: &'static str) -> Result<Vec<u8>, ActionError> {
        if digest.size() as usize > BATCH_LIMIT {
            return self.read_stream(digest, what);
        }
        let mut blobs = self.read_blobs(std::slice::from_ref(digest), what)?;
        Ok(blobs.pop().map(|(_, data)| data).unwrap_or_default())
    }

    /// Reads small blobs in one BatchReadBlobs.
    pub fn read_blobs(
        &self,
        digests: &[Digest],
        what: &'static str,
    ) -> Result<Vec<(Digest, Vec<u8>)>, ActionError> {
        let request = reapi::BatchReadBlobsRequest {
            instance_name: self.instance.clone(),
            digests: digests.iter().map(to_proto).collect(),
            digest_function: self.function.proto_value(),
            ..Default::default()
        };
        let mut cas = self.cas();
        let response = self
            .runtime
            .block_on(cas.batch_read_blobs(request))
            .map_err(|s| remote_status("BatchReadBlobs", s))?;
        let mut blobs = Vec::new();
        for r in response.into_inner().responses {
            let digest = self.parse(r.digest.as_ref(), "BatchReadBlobs")?;
            match r.status.as_ref().map(|s| s.code).unwrap_or(0) {
                0 => blobs.push((digest, r.data)),
                code if code == tonic::Code::NotFound as i32 => {
                    return Err(ActionError::MissingBlob { what, digest });
                }
                _ => check_status("BatchReadBlobs", &digest.to_string(), r.status.as_ref())?,
            }
        }
        if blobs.len() != digests.len() {
            return Err(remote("BatchReadBlobs", "the answer does not cover every blob"));
        }
        Ok(blobs)
    }

    fn read_stream(&self, digest: &Digest, what: &'static str) -> Result<Vec<u8>, ActionError> {
        let prefix = if self.instance.is_empty() { String::new() } else { format!("{}/", self.instance) };
        let request = ReadRequest {
            resource_name: format!("{prefix}blobs/{}/{}", digest.hash_hex(), digest.size()),
            read_offset: 0,
            read_limit: 0,
        };
        let mut client = ByteStreamClient::new(self.channel.clone()).max_decoding_message_size(usize::MAX);
        self.runtime.block_on(async move {
            let mut stream = match client.read(request).await {
                Ok(stream) => stream.into_inner(),
                Err(s) if s.code() == tonic::Code::NotFound => {
                    return Err(ActionError::MissingBlob { what, digest: *digest });
                }
                Err(s) => return Err(remote_status("ByteStream.Read", s)),
            };
            let mut data = Vec::with_capacity(digest.size() as usize);
            while let Some(chunk) = stream.message().await.map_err(|s| remote_status("ByteStream.Read", s))? {
                data.extend_from_slice(&chunk.data);
            }
            Ok(data)
        })
    }

    /// The blobs of `digests` the server lacks.
    pub fn find_missing(&self, digests: &[Digest]) -> Result<Vec<Digest>, ActionError> {
        if digests.is_empty() {
            return Ok(Vec::new());
        }
        let request = reapi::FindMissingBlobsRequest {
            instance_name: self.instance.clone(),
            blob_digests: digests.iter().map(to_proto).collect(),
            digest_function: self.function.proto_value(),
        };
        let mut cas = self.cas();
        let response = self
            .runtime
            .block_on(cas.find_missing_blobs(request))
            .map_err(|s| remote_status("FindMissingBlobs", s))?;
        response
            .into_inner()
            .missing_blob_digests
            .iter()
            .map(|d| self.parse(Some(d), "FindMissingBlobs"))
            .collect()
    }

    /// Stores `data`; its digest.
    pub fn upload_blob(&self, data: Vec<u8>) -> Result<Digest, ActionError> {
        let digest = self.function.hash_bytes(&data);
        if data.len() <= BATCH_LIMIT {
            self.upload_batch(vec![(digest, data)])?;
            return Ok(digest);
        }
        let prefix = if self.instance.is_empty() { String::new() } else { format!("{}/", self.instance) };
        let resource =
            format!("{prefix}uploads/{}/blobs/{}/{}", upload_id(), digest.hash_hex(), digest.size());
        let total = data.len();
        let data = prost::bytes::Bytes::from(data);
        let requests: Vec<WriteRequest> = (0..total)
            .step_by(CHUNK)
            .map(|offset| WriteRequest {
                resource_name: if offset == 0 { resource.clone() } else { String::new() },
                write_offset: offset as i64,
                finish_write: offset + CHUNK >= total,
                data: data.slice(offset..total.min(offset + CHUNK)),
            })
            .collect();
        let mut client = ByteStreamClient::new(self.channel.clone());
        let response = self
            .runtime
            .block_on(client.write(tokio_stream::iter(requests)))
            .map_err(|s| remote_status("ByteStream.Write", s))?;
        if response.into_inner().committed_size != total as i64 {
            return Err(remote("ByteStream.Write", "the server committed a different size"));
        }
        Ok(digest)
    }

    /// Stores small blobs in one BatchUpdateBlobs.
    pub fn upload_batch(&self, blobs: Vec<(Digest, Vec<u8>)>) -> Result<(), ActionError> {
        let request = reapi::BatchUpdateBlobsRequest {
            instance_name: self.instance.clone(),
            requests: blobs
                .into_iter()
                .map(|(digest, data)| reapi::batch_update_blobs_request::Request {
                    digest: Some(to_proto(&digest)),
                    data: data.into(),
                    ..Default::default()
                })
                .collect(),
            digest_function: self.function.proto_value(),
        };
        let mut cas = self.cas();
        let response = self
            .runtime
            .block_on(cas.batch_update_blobs(request))
            .map_err(|s| remote_status("BatchUpdateBlobs", s))?;
        for r in response.into_inner().responses {
            let item = r.digest.as_ref().map(|d| format!("{}/{}", d.hash, d.size_bytes)).unwrap_or_default();
            check_status("BatchUpdateBlobs", &item, r.status.as_ref())?;
        }
        Ok(())
    }
}

/// A unique enough upload id: a UUID-shaped string from the pid, time and a counter.
fn upload_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let value = nanos ^ ((std::process::id() as u128) << 96) ^ ((n as u128) << 64);
    let hex = format!("{value:032x}");
    format!("{}-{}-4{}-8{}-{}", &hex[0..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32])
}
