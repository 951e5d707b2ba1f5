//! Lazy staging through FUSE: the tree is served from its Directory messages by this process,
//! mounted at the stage path, so a stage costs what the action touches, not what the tree holds.
//!
//! - `node.rs`, `model.rs`: the inodes; a directory's entries are read from its message on first
//!   lookup. Staged files keep their digest until written.
//! - `mutate.rs`: create, mkdir, symlink, link, unlink, rmdir, rename, setattr, as POSIX says.
//! - `scratch.rs`: copy-on-write. The first write (or truncate) of a staged file copies its blob
//!   into a per-stage scratch file on the cache's filesystem; files the action makes live there
//!   from the start. CAS objects are only ever opened read-only.
//! - `handles.rs`, `fs.rs`: the requests. Where the kernel offers FUSE passthrough, file I/O goes
//!   straight to the CAS object or scratch file without reaching this process.
//! - `known.rs`: capture's shortcut: a file still as staged keeps its digest, and a directory the
//!   action never looked into keeps its Directory digest, with nothing read or hashed.
//!
//! Mounted `allow_other,default_permissions` (the kernel checks permissions against the modes
//! and owners served here), `nosuid,nodev`, with source `rebox-stage:<owner dir>:fuse` so that
//! start-up clean-up finds the mounts a crashed daemon left (see `stale.rs`).

mod fs;
mod handles;
pub(super) mod known;
mod model;
mod mutate;
mod node;
mod scratch;

pub use known::FuseKnown;
pub use model::Model;
pub use scratch::Scratch;

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fuser::{Config, Session, SessionACL};
use nix::errno::Errno;

use super::sys::Sys;
use fs::{Shared, StageFs};

/// Request threads per stage: one serves while another waits on a slow blob or scratch file.
const THREADS: usize = 2;

/// The filesystem type a FUSE stage shows in `/proc/self/mountinfo`.
pub const FSTYPE: &str = "fuse.rebox";

/// Why FUSE staging can't be used here, if it can't: `/dev/fuse` must open read-write and the
/// daemon must be able to mount (root).
pub fn unavailable(sys: &dyn Sys) -> Option<String> {
    if !sys.may_mount() {
        return Some("the daemon is not root, so it cannot mount FUSE".to_owned());
    }
    match File::options().read(true).write(true).open("/dev/fuse") {
        Ok(_) => None,
        Err(error) => Some(format!("cannot open /dev/fuse: {error}")),
    }
}

/// Makes large allocations always fresh mappings (once per process). fuser gives each request
/// thread a zeroed 16 MiB read buffer; glibc's dynamic mmap threshold rises past that size once
/// such a buffer is freed, and from then on each one comes from the heap and is zeroed by a
/// 16 MiB memset: 10 ms of a 15 ms stage. Fresh mappings are zero already and only the pages a
/// request touches become resident.
fn fixed_mmap_threshold() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(target_env = "gnu")]
        // SAFETY: mallopt only changes the allocator's tuning; it takes the allocator's own lock
        // and has no effect on memory already allocated.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        }
    });
}

/// A mounted FUSE stage, served by its own threads until unmounted.
#[derive(Debug)]
pub struct FuseStage {
    shared: Arc<Shared>,
    /// The mount's device number, which its files' `st_dev` carry.
    device: u64,
    target: PathBuf,
    /// Keeps the request threads; they end when the mount is gone.
    _session: fuser::BackgroundSession,
}

impl FuseStage {
    /// Mounts `model` at `target` (an empty directory) tagged `tag`, and starts serving it.
    pub fn mount(sys: &dyn Sys, tag: &str, target: &Path, model: Model) -> Result<Self, Errno> {
        fixed_mmap_threshold();
        let device =
            OwnedFd::from(File::options().read(true).write(true).open("/dev/fuse").map_err(model::io_errno)?);
        let options = format!(
            "fd={},rootmode=40000,user_id={},group_id={},allow_other,default_permissions",
            device.as_raw_fd(),
            nix::unistd::geteuid(),
            nix::unistd::getegid()
        );
        sys.mount_fuse(tag, target, &options)?;
        tracing::debug!(target = %target.display(), "mounted FUSE");
        // Passthrough needs CAP_SYS_ADMIN: root's.
        let shared = Shared::new(model, nix::unistd::geteuid().is_root());
        let mut config = Config::default();
        config.acl = SessionACL::All;
        config.n_threads = Some(THREADS);
        config.clone_fd = true;
        let started = Session::from_fd(StageFs(shared.clone()), device, SessionACL::All, config)
            .and_then(Session::spawn);
        let session = match started {
            Ok(session) => session,
            Err(error) => {
                tracing::error!(target = %target.display(), %error, "cannot serve a FUSE stage");
                let _ = sys.unmount(target, true);
                return Err(model::io_errno(error));
            }
        };
        let device = std::fs::metadata(target).map_err(model::io_errno)?.dev();
        tracing::debug!(
            target = %target.display(), passthrough = shared.passthrough(), "serving FUSE stage"
        );
        Ok(Self { shared, device, target: target.to_owned(), _session: session })
    }

    /// The first blob the action found missing from the CAS, if any, with a path of it.
    pub fn missing(&self) -> Option<(String, crate::digest::Digest)> {
        let model = self.shared.model();
        let digest = model.missing()?;
        Some((crate::staging::plan::first_path_of_blob(model.tree.as_ref(), &digest), digest))
    }

    /// What capture may take as known in this stage.
    pub fn known(&self) -> FuseKnown {
        FuseKnown::new(self.shared.clone(), self.device, self.target.clone())
    }
}
