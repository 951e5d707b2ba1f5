//! Pruning: farms no stage has used for a while, then pool variants no farm links to any more.
//!
//! Farms and pool variants are kept across stages (that is their point), so without pruning they
//! grow with every distinct tree staged. A farm is in use while an overlay has it as its lower
//! layer: its key is in the mount source of every overlay over it (see `overlay_tag`), so the
//! mount table says which farms are in use by any daemon on this host. A farm's own dir mtime is
//! its LRU clock (touched at each lookup). A pool variant with a single link is used by no farm:
//! it is removed if the farms just pruned linked to it, or if it has not changed (been linked or
//! unlinked) since the cut-off, so that one just published for a farm being built by another
//! daemon is left alone. (A farm being built by another daemon at the very moment can still lose
//! a variant it was about to link that only pruned farms used; that stage then fails, and the
//! next one rebuilds it.)

use std::collections::HashSet;
use std::fs;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::SystemTime;

use super::error::{Result, StagingError};
use super::reaper::Reaper;
use super::{TAG_PREFIX, mountinfo};

/// What pruning removed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PruneReport {
    /// Farms removed.
    pub farms: usize,
    /// Pool variants removed.
    pub variants: usize,
    /// Bytes of pool variants removed.
    pub bytes: u64,
}

/// The keys of the farms some overlay on this host is mounted over.
pub fn farms_in_use() -> Result<HashSet<String>> {
    let mounts = mountinfo::read().map_err(|e| StagingError::io("read", "/proc/self/mountinfo", e))?;
    Ok(mounts
        .iter()
        .filter_map(|m| m.source.strip_prefix(TAG_PREFIX)?.split_once(':').map(|(_, key)| key.to_owned()))
        .collect())
}

/// Removes the farms under `farms` last used before `cutoff` and not in `in_use`, waiting until
/// they are deleted. Returns the inode numbers of the files they held.
pub fn prune_farms(
    farms: &Path,
    cutoff: SystemTime,
    in_use: &HashSet<String>,
    reaper: &Reaper,
    report: &mut PruneReport,
) -> Result<HashSet<u64>> {
    let mut linked = HashSet::new();
    for entry in list(farms)? {
        let entry = entry.map_err(|e| StagingError::io("list directory", farms, e))?;
        let Some(key) = entry.file_name().to_str().map(str::to_owned) else { continue };
        let used = entry.metadata().and_then(|m| m.modified()).map_or(true, |mtime| mtime >= cutoff);
        if used || in_use.contains(&key) {
            continue;
        }
        file_inodes(&entry.path(), &mut linked);
        reaper.remove(&entry.path())?;
        report.farms += 1;
    }
    reaper.flush();
    Ok(linked)
}

/// Adds the inode numbers of the regular files below `dir` (symlinks are not followed).
fn file_inodes(dir: &Path, inodes: &mut HashSet<u64>) {
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        match entry.metadata() {
            Ok(m) if m.is_dir() => file_inodes(&entry.path(), inodes),
            Ok(m) if m.is_file() => {
                inodes.insert(m.ino());
            }
            _ => {}
        }
    }
}

/// Removes the pool variants under `pool` that no farm links to any more and that either were in
/// a pruned farm (`pruned`: their inode numbers) or have not changed since `cutoff`.
pub fn prune_pool(
    pool: &Path,
    cutoff: SystemTime,
    pruned: &HashSet<u64>,
    report: &mut PruneReport,
) -> Result<()> {
    let cutoff_seconds = cutoff.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    for fan_out in list(pool)? {
        let fan_out = fan_out.map_err(|e| StagingError::io("list directory", pool, e))?.path();
        for variant in list(&fan_out)? {
            let variant = variant.map_err(|e| StagingError::io("list directory", &fan_out, e))?;
            let Ok(metadata) = variant.metadata() else { continue };
            let unchanged = metadata.ctime() < cutoff_seconds || pruned.contains(&metadata.ino());
            if !metadata.is_file() || metadata.nlink() != 1 || !unchanged {
                continue;
            }
            match fs::remove_file(variant.path()) {
                Ok(()) => {
                    report.variants += 1;
                    report.bytes += metadata.len();
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(StagingError::io("remove", variant.path(), e)),
            }
        }
    }
    Ok(())
}

fn list(dir: &Path) -> Result<Box<dyn Iterator<Item = io::Result<fs::DirEntry>>>> {
    match fs::read_dir(dir) {
        Ok(entries) => Ok(Box::new(entries)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Box::new(std::iter::empty())),
        Err(e) => Err(StagingError::io("list directory", dir, e)),
    }
}
