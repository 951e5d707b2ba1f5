//! [`LocalCasClient`]: an [`ActionCas`] over a LocalCAS server (rebox casd or buildbox-casd), as
//! buildbox-run uses it: `StageTree` (held open while the action runs, then an empty request to
//! unstage), `CaptureTree`/`CaptureFiles` for outputs, CAS `BatchReadBlobs` for the Command, and
//! `BatchUpdateBlobs` or ByteStream `Write` for the logs.

use std::path::{Path, PathBuf};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

use super::cas::{ActionCas, DirectoryDigests, StageOptions};
use super::connection::{CasConnection, check_status, remote, remote_status};
use super::error::ActionError;
use crate::capture::{CapturedFile, OutputFormat, Properties};
use crate::digest::{Digest, DigestFunction};
use crate::proto::build::bazel::remote::execution::v2 as reapi;
use crate::proto::build::buildgrid::local_content_addressable_storage_client::LocalContentAddressableStorageClient;
use crate::proto::build::buildgrid::stage_tree_request::{Credentials, StagingMode as ProtoMode};
use crate::proto::build::buildgrid::{
    CaptureFilesRequest, CaptureTreeRequest, StageTreeRequest, StageTreeResponse,
};
use crate::staging::StagingMode;
use crate::tree::to_proto;

/// A LocalCAS client for one action at a time.
#[derive(Debug)]
pub struct LocalCasClient {
    connection: CasConnection,
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
        Ok(Self { connection: CasConnection::connect(url, instance, function)?, stage: None })
    }

    fn local_cas(&self) -> LocalContentAddressableStorageClient<Channel> {
        LocalContentAddressableStorageClient::new(self.connection.channel())
            .max_decoding_message_size(usize::MAX)
    }

    /// The StageTree call for `root`: answers the open call and the staged path.
    fn stage_call(
        &self,
        root: &Digest,
        options: &StageOptions,
    ) -> impl std::future::Future<Output = Result<(Stage, String), ActionError>> + Send + 'static {
        let request = StageTreeRequest {
            instance_name: self.connection.instance().to_owned(),
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
        let mut client = self.local_cas();
        async move {
            let (requests, receiver) = mpsc::channel(2);
            requests.send(request).await.map_err(|_| remote("StageTree", "the call ended"))?;
            let mut responses = client
                .stage_tree(ReceiverStream::new(receiver))
                .await
                .map_err(|s| remote_status("StageTree", s))?
                .into_inner();
            let first = responses.message().await.map_err(|s| remote_status("StageTree", s))?;
            let first = first.ok_or_else(|| remote("StageTree", "the server answered nothing"))?;
            Ok((Stage { requests, responses }, first.path))
        }
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
}

impl ActionCas for LocalCasClient {
    fn digest_function(&self) -> DigestFunction {
        self.connection.function()
    }

    fn read_blob(&mut self, digest: &Digest, what: &'static str) -> Result<Vec<u8>, ActionError> {
        self.connection.read_blob(digest, what)
    }

    fn stage(&mut self, root: &Digest, options: &StageOptions) -> Result<PathBuf, ActionError> {
        let staging = self.stage_call(root, options);
        let (stage, path) = self.connection.runtime().block_on(staging)?;
        self.stage = Some(stage);
        Ok(PathBuf::from(path))
    }

    fn read_blob_and_stage(
        &mut self,
        blob: &Digest,
        what: &'static str,
        root: &Digest,
        options: &StageOptions,
    ) -> Result<(Vec<u8>, PathBuf), ActionError> {
        // The StageTree call runs as a task on the client's runtime, which drives it while the
        // read below waits for its own answer: both requests are in flight at once.
        let staging = self.connection.runtime().spawn(self.stage_call(root, options));
        let read = self.connection.read_blob(blob, what);
        let staged = self
            .connection
            .runtime()
            .block_on(staging)
            .map_err(|e| remote("StageTree", format!("the call's task failed: {e}")))?;
        let (stage, path) = staged?;
        self.stage = Some(stage);
        Ok((read?, PathBuf::from(path)))
    }

    fn unstage(&mut self) -> Result<(), ActionError> {
        let Some(mut stage) = self.stage.take() else { return Ok(()) };
        self.connection.runtime().block_on(async move {
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
            instance_name: self.connection.instance().to_owned(),
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
            .connection
            .runtime()
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
                        .map(|d| self.connection.parse(Some(d), "CaptureTree"))
                        .transpose()?,
                    root_directory: r
                        .root_directory_digest
                        .as_ref()
                        .map(|d| self.connection.parse(Some(d), "CaptureTree"))
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
            instance_name: self.connection.instance().to_owned(),
            path: Self::paths(paths),
            node_properties: Self::node_properties(properties),
            ..Default::default()
        };
        let mut client = self.local_cas();
        let response = self
            .connection
            .runtime()
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
                    digest: self.connection.parse(r.digest.as_ref(), "CaptureFiles")?,
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
        self.connection.upload_blob(data)
    }
}

impl Drop for LocalCasClient {
    fn drop(&mut self) {
        if let Err(error) = self.unstage() {
            tracing::error!(%error, "cannot unstage");
        }
    }
}
