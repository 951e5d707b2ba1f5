//! What surrounds serving: leftovers of a crashed run are removed before the daemon announces
//! itself, and every stage is undone before it exits.
//!
//! Stale sockets are handled where sockets are bound ([`super::bind`]) and dead writers'
//! temporary files by [`crate::store::Store::open`]. Stages belong to the staging engine; the
//! two hooks below are where the daemon hands over to it.

use tracing::{error, info};

use crate::grpc::Shared;
use crate::staging;

/// Removes what a crashed run left behind (stage dirs and mounts of dead daemons), before serving.
pub fn clean_leftovers(shared: &Shared) {
    info!("cache directory {}", shared.store.root().display());
    match staging::cleanup_stale(shared.store.root()) {
        Ok(report) if report.daemons > 0 => {
            info!("removed the stages of {} dead daemon(s), {} mount(s)", report.daemons, report.mounts)
        }
        Ok(_) => {}
        Err(e) => error!("cannot clean up stale stages: {e}"),
    }
}

/// Undoes every stage still in place, after serving stopped.
pub fn clean_stages(shared: &Shared) {
    let live = shared.stages.shutdown();
    if live > 0 {
        info!("unstaged {live} stage(s) still in place at shutdown");
    }
}
