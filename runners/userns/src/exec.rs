//! The command's process: the last steps before `execve`, then the `PATH` search.

use std::ffi::c_int;

use crate::error::{Failure, Step};
use crate::plan::ExecPlan;
use crate::report;
use crate::terminal::Session;

/// `personality(2)`'s `PER_LINUX32` (not in the libc crate).
pub(crate) const PER_LINUX32: libc::c_ulong = 0x0008;

/// Runs in the command's process (forked by the sandbox's init): never returns.
pub(crate) fn run(plan: &ExecPlan, report_fd: c_int) -> ! {
    let code = match prepare(plan) {
        Ok(()) => exec(plan, report_fd),
        Err(failure) => {
            report::send_failure(report_fd, failure);
            127
        }
    };
    // SAFETY: _exit(2) ends this forked process without touching the parent's state.
    unsafe { libc::_exit(code) }
}

fn prepare(plan: &ExecPlan) -> Result<(), Failure> {
    let errno = || nix::errno::Errno::last();
    for (target, fd) in plan.stdio.iter().enumerate() {
        if let Some(fd) = *fd {
            // SAFETY: dup2(2) of a descriptor the runner opened (>= 3) onto 0, 1 or 2.
            if unsafe { libc::dup2(fd, target as c_int) } < 0 {
                return Err(Failure::new(Step::Stdio, target as u32, errno()));
            }
        }
    }
    enter_session(plan.session)?;
    if let Some(persona) = plan.personality {
        // SAFETY: personality(2) with an integer argument.
        if unsafe { libc::personality(persona) } < 0 {
            return Err(Failure::new(Step::Personality, 0, errno()));
        }
    }
    // SAFETY: an empty signal set, then sigprocmask(2) on it: the command starts with no signal
    // blocked (init blocked them all).
    unsafe {
        let mut set = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
    Ok(())
}

/// Takes the session `session` says (see [`Session`]). Runs with every signal still blocked:
/// taking the terminal's foreground from the background would otherwise stop the process with
/// SIGTTOU.
fn enter_session(session: Session) -> Result<(), Failure> {
    let errno = || nix::errno::Errno::last();
    match session {
        // SAFETY: setsid(2) takes no argument.
        Session::New if unsafe { libc::setsid() } < 0 => Err(Failure::new(Step::Session, 0, errno())),
        Session::Foreground => {
            // SAFETY: setpgid(2) making this process a group leader, then tcsetpgrp(3) on its
            // stdin (the caller's terminal, its controlling terminal) with that group.
            let taken = unsafe { libc::setpgid(0, 0) == 0 && libc::tcsetpgrp(0, libc::getpid()) == 0 };
            if taken { Ok(()) } else { Err(Failure::new(Step::Foreground, 0, errno())) }
        }
        Session::New | Session::Keep => Ok(()),
    }
}

/// Tries each candidate as `execvpe` does; returns the shell's exit code when none runs.
fn exec(plan: &ExecPlan, report_fd: c_int) -> c_int {
    let mut denied = false;
    for (item, candidate) in plan.candidates.iter().enumerate() {
        // SAFETY: the path and both null-terminated arrays point into C strings the plan owns.
        unsafe { libc::execve(candidate.as_ptr(), plan.argv.as_ptr(), plan.envp.as_ptr()) };
        match nix::errno::Errno::last() {
            nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR => {}
            nix::errno::Errno::EACCES => denied = true,
            errno => {
                report::send_failure(report_fd, Failure::new(Step::Exec, item as u32, errno));
                return 127;
            }
        }
    }
    let (message, code) = if denied { (&plan.denied, 126) } else { (&plan.not_found, 127) };
    // SAFETY: writes the prepared message to the command's stderr.
    unsafe { libc::write(2, message.as_ptr().cast(), message.len()) };
    code
}
