//! ByteStream Read: a blob, or a range of it, in frames of [`READ_FRAME`] bytes.
//!
//! A blocking thread reads the file and hands frames to the response stream through a small
//! bounded channel, so a slow client holds back the reads (at most [`READ_AHEAD`] frames wait
//! in memory) and a client that goes away stops them.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};

use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::checked_digest;
use super::resource::BlobResource;
use crate::grpc::Shared;
use crate::proto::google::bytestream::{ReadRequest, ReadResponse};

/// Bytes per response message: well under gRPC's default 4 MiB receive limit.
pub const READ_FRAME: usize = 1024 * 1024;

/// Frames read ahead of the client.
const READ_AHEAD: usize = 4;

/// The response stream of Read.
pub type ReadStream = ReceiverStream<Result<ReadResponse, Status>>;

/// Streams `[read_offset, read_offset + read_limit)` of the named blob (to its end if the limit
/// is 0 or reaches past it). An empty range still gets one (empty) response.
pub async fn read(shared: &Shared, request: ReadRequest) -> Result<ReadStream, Status> {
    let name = BlobResource::parse(&request.resource_name)?;
    let digest = checked_digest(shared, &name.instance, name.function, &name.digest)?;
    let offset = u64::try_from(request.read_offset)
        .map_err(|_| Status::out_of_range(format!("read_offset {} is negative", request.read_offset)))?;
    let limit = u64::try_from(request.read_limit)
        .map_err(|_| Status::invalid_argument(format!("read_limit {} is negative", request.read_limit)))?;
    let store = shared.store.clone();
    let file = tokio::task::spawn_blocking(move || store.open_blob(&digest))
        .await
        .map_err(|e| Status::internal(format!("worker thread failed: {e}")))??;
    let size = digest.size();
    if offset > size {
        return Err(Status::out_of_range(format!(
            "read_offset {offset} is past the end of blob {digest} ({size} bytes)"
        )));
    }
    let end = if limit == 0 { size } else { size.min(offset.saturating_add(limit)) };
    let (frames, receiver) = mpsc::channel(READ_AHEAD);
    tokio::task::spawn_blocking(move || send_range(file, offset, end, &frames));
    Ok(ReceiverStream::new(receiver))
}

/// Sends `[offset, end)` of `file` as frames until done, or until the client is gone.
fn send_range(mut file: File, offset: u64, end: u64, frames: &mpsc::Sender<Result<ReadResponse, Status>>) {
    if offset == end {
        let _ = frames.blocking_send(Ok(ReadResponse { data: Vec::new() }));
        return;
    }
    if let Err(e) = file.seek(SeekFrom::Start(offset)) {
        let _ = frames.blocking_send(Err(Status::internal(format!("cannot seek in blob: {e}"))));
        return;
    }
    let mut position = offset;
    while position < end {
        let len = (end - position).min(READ_FRAME as u64);
        let mut data = Vec::with_capacity(len as usize);
        let frame = match (&mut file).take(len).read_to_end(&mut data) {
            Ok(n) if n as u64 == len => Ok(ReadResponse { data }),
            // The object's length was checked when it was opened: only tampering shortens it.
            Ok(n) => Err(Status::data_loss(format!("blob ended after {} bytes", position + n as u64))),
            Err(e) => Err(Status::internal(format!("cannot read blob: {e}"))),
        };
        let failed = frame.is_err();
        if frames.blocking_send(frame).is_err() || failed {
            return;
        }
        position += len;
    }
}
