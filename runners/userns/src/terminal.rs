//! The caller's terminal, when the command's stdin is one: who gets it while the command runs,
//! and putting it back afterwards.
//!
//! A job-control shell hands its terminal to the job it runs in the foreground and takes it back
//! when the job ends. The runner does the same for the sandboxed command: when the runner is the
//! terminal's foreground job, the command becomes a process group of its own and the terminal's
//! foreground group, so Ctrl-C and Ctrl-Z reach the command (a shell inside then passes the
//! terminal on to its own jobs), not the runner. The terminal stays the caller's: window size
//! changes reach the foreground job directly. Afterwards the runner takes the terminal back and
//! restores the modes it had (a shell or editor killed mid-way leaves it raw and without echo):
//! the caller finds its terminal as it left it, and is not left in the background (where its
//! next read would stop it with SIGTTIN).
//!
//! When the command itself stops (Ctrl-Z on a command without job control of its own, an editor
//! suspending itself), the runner does what a shell does with a stopped job: it takes the
//! terminal back with the caller's modes, and stops its own process group, the caller's job, as
//! Ctrl-Z would have without the sandbox; the caller's shell takes over. When continued in the
//! foreground (`fg`), it gives the command the terminal back, with the modes the command had,
//! and continues it; in the background (`bg`), it only continues it.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::sys::signal::{SigSet, SigmaskHow, Signal, pthread_sigmask};
use nix::sys::termios::{SetArg, Termios, tcgetattr, tcsetattr};
use nix::unistd::{Pid, getpgrp, isatty, tcgetpgrp, tcsetpgrp};

/// What the command does about its session before `execve`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Session {
    /// stdin is not a terminal: a new session, so the caller's terminal (if stdout or stderr is
    /// one) is not the command's controlling terminal and cannot be driven from inside.
    New,
    /// stdin is the caller's terminal and the runner its foreground job: the command leads a new
    /// process group in the caller's session and becomes the terminal's foreground group.
    Foreground,
    /// stdin is a terminal, but not one the runner holds in the foreground (a background job, or
    /// not the controlling terminal): the caller's session and process group are kept, and the
    /// terminal works as it would for any process there.
    Keep,
}

/// The terminal's state when the runner had it, restored on drop.
#[derive(Debug)]
pub(crate) struct Terminal {
    fd: OwnedFd,
    modes: Termios,
    foreground: Pid,
}

/// Looks at the command's stdin: the session the command takes, and the terminal to give back
/// afterwards when the command takes the foreground.
pub(crate) fn inspect(stdin: BorrowedFd<'_>) -> (Session, Option<Terminal>) {
    if !isatty(stdin).unwrap_or(false) {
        return (Session::New, None);
    }
    let foreground = match tcgetpgrp(stdin) {
        Ok(group) if group == getpgrp() => group,
        _ => return (Session::Keep, None),
    };
    let (Ok(modes), Ok(fd)) = (tcgetattr(stdin), stdin.try_clone_to_owned()) else {
        return (Session::Keep, None);
    };
    (Session::Foreground, Some(Terminal { fd, modes, foreground }))
}

impl Terminal {
    /// The command, the sandbox's init's child, has stopped: passes the stop on to the caller and
    /// continues the command once the caller is continued (see the module documentation).
    pub(crate) fn pass_stop(&self, init: libc::pid_t) {
        let Some(command) = child_of(init) else {
            return;
        };
        let job_modes = tcgetattr(self.fd.as_fd()).ok();
        self.take_back();
        // SAFETY: kill(2) stopping this process's group, as Ctrl-Z would have; this thread stops
        // here until the group is continued. An orphaned group (a caller without job control)
        // ignores it, and the command is continued right away.
        unsafe { libc::kill(0, libc::SIGTSTP) };
        if tcgetpgrp(self.fd.as_fd()) == Ok(getpgrp()) {
            with_sigttou_blocked(|| {
                if let Some(modes) = &job_modes {
                    let _ = tcsetattr(self.fd.as_fd(), SetArg::TCSADRAIN, modes);
                }
                let _ = tcsetpgrp(self.fd.as_fd(), command);
            });
        }
        // SAFETY: kill(2) of the command's process group (it leads one), inside our sandbox.
        unsafe { libc::kill(-command.as_raw(), libc::SIGCONT) };
    }

    /// Makes the runner's group the foreground again and restores the modes.
    fn take_back(&self) {
        with_sigttou_blocked(|| {
            if let Err(errno) = tcsetpgrp(self.fd.as_fd(), self.foreground) {
                eprintln!("rebox: cannot take the terminal back into the foreground: {errno}");
            }
            if let Err(errno) = tcsetattr(self.fd.as_fd(), SetArg::TCSADRAIN, &self.modes) {
                eprintln!("rebox: cannot restore the terminal's modes: {errno}");
            }
        });
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.take_back();
    }
}

/// Runs `change` on the terminal with SIGTTOU blocked in this thread: the runner is a background
/// process by then, and a background process changing its terminal is stopped with SIGTTOU
/// unless it blocks that signal.
fn with_sigttou_blocked(change: impl FnOnce()) {
    let ttou = SigSet::from_iter([Signal::SIGTTOU]);
    let mut previous = SigSet::empty();
    let blocked = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut previous)).is_ok();
    change();
    if blocked {
        let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
    }
}

/// The only child of `init` (the command), as a pid of the runner's namespace.
fn child_of(init: libc::pid_t) -> Option<Pid> {
    let children = std::fs::read_to_string(format!("/proc/{init}/task/{init}/children")).ok()?;
    children.split_whitespace().next()?.parse().ok().map(Pid::from_raw)
}
