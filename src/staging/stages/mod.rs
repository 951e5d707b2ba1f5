//! [`Stages`]: staging trees, unstaging them, and the registry of live stages.

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, Metadata};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant, SystemTime};

use nix::errno::Errno;

use super::attrs::{Attrs, Owner};
use super::build::{FileSource, TreeWriter, make_dir, open_dir};
use super::error::{Context, Result, StagingError};
use super::farm::{FarmInputs, Farms, farm_key};
use super::fuse::FuseStage;
use super::known::KnownDigests;
use super::layout::StagingLayout;
use super::mounts::{MountStack, apply_writability, mount_overlay, unmount_all, unmount_one};
use super::owner::OwnerDir;
use super::plan::{
    WritabilityChange, check_expanded_size, first_path_of_blob, variants, writability_changes,
};
use super::pool::{Pool, set_attrs};
use super::prune::{PruneReport, farms_in_use, prune_farms, prune_pool};
use super::reaper::Reaper;
use super::remembered::RememberedTrees;
use super::request::{StageRequest, StagingMode};
use super::sys::{RealSys, Sys};
use super::target::Target;
use super::tree_cache::{Prepared, TreeCache};
use super::{mountinfo, overlay_tag};
use crate::digest::Digest;
use crate::store::Store;
use crate::tree::Tree;

mod fuse_stage;

use fuse_stage::{FuseSlot, Source};

/// Identifies a live stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct StageId(u64);

impl fmt::Display for StageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A tree staged and not yet unstaged.
#[derive(Debug, Clone)]
pub struct Staged {
    /// What to unstage it by.
    pub id: StageId,
    /// The path to answer the client with.
    pub path: String,
    /// The stage directory, absolute and free of symlinks.
    pub dir: PathBuf,
    /// How it was materialised.
    pub method: Method,
}

/// How a stage was materialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// An overlay over the tree's hardlink farm.
    Overlay,
    /// A full copy (no overlay could be mounted).
    Copy,
    /// A lazy FUSE filesystem served by this process.
    Fuse,
}

/// At most this many FUSE stages are live at once, by default (each holds two threads and a
/// `/dev/fuse` connection).
pub const MAX_FUSE_STAGES: usize = 128;

/// The stages of one daemon: stages trees, unstages them, and cleans up every live one at
/// shutdown. A cheap handle: clones share everything.
#[derive(Debug, Clone)]
pub struct Stages {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Store,
    layout: StagingLayout,
    sys: Arc<dyn Sys>,
    /// Made on the first stage, so that a daemon that never stages writes nothing.
    dirs: Mutex<Option<Arc<Dirs>>>,
    live: Mutex<HashMap<StageId, Arc<LiveStage>>>,
    next_id: AtomicU64,
    /// Why overlays can't be mounted here (logged once), after the first failure.
    no_overlay: Mutex<Option<String>>,
    /// Whether FUSE can be used here, once found out (and logged, once).
    fuse: Mutex<Option<Result<(), String>>>,
    /// The most FUSE stages live at once.
    fuse_limit: AtomicUsize,
    /// FUSE stages live or being made (see [`FuseSlot`]).
    fuse_slots: Arc<AtomicUsize>,
    /// Whether FUSE stages leave finding their blobs to the action's opens.
    lazy_blob_check: AtomicBool,
    /// Trees validated lately.
    trees: TreeCache,
    /// Trees validated by earlier processes, when this one remembers them (see
    /// [`Stages::remember_trees`]).
    remembered: std::sync::OnceLock<RememberedTrees>,
    /// Held shared from a farm's lookup (or build) until the stage over it is registered, and
    /// exclusively by pruning, so that no farm is removed between the two.
    farms_in_flux: RwLock<()>,
    /// One lock per farm being built, so concurrent stages of one tree build it once.
    building: Mutex<HashMap<String, Arc<Mutex<()>>>>,
}

#[derive(Debug)]
struct Dirs {
    owner: OwnerDir,
    reaper: Reaper,
    pool: Pool,
    farms: Farms,
}

#[derive(Debug)]
struct LiveStage {
    target: Target,
    /// The key of the farm an overlay stage is mounted over.
    farm_key: Option<String>,
    method: Method,
    /// `<owner dir>/<n>.scratch` (upper and work dirs) of an overlay stage.
    scratch: Option<PathBuf>,
    mounts: Mutex<MountStack>,
    known: Option<KnownDigests>,
    /// The FUSE filesystem a FUSE stage is served by (its threads end with the mount).
    fuse: Option<FuseStage>,
    /// Its place among the live FUSE stages, given back when the stage goes.
    _slot: Option<FuseSlot>,
}

impl Stages {
    /// The stages of a daemon serving `store`, with the real syscalls. Writes nothing until the
    /// first stage.
    pub fn new(store: Store) -> Self {
        Self::with_sys(store, Arc::new(RealSys))
    }

    /// The same with other syscalls (tests record or refuse them).
    pub fn with_sys(store: Store, sys: Arc<dyn Sys>) -> Self {
        let layout = StagingLayout::new(store.root());
        Self {
            inner: Arc::new(Inner {
                store,
                layout,
                sys,
                dirs: Mutex::new(None),
                live: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(1),
                no_overlay: Mutex::new(None),
                fuse: Mutex::new(None),
                fuse_limit: AtomicUsize::new(MAX_FUSE_STAGES),
                fuse_slots: Arc::default(),
                lazy_blob_check: AtomicBool::new(false),
                building: Mutex::new(HashMap::new()),
                trees: TreeCache::default(),
                remembered: std::sync::OnceLock::new(),
                farms_in_flux: RwLock::new(()),
            }),
        }
    }

    /// The staging paths.
    pub fn layout(&self) -> &StagingLayout {
        &self.inner.layout
    }

    /// Stages a tree. The tree is read and validated, its properties checked, and its blobs
    /// found in the CAS before anything is written. Blocking: call it off the async executor.
    pub fn stage(&self, request: &StageRequest) -> Result<Staged> {
        let started = Instant::now();
        let inner = &self.inner;
        let owner = owner_for(request.credentials);
        let fuse = request.mode != StagingMode::CopyOrLink && self.fuse_usable();
        let source = self.source(&request.root, fuse)?;
        let dirs = self.dirs()?;
        let mut slot = None;
        if fuse {
            slot = Some(self.take_fuse_slot()?);
            if let Source::Whole(prepared) = &source {
                self.check_blobs(prepared)?;
                self.remember(&request.root, prepared);
            }
        }
        let _farms_stay = inner.farms_in_flux.read().unwrap_or_else(|p| p.into_inner());
        // Built (or the tree checked for copying) before anything of the stage is made.
        let mut farm = match &source {
            Source::Whole(prepared) if !fuse => Some(self.farm_or_check(&dirs, &prepared.tree, owner)?),
            _ => None,
        };

        let n = dirs.owner.next_number();
        let target = match &request.path {
            None => Target::generated(&dirs.owner, n, owner)?,
            Some(path) => Target::client(path, &dirs.owner, n)?,
        };
        let mut stage = LiveStage {
            target,
            farm_key: None,
            method: Method::Copy,
            scratch: None,
            mounts: Mutex::default(),
            known: None,
            fuse: None,
            _slot: None,
        };
        let mut staged =
            if fuse { self.mount_fuse_of(&dirs, &source, owner, n, &mut stage) } else { Ok(false) };
        if let Ok(false) = staged {
            let prepared = match source {
                Source::Whole(prepared) => Ok(prepared),
                Source::Remembered { .. } => self.prepare(&request.root),
            };
            staged = prepared.and_then(|prepared| {
                let tree = &prepared.tree;
                let farm = farm.take().map_or_else(|| self.farm_or_check(&dirs, tree, owner), Ok)?;
                self.materialise(&dirs, tree, owner, farm.as_deref(), &prepared.changes, n, &mut stage)
                    .map(|()| true)
            });
        }
        if let Err(error) = staged {
            self.undo(&stage);
            return Err(error);
        }
        if stage.method == Method::Fuse {
            stage._slot = slot;
        }

        let id = StageId(inner.next_id.fetch_add(1, Ordering::Relaxed));
        let staged = Staged {
            id,
            path: stage.target.reply.clone(),
            dir: stage.target.path.clone(),
            method: stage.method,
        };
        tracing::debug!(
            root = %request.root, path = %staged.path, method = ?staged.method,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "staged"
        );
        lock(&inner.live).insert(id, Arc::new(stage));
        Ok(staged)
    }

    /// The validated tree of `root` and its plan: cached, or read and checked (and then cached).
    pub(super) fn prepare(&self, root: &Digest) -> Result<Arc<Prepared>> {
        if let Some(prepared) = self.inner.trees.get(root) {
            return Ok(prepared);
        }
        let tree = Tree::read(&self.inner.store, root)?;
        check_expanded_size(&tree)?;
        let changes = writability_changes(&tree)?;
        let prepared = Arc::new(Prepared::new(tree, changes));
        self.inner.trees.insert(prepared.clone());
        Ok(prepared)
    }

    /// The farm to mount an overlay of, or `None` (after checking the tree can be copied) when
    /// overlays can't be mounted here.
    fn farm_or_check(&self, dirs: &Dirs, tree: &Tree, owner: Owner) -> Result<Option<PathBuf>> {
        match self.overlay_unavailable() {
            None => Ok(Some(self.farm(dirs, tree, owner)?)),
            Some(_) => {
                check_for_copy(&self.inner.store, tree, owner)?;
                Ok(None)
            }
        }
    }

    /// Mounts (or copies) the tree at the stage's target, then applies `SubtreeReadOnly`.
    #[allow(clippy::too_many_arguments)]
    fn materialise(
        &self,
        dirs: &Dirs,
        tree: &Arc<Tree>,
        owner: Owner,
        farm: Option<&Path>,
        changes: &[WritabilityChange],
        n: u64,
        stage: &mut LiveStage,
    ) -> Result<()> {
        let sys = self.inner.sys.as_ref();
        let target = stage.target.path.clone();
        let mut mounted = false;
        if let Some(farm) = farm {
            let scratch = dirs.owner.path().join(format!("{n}.scratch"));
            stage.scratch = Some(scratch.clone());
            let (upper, work) = make_scratch(&dirs.owner, n, owner)?;
            let key = farm.parent().and_then(Path::file_name).and_then(|k| k.to_str()).unwrap_or_default();
            let tag = overlay_tag(dirs.owner.name(), key);
            let mut mounts = lock(&stage.mounts);
            match mount_overlay(sys, &tag, &target, farm, &upper, &work, &mut mounts) {
                Ok(()) => {
                    mounted = true;
                    stage.farm_key = Some(key.to_owned());
                    stage.method = Method::Overlay;
                    stage.known =
                        Some(KnownDigests::new(target.clone(), upper, farm.to_owned(), tree.clone()));
                }
                Err(
                    errno @ (Errno::EPERM | Errno::EACCES | Errno::ENODEV | Errno::EINVAL | Errno::ENOTSUP),
                ) => {
                    drop(mounts);
                    self.note_no_overlay(format!("cannot mount an overlay ({errno})"));
                    stage.scratch = None;
                    dirs.reaper.remove(&scratch)?;
                    check_for_copy(&self.inner.store, tree, owner)?;
                }
                Err(errno) => return Err(StagingError::errno("mount an overlay at", &target, errno)),
            }
        }
        if !mounted {
            let dir = open_dir_at_path(&target)?;
            let source = FileSource::Store(&self.inner.store);
            TreeWriter { tree, owner, source, sys, base: &target }.write(&dir)?;
        }
        let mut mounts = lock(&stage.mounts);
        match apply_writability(sys, &target, changes, &mut mounts) {
            Ok(()) => Ok(()),
            Err((path, Errno::EPERM)) if !mounted => {
                tracing::warn!(path = %path.display(), "cannot bind-mount (not root): SubtreeReadOnly is not enforced");
                Ok(())
            }
            Err((path, errno)) => Err(StagingError::errno("bind-mount (SubtreeReadOnly)", path, errno)),
        }
    }

    /// The farm of `tree` for `owner`: reused if published, else built (once, however many
    /// stages of the tree ask at the same time).
    fn farm(&self, dirs: &Dirs, tree: &Tree, owner: Owner) -> Result<PathBuf> {
        let key = farm_key(&tree.root(), owner);
        if let Some(path) = dirs.farms.lookup(&key) {
            return Ok(path);
        }
        let building = lock(&self.inner.building).entry(key.clone()).or_default().clone();
        let _building = lock(&building);
        let built = match dirs.farms.lookup(&key) {
            Some(path) => Ok(path),
            None => {
                let started = Instant::now();
                let variants = variants(tree, owner)?;
                let inputs = FarmInputs {
                    sys: self.inner.sys.as_ref(),
                    store: &self.inner.store,
                    pool: &dirs.pool,
                    owner_dir: &dirs.owner,
                    tree,
                    owner,
                };
                let path = dirs.farms.build(&key, &inputs, &variants);
                tracing::debug!(key, elapsed_ms = started.elapsed().as_secs_f64() * 1e3, "farm built");
                path
            }
        };
        lock(&self.inner.building).remove(&key);
        built
    }

    /// Unstages a live stage: unmounts it and removes what staging made.
    pub fn unstage(&self, id: StageId) -> Result<()> {
        let started = Instant::now();
        let stage = lock(&self.inner.live).remove(&id).ok_or(StagingError::UnknownStage(id.0))?;
        self.teardown(&stage)?;
        tracing::debug!(
            path = %stage.target.reply,
            elapsed_ms = started.elapsed().as_secs_f64() * 1e3,
            "unstaged"
        );
        Ok(())
    }

    /// Unstages every live stage (at shutdown), and waits until their dirs are deleted.
    /// Returns how many there were; failures are logged.
    pub fn cleanup_all(&self) -> usize {
        let stages: Vec<Arc<LiveStage>> = lock(&self.inner.live).drain().map(|(_, s)| s).collect();
        for stage in &stages {
            if let Err(error) = self.teardown(stage) {
                tracing::error!(path = %stage.target.reply, %error, "cannot unstage");
            }
        }
        self.flush();
        stages.len()
    }

    /// Unstages everything and removes this daemon's own dir under `cas/staging` (at shutdown):
    /// afterwards staging has nothing on disk but the reusable pool and farms. Returns how many
    /// stages were still live.
    pub fn shutdown(&self) -> usize {
        let live = self.cleanup_all();
        if let Some(dirs) = lock(&self.inner.dirs).take() {
            // Removed while its lock is still held, so no start-up clean-up races for it.
            if let Err(error) = fs::remove_dir_all(dirs.owner.path()) {
                tracing::error!(path = %dirs.owner.path().display(), %error, "cannot remove staging dir");
            }
        }
        live
    }

    /// For a process about to exit: unstages every live stage (nothing stays mounted) and lets go
    /// of this process's dir without waiting for its deletion, which the reaper goes on with
    /// while the process lives and the next clean-up ([`super::cleanup_stale`], by the next run
    /// or a daemon's start) finishes. Deleting costs a few milliseconds a directory on a disk
    /// mounted with `discard`, which a one-action process should not wait for. Returns how many
    /// stages were still live.
    pub fn detach(&self) -> usize {
        let stages: Vec<Arc<LiveStage>> = lock(&self.inner.live).drain().map(|(_, s)| s).collect();
        for stage in &stages {
            if let Err(error) = self.teardown(stage) {
                tracing::error!(path = %stage.target.reply, %error, "cannot unstage");
            }
        }
        // Dropping the dirs releases the owner dir's lock once the reaper lets go of them too.
        lock(&self.inner.dirs).take();
        stages.len()
    }

    /// Waits until the dirs of every unstaged stage are deleted (they are deleted in the
    /// background after an unstage returns).
    pub fn flush(&self) {
        if let Some(dirs) = &*lock(&self.inner.dirs) {
            dirs.reaper.flush();
        }
    }

    /// Removes the farms no stage has used for `unused_for` (and none is mounted over, by any
    /// daemon), then the pool variants no farm links to any more. Blocks new stages while it runs:
    /// call it now and then (say, at start-up and daily), off the async executor.
    pub fn prune(&self, unused_for: Duration) -> Result<PruneReport> {
        let _exclusive = self.inner.farms_in_flux.write().unwrap_or_else(|p| p.into_inner());
        let dirs = self.dirs()?;
        let cutoff = SystemTime::now().checked_sub(unused_for).unwrap_or(SystemTime::UNIX_EPOCH);
        let mut in_use = farms_in_use()?;
        in_use.extend(lock(&self.inner.live).values().filter_map(|s| s.farm_key.clone()));
        let mut report = PruneReport::default();
        let pruned = prune_farms(self.inner.layout.farms(), cutoff, &in_use, &dirs.reaper, &mut report)?;
        prune_pool(self.inner.layout.pool(), cutoff, &pruned, &mut report)?;
        tracing::info!(
            farms = report.farms,
            variants = report.variants,
            bytes = report.bytes,
            "pruned staging"
        );
        Ok(report)
    }

    /// The stage directories of every live stage.
    pub fn live(&self) -> Vec<PathBuf> {
        lock(&self.inner.live).values().map(|s| s.target.path.clone()).collect()
    }

    /// The known-digest lookup of the live overlay stage containing `path` (absolute), if any:
    /// take it once per capture, then ask it for each file.
    pub fn known_digests(&self, path: &Path) -> Option<KnownDigests> {
        lock(&self.inner.live)
            .values()
            .filter_map(|s| s.known.as_ref())
            .find(|k| path.starts_with(k.stage()))
            .cloned()
    }

    /// The digest of the file at `path` (absolute, with `metadata` from its `lstat`) if it lies
    /// in a live overlay stage and is unchanged since staging; `None` means "hash it". See
    /// [`KnownDigests`].
    pub fn known_digest(&self, path: &Path, metadata: &Metadata) -> Option<Digest> {
        self.known_digests(path)?.get(path, metadata)
    }

    fn teardown(&self, stage: &LiveStage) -> Result<()> {
        let sys = self.inner.sys.as_ref();
        unmount_all(sys, &mut lock(&stage.mounts))?;
        // Anything else mounted below the stage (say, by a runner in our namespace) would make
        // removal delete through it: take it off first.
        if let Ok(mounts) = mountinfo::read() {
            for mount in mountinfo::under(&mounts, &stage.target.path) {
                tracing::warn!(path = %mount.mount_point.display(), "unmounting a mount left below a stage");
                unmount_one(sys, &mount.mount_point)?;
            }
        }
        let reaper = &self.dirs()?.reaper;
        if let Some(scratch) = &stage.scratch {
            reaper.remove(scratch)?;
        }
        stage.target.remove(stage.method == Method::Copy, reaper)
    }

    /// Best-effort undo of a stage that failed half-way.
    fn undo(&self, stage: &LiveStage) {
        if let Err(error) = self.teardown(stage) {
            tracing::error!(path = %stage.target.reply, %error, "cannot clean up a failed stage");
        }
    }

    fn dirs(&self) -> Result<Arc<Dirs>> {
        let mut dirs = lock(&self.inner.dirs);
        if let Some(dirs) = &*dirs {
            return Ok(dirs.clone());
        }
        let layout = &self.inner.layout;
        let owner = OwnerDir::create(layout.staging())?;
        let made = Arc::new(Dirs {
            reaper: Reaper::start(owner.path()),
            owner,
            pool: Pool::open(layout.pool())?,
            farms: Farms::open(layout.farms())?,
        });
        *dirs = Some(made.clone());
        Ok(made)
    }

    fn overlay_unavailable(&self) -> Option<String> {
        if !self.inner.sys.may_mount() {
            self.note_no_overlay("the daemon is not root, so it cannot mount an overlay".to_owned());
        }
        lock(&self.inner.no_overlay).clone()
    }

    fn note_no_overlay(&self, reason: String) {
        let mut no_overlay = lock(&self.inner.no_overlay);
        if no_overlay.is_none() {
            tracing::warn!("{reason}: staging by copying every file from now on (safe, slower)");
            *no_overlay = Some(reason);
        }
    }
}

/// Makes `<n>.scratch/{upper,work}`; the upper dir's attributes are the stage root's.
fn make_scratch(owner_dir: &OwnerDir, n: u64, owner: Owner) -> Result<(PathBuf, PathBuf)> {
    let name = format!("{n}.scratch");
    let scratch = owner_dir.path().join(&name);
    let dir = make_dir(owner_dir.fd(), &name).at("create", &scratch)?;
    let (upper, work) = (scratch.join("upper"), scratch.join("work"));
    let upper_dir = make_dir(std::os::fd::AsFd::as_fd(&dir), "upper").at("create", &upper)?;
    set_attrs(&upper_dir, &Attrs::of_directory(owner)).at("set the attributes of", &upper)?;
    drop(make_dir(std::os::fd::AsFd::as_fd(&dir), "work").at("create", &work)?);
    Ok((upper, work))
}

fn open_dir_at_path(path: &Path) -> Result<fs::File> {
    let parent = path.parent().unwrap_or(Path::new("/"));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or(".");
    let parent_dir = fs::File::open(parent).at("open", parent)?;
    open_dir(std::os::fd::AsFd::as_fd(&parent_dir), name).at("open", path)
}

/// Copy staging needs every blob of the tree in the CAS (and valid properties): checked before
/// anything is written.
fn check_for_copy(store: &Store, tree: &Tree, owner: Owner) -> Result<()> {
    variants(tree, owner)?;
    let blobs = tree.file_digests();
    match store.find_missing(&blobs).first() {
        Some(absent) => {
            Err(StagingError::MissingBlob { path: first_path_of_blob(tree, absent), digest: *absent })
        }
        None => Ok(()),
    }
}

/// Who owns staged files: the requested user if this daemon can give files away (root) or is
/// that user; else the daemon's own user, as buildbox-casd (which ignores credentials) does.
fn owner_for(credentials: Option<Owner>) -> Owner {
    let current = Owner::current();
    match credentials {
        Some(requested) if requested == current || current.uid == 0 => requested,
        Some(requested) => {
            tracing::debug!(?requested, "not root: staged files stay owned by the daemon's user");
            current
        }
        None => current,
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves the data consistent (plain inserts/removes).
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
