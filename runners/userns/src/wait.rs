//! Waiting for the sandbox: the timeout, cancellation, the command's status and the rusage.

use std::os::fd::{AsFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use rebox_runner_spec::{Cancel, Completion, Outcome, ResourceUsage};

use crate::error::{Failure, UsernsError};
use crate::plan::Plan;
use crate::report::{Message, Reader, UsageField};
use crate::spawn::Sandbox;
use crate::terminal::Terminal;

/// How often `cancel` is polled at most.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// Waits until init reports the command's status (it does so once every other process of the
/// sandbox is dead and reaped) or exits, killing it (and so the whole pid namespace) on timeout
/// or cancel.
pub(crate) fn wait(
    plan: &Plan,
    sandbox: Sandbox,
    report: OwnedFd,
    timeout: Option<Duration>,
    cancel: &Cancel,
    terminal: Option<&Terminal>,
) -> Result<Completion, UsernsError> {
    let deadline = timeout.map(|timeout| Instant::now() + timeout);
    let mut reader = Reader::default();
    let mut heard = Heard::default();
    let mut killed: Option<Outcome> = None;
    loop {
        let mut wait_for = CANCEL_POLL;
        if let Some(deadline) = deadline {
            wait_for = wait_for.min(deadline.saturating_duration_since(Instant::now()));
        }
        let mut fds = [
            PollFd::new(sandbox.pidfd.as_fd(), PollFlags::POLLIN),
            PollFd::new(report.as_fd(), PollFlags::POLLIN),
        ];
        let millis = wait_for.as_millis().max(1) as u16;
        match poll(&mut fds, PollTimeout::from(millis)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(errno) => {
                // Don't leave a sandbox running (or a zombie) behind an error.
                // SAFETY: kill(2) of our unreaped child, as below.
                unsafe { libc::kill(sandbox.pid, libc::SIGKILL) };
                let _ = reap(sandbox.pid);
                return Err(UsernsError::Wait(errno));
            }
        }
        let exited = fds[0].revents().is_some_and(|r| !r.is_empty());
        if fds[1].revents().is_some_and(|r| !r.is_empty()) {
            heard.take(reader.read(&report));
        }
        if std::mem::take(&mut heard.stopped)
            && let Some(terminal) = terminal
        {
            terminal.pass_stop(sandbox.pid);
        }
        if exited || heard.status.is_some() {
            break;
        }
        if killed.is_none() {
            if let Some(signal) = cancel.cancelled() {
                killed = Some(Outcome::Cancelled(signal));
            } else if deadline.is_some_and(|deadline| Instant::now() >= deadline) {
                killed = Some(Outcome::TimedOut);
            }
            if killed.is_some() {
                // SAFETY: kill(2) of our unreaped child: its pid cannot have been reused. Init
                // dying takes the whole pid namespace with it.
                unsafe { libc::kill(sandbox.pid, libc::SIGKILL) };
            }
        }
    }
    if let (Some(status), None) = (heard.status, killed) {
        // Init sends the status last, once it has killed and reaped everything else: the action
        // is over. Init is exiting (tearing its namespaces down); it is reaped off this path.
        reap_in_background(sandbox.pid);
        return Ok(Completion { outcome: decode(status), usage: heard.usage });
    }
    let (init_status, usage) = reap(sandbox.pid)?;
    heard.take(reader.read(&report));
    let Heard { failure, status, .. } = heard;
    if let Some(failure) = failure {
        return Err(UsernsError::Setup {
            step: failure.step,
            what: plan.describe(&failure),
            errno: failure.errno,
        });
    }
    // A status init reported wins over a kill that came after the command had ended.
    let outcome = match (status, killed) {
        (Some(status), _) => decode(status),
        (None, Some(outcome)) => outcome,
        (None, None) => return Err(UsernsError::Lost(init_status)),
    };
    Ok(Completion { outcome, usage })
}

/// Reaps init from a thread of its own, so that the runner need not wait for the namespaces'
/// teardown in its exit. If no thread can be started, waits here.
fn reap_in_background(pid: libc::pid_t) {
    let spawned = std::thread::Builder::new().name("rebox-reap-init".into()).spawn(move || reap(pid));
    if spawned.is_err() {
        let _ = reap(pid);
    }
}

/// What the sandbox reported so far.
#[derive(Debug, Default)]
struct Heard {
    failure: Option<Failure>,
    status: Option<i32>,
    usage: ResourceUsage,
    /// The command stopped, and the stop was not passed on yet.
    stopped: bool,
}

impl Heard {
    fn take(&mut self, messages: Vec<Message>) {
        for message in messages {
            match message {
                Message::Failure(f) => self.failure = self.failure.or(Some(f)),
                Message::Status(s) => self.status = Some(s),
                Message::Usage(field, value) => self.set_usage(field, value),
                Message::Stopped => self.stopped = true,
            }
        }
    }

    fn set_usage(&mut self, field: UsageField, value: i64) {
        let count = u64::try_from(value).unwrap_or(0);
        let usage = &mut self.usage;
        match field {
            UsageField::UserMicros => usage.user_time = Duration::from_micros(count),
            UsageField::SystemMicros => usage.system_time = Duration::from_micros(count),
            UsageField::MaxRssKib => usage.max_rss_kib = count,
            UsageField::MinorFaults => usage.minor_faults = count,
            UsageField::MajorFaults => usage.major_faults = count,
            UsageField::VoluntarySwitches => usage.voluntary_switches = count,
            UsageField::InvoluntarySwitches => usage.involuntary_switches = count,
        }
    }
}

/// `wait4` on init: its status and the rusage of init and everything it reaped.
fn reap(pid: libc::pid_t) -> Result<(i32, ResourceUsage), UsernsError> {
    let mut status = 0;
    // SAFETY: `rusage` is plain data; zeroed is a valid value.
    let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: wait4(2) on our own child, writing into the two locals.
        let ret = unsafe { libc::wait4(pid, &mut status, 0, &mut rusage) };
        match ret {
            -1 if Errno::last() == Errno::EINTR => continue,
            -1 => return Err(UsernsError::Wait(Errno::last())),
            _ => break,
        }
    }
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    let usage = ResourceUsage {
        user_time: time(rusage.ru_utime),
        system_time: time(rusage.ru_stime),
        max_rss_kib: rusage.ru_maxrss as u64,
        minor_faults: rusage.ru_minflt as u64,
        major_faults: rusage.ru_majflt as u64,
        voluntary_switches: rusage.ru_nvcsw as u64,
        involuntary_switches: rusage.ru_nivcsw as u64,
    };
    Ok((status, usage))
}

/// A wait status as an [`Outcome`].
fn decode(status: i32) -> Outcome {
    if libc::WIFSIGNALED(status) {
        Outcome::Signaled(libc::WTERMSIG(status))
    } else {
        Outcome::Exited(libc::WEXITSTATUS(status))
    }
}
