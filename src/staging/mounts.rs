//! The mounts of one stage: an overlay (the farm as its read-only lower layer, a private upper
//! dir taking every write), then bind mounts that make `SubtreeReadOnly` subtrees read-only (and
//! writable again where a deeper directory says "false"). Each step is narrated at debug level.

use std::path::{Path, PathBuf};

use nix::errno::Errno;

use super::error::{Result, StagingError};
use super::plan::WritabilityChange;
use super::sys::Sys;

/// Overlay options that keep the stage's behaviour simple and the farm untouchable:
/// - `redirect_dir=off`: renaming a directory from the farm gives EXDEV (`mv` then copies), so a
///   path in the upper dir never stands for another path of the farm;
/// - `metacopy=off`: a chmod copies the whole file up, never leaving the upper file pointing at
///   the farm's data;
/// - `index=off`: identical files share a pool inode in the farm, but writing one must not
///   change the other, so copy-up breaks hardlinks instead of preserving them;
/// - `volatile`: the upper dir is thrown away at unstage, so never sync it.
const OVERLAY_OPTIONS: &str = "redirect_dir=off,metacopy=off,index=off,volatile";

/// What a stage mounted, in order (the overlay, if any, first).
#[derive(Debug, Default, Clone)]
pub struct MountStack {
    mounts: Vec<PathBuf>,
}

impl MountStack {
    /// Records a mount made at `path` (to be unmounted, in reverse order, with the rest).
    pub fn push(&mut self, path: &Path) {
        self.mounts.push(path.to_owned());
    }
}

/// Makes a stage's mount private: mounts made below it later (ours, or a sandbox's) stay out
/// of other namespaces.
pub fn make_stage_private(sys: &dyn Sys, target: &Path) {
    match sys.make_private(target) {
        Ok(()) => tracing::debug!(target = %target.display(), "made the stage mount private"),
        Err(errno) => {
            tracing::debug!(target = %target.display(), %errno, "cannot make the stage mount private")
        }
    }
}

/// Mounts the overlay at `target`: `lower` read-only below, `upper` and `work` (empty dirs on one
/// filesystem) taking the writes. Kernels that don't know an option get the bare mount.
pub fn mount_overlay(
    sys: &dyn Sys,
    tag: &str,
    target: &Path,
    lower: &Path,
    upper: &Path,
    work: &Path,
    stack: &mut MountStack,
) -> Result<(), Errno> {
    let dirs = format!("lowerdir={},upperdir={},workdir={}", escape(lower)?, escape(upper)?, escape(work)?);
    let options = format!("{dirs},{OVERLAY_OPTIONS}");
    match sys.mount_overlay(tag, target, &options) {
        Err(Errno::EINVAL) => {
            tracing::debug!(target = %target.display(), "overlay refused {OVERLAY_OPTIONS}; mounting without them");
            sys.mount_overlay(tag, target, &dirs)?;
        }
        other => other?,
    }
    tracing::debug!(target = %target.display(), lower = %lower.display(), upper = %upper.display(), "mounted overlay");
    stack.mounts.push(target.to_owned());
    make_stage_private(sys, target);
    Ok(())
}

/// Bind-mounts each directory whose writability changes onto itself and remounts it read-only
/// or read-write, parents first. On failure, returns the path and errno; what was mounted stays
/// in `stack` for the caller to unmount.
pub fn apply_writability(
    sys: &dyn Sys,
    target: &Path,
    changes: &[WritabilityChange],
    stack: &mut MountStack,
) -> Result<(), (PathBuf, Errno)> {
    for change in changes {
        let path = if change.path == "." { target.to_owned() } else { target.join(&change.path) };
        sys.bind_onto_itself(&path).map_err(|errno| (path.clone(), errno))?;
        stack.mounts.push(path.clone());
        sys.remount_bind(&path, change.read_only).map_err(|errno| (path.clone(), errno))?;
        let state = if change.read_only { "read-only" } else { "writable again" };
        tracing::debug!(path = %path.display(), "bind-mounted {} {state} (SubtreeReadOnly)", change.path);
    }
    Ok(())
}

/// Unmounts everything in `stack`, last mounted first. A mount that a plain unmount can't remove
/// (busy: some process still works in it) is detached lazily, and that is logged.
pub fn unmount_all(sys: &dyn Sys, stack: &mut MountStack) -> Result<()> {
    while let Some(path) = stack.mounts.pop() {
        unmount_one(sys, &path)?;
    }
    Ok(())
}

/// Unmounts one mount point, falling back to a lazy detach.
pub fn unmount_one(sys: &dyn Sys, path: &Path) -> Result<()> {
    match sys.unmount(path, false) {
        Ok(()) => {
            tracing::debug!(path = %path.display(), "unmounted");
            Ok(())
        }
        // Not (or no longer) a mount point: a lazy detach of a parent already took it.
        Err(Errno::EINVAL | Errno::ENOENT) => Ok(()),
        Err(errno) => {
            tracing::warn!(path = %path.display(), %errno, "cannot unmount; detaching lazily");
            match sys.unmount(path, true) {
                Ok(()) | Err(Errno::EINVAL | Errno::ENOENT) => Ok(()),
                Err(errno) => Err(StagingError::errno("unmount", path, errno)),
            }
        }
    }
}

/// A path as an overlay option value: `\`, `,` and `:` escaped with a backslash.
fn escape(path: &Path) -> Result<String, Errno> {
    let text = path.to_str().ok_or(Errno::EINVAL)?;
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '\\' | ',' | ':') {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    Ok(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_values_are_escaped() {
        assert_eq!(escape(Path::new("/a,b:c\\d")).unwrap(), "/a\\,b\\:c\\\\d");
        assert_eq!(escape(Path::new("/plain/path")).unwrap(), "/plain/path");
    }
}
