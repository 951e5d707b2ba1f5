//! StageTree: a bidirectional stream. The first request stages a tree and is answered with its
//! path; a second request (or the client closing its side, or hanging up) unstages it. As with
//! buildbox-casd, a second request is answered with an empty response once unstaged (an error
//! follows if that request was not empty); a client that closes its side gets no more messages.

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Status, Streaming};

use super::LocalCas;
use crate::digest::DigestFunction;
use crate::grpc::Shared;
use crate::proto::build::buildgrid::*;
use crate::staging::{StageId, StageRequest, Stages};

type StageStream = <LocalCas as crate::proto::build::buildgrid::local_content_addressable_storage_server::LocalContentAddressableStorage>::StageTreeStream;

type Replies = mpsc::Sender<Result<StageTreeResponse, Status>>;

pub async fn stage_tree(
    shared: &Shared,
    requests: Streaming<StageTreeRequest>,
) -> Result<StageStream, Status> {
    let (replies, stream) = mpsc::channel(2);
    let session = Session {
        stages: shared.stages.clone(),
        instance_name: shared.instance_name.clone(),
        function: shared.store.digest_function(),
    };
    // The exchange runs in its own task, so a client hanging up at any point (even mid-stage)
    // still ends in an unstage.
    tokio::spawn(session.run(requests, replies));
    Ok(Box::pin(ReceiverStream::new(stream)))
}

struct Session {
    stages: Stages,
    instance_name: String,
    function: DigestFunction,
}

impl Session {
    async fn run(self, mut requests: Streaming<StageTreeRequest>, replies: Replies) {
        let first = match requests.message().await {
            Ok(Some(first)) => first,
            Ok(None) => {
                let status = Status::invalid_argument("StageTree: the stream ended before any request");
                let _ = replies.send(Err(status)).await;
                return;
            }
            Err(_) => return, // The client is gone.
        };
        let staged = match self.stage(&first).await {
            Ok(staged) => staged,
            Err(status) => {
                let _ = replies.send(Err(status)).await;
                return;
            }
        };
        let mut unstager = Unstager { stages: self.stages.clone(), id: Some(staged.0) };
        let _ = replies.send(Ok(StageTreeResponse { path: staged.1 })).await;

        let next = requests.message().await;
        let unstaged = unstager.finish().await;
        match next {
            Ok(Some(second)) => {
                if let Err(status) = unstaged {
                    let _ = replies.send(Err(status)).await;
                    return;
                }
                let _ = replies.send(Ok(StageTreeResponse::default())).await;
                if second != StageTreeRequest::default() {
                    let status = Status::invalid_argument(
                        "StageTree: unexpected non-empty request after staging (the tree was unstaged)",
                    );
                    let _ = replies.send(Err(status)).await;
                }
            }
            Ok(None) => {
                if let Err(status) = unstaged {
                    let _ = replies.send(Err(status)).await;
                }
            }
            Err(_) => {} // The client hung up: nobody to tell.
        }
    }

    async fn stage(&self, first: &StageTreeRequest) -> Result<(StageId, String), Status> {
        if !first.instance_name.is_empty() && first.instance_name != self.instance_name {
            return Err(Status::invalid_argument(format!(
                "StageTree: invalid instance name {:?}",
                first.instance_name
            )));
        }
        let request = StageRequest::from_proto(first, self.function)?;
        if !first.pre_unstage_commands.is_empty() {
            tracing::warn!(commands = ?first.pre_unstage_commands, "StageTree: pre-unstage commands are not allowed; ignored");
        }
        if !first.remote_apis_socket_path.is_empty() {
            tracing::debug!(
                path = first.remote_apis_socket_path,
                "StageTree: remote_apis_socket_path ignored"
            );
        }
        let stages = self.stages.clone();
        let staged = tokio::task::spawn_blocking(move || stages.stage(&request))
            .await
            .map_err(|e| Status::internal(format!("StageTree: staging failed: {e}")))??;
        Ok((staged.id, staged.path))
    }
}

/// Unstages when told to, or (should the task be dropped or panic first) when dropped.
struct Unstager {
    stages: Stages,
    id: Option<StageId>,
}

impl Unstager {
    async fn finish(&mut self) -> Result<(), Status> {
        let Some(id) = self.id.take() else { return Ok(()) };
        let stages = self.stages.clone();
        tokio::task::spawn_blocking(move || stages.unstage(id))
            .await
            .map_err(|e| Status::internal(format!("StageTree: unstaging failed: {e}")))?
            .map_err(Status::from)
    }
}

impl Drop for Unstager {
    fn drop(&mut self) {
        if let Some(id) = self.id.take() {
            let stages = self.stages.clone();
            // At runtime shutdown this may not run: the daemon's cleanup_all catches it then.
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn_blocking(move || stages.unstage(id));
            }
        }
    }
}
