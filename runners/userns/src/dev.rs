//! A minimal `/dev`: a tmpfs holding bind mounts of a few harmless host device nodes, a private
//! devpts instance, a tmpfs `/dev/shm` and the usual links. No disk, no `/dev/mem`, nothing
//! else of the host.

use std::ffi::CStr;

use crate::error::{Failure, Step};
use crate::paths::{InsidePath, ensure_dir};
use crate::sys::{Fd, Follow, Sys};

/// Host device nodes bound into `/dev` (a node missing on the host is skipped).
pub(crate) const NODES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];
const NODES_C: [&CStr; 6] = [c"null", c"zero", c"full", c"random", c"urandom", c"tty"];
const HOST_NODES_C: [&CStr; 6] =
    [c"/dev/null", c"/dev/zero", c"/dev/full", c"/dev/random", c"/dev/urandom", c"/dev/tty"];

/// What [`Step::MountDev`]'s item names.
pub(crate) const PARTS: [&str; 4] = ["", "pts", "shm", "(links)"];

/// A filesystem option: a key and its value (none for a flag).
type MountOption<'a> = (&'a CStr, Option<&'a CStr>);

/// The links every `/dev` has.
const LINKS: [(&CStr, &CStr); 5] = [
    (c"pts/ptmx", c"ptmx"),
    (c"/proc/self/fd", c"fd"),
    (c"/proc/self/fd/0", c"stdin"),
    (c"/proc/self/fd/1", c"stdout"),
    (c"/proc/self/fd/2", c"stderr"),
];

/// Mounts and fills `<root>/dev` (created if missing, never through a symlink).
pub(crate) fn mount(sys: &impl Sys, root: Fd, point: &InsidePath) -> Result<(), Failure> {
    let fail = |step, item| move |errno| Failure::new(step, item, errno);
    // The mount point: a real directory of the root.
    let target = ensure_dir(sys, root, point, Follow::Never).map_err(fail(Step::MountPoint, 1))?;
    // A tmpfs over it: nothing of the staged /dev shows through.
    let attrs = libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NOEXEC;
    let dev = sys.new_mount(c"tmpfs", &[(c"mode", Some(c"0755"))], attrs).map_err(fail(Step::MountDev, 0));
    let attached = dev.and_then(|dev| sys.attach(dev, target).map_err(fail(Step::MountDev, 0)).map(|()| dev));
    sys.close(target);
    let dev = attached?;
    let result = fill(sys, dev);
    sys.close(dev);
    result
}

fn fill(sys: &impl Sys, dev: Fd) -> Result<(), Failure> {
    let fail = |step, item| move |errno| Failure::new(step, item, errno);
    // Each host node: an empty file in the tmpfs with the host's node bound over it.
    for (item, (name, host)) in NODES_C.iter().zip(HOST_NODES_C).enumerate() {
        let fail = fail(Step::DevNode, item as u32);
        let node = match sys.clone_mount(libc::AT_FDCWD, host, false) {
            Err(nix::errno::Errno::ENOENT) => continue,
            other => other.map_err(fail)?,
        };
        let done = sys.create_file_at(dev, name, 0o666).and_then(|()| {
            let target = sys.open_inside(dev, name, Follow::Never)?;
            let attached = sys.attach(node, target);
            sys.close(target);
            attached
        });
        sys.close(node);
        done.map_err(fail)?;
    }
    // A private devpts instance (ptys of the sandbox only) and a tmpfs for POSIX shared memory.
    let pts_options = [(c"newinstance", None), (c"ptmxmode", Some(c"0666")), (c"mode", Some(c"0620"))];
    let shm_options = [(c"mode", Some(c"1777"))];
    // devpts holds the pty device nodes, so it cannot be nodev.
    let parts: [(&CStr, &CStr, &[MountOption], u64); 2] = [
        (c"pts", c"devpts", &pts_options, libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NOEXEC),
        (c"shm", c"tmpfs", &shm_options, libc::MOUNT_ATTR_NOSUID | libc::MOUNT_ATTR_NODEV),
    ];
    for (index, (name, fstype, options, attrs)) in parts.into_iter().enumerate() {
        let fail = fail(Step::MountDev, index as u32 + 1);
        sys.mkdir_at(dev, name, 0o755).map_err(fail)?;
        let mount = sys.new_mount(fstype, options, attrs).map_err(fail)?;
        let done = sys.open_inside(dev, name, Follow::Never).and_then(|target| {
            let attached = sys.attach(mount, target);
            sys.close(target);
            attached
        });
        sys.close(mount);
        done.map_err(fail)?;
    }
    // The links: ptmx into the private devpts, fd and the standard streams into /proc.
    for (target, name) in LINKS {
        sys.symlink_at(target, dev, name).map_err(fail(Step::MountDev, 3))?;
    }
    Ok(())
}
