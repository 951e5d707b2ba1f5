//! Staging: materialising a CAS tree as a directory an action can use, read and write, without
//! any chance of changing a CAS object (LocalCAS `StageTree`).
//!
//! # Design
//!
//! CAS objects are 0444, owned by the daemon, and their mtime is the LRU clock, so they can't be
//! the staged inodes (a staged file shows the tree's mode, mtime and owner), and hardlinking them
//! straight into the stage (as buildbox-casd does) lets any action that can chmod its inputs
//! corrupt the cache. Copying every file is safe but slow. rebox stages one of two ways.
//!
//! **FUSE** (`fuse/`, the default where `/dev/fuse` can be used, and `StagingMode::Fuse`): this
//! process serves the tree through a FUSE mount at the stage path. A directory's entries are
//! read from its Directory message when first looked into, a staged file's bytes from its CAS
//! object, so a stage costs what the action touches. The first write (or truncate) of a staged
//! file copies it into a per-stage scratch dir on the cache's filesystem; files the action makes
//! live there from the start, and their I/O is passed through to the kernel (FUSE passthrough)
//! where it can be. CAS objects are only ever opened read-only. Up to [`MAX_FUSE_STAGES`] are
//! live at once (RESOURCE_EXHAUSTED beyond); where FUSE can't be used, that is said once in the
//! log and stages take the overlay.
//!
//! **Overlay** (`StagingMode::CopyOrLink`, or without FUSE), in three layers:
//!
//! 1. **Pool** (`pool.rs`): one private copy of a blob per (digest, mode, mtime, uid, gid)
//!    actually staged, under `cas/staging-pool`, made once and hardlinked from then on.
//! 2. **Farm** (`farm.rs`): per (root digest, owner), the tree as directories (with the staged
//!    modes and mtimes) and hardlinks to pool variants, built once in a private dir and renamed
//!    into place atomically (so concurrent stages of one tree are safe), then kept and never
//!    written again.
//! 3. **Overlay** (`mounts.rs`): each stage mounts an overlayfs at the stage path, the farm as its
//!    read-only lower layer and a fresh per-stage upper dir (on the store's filesystem) taking
//!    every change. A write, chmod, truncate, rename or unlink copies up or leaves a whiteout in
//!    the upper dir; the farm and the pool are never touched.
//!
//! Staging a tree whose farm exists costs a few mounts, whatever its size; a new tree costs one
//! hardlink per file (plus one copy per blob the pool lacks). Then, for both, `SubtreeReadOnly`
//! subtrees are bind-mounted read-only (EROFS to the action), and deeper "false" ones writable
//! again.
//!
//! Where no overlay can be mounted (the daemon is not root: EPERM), every stage is a full copy of
//! the tree into the stage dir (safe, slower), said once in the log. A link that can't be made
//! (EMLINK, EXDEV) falls back to a copy of that one file.
//!
//! # Safety of the stage
//!
//! The tree is read and validated ([`Tree::read`](crate::tree::Tree::read)), its node properties
//! and expanded size checked, and its blobs found, before anything is written. (A one-shot
//! runner staging through FUSE a tree it validated whole in an earlier run, and remembered in the
//! store, reads and re-checks only the directories its action enters: `remembered.rs`.) Everything is
//! created with `*at` syscalls from directory fds opened `O_NOFOLLOW` (`build.rs`), so nothing
//! is resolved through a symlink. Stage dirs sit in 0700 parents owned by the stage's user, the
//! scratch, pool and farms in 0700 dirs, so no other host user reaches them; the overlay is
//! mounted nosuid,nodev, and setuid/setgid bits are never staged.
//!
//! # Lifecycle
//!
//! Each daemon works in its own `cas/staging/rebox-<pid>-<nonce>` dir, flock'd while it lives.
//! [`Stages`] keeps the live stages: [`Stages::unstage`] unmounts (lazily, and logged, only if a
//! plain unmount fails) and removes the stage's dirs; [`Stages::cleanup_all`] does so for all at
//! shutdown; [`cleanup_stale`] removes, at start-up, what dead daemons left (mounts found in
//! `/proc/self/mountinfo` by their tag, their dir, or the client paths they recorded; a dead
//! daemon's FUSE stages, which answer nothing any more, are detached whole first).
//! [`Stages::prune`] removes farms unused for a while and the pool variants only they used.
//!
//! # Known digests
//!
//! [`Stages::known_digests`] gives capture, for a live stage, the digest of any file still exactly
//! as staged without hashing (overlay: no upper-dir entry at its path, same inode as the farm's;
//! FUSE: its content is still the CAS object), and for a FUSE stage the Directory digest of a
//! directory the action never looked into: see [`KnownDigests`].
//!
//! # Compared with buildbox-casd 1.4.25
//!
//! Observed with a Python client: its hardlink stager links CAS objects themselves (files show
//! 0444/0555 and the object's LRU mtime; an in-place write as root changes the CAS), ignores
//! `access_credentials` and `SubtreeReadOnly`, answers a relative stage path relative to its own
//! cwd, and refuses FUSE (INVALID_ARGUMENT) when buildbox-fuse is not found (it spawns one
//! buildbox-fuse process per stage; rebox serves every FUSE stage from its own threads). rebox stages what the
//! contract says the sandbox sees (mtime 1321009871, 0755/0644, node properties), honours
//! credentials when root, enforces `SubtreeReadOnly`, and answers generated paths absolute. As
//! buildbox-casd: a client path must be missing (made, then removed) or an empty dir (kept);
//! a non-empty one is INVALID_ARGUMENT; `pre_unstage_commands` and `remote_apis_socket_path` are
//! ignored.
//!
//! All privileged or hard-to-fake syscalls (mount, unmount, link, copy) go through [`Sys`], so
//! tests can record and refuse them.

mod attrs;
mod build;
mod error;
mod farm;
mod fuse;
mod known;
mod layout;
mod mountinfo;
mod mounts;
mod owner;
mod plan;
mod pool;
mod prune;
mod reaper;
mod remembered;
mod remove;
mod request;
mod stages;
mod stale;
pub mod sys;
mod target;
mod tree_cache;

#[cfg(test)]
mod tests;

pub use attrs::{DEFAULT_MTIME, Owner, SUBTREE_READ_ONLY};
pub use error::StagingError;
pub use fuse::FSTYPE as FUSE_FSTYPE;
pub use known::KnownDigests;
pub use layout::StagingLayout;
pub use plan::MAX_STAGED_ENTRIES;
pub use prune::PruneReport;
pub use request::{StageRequest, StagingMode};
pub use stages::{MAX_FUSE_STAGES, Method, StageId, Staged, Stages};
pub use stale::{StaleReport, cleanup_stale, cleanup_stale_with};
pub use sys::{RealSys, Sys};

/// Mount sources of rebox's overlays begin with this.
const TAG_PREFIX: &str = "rebox-stage:";

/// The mount source of a daemon's overlay of a farm: `rebox-stage:<owner dir>:<farm key>`, which
/// names both in `/proc/self/mountinfo` (for crash clean-up and for pruning unused farms).
fn overlay_tag(owner_dir_name: &str, farm_key: &str) -> String {
    format!("{TAG_PREFIX}{owner_dir_name}:{farm_key}")
}
