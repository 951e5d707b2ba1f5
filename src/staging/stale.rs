//! Start-up clean-up: unmount and remove whatever daemons that died left under `cas/staging`.
//!
//! A dead daemon's dir is one whose `flock` can be taken (see `owner.rs`); live daemons' dirs are
//! never touched. Its mounts are found in `/proc/self/mountinfo`: overlays tagged with its name
//! (wherever they are mounted, client paths included), anything mounted under its dir, and
//! anything mounted at or under the client paths it recorded. Client paths it created are removed
//! only if empty once unmounted: whatever else is there is not ours to delete.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::error::{Result, StagingError};
use super::layout::{OWNER_PREFIX, StagingLayout};
use super::mounts::unmount_one;
use super::owner::lock_if_abandoned;
use super::remove::remove_tree;
use super::sys::{RealSys, Sys};
use super::target::read_record;
use super::{mountinfo, overlay_tag};

/// What start-up clean-up removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StaleReport {
    /// Dead daemons whose dirs were removed.
    pub daemons: usize,
    /// Mounts unmounted.
    pub mounts: usize,
}

/// Unmounts and removes what dead daemons left under `root`'s staging dirs (see the module doc).
pub fn cleanup_stale(root: &Path) -> Result<StaleReport> {
    cleanup_stale_with(&RealSys, root)
}

/// [`cleanup_stale`] with other syscalls.
pub fn cleanup_stale_with(sys: &dyn Sys, root: &Path) -> Result<StaleReport> {
    let layout = StagingLayout::new(root);
    let entries = match fs::read_dir(layout.staging()) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(StaleReport::default()),
        Err(e) => return Err(StagingError::io("list directory", layout.staging(), e)),
    };
    let mut report = StaleReport::default();
    for entry in entries {
        let entry = entry.map_err(|e| StagingError::io("list directory", layout.staging(), e))?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
        if !name.starts_with(OWNER_PREFIX) || !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        // Held while cleaning, so a daemon that just made a dir of this name notices and moves on.
        let Some(_lock) = lock_if_abandoned(&path)? else { continue };
        report.mounts += clean_dead_daemon(sys, &name, &path)?;
        report.daemons += 1;
    }
    if report.daemons > 0 {
        tracing::info!(
            daemons = report.daemons,
            mounts = report.mounts,
            "removed stages left by dead daemons"
        );
    }
    Ok(report)
}

/// Unmounts what one dead daemon mounted, then removes its dir. Returns how many mounts went.
fn clean_dead_daemon(sys: &dyn Sys, name: &str, dir: &Path) -> Result<usize> {
    let records = client_targets(dir);
    let mounts = mountinfo::read().map_err(|e| StagingError::io("read", "/proc/self/mountinfo", e))?;
    let tag = overlay_tag(name, "");
    let mut ours: Vec<&mountinfo::MountEntry> = mounts
        .iter()
        .filter(|m| {
            m.source.starts_with(&tag)
                || m.mount_point.starts_with(dir)
                || records.iter().any(|(_, target)| m.mount_point.starts_with(target))
        })
        .collect();
    let count = ours.len();
    // A dead daemon's FUSE stages answer nothing any more (ENOTCONN), so a path below one
    // can't even be looked up: detach each whole, which takes every mount below it too.
    for mount in ours.iter().filter(|m| m.fs_type == super::fuse::FSTYPE) {
        tracing::info!(path = %mount.mount_point.display(), "detaching a dead daemon's FUSE stage");
        match sys.unmount(&mount.mount_point, true) {
            Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => {}
            Err(errno) => return Err(StagingError::errno("detach", &mount.mount_point, errno)),
        }
    }
    let left = mountinfo::read().map_err(|e| StagingError::io("read", "/proc/self/mountinfo", e))?;
    ours.retain(|m| left.iter().any(|l| l.id == m.id));
    mountinfo::sort_for_unmount(&mut ours);
    for mount in &ours {
        tracing::info!(path = %mount.mount_point.display(), "unmounting a dead daemon's stage");
        unmount_one(sys, &mount.mount_point)?;
    }
    for (created, target) in &records {
        if *created && fs::remove_dir(target).is_err() && target.exists() {
            tracing::warn!(path = %target.display(), "leaving a dead daemon's stage dir that is not empty");
        }
    }
    remove_tree(dir)?;
    Ok(count)
}

/// The client paths a daemon recorded in its dir.
fn client_targets(dir: &Path) -> Vec<(bool, PathBuf)> {
    let Ok(entries) = fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.ends_with(".target")))
        .filter_map(|e| read_record(&e.path()))
        .collect()
}
