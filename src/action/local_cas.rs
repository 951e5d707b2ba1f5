//! [`LocalCasClient`]: an [`ActionCas`] over a LocalCAS server (rebox casd or buildbox-casd), as
//! buildbox-run uses it: `StageTree` (held open while the action runs, then an empty request to
//! unstage), `CaptureTree`/`CaptureFiles` for outputs, CAS `BatchReadBlobs` for the Command, and
//! `BatchUpdateBlobs` or ByteStream `Write` for the logs.

use std::path::{Path, PathBuf};

use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

use super::cas::{ActionCas, DirectoryDigests, StageOptions};
use super::error::ActionError;
use crate::capture::{CapturedFile, OutputFormat, Properties};
use crate::digest::{Digest, DigestFunction};
use crate::grpc::client::connect;
use crate::grpc::request::parse_digest;
use crate::proto::build::bazel::remote::execution::v2 as reapi;
use crate::proto::build::bazel::remote::execution::v2::content_addressable_storage_client::ContentAddressableStorageClient;
use crate::proto::build::buildgrid::local_content_addressable_storage_client::LocalContentAddressableStorageClient;
use crate::proto::build::buildgrid::stage_tree_request::{Credentials, StagingMode as ProtoMode};
use crate::proto::build::buildgrid::{
    CaptureFilesRequest, CaptureTreeRequest, StageTreeRequest, StageTreeResponse,
};
use crate::proto::google::bytestream::WriteRequest;
use crate::proto::google::bytestream::byte_stream_client::ByteStreamClient;
use crate::staging::StagingMode;
use crate::tree::to_proto;

/// Blobs up to this size go in one BatchUpdateBlobs; larger ones through ByteStream.
const BATCH_LIMIT: usize = 1024 * 1024;
/// ByteStream write chunk.
const CHUNK: usize = 1024 * 1024;

/// A LocalCAS client for one action at a time.
#[derive(Debug)]
pub struct LocalCasClient {
    runtime: Runtime,
    channel: Channel,
    instance: String,
    function: DigestFunction,
    stage: Option<Stage>,
}

/// An open StageTree call: the tree stays staged until the empty request.
#[derive(Debug)]
struct Stage {
    requests: mpsc::Sender<StageTreeRequest>,
    responses: Streaming<StageTreeResponse>,
}

impl LocalCasClient {
    /// Connects to `url` (`unix:PATH` or `http://HOST:PORT`), for `instance`.
    pub fn connect(url: &str, instance: &str, function: DigestFunction) -> Result<Self, ActionError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ActionError::io("start an async runtime for", "the CAS client", e))?;
        let channel = runtime.block_on(connect(url))?;
        Ok(Self { runtime, channel, instance: instance.to_owned(), function, stage: None })
    }

    fn cas(&self) -> ContentAddressableStorageClient<Channel> {
        ContentAddressableStorageClient::new(self.channel.clone()).max_decoding_message_size(usize::MAX)
    }

    fn local_cas(&self) -> LocalContentAddressableStorageClient<Channel> {
        LocalContentAddressableStorageClient::new(self.channel.clone()).max_decoding_message_size(usize::MAX)
    }

    fn paths(paths: &[PathBuf]) -> Vec<String> {
        paths.iter().map(|p| p.to_string_lossy().into_owned()).collect()
    }

    fn node_properties(properties: Properties) -> Vec<String> {
        let mut names = Vec::new();
        if properties.mtime {
            names.push("mtime".to_owned());
        }
        if properties.unix_mode {
            names.push("unix_mode".to_owned());
        }
        names
    }

    fn response_digest(
        &self,
        digest: Option<&reapi::Digest>,
        rpc: &'static str,
    ) -> Result<Digest, ActionError> {
        let digest = digest.ok_or_else(|| remote(rpc, "a response has no digest"))?;
        parse_digest(digest, self.function).map_err(|e| remote(rpc, e))
    }
}

fn remote(rpc: &'static str, status: impl std::fmt::Display) -> ActionError {
    ActionError::Remote { rpc, status: status.to_string() }
}

/// A gRPC error as one readable line: the server's message and the code.
fn remote_status(rpc: &'static str, status: tonic::Status) -> ActionError {
    remote(rpc, format!("{} ({:?})", status.message(), status.code()))
}

fn check_status(
    rpc: &'static str,
    path: &str,
    status: Option<&crate::proto::google::rpc::Status>,
) -> Result<(), ActionError> {
    match status {
        Some(status) if status.code != 0 => {
            Err(remote(rpc, format!("{path}: {} (code {})", status.message, status.code)))
        }
        _ => Ok(()),
    }
}

impl ActionCas for LocalCasClient {
    fn digest_function(&self) -> DigestFunction {
        self.function
    }

    fn read_blob(&mut self, digest: &Digest, what: &'static str) -> Result<Vec<u8>, ActionError> {
        let request = reapi::BatchReadBlobsRequest {
            instance_name: self.instance.clone(),
            digests: vec![to_proto(digest)],
            digest_function: self.function.proto_value(),
            ..Default::default()
        };
        let mut cas = self.cas();
        let response = self
            .runtime
            .block_on(cas.batch_read_blobs(request))
            .map_err(|s| remote_status("BatchReadBlobs", s))?;
        let response = response.into_inner().responses.into_iter().next();
        match response {
            Some(r) if r.status.as_ref().is_none_or(|s| s.code == 0) => Ok(r.data),
            Some(r) if r.status.as_ref().is_some_and(|s| s.code == tonic::Code::NotFound as i32) => {
                Err(ActionError::MissingBlob { what, digest: *digest })
            }
            Some(r) => Err(remote("BatchReadBlobs", r.status.map(|s| s.message).unwrap_or_default())),
            None => Err(remote("BatchReadBlobs", "empty response")),
        }
    }

    fn stage(&mut self, root: &Digest, options: &StageOptions) -> Result<PathBuf, ActionError> {
        let request = StageTreeRequest {
            instance_name: self.instance.clone(),
            root_digest: Some(to_proto(root)),
            path: options.path.as_ref().map(|p| p.to_string_lossy().into_owned()).unwrap_or_default(),
            access_credentials: options.owner.map(|o| Credentials { uid: o.uid.into(), gid: o.gid.into() }),
            staging_mode: match options.mode {
                StagingMode::Default => ProtoMode::Default,
                StagingMode::CopyOrLink => ProtoMode::CopyOrLink,
                StagingMode::Fuse => ProtoMode::Fuse,
            } as i32,
            ..Default::default()
        };
        let (requests, receiver) = mpsc::channel(2);
        let mut client = self.local_cas();
        let (responses, path) = self.runtime.block_on(async move {
            requests.send(request).await.map_err(|_| remote("StageTree", "the call ended"))?;
            let mut responses = client
                .stage_tree(ReceiverStream::new(receiver))
                .await
                .map_err(|s| remote_status("StageTree", s))?
                .into_inner();
            let first = responses.message().await.map_err(|s| remote_status("StageTree", s))?;
            let first = first.ok_or_else(|| remote("StageTree", "the server answered nothing"))?;
            Ok::<_, ActionError>(((requests, responses), first.path))
        })?;
        self.stage = Some(Stage { requests: responses.0, responses: responses.1 });
        Ok(PathBuf::from(path))
    }

    fn unstage(&mut self) -> Result<(), ActionError> {
        let Some(mut stage) = self.stage.take() else { return Ok(()) };
        self.runtime.block_on(async move {
            // An empty request asks to unstage; the answer (or the end of the call) says it is done.
            if stage.requests.send(StageTreeRequest::default()).await.is_err() {
                return Ok(());
            }
            match stage.responses.message().await {
                Ok(_) => Ok(()),
                Err(status) => Err(remote_status("StageTree (unstage)", status)),
            }
        })
    }

    fn capture_directories(
        &mut self,
        paths: &[PathBuf],
        properties: Properties,
        format: OutputFormat,
    ) -> Result<Vec<DirectoryDigests>, ActionError> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let request = CaptureTreeRequest {
            instance_name: self.instance.clone(),
            path: Self::paths(paths),
            node_properties: Self::node_properties(properties),
            output_directory_format: match format {
                OutputFormat::TreeOnly => reapi::command::OutputDirectoryFormat::TreeOnly,
                OutputFormat::DirectoryOnly => reapi::command::OutputDirectoryFormat::DirectoryOnly,
                OutputFormat::TreeAndDirectory => reapi::command::OutputDirectoryFormat::TreeAndDirectory,
            } as i32,
            ..Default::default()
        };
        let mut client = self.local_cas();
        let response = self
            .runtime
            .block_on(client.capture_tree(request))
            .map_err(|s| remote_status("CaptureTree", s))?
            .into_inner();
        if response.responses.len() != paths.len() {
            return Err(remote("CaptureTree", "the answer does not cover every path"));
        }
        response
            .responses
            .iter()
            .map(|r| {
                check_status("CaptureTree", &r.path, r.status.as_ref())?;
                Ok(DirectoryDigests {
                    tree: r
                        .tree_digest
                        .as_ref()
                        .map(|d| self.response_digest(Some(d), "CaptureTree"))
                        .transpose()?,
                    root_directory: r
                        .root_directory_digest
                        .as_ref()
                        .map(|d| self.response_digest(Some(d), "CaptureTree"))
                        .transpose()?,
                })
            })
            .collect()
    }

    fn capture_files(
        &mut self,
        paths: &[PathBuf],
        properties: Properties,
    ) -> Result<Vec<CapturedFile>, ActionError> {
        if paths.is_empty() {
            return Ok(Vec::new());
        }
        let request = CaptureFilesRequest {
            instance_name: self.instance.clone(),
            path: Self::paths(paths),
            node_properties: Self::node_properties(properties),
            ..Default::default()
        };
        let mut client = self.local_cas();
        let response = self
            .runtime
            .block_on(client.capture_files(request))
            .map_err(|s| remote_status("CaptureFiles", s))?
            .into_inner();
        if response.responses.len() != paths.len() {
            return Err(remote("CaptureFiles", "the answer does not cover every path"));
        }
        response
            .responses
            .into_iter()
            .map(|r| {
                check_status("CaptureFiles", &r.path, r.status.as_ref())?;
                Ok(CapturedFile {
                    digest: self.response_digest(r.digest.as_ref(), "CaptureFiles")?,
                    is_executable: r.is_executable,
                    node_properties: r.node_properties,
                })
            })
            .collect()
    }

    fn upload_file(&mut self, path: &Path) -> Result<Digest, ActionError> {
        let data = std::fs::read(path).map_err(|e| ActionError::io("read", path, e))?;
        self.upload_blob(data)
    }

    fn upload_blob(&mut self, data: Vec<u8>) -> Result<Digest, ActionError> {
        let digest = self.function.hash_bytes(&data);
        if data.len() <= BATCH_LIMIT {
            let request = reapi::BatchUpdateBlobsRequest {
                instance_name: self.instance.clone(),
                requests: vec![reapi::batch_update_blobs_request::Request {
                    digest: Some(to_proto(&digest)),
                    data,
                    ..Default::default()
                }],
                digest_function: self.function.proto_value(),
            };
            let mut cas = self.cas();
            let response = self
                .runtime
                .block_on(cas.batch_update_blobs(request))
                .map_err(|s| remote_status("BatchUpdateBlobs", s))?;
            for r in response.into_inner().responses {
                check_status("BatchUpdateBlobs", &digest.to_string(), r.status.as_ref())?;
            }
            return Ok(digest);
        }
        let prefix = if self.instance.is_empty() { String::new() } else { format!("{}/", self.instance) };
        let resource =
            format!("{prefix}uploads/{}/blobs/{}/{}", upload_id(), digest.hash_hex(), digest.size());
        let total = data.len();
        let requests: Vec<WriteRequest> = data
            .chunks(CHUNK)
            .enumerate()
            .map(|(i, chunk)| WriteRequest {
                resource_name: if i == 0 { resource.clone() } else { String::new() },
                write_offset: (i * CHUNK) as i64,
                finish_write: i * CHUNK + chunk.len() == total,
                data: chunk.to_vec(),
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
}

impl Drop for LocalCasClient {
    fn drop(&mut self) {
        if let Err(error) = self.unstage() {
            tracing::error!(%error, "cannot unstage");
        }
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
