//! What surrounds serving: leftovers of a crashed run are removed before the daemon announces
//! itself, and every stage is undone before it exits.
//!
//! Stale sockets are handled where sockets are bound ([`super::bind`]) and dead writers'
//! temporary files by [`crate::store::Store::open`]. Stages belong to the staging engine; the
//! two hooks below are where the daemon hands over to it.

use crate::grpc::Shared;

/// Removes what a crashed run left behind, before serving.
pub fn clean_leftovers(shared: &Shared) {
    // STAGING HOOK: once `Shared` carries the stages, call their `cleanup_stale()` here (stale
    // stage dirs and mounts under CACHE_DIR/cas/staging).
    let _ = shared;
}

/// Undoes every stage still in place, after serving stopped.
pub fn clean_stages(shared: &Shared) {
    // STAGING HOOK: once `Shared` carries the stages, call their `cleanup_all()` here.
    let _ = shared;
}
