//! The sandbox's filesystem: the staged root as `/`, with fresh `/proc`, `/dev` and `/tmp`, the
//! spec's bind mounts, and the host's tree detached. Each step is one line of comment below.
//!
//! All mounts are made before the pivot, relative to the root's descriptor (see
//! [`crate::paths`]): proc can only be mounted while a full host proc is still visible in the
//! mount namespace, and the bind sources are host paths.

use crate::error::{Failure, Step};
use crate::paths::{InsidePath, ensure_dir, ensure_file};
use crate::plan::MountPlan;
use crate::sys::{Follow, Sys};
use crate::{dev, procfs};

/// The runner's own mount points (parsed in the parent: the child only reads them).
#[derive(Debug)]
pub(crate) struct MountPoints {
    pub proc: InsidePath,
    pub dev: InsidePath,
    pub tmp: InsidePath,
}

impl MountPoints {
    pub(crate) fn new() -> Self {
        let parse = |path: &str| InsidePath::parse(path.as_ref()).expect("a constant, valid path");
        MountPoints { proc: parse("/proc"), dev: parse("/dev"), tmp: parse("/tmp") }
    }
}

/// Builds the filesystem and pivots into it; the working directory is `plan.cwd` afterwards.
pub(crate) fn setup(sys: &impl Sys, plan: &MountPlan) -> Result<(), Failure> {
    let fail = |step, item| move |errno| Failure::new(step, item, errno);
    let points = &plan.points;
    // Nothing we mount may propagate back to the host.
    sys.make_rprivate().map_err(fail(Step::MakePrivate, 0))?;
    // A recursive copy of the staged root (read-only submounts stay read-only), nosuid and nodev
    // all the way down, attached over the root's own path.
    let root = sys.clone_mount(libc::AT_FDCWD, &plan.root, true).map_err(fail(Step::BindRoot, 0))?;
    let attrs = libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV;
    let attached = sys.set_mount_attrs(root, attrs, true).and_then(|()| sys.attach_at(root, &plan.root));
    if let Err(errno) = attached {
        sys.close(root);
        return Err(Failure::new(Step::BindRoot, 0, errno));
    }
    let result = (|| {
        // A fresh /proc for the pid namespace, its host-global parts read-only.
        procfs::mount(sys, root, &points.proc)?;
        // A minimal /dev.
        dev::mount(sys, root, &points.dev)?;
        // A private tmpfs /tmp.
        let target = ensure_dir(sys, root, &points.tmp, Follow::Never).map_err(fail(Step::MountPoint, 2))?;
        let tmp_attrs = libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV;
        let tmp = sys.new_mount(c"tmpfs", &[(c"mode", Some(c"1777"))], tmp_attrs);
        let done = tmp.and_then(|tmp| {
            let attached = sys.attach(tmp, target);
            sys.close(tmp);
            attached
        });
        sys.close(target);
        done.map_err(fail(Step::MountTmp, 0))?;
        // The spec's bind mounts, in order: read-only ones recursively so.
        for (item, bind) in plan.binds.iter().enumerate() {
            let item = item as u32;
            let source =
                sys.clone_mount(libc::AT_FDCWD, &bind.source, true).map_err(fail(Step::Bind, item))?;
            let mut attrs = libc::MOUNT_ATTR_NOSUID;
            if !bind.writable {
                attrs |= libc::MOUNT_ATTR_RDONLY;
            }
            let done =
                sys.set_mount_attrs(source, attrs, true).map_err(fail(Step::Bind, item)).and_then(|()| {
                    let target = match bind.is_dir {
                        true => ensure_dir(sys, root, &bind.target, Follow::InRoot),
                        false => ensure_file(sys, root, &bind.target, Follow::InRoot),
                    }
                    .map_err(fail(Step::BindTarget, item))?;
                    let attached = sys.attach(source, target).map_err(fail(Step::Bind, item));
                    sys.close(target);
                    attached
                });
            sys.close(source);
            done?;
        }
        // The working directory, created when missing.
        let cwd = ensure_dir(sys, root, &plan.cwd, Follow::InRoot).map_err(fail(Step::Cwd, 0))?;
        sys.close(cwd);
        // The host name of the UTS namespace.
        sys.set_hostname(&plan.hostname).map_err(fail(Step::Hostname, 0))?;
        // Loopback up in a fresh network namespace.
        if plan.loopback {
            sys.loopback_up().map_err(fail(Step::Loopback, 0))?;
        }
        // Into the root; the host's tree is detached.
        sys.pivot_to(root).map_err(fail(Step::Pivot, 0))?;
        sys.chdir(&plan.cwd.absolute).map_err(fail(Step::Cwd, 0))
    })();
    sys.close(root);
    result
}
