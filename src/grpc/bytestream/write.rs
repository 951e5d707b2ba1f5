//! ByteStream Write: a blob streamed into a [`BlobWriter`], verified and published on
//! `finish_write`, and QueryWriteStatus.
//!
//! The call's task checks each request (resource name, `write_offset`, size) and hands the data
//! to a blocking thread that owns the writer, through a small bounded channel: the blob is never
//! held whole in memory, and hashing and disk writes overlap with receiving. What happens then:
//! - `finish_write`: the writer commits (hash and size verified) and the response carries the
//!   blob's size; a mismatch is `INVALID_ARGUMENT` and nothing is stored.
//! - the blob is already in the CAS when the call starts: the call completes at once with the
//!   blob's size as `committed_size`, as REAPI allows, whatever the client still sends.
//! - the stream ends or breaks before `finish_write`: the writer is parked for a resumed Write
//!   (see [`super::uploads`]) and a cleanly closed stream gets the bytes committed so far.
//! - a bad request (wrong offset, more bytes than the digest says, another resource name):
//!   `INVALID_ARGUMENT` naming the problem; the upload is dropped.

use std::sync::Arc;

use tokio::sync::mpsc;
use tonic::{Status, Streaming};

use super::checked_digest;
use super::resource::UploadResource;
use super::uploads::{UploadKey, Uploads};
use crate::grpc::Shared;
use crate::proto::google::bytestream::{
    QueryWriteStatusRequest, QueryWriteStatusResponse, WriteRequest, WriteResponse,
};
use crate::store::Store;

/// Requests' data waiting for the writer thread.
const WRITE_AHEAD: usize = 4;

/// What the call's task hands the writer thread.
#[derive(Debug)]
enum Piece {
    Data(prost::bytes::Bytes),
    Finish,
    /// The call failed on a bad request: drop the upload.
    Abort,
}

/// How the writer thread ended.
#[derive(Debug)]
enum Outcome {
    Committed,
    AlreadyPresent,
    Parked(u64),
    Aborted,
}

/// Runs one Write call.
pub async fn write(
    shared: &Shared,
    uploads: &Arc<Uploads>,
    mut stream: Streaming<WriteRequest>,
) -> Result<WriteResponse, Status> {
    let first =
        stream.message().await?.ok_or_else(|| Status::invalid_argument("Write received no WriteRequest"))?;
    let name = UploadResource::parse(&first.resource_name)?;
    let digest = checked_digest(shared, &name.instance, name.function, &name.digest)?;
    let offset = u64::try_from(first.write_offset)
        .map_err(|_| Status::invalid_argument(format!("write_offset {} is negative", first.write_offset)))?;
    let key = UploadKey { uuid: name.uuid, digest };

    let (pieces, receiver) = mpsc::channel(WRITE_AHEAD);
    let (store, uploads) = (shared.store.clone(), Arc::clone(uploads));
    let writer = tokio::task::spawn_blocking(move || run_writer(&store, &uploads, &key, offset, receiver));

    let resource_name = first.resource_name.clone();
    let fed = feed(first, &mut stream, &resource_name, offset, digest.size(), &pieces).await;
    if let Err(Stop::Refused(_)) = fed {
        // The writer drains what is queued and stops at Abort (if it still runs).
        let _ = pieces.send(Piece::Abort).await;
    }
    // Closing the channel without Finish parks the upload.
    drop(pieces);
    let outcome = writer.await.map_err(|e| Status::internal(format!("writer thread failed: {e}")))?;
    if let Err(Stop::Refused(status) | Stop::Broken(status)) = fed {
        return Err(status);
    }
    match outcome? {
        Outcome::Committed | Outcome::AlreadyPresent => {
            Ok(WriteResponse { committed_size: digest.size_i64() })
        }
        Outcome::Parked(committed) => Ok(WriteResponse { committed_size: committed as i64 }),
        Outcome::Aborted => Err(Status::internal("upload aborted without a reason")),
    }
}

/// Why [`feed`] stopped before the end of the stream.
#[derive(Debug)]
enum Stop {
    /// A request was refused: the upload is dropped.
    Refused(Status),
    /// The client's stream broke: the upload is kept for resuming.
    Broken(Status),
}

/// Checks each request and passes its data on, until `finish_write`, the end of the stream, or
/// the writer thread stopping early (blob present, or a write failed: the outcome says which).
async fn feed(
    first: WriteRequest,
    stream: &mut Streaming<WriteRequest>,
    resource_name: &str,
    offset: u64,
    size: u64,
    pieces: &mpsc::Sender<Piece>,
) -> Result<(), Stop> {
    let mut expected = offset;
    let mut request = first;
    loop {
        if !request.resource_name.is_empty() && request.resource_name != resource_name {
            return Err(Stop::Refused(Status::invalid_argument(format!(
                "resource_name {:?} differs from the stream's first, {resource_name:?}",
                request.resource_name
            ))));
        }
        if u64::try_from(request.write_offset) != Ok(expected) {
            return Err(Stop::Refused(Status::invalid_argument(format!(
                "write_offset {} should be {expected}: the first offset plus the data sent since",
                request.write_offset
            ))));
        }
        expected += request.data.len() as u64;
        if expected > size {
            return Err(Stop::Refused(Status::invalid_argument(format!(
                "{resource_name:?} is sent at least {expected} bytes, more than the {size} its digest says"
            ))));
        }
        if !request.data.is_empty() && pieces.send(Piece::Data(request.data)).await.is_err() {
            return Ok(());
        }
        if request.finish_write {
            let _ = pieces.send(Piece::Finish).await;
            return Ok(());
        }
        // The writer thread may stop before the client does (the blob turned out to be present).
        let next = tokio::select! {
            next = stream.message() => next,
            () = pieces.closed() => return Ok(()),
        };
        request = match next {
            Ok(Some(request)) => request,
            Ok(None) => return Ok(()),
            Err(status) => return Err(Stop::Broken(status)),
        };
    }
}

/// The writer thread: completes at once if the blob is present, else claims the upload and
/// writes what arrives. A channel closed without `Finish` parks the upload.
fn run_writer(
    store: &Store,
    uploads: &Arc<Uploads>,
    key: &UploadKey,
    offset: u64,
    mut pieces: mpsc::Receiver<Piece>,
) -> Result<Outcome, Status> {
    // find_missing marks a present blob used, as the upload counts as a use.
    if store.find_missing_to_upload(std::slice::from_ref(&key.digest)).is_empty() {
        uploads.discard(key);
        return Ok(Outcome::AlreadyPresent);
    }
    let mut claim = uploads.claim(key, offset)?;
    let mut writer = match claim.take_resumed() {
        Some(writer) => writer,
        None => store.writer(Some(key.digest))?,
    };
    loop {
        match pieces.blocking_recv() {
            Some(Piece::Data(data)) => {
                writer.write_all(&data)?;
                claim.set_progress(writer.written());
            }
            Some(Piece::Finish) => {
                writer.commit()?;
                return Ok(Outcome::Committed);
            }
            Some(Piece::Abort) => return Ok(Outcome::Aborted),
            None => {
                let committed = writer.written();
                claim.park(writer);
                return Ok(Outcome::Parked(committed));
            }
        }
    }
}

/// QueryWriteStatus: a blob in the CAS is complete; an upload in progress reports its bytes;
/// anything else is `NOT_FOUND`.
pub async fn query_write_status(
    shared: &Shared,
    uploads: &Uploads,
    request: QueryWriteStatusRequest,
) -> Result<QueryWriteStatusResponse, Status> {
    let name = UploadResource::parse(&request.resource_name)?;
    let digest = checked_digest(shared, &name.instance, name.function, &name.digest)?;
    let store = shared.store.clone();
    let present = tokio::task::spawn_blocking(move || store.contains(&digest))
        .await
        .map_err(|e| Status::internal(format!("worker thread failed: {e}")))?;
    if present {
        return Ok(QueryWriteStatusResponse { committed_size: digest.size_i64(), complete: true });
    }
    let key = UploadKey { uuid: name.uuid, digest };
    match uploads.committed(&key) {
        Some(committed) => Ok(QueryWriteStatusResponse { committed_size: committed as i64, complete: false }),
        None => Err(Status::not_found(format!(
            "no upload {} of {digest} is in progress, and the blob is not in the CAS",
            key.uuid
        ))),
    }
}
