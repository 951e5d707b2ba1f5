//! Filesystem work off the async executor: every service runs its syscalls and hashing on
//! tokio's blocking threads, and a worker that panics becomes an `INTERNAL` status.

use tonic::Status;

/// Runs `work` on a blocking thread.
pub async fn blocking<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> Result<T, Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Status::internal(format!("worker thread failed: {e}")))
}
