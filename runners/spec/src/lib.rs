//! The contract between rebox and its sandbox backends.
//!
//! A backend receives a [`Spec`]: an already staged root directory, the command to run in it and
//! the isolation to apply. It knows nothing of CAS, digests or protos; staging before and capture
//! after are rebox's business. Backends (user namespaces, chroot, OCI) implement [`Runner`].

use std::ffi::OsString;
use std::path::PathBuf;
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

/// Everything a backend needs to run one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spec {
    /// The staged directory that becomes `/` inside the sandbox.
    pub root: PathBuf,
    /// `argv[0]` and its arguments; `argv[0]` is resolved inside the sandbox.
    pub argv: Vec<OsString>,
    /// The complete environment: nothing from the host is added.
    pub env: Vec<(OsString, OsString)>,
    /// Working directory, relative to `root`.
    pub cwd: PathBuf,
    /// User and group ids the command runs as inside the sandbox.
    pub uid: u32,
    /// See [`Spec::uid`].
    pub gid: u32,
    /// Whether the sandbox shares the host's network instead of having only loopback.
    pub network: bool,
    /// Extra host paths made visible inside.
    pub mounts: Vec<BindMount>,
    /// Kill the whole sandbox after this long.
    pub timeout: Option<Duration>,
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
}

impl Outcome {
    /// The exit code a shell would report: the status, or 128 + the signal number.
    pub fn exit_code(self) -> i32 {
        match self {
            Outcome::Exited(code) => code,
            Outcome::Signaled(signal) => 128 + signal,
            Outcome::TimedOut => 128 + 9,
        }
    }
}

/// A sandbox backend.
pub trait Runner {
    /// The backend's error type.
    type Error: std::error::Error + Send + Sync + 'static;

    /// Runs `spec` to completion; every process it started is gone when this returns.
    fn run(&self, spec: &Spec) -> Result<Outcome, Self::Error>;
}

#[cfg(test)]
mod tests {
    use super::Outcome;

    #[test]
    fn exit_codes_follow_shell_convention() {
        assert_eq!(Outcome::Exited(3).exit_code(), 3);
        assert_eq!(Outcome::Signaled(15).exit_code(), 143);
        assert_eq!(Outcome::TimedOut.exit_code(), 137);
    }
}
