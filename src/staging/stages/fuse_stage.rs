//! The FUSE side of [`Stages`]: mounting a lazy stage, whether FUSE can be used here, the
//! limit of live FUSE stages, and the blobs a lazy stage must (or need not) find up front.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use nix::errno::Errno;

use super::{Dirs, LiveStage, Method, StageId, Stages, lock};
use crate::digest::Digest;
use crate::staging::attrs::Owner;
use crate::staging::build::make_dir;
use crate::staging::error::{Context, Result, StagingError};
use crate::staging::fuse::{self, FuseStage, Model, Scratch};
use crate::staging::known::KnownDigests;
use crate::staging::mounts::{apply_writability, make_stage_private};
use crate::staging::overlay_tag;
use crate::staging::plan::{WritabilityChange, check_properties, first_path_of_blob};
use crate::staging::remembered::RememberedTrees;
use crate::staging::tree_cache::Prepared;
use crate::tree::{DirectorySource, LazyTree};

/// One of the FUSE stages allowed to be live at once, taken before mounting (so concurrent
/// requests can't all pass the limit) and given back when dropped.
#[derive(Debug)]
pub(super) struct FuseSlot(Arc<AtomicUsize>);

impl Drop for FuseSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// What a stage is made from.
pub(super) enum Source {
    /// The tree read and checked whole (or found so in memory).
    Whole(Arc<Prepared>),
    /// A tree remembered as valid, read as the action goes (FUSE only).
    Remembered { tree: Arc<LazyTree>, changes: Vec<WritabilityChange> },
}

impl Source {
    /// What a FUSE stage of it serves, and where writability changes.
    fn served(&self) -> (Arc<dyn DirectorySource>, &[WritabilityChange]) {
        match self {
            Source::Whole(prepared) => (prepared.tree.clone(), &prepared.changes),
            Source::Remembered { tree, changes } => (tree.clone(), changes),
        }
    }
}

impl Stages {
    /// What to stage `root` from: a tree this store remembers as valid is served as read when
    /// staged through FUSE; any other is read and checked whole first.
    pub(super) fn source(&self, root: &Digest, fuse: bool) -> Result<Source> {
        match fuse.then(|| self.remembered(root)).flatten() {
            Some(remembered) => Ok(remembered),
            None => Ok(Source::Whole(self.prepare(root)?)),
        }
    }

    /// Mounts a FUSE stage of `source` (see [`Stages::mount_fuse`]).
    pub(super) fn mount_fuse_of(
        &self,
        dirs: &Dirs,
        source: &Source,
        owner: Owner,
        n: u64,
        stage: &mut LiveStage,
    ) -> Result<bool> {
        let (tree, changes) = source.served();
        self.mount_fuse(dirs, tree, changes, owner, n, stage)
    }

    /// Mounts a FUSE filesystem serving the tree at the stage's target, then applies
    /// `SubtreeReadOnly`. `Ok(false)` when FUSE turns out not to work here (said once in the
    /// log): the caller stages another way.
    fn mount_fuse(
        &self,
        dirs: &Dirs,
        tree: Arc<dyn DirectorySource>,
        changes: &[WritabilityChange],
        owner: Owner,
        n: u64,
        stage: &mut LiveStage,
    ) -> Result<bool> {
        let sys = self.inner.sys.as_ref();
        let target = stage.target.path.clone();
        let name = format!("{n}.scratch");
        let scratch_path = dirs.owner.path().join(&name);
        drop(make_dir(dirs.owner.fd(), &name).at("create", &scratch_path)?);
        stage.scratch = Some(scratch_path.clone());
        let scratch = Scratch::open(&scratch_path).at("open", &scratch_path)?;
        let lazy = self.inner.lazy_blob_check.load(Ordering::Relaxed);
        let model = Model::new(tree, self.inner.store.clone(), scratch, owner, lazy);
        let tag = overlay_tag(dirs.owner.name(), &format!("fuse-{n}"));
        let mut mounts = lock(&stage.mounts);
        match FuseStage::mount(sys, &tag, &target, model) {
            Ok(fuse) => {
                mounts.push(&target);
                make_stage_private(sys, &target);
                stage.method = Method::Fuse;
                stage.known = Some(KnownDigests::fuse(fuse.known()));
                stage.fuse = Some(fuse);
            }
            Err(errno @ (Errno::EPERM | Errno::EACCES | Errno::ENODEV | Errno::ENOENT | Errno::EINVAL)) => {
                drop(mounts);
                self.note_fuse(Err(format!("cannot mount FUSE ({errno})")));
                stage.scratch = None;
                dirs.reaper.remove(&scratch_path)?;
                return Ok(false);
            }
            Err(errno) => return Err(StagingError::errno("mount FUSE at", &target, errno)),
        }
        match apply_writability(sys, &target, changes, &mut mounts) {
            Ok(()) => Ok(true),
            Err((path, errno)) => Err(StagingError::errno("bind-mount (SubtreeReadOnly)", path, errno)),
        }
    }

    /// Whether FUSE staging can be used here; found out on first use, and said once.
    pub(super) fn fuse_usable(&self) -> bool {
        if let Some(known) = &*lock(&self.inner.fuse) {
            return known.is_ok();
        }
        let usable = fuse::unavailable(self.inner.sys.as_ref()).map_or(Ok(()), Err);
        let ok = usable.is_ok();
        self.note_fuse(usable);
        ok
    }

    fn note_fuse(&self, usable: Result<(), String>) {
        let mut fuse = lock(&self.inner.fuse);
        if fuse.as_ref().is_some_and(Result::is_err) {
            return;
        }
        match &usable {
            Ok(()) if fuse.is_none() => {
                tracing::info!("staging through FUSE: trees are served lazily, writes copied on write")
            }
            Ok(()) => {}
            Err(reason) => tracing::warn!("{reason}: staging with hardlinks and an overlay instead"),
        }
        *fuse = Some(usable);
    }

    /// Takes a place for one more FUSE stage, or refuses it beyond the limit of live ones.
    pub(super) fn take_fuse_slot(&self) -> Result<FuseSlot> {
        let limit = self.inner.fuse_limit.load(Ordering::Relaxed);
        let slots = &self.inner.fuse_slots;
        slots
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |taken| (taken < limit).then_some(taken + 1))
            .map_err(|_| StagingError::TooManyStages { limit })?;
        Ok(FuseSlot(slots.clone()))
    }

    /// Sets the most FUSE stages live at once ([`MAX_FUSE_STAGES`] by default).
    pub fn set_fuse_limit(&self, limit: usize) {
        self.inner.fuse_limit.store(limit, Ordering::Relaxed);
    }

    /// Makes FUSE stages skip finding every blob up front: a missing one then fails the
    /// action's open of that file (EIO) instead of the stage, and [`Stages::missing_blob`]
    /// tells. For a one-shot process whose store has just been given the inputs (the embedded
    /// runner), where finding 20,000 blobs would cost more than the whole stage.
    pub fn set_lazy_blob_check(&self, lazy: bool) {
        self.inner.lazy_blob_check.store(lazy, Ordering::Relaxed);
    }

    /// A lazy stage reads blobs only when the action opens them: check now that all are in the
    /// CAS. Once they were all found, they are taken as still there until the store removes
    /// any object (they are marked used all the same, for expiry's LRU order).
    pub(super) fn check_blobs(&self, prepared: &Prepared) -> Result<()> {
        let store = &self.inner.store;
        if self.inner.lazy_blob_check.load(Ordering::Relaxed) {
            return check_properties(&prepared.tree, Owner::current());
        }
        let removals = store.removals();
        if prepared.present_at(removals) {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
            if prepared.take_use_due(now.as_secs()) {
                store.mark_used(prepared.files());
            }
            return Ok(());
        }
        check_properties(&prepared.tree, Owner::current())?;
        if let Some(absent) = store.find_missing(prepared.files()).first() {
            let path = first_path_of_blob(prepared.tree.as_ref(), absent);
            return Err(StagingError::MissingBlob { path, digest: *absent });
        }
        prepared.set_present_at(removals);
        Ok(())
    }

    /// Makes this process remember, in the store, the big trees it validated whole, and serve
    /// the trees remembered there (by it or by earlier processes) through FUSE without reading
    /// and checking them whole again: see `staging/remembered.rs`. For one-shot processes (the
    /// embedded runner), which can't keep validated trees in memory from one action to the next
    /// as a daemon does. Only with [`Stages::set_lazy_blob_check`]: a remembered tree's blobs
    /// are not looked for up front either.
    pub fn remember_trees(&self) {
        let _ = self.inner.remembered.set(RememberedTrees::new(self.inner.layout.trees()));
    }

    /// The records of trees, if this process uses them: only where blobs are checked lazily, as
    /// a remembered tree's are never looked for up front.
    fn records(&self) -> Option<&RememberedTrees> {
        self.inner.remembered.get().filter(|_| self.inner.lazy_blob_check.load(Ordering::Relaxed))
    }

    /// The tree of `root` if this store remembers it as valid, to be served as read; `None` when
    /// it must be read and checked whole.
    fn remembered(&self, root: &Digest) -> Option<Source> {
        let changes = self.records()?.get(root)?;
        match LazyTree::open(self.inner.store.clone(), *root) {
            Ok(tree) => Some(Source::Remembered { tree: Arc::new(tree), changes }),
            Err(error) => {
                // Read and checked whole instead, which says what is wrong.
                tracing::debug!(%root, %error, "a remembered tree cannot be served as read");
                None
            }
        }
    }

    /// Remembers `prepared` (found valid, its blobs left to the action's opens), if this process
    /// remembers trees.
    pub(super) fn remember(&self, root: &Digest, prepared: &Prepared) {
        if let Some(records) = self.records() {
            records.remember(root, prepared.entries(), &prepared.changes);
        }
    }

    /// The error staging would have given up front for the first blob the action of live stage
    /// `id` found missing from the CAS (see [`Stages::set_lazy_blob_check`]), if it found one.
    pub fn missing_blob(&self, id: StageId) -> Option<StagingError> {
        let stage = lock(&self.inner.live).get(&id).cloned()?;
        let (path, digest) = stage.fuse.as_ref()?.missing()?;
        Some(StagingError::MissingBlob { path, digest })
    }
}
