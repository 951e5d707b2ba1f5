//! A fresh `/proc` for the sandbox's pid namespace, with the host-global parts read-only.
//!
//! The user namespace maps the sandbox's user to the caller; when the caller is root that is
//! host uid 0, which passes the permission checks of `/proc/sys` files (`kernel/core_pattern`
//! would run a program as root on the host). Binding those parts read-only over themselves
//! closes that, and the command has no capability to undo it.

use crate::error::{Failure, Step};
use crate::paths::{InsidePath, ensure_dir};
use crate::sys::{Fd, Follow, Sys};

/// Entries of `/proc` made read-only (those missing on this kernel are skipped).
pub(crate) const READ_ONLY: [&str; 6] = ["sys", "sysrq-trigger", "irq", "bus", "fs", "acpi"];
const READ_ONLY_C: [&std::ffi::CStr; 6] = [c"sys", c"sysrq-trigger", c"irq", c"bus", c"fs", c"acpi"];

/// Mounts proc on `<root>/proc` (created if missing, never through a symlink).
pub(crate) fn mount(sys: &impl Sys, root: Fd, point: &InsidePath) -> Result<(), Failure> {
    let fail = |step, item| move |errno| Failure::new(step, item, errno);
    // The mount point: a real directory of the root.
    let target = ensure_dir(sys, root, point, Follow::Never).map_err(fail(Step::MountPoint, 0))?;
    // A new proc instance: it shows the sandbox's pid namespace only.
    let attrs = libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV | libc::MOUNT_ATTR_NOEXEC;
    let proc = sys.new_mount(c"proc", &[], attrs).map_err(fail(Step::MountProc, 0));
    let attached =
        proc.and_then(|proc| sys.attach(proc, target).map_err(fail(Step::MountProc, 0)).map(|()| proc));
    sys.close(target);
    let proc = attached?;
    // Each host-global entry: bound read-only over itself.
    let result = (|| {
        for (item, name) in READ_ONLY_C.iter().enumerate() {
            let fail = fail(Step::ProcReadOnly, item as u32);
            let entry = match sys.clone_mount(proc, name, false) {
                Err(nix::errno::Errno::ENOENT) => continue,
                other => other.map_err(fail)?,
            };
            let attrs = libc::MOUNT_ATTR_RDONLY | attrs;
            let done = sys.set_mount_attrs(entry, attrs, false).and_then(|()| {
                let target = sys.open_inside(proc, name, Follow::Never)?;
                let attached = sys.attach(entry, target);
                sys.close(target);
                attached
            });
            sys.close(entry);
            done.map_err(fail)?;
        }
        Ok(())
    })();
    sys.close(proc);
    result
}
