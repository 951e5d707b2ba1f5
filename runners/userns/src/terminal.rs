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

impl Drop for Terminal {
    /// Makes the runner's group the foreground again and restores the modes. The runner is a
    /// background process by now, and a background process changing its terminal is stopped
    /// with SIGTTOU unless it blocks that signal: so it does, in this thread, meanwhile.
    fn drop(&mut self) {
        let ttou = SigSet::from_iter([Signal::SIGTTOU]);
        let mut previous = SigSet::empty();
        let blocked = pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&ttou), Some(&mut previous)).is_ok();
        if let Err(errno) = tcsetpgrp(self.fd.as_fd(), self.foreground) {
            eprintln!("rebox: cannot take the terminal back into the foreground: {errno}");
        }
        if let Err(errno) = tcsetattr(self.fd.as_fd(), SetArg::TCSADRAIN, &self.modes) {
            eprintln!("rebox: cannot restore the terminal's modes: {errno}");
        }
        if blocked {
            let _ = pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&previous), None);
        }
    }
}
