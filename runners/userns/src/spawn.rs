//! Cloning the sandbox's init into its new namespaces.

use std::ffi::c_int;
use std::os::fd::{FromRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sys::signal::{SigSet, SigmaskHow, pthread_sigmask};

use crate::error::UsernsError;
use crate::init;
use crate::plan::Plan;

/// A running sandbox, seen from the runner.
#[derive(Debug)]
pub(crate) struct Sandbox {
    /// Init's pid (in the runner's pid namespace); not reaped until [`crate::wait`] does.
    pub pid: libc::pid_t,
    /// Readable when init has exited.
    pub pidfd: OwnedFd,
}

/// The namespaces every sandbox gets; the network one unless the spec shares the host's.
fn clone_flags(network: bool) -> c_int {
    let mut flags = libc::CLONE_NEWUSER
        | libc::CLONE_NEWNS
        | libc::CLONE_NEWPID
        | libc::CLONE_NEWIPC
        | libc::CLONE_NEWUTS
        | libc::CLONE_PIDFD;
    if !network {
        flags |= libc::CLONE_NEWNET;
    }
    flags
}

/// Clones init. All signals are blocked in this thread across the clone, so no handler of the
/// runner's process ever runs in the child: init resets the dispositions, then waits for
/// signals with them still blocked.
pub(crate) fn spawn(plan: &Plan, network: bool) -> Result<Sandbox, UsernsError> {
    let mut previous = SigSet::empty();
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::all()), Some(&mut previous))
        .map_err(UsernsError::Namespaces)?;
    let mut pidfd: c_int = -1;
    // SAFETY: clone(2) without CLONE_VM and with a null stack is fork(2) into new namespaces:
    // the child gets a copy of this thread's stack and returns 0 here. It then runs `init::run`,
    // which only makes system calls on the already-built plan and never returns. CLONE_PIDFD
    // stores the pidfd through the parent-tid pointer (the third argument on x86-64 and arm64).
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (clone_flags(network) | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            &mut pidfd as *mut c_int,
            0usize,
            0usize,
        )
    };
    if pid == 0 {
        init::run(plan);
    }
    let clone_errno = Errno::last();
    pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&previous), None).map_err(UsernsError::Namespaces)?;
    if pid < 0 {
        return Err(UsernsError::Namespaces(clone_errno));
    }
    // SAFETY: CLONE_PIDFD gave us this new descriptor, owned by nobody else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    Ok(Sandbox { pid: pid as libc::pid_t, pidfd })
}
