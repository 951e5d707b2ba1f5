//! Keeping staging's reusable state bounded: farms no stage has used for a while, and the pool
//! variants only they linked, are pruned at start and then periodically, off the executor.
//!
//! Farms and pool variants outlive stages on purpose (a tree staged again costs one mount), so
//! without this they would grow with every distinct tree the daemon ever staged.

use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use tracing::{debug, error};

use crate::grpc::Shared;

/// A farm unused for this long is pruned.
pub const UNUSED_FOR: Duration = Duration::from_secs(24 * 60 * 60);

/// How often pruning runs after the first time (at start).
const PERIOD: Duration = Duration::from_secs(60 * 60);

/// The background pruner; stopping it waits for a run in progress to finish.
#[derive(Debug)]
pub struct Pruner {
    stop: Sender<()>,
    thread: JoinHandle<()>,
}

impl Pruner {
    /// Starts pruning `shared`'s stages now, then every [`PERIOD`].
    pub fn start(shared: Arc<Shared>) -> std::io::Result<Self> {
        let (stop, stopped) = mpsc::channel();
        let thread = thread::Builder::new().name("rebox-prune".into()).spawn(move || {
            loop {
                match shared.stages.prune(UNUSED_FOR) {
                    Ok(report) => debug!(?report, "staging pruned"),
                    Err(e) => error!("cannot prune staging: {e}"),
                }
                match stopped.recv_timeout(PERIOD) {
                    Err(RecvTimeoutError::Timeout) => {}
                    Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
                }
            }
        })?;
        Ok(Self { stop, thread })
    }

    /// Stops the pruner (after the run in progress, if any).
    pub fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}
