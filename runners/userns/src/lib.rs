//! rebox's sandbox backend on Linux user namespaces: no root, no setuid helper, no bubblewrap.
//!
//! [`UsernsRunner`] runs a [`Spec`] in fresh user, mount, pid, ipc, uts and (unless the spec
//! shares the host's) network namespaces:
//!
//! - the sandbox's uid and gid map to the caller's effective ids (one id each; setgroups denied);
//! - the staged root becomes `/` (a recursive bind, so the stager's read-only submounts stay
//!   read-only; nosuid and nodev throughout), with a fresh `/proc` whose host-global parts
//!   (`sys`, `sysrq-trigger`...) are read-only, a minimal `/dev`, a tmpfs `/tmp`, the spec's bind
//!   mounts, and the host's tree detached (`pivot_root`); `/sys` is not mounted;
//! - the command runs with no capability at all (bounding set included), `no_new_privs`, a
//!   seccomp filter refusing `TIOCSTI`/`TIOCLINUX`, with exactly the spec's environment, in a
//!   new session unless its stdin is a terminal; when it is the caller's terminal and the runner
//!   its foreground job, the command becomes the foreground job until it ends, and the terminal's
//!   foreground group and modes are restored then (see `terminal.rs`);
//! - the first process of the pid namespace is a small init (see `init.rs`) that forwards
//!   signals to the command and reaps orphans; when the command exits, init kills and reaps
//!   everything left in the namespace, reports, and exits. `run` returns on that report: no
//!   process of the action runs any more, and init itself, busy tearing the namespaces down in
//!   its exit, is reaped by a thread meanwhile. Init dies with the runner (`PR_SET_PDEATHSIG`
//!   SIGKILL, plus a check of the runner's pidfd for the instant before that was armed), so a
//!   killed runner leaves no sandbox behind either.
//!
//! # Why clone, and why the child never allocates
//!
//! The runner's caller is multi-threaded (rebox runs a tokio runtime). A forked copy of a
//! multi-threaded process holds only the forking thread, and any lock another thread held at
//! that instant (the allocator's, stdio's) stays locked forever in the copy. So the child here
//! runs code that makes system calls only: everything it needs — C strings, `argv`/`envp`
//! pointer arrays, the id maps, the seccomp program, the paths it walks — is prepared in the
//! parent as a `Plan`, and the child reports failures as fixed-size records on a pipe instead
//! of formatted messages. Spawning a fresh helper binary that would set up in a clean process
//! is not available to a library (it doesn't own a binary), and `std::process::Command` with
//! `pre_exec` has exactly the same constraint while being unable to create a pid namespace
//! whose init is the child itself. `clone` with the namespace flags gives that directly, plus a
//! pidfd for the wait.
//!
//! All mounting uses the new mount API (`open_tree`, `fsmount`, `move_mount`,
//! `mount_setattr`) with targets opened by `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`:
//! the staged root is hostile input and no symlink in it can redirect a mount or a created
//! directory outside it. This needs Linux 5.12 or later (`mount_setattr`).
//!
//! Every setup system call goes through the `Sys` trait so unit tests can record the sequence.

mod caps;
mod dev;
mod error;
mod exec;
mod idmap;
mod init;
mod net;
mod paths;
mod plan;
mod procfs;
#[cfg(test)]
mod recording;
mod report;
mod rootfs;
#[cfg(test)]
mod rootfs_tests;
mod seccomp;
mod spawn;
mod stdio;
mod sys;
mod terminal;
mod wait;

use std::ffi::c_int;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use nix::fcntl::OFlag;
use rebox_runner_spec::{Cancel, Completion, Runner, Spec};

pub use error::{Step, UsernsError};

/// Runs a [`Spec`] in fresh user, mount, pid, net, ipc and uts namespaces.
#[derive(Debug, Default)]
pub struct UsernsRunner {}

impl UsernsRunner {
    /// A runner (it holds no state: each run is independent).
    pub fn new() -> Self {
        Self {}
    }
}

impl Runner for UsernsRunner {
    type Error = UsernsError;

    fn run(&self, spec: &Spec, cancel: &Cancel) -> Result<Completion, UsernsError> {
        let streams = stdio::Streams::open(spec)?;
        // Restored when this returns, whatever happened to the sandbox.
        let (session, terminal) = terminal::inspect(streams.stdin());
        let mut plan = plan::Plan::new(spec, streams.raw(), session)?;
        let (report_read, report_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|errno| {
            UsernsError::Host { what: "create the report pipe".to_owned(), source: errno.into() }
        })?;
        nix::fcntl::fcntl(&report_read, nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).map_err(
            |errno| UsernsError::Host { what: "configure the report pipe".to_owned(), source: errno.into() },
        )?;
        plan.report_fd = report_write.as_raw_fd();
        // SAFETY: pidfd_open(2) of our own process; it returns a new descriptor or -1.
        let runner_pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
        if runner_pidfd < 0 {
            let source = std::io::Error::last_os_error();
            return Err(UsernsError::Host { what: "open a pidfd of the runner".to_owned(), source });
        }
        // SAFETY: a new descriptor nobody else owns (pidfds are close-on-exec).
        let runner_pidfd = unsafe { OwnedFd::from_raw_fd(runner_pidfd as c_int) };
        plan.runner_pidfd = runner_pidfd.as_raw_fd();
        let mut keep: Vec<c_int> = vec![0, 1, 2, plan.report_fd, plan.runner_pidfd];
        keep.extend(streams.raw().into_iter().flatten());
        keep.sort_unstable();
        keep.dedup();
        plan.keep_fds = keep;
        let sandbox = spawn::spawn(&plan, spec.network)?;
        // The sandbox holds its own copies now.
        drop(report_write);
        drop(runner_pidfd);
        drop(streams);
        wait::wait(&plan, sandbox, report_read, spec.timeout, cancel, terminal.as_ref())
    }
}
