//! The sandbox's init: the cloned child, pid 1 of the new pid namespace.
//!
//! It sets the sandbox up, forks the command, forwards the signals it receives to it and reaps
//! every orphan. When the command exits, init kills and reaps whatever else is left in the pid
//! namespace, reports what the action used and then its status, and exits: once the runner has
//! the status, no process of the action runs any more, and init's own exit (the namespaces'
//! teardown, a few hundred microseconds) overlaps the runner's next steps.
//!
//! Like everything after the clone, this code makes system calls only (no allocation, no lock):
//! the runner's process may have other threads, frozen mid-`malloc` in this copy of it.

use std::ffi::c_int;

use crate::error::{Failure, Step};
use crate::plan::Plan;
use crate::sys::{LinuxSys, Sys};
use crate::terminal::Session;
use crate::{caps, exec, idmap, report, rootfs};

/// The child's entry point: never returns.
pub(crate) fn run(plan: &Plan) -> ! {
    let code = match main(&LinuxSys, plan) {
        Ok(status) => {
            let usage = kill_and_reap_the_rest();
            report::send_usage(plan.report_fd, &usage);
            report::send_status(plan.report_fd, status);
            0
        }
        Err(failure) => {
            report::send_failure(plan.report_fd, failure);
            1
        }
    };
    // SAFETY: _exit(2) ends init (and with it the pid namespace) without running any of the
    // runner's atexit handlers or destructors.
    unsafe { libc::_exit(code) }
}

fn main(sys: &impl Sys, plan: &Plan) -> Result<c_int, Failure> {
    // SAFETY: prctl(2) with integer arguments: the sandbox dies with the runner's thread.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) };
    if runner_has_exited(plan.runner_pidfd) {
        // It died before the death signal was armed: nobody would ever kill us.
        // SAFETY: _exit(2), as in `run`.
        unsafe { libc::_exit(1) };
    }
    close_inherited_fds(&plan.keep_fds);
    reset_signal_dispositions();
    idmap::write(sys, &plan.ids)?;
    rootfs::setup(sys, &plan.mounts)?;
    caps::drop_all(sys, &plan.caps)?;
    sys.install_seccomp(&plan.seccomp).map_err(|errno| Failure::new(Step::Seccomp, 0, errno))?;
    // SAFETY: a plain fork (clone with SIGCHLD only) of this single-threaded process; the child
    // only runs `exec::run`, which makes system calls and exits.
    let command = unsafe { libc::syscall(libc::SYS_clone, libc::SIGCHLD, 0, 0, 0, 0) };
    match command {
        -1 => Err(Failure::new(Step::Fork, 0, nix::errno::Errno::last())),
        0 => exec::run(&plan.exec, plan.report_fd),
        pid => Ok(supervise(pid as libc::pid_t, plan)),
    }
}

/// Kills every other process of the pid namespace and reaps them all; returns the resources
/// used by everything init reaped (the command included).
fn kill_and_reap_the_rest() -> libc::rusage {
    // SAFETY: getpid(2); kill(2) of every process init may signal (as pid 1: all others in its
    // namespace); waitpid(2) until no child is left; getrusage(2) into a zeroed plain struct.
    unsafe {
        // kill(-1) from pid 1 of a pid namespace reaches exactly that namespace; from anywhere
        // else it would reach every process of the user's on the host.
        if libc::getpid() == 1 {
            libc::kill(-1, libc::SIGKILL);
        }
        loop {
            let mut status = 0;
            if libc::waitpid(-1, &mut status, libc::__WALL) == -1
                && nix::errno::Errno::last() != nix::errno::Errno::EINTR
            {
                break;
            }
        }
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage);
        usage
    }
}

/// Whether the runner's process has exited (its pidfd is readable).
fn runner_has_exited(pidfd: c_int) -> bool {
    let mut poll = libc::pollfd { fd: pidfd, events: libc::POLLIN, revents: 0 };
    // SAFETY: poll(2) on one pollfd on the stack, without waiting.
    let ready = unsafe { libc::poll(&mut poll, 1, 0) };
    // SAFETY: the runner's pidfd is not needed any more.
    unsafe { libc::close(pidfd) };
    ready > 0
}

/// Closes every descriptor but `keep` (sorted): the runner's other threads may have had files
/// open without `O_CLOEXEC` scope mattering to them, and init never execs.
fn close_inherited_fds(keep: &[c_int]) {
    let mut low: libc::c_uint = 0;
    for &fd in keep {
        let fd = fd as libc::c_uint;
        if fd > low {
            // SAFETY: close_range(2) on descriptors this process inherited and doesn't use.
            unsafe { libc::close_range(low, fd - 1, 0) };
        }
        low = low.max(fd + 1);
    }
    // SAFETY: as above, for everything above the last kept descriptor.
    unsafe { libc::close_range(low, libc::c_uint::MAX, 0) };
}

/// Default dispositions for every signal: an ignored SIGCHLD would reap the command behind
/// init's back, an ignored SIGPIPE (Rust ignores it) would leak into the command.
fn reset_signal_dispositions() {
    for signal in 1..=libc::SIGRTMAX() {
        // SAFETY: a zeroed sigaction is SIG_DFL with an empty mask; SIGKILL, SIGSTOP and
        // invalid numbers fail harmlessly.
        unsafe {
            let action: libc::sigaction = std::mem::zeroed();
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// Waits for signals (all blocked since before the clone): SIGCHLD reaps, anything else is
/// passed on to the command. Returns the command's wait status.
///
/// When the command is the terminal's foreground job, its stops are reported to the runner,
/// which does what a shell does with a stopped job (see `terminal.rs`) and continues it when
/// its own caller continues it: so SIGCONT is not passed on, lest the command run on before the
/// runner has given it the terminal back.
fn supervise(command: libc::pid_t, plan: &Plan) -> c_int {
    let foreground = plan.exec.session == Session::Foreground;
    let options = if foreground { libc::WNOHANG | libc::WUNTRACED } else { libc::WNOHANG };
    // SAFETY: a full signal set built on the stack, then sigwaitinfo(2) and waitpid(2) on it and
    // on our children; kill(2) to our own child.
    unsafe {
        let mut all = std::mem::zeroed();
        libc::sigfillset(&mut all);
        loop {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            let signal = libc::sigwaitinfo(&all, &mut info);
            if signal == libc::SIGCHLD {
                loop {
                    let mut status = 0;
                    let pid = libc::waitpid(-1, &mut status, options);
                    if pid == command && libc::WIFSTOPPED(status) {
                        report::send_stopped(plan.report_fd);
                    } else if pid == command {
                        return status;
                    }
                    if pid <= 0 {
                        break;
                    }
                }
            } else if signal > 0 && !(foreground && signal == libc::SIGCONT) {
                libc::kill(command, signal);
            }
        }
    }
}
