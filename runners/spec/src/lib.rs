//! The contract between rebox and its sandbox backends.
//!
//! A backend receives a [`Spec`]: an already staged root directory, the command to run in it and
//! the isolation to apply. It knows nothing of CAS, digests or protos; staging before and capture
//! after are rebox's business. Backends (user namespaces, chroot, OCI) implement [`Runner`].

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::Duration;

/// A host path made visible inside the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    /// Path on the host.
    pub source: PathBuf,
    /// Absolute path inside the sandbox.
    pub target: PathBuf,
    /// Whether the sandbox may write through the mount.
    pub writable: bool,
}

/// Where one of the command's standard streams goes (or comes from, for stdin).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Stdio {
    /// The runner's own stream, passed through.
    #[default]
    Inherit,
    /// `/dev/null`.
    Null,
    /// A host file: read for stdin; created or truncated for stdout and stderr.
    File(PathBuf),
}

/// The execution domain the command runs under (`personality(2)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Personality {
    /// The host's own (x86-64 here).
    #[default]
    Native,
    /// 32-bit (`PER_LINUX32`): `uname -m` says i686, for x86-32 actions.
    Linux32,
}

/// Everything a backend needs to run one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The staged directory that becomes `/` inside the sandbox.
    pub root: PathBuf,
    /// `argv[0]` and its arguments; `argv[0]` is resolved inside the sandbox (through the `PATH`
    /// of `env` when it has no `/`).
    pub argv: Vec<OsString>,
    /// The complete environment: nothing from the host is added.
    pub env: Vec<(OsString, OsString)>,
    /// Working directory, relative to `root`; created if missing.
    pub cwd: PathBuf,
    /// User and group ids the command runs as inside the sandbox.
    pub uid: u32,
    /// See [`Spec::uid`].
    pub gid: u32,
    /// Whether the sandbox shares the host's network instead of having only loopback.
    pub network: bool,
    /// The sandbox's host name.
    pub hostname: String,
    /// Extra host paths made visible inside, in order (later ones may be inside earlier ones).
    pub mounts: Vec<BindMount>,
    /// Kill the whole sandbox after this long.
    pub timeout: Option<Duration>,
    /// The command's standard input.
    pub stdin: Stdio,
    /// The command's standard output.
    pub stdout: Stdio,
    /// The command's standard error.
    pub stderr: Stdio,
    /// The execution domain.
    pub personality: Personality,
}

impl Spec {
    /// A spec running `argv` in `root` with defaults: empty environment, cwd `/`, uid and gid 0,
    /// no network, host name `rebox`, no extra mounts or timeout, streams inherited.
    pub fn new(root: impl Into<PathBuf>, argv: Vec<OsString>) -> Self {
        Self {
            root: root.into(),
            argv,
            env: Vec::new(),
            cwd: PathBuf::from("/"),
            uid: 0,
            gid: 0,
            network: false,
            hostname: "rebox".to_owned(),
            mounts: Vec::new(),
            timeout: None,
            stdin: Stdio::Inherit,
            stdout: Stdio::Inherit,
            stderr: Stdio::Inherit,
            personality: Personality::Native,
        }
    }
}

/// How a sandboxed command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The command exited with this status.
    Exited(i32),
    /// The command was killed by this signal.
    Signaled(i32),
    /// The timeout expired and the sandbox was killed.
    TimedOut,
    /// [`Cancel::cancel`] was called with this signal and the sandbox was killed.
    Cancelled(i32),
}

impl Outcome {
    /// The exit code a shell would report: the status, or 128 + the signal number.
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Exited(code) => code,
            Outcome::Signaled(signal) | Outcome::Cancelled(signal) => 128 + signal,
            Outcome::TimedOut => 128 + 9,
        }
    }
}

/// Resources the command's processes used (`getrusage(RUSAGE_CHILDREN)`-like, for the whole
/// sandbox).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ResourceUsage {
    /// User CPU time.
    pub user_time: Duration,
    /// System CPU time.
    pub system_time: Duration,
    /// Largest resident set size of any process, in KiB.
    pub max_rss_kib: u64,
    /// Minor page faults.
    pub minor_faults: u64,
    /// Major page faults.
    pub major_faults: u64,
    /// Voluntary context switches.
    pub voluntary_switches: u64,
    /// Involuntary context switches.
    pub involuntary_switches: u64,
}

/// What [`Runner::run`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// How the command ended.
    pub outcome: Outcome,
    /// What it used.
    pub usage: ResourceUsage,
}

/// Asks a running sandbox to stop from another thread (a signal handler's thread, say): the
/// runner kills every process of the sandbox, cleans up and returns [`Outcome::Cancelled`].
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    signal: Arc<AtomicI32>,
}

impl Cancel {
    /// A token nobody has cancelled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Cancels, recording the signal that asked for it (SIGTERM, SIGINT...).
    pub fn cancel(&self, signal: i32) {
        let _ = self.signal.compare_exchange(0, signal.max(1), Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The signal the run was cancelled with, if it was.
    pub fn cancelled(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(signal),
        }
    }
}

/// A sandbox backend.
pub trait Runner {
    /// The backend's error type.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Runs `spec` to completion (or until `cancel` is cancelled, polled at least every 50 ms);
    /// every process it started is gone when this returns.
    fn run(&self, spec: &Spec, cancel: &Cancel) -> Result<Completion, Self::Error>;
}

#[cfg(test)]
mod tests {
    use super::{Cancel, Outcome};

    #[test]
    fn exit_codes_follow_shell_convention() {
        assert_eq!(Outcome::Exited(3).exit_code(), 3);
        assert_eq!(Outcome::Signaled(15).exit_code(), 143);
        assert_eq!(Outcome::Cancelled(2).exit_code(), 130);
        assert_eq!(Outcome::TimedOut.exit_code(), 137);
    }

    #[test]
    fn the_first_cancel_wins() {
        let cancel = Cancel::new();
        assert_eq!(cancel.cancelled(), None);
        cancel.clone().cancel(15);
        cancel.cancel(2);
        assert_eq!(cancel.cancelled(), Some(15));
    }
}
