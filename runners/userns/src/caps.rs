//! Dropping every capability before the command runs.
//!
//! The `caps` crate names the capabilities the running kernel knows (read in the parent); the
//! dropping itself is raw `prctl`/`capset` because `caps`' setters build hash sets, and the child
//! of a multi-threaded process must not allocate.

use nix::errno::Errno;

use crate::error::{Failure, Step};
use crate::sys::Sys;

/// The capability numbers the running kernel supports, for [`drop_all`].
pub(crate) fn supported() -> Vec<u32> {
    let mut caps: Vec<u32> =
        caps::runtime::thread_all_supported().iter().map(|c| u32::from(c.index())).collect();
    caps.sort_unstable();
    caps
}

/// Empties the bounding set (so nothing, not even a setuid-root or file-capability binary, can
/// regain a capability), then the ambient, effective, permitted and inheritable sets, then sets
/// `no_new_privs`.
pub(crate) fn drop_all(sys: &impl Sys, supported: &[u32]) -> Result<(), Failure> {
    for &cap in supported {
        // EINVAL: a capability this kernel doesn't have after all; nothing to drop.
        match sys.drop_bounding_cap(cap) {
            Ok(()) | Err(Errno::EINVAL) => {}
            Err(errno) => return Err(Failure::new(Step::DropCaps, cap, errno)),
        }
    }
    sys.clear_caps().map_err(|errno| Failure::new(Step::DropCaps, 0, errno))?;
    sys.set_no_new_privs().map_err(|errno| Failure::new(Step::NoNewPrivs, 0, errno))
}

/// `capset(2)`'s version 3 header.
#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

/// One 32-bit half of the capability sets.
#[repr(C)]
#[derive(Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Clears the ambient set, then sets effective, permitted and inheritable to nothing.
pub(crate) fn clear_all() -> Result<(), Errno> {
    // SAFETY: prctl(2) with integer arguments only.
    if unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) } < 0 {
        return Err(Errno::last());
    }
    let header = CapHeader { version: CAPABILITY_VERSION_3, pid: 0 };
    let data = [CapData { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: capset(2) reads the header and two data structs, as version 3 specifies.
    if unsafe { libc::syscall(libc::SYS_capset, &header as *const CapHeader, data.as_ptr()) } < 0 {
        return Err(Errno::last());
    }
    Ok(())
}
