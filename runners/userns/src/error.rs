//! What can go wrong, on both sides of the fork.
//!
//! The child cannot format strings (it must not allocate), so it reports a [`Failure`]: a step,
//! an index naming the subject within that step (which bind mount, which capability) and an
//! errno. The parent turns it into a [`UsernsError::Setup`] that names the step and the path.

use std::path::PathBuf;

use nix::errno::Errno;

/// A setup step in the sandbox, as reported by the child.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Step {
    /// Writing `/proc/self/{setgroups,uid_map,gid_map}`.
    IdMap = 1,
    /// Making the inherited mount tree private.
    MakePrivate,
    /// Bind-mounting the staged root.
    BindRoot,
    /// Creating or opening a mount point the runner owns (`/proc`, `/dev`, `/tmp`...).
    MountPoint,
    /// Mounting a fresh `/proc`.
    MountProc,
    /// Making a host-global part of `/proc` read-only.
    ProcReadOnly,
    /// Mounting the `/dev` tmpfs, its `pts` and `shm`, or creating its links.
    MountDev,
    /// Bind-mounting a host device node into `/dev`.
    DevNode,
    /// Mounting the `/tmp` tmpfs.
    MountTmp,
    /// Bind-mounting one of [`rebox_runner_spec::Spec::mounts`] (item: its index).
    Bind,
    /// Creating the target of a bind mount inside the root (item: its index).
    BindTarget,
    /// Setting the host name.
    Hostname,
    /// Bringing `lo` up.
    Loopback,
    /// Creating the working directory.
    Cwd,
    /// `pivot_root` into the staged root.
    Pivot,
    /// Dropping capabilities (item: the capability number).
    DropCaps,
    /// Setting `no_new_privs`.
    NoNewPrivs,
    /// Installing the seccomp filter.
    Seccomp,
    /// Forking the command from the sandbox's init.
    Fork,
    /// Redirecting the command's standard streams.
    Stdio,
    /// Starting a new session for the command.
    Session,
    /// Setting the execution domain.
    Personality,
    /// Executing the command.
    Exec,
    /// Making the command the foreground process group of the caller's terminal.
    Foreground,
}

impl Step {
    /// All steps, for decoding the wire form.
    const ALL: [Step; 24] = [
        Step::IdMap,
        Step::MakePrivate,
        Step::BindRoot,
        Step::MountPoint,
        Step::MountProc,
        Step::ProcReadOnly,
        Step::MountDev,
        Step::DevNode,
        Step::MountTmp,
        Step::Bind,
        Step::BindTarget,
        Step::Hostname,
        Step::Loopback,
        Step::Cwd,
        Step::Pivot,
        Step::DropCaps,
        Step::NoNewPrivs,
        Step::Seccomp,
        Step::Fork,
        Step::Stdio,
        Step::Session,
        Step::Personality,
        Step::Exec,
        Step::Foreground,
    ];

    /// The step whose wire number is `code`.
    pub(crate) fn from_code(code: u32) -> Option<Step> {
        Step::ALL.iter().copied().find(|step| *step as u32 == code)
    }
}

/// A setup failure as the child reports it: no strings, only numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Failure {
    pub step: Step,
    pub item: u32,
    pub errno: Errno,
}

impl Failure {
    pub(crate) fn new(step: Step, item: u32, errno: Errno) -> Self {
        Self { step, item, errno }
    }
}

/// Why a sandbox could not be set up or run.
#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    /// The spec cannot be run as given.
    #[error("invalid sandbox spec: {0}")]
    InvalidSpec(String),
    /// A host-side step failed before the sandbox existed (opening a stream file, a pipe).
    #[error("{what}: {source}")]
    Host {
        /// What was being done, with the path.
        what: String,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
    /// Creating the sandbox's namespaces failed (user namespaces disabled, limits reached).
    #[error("create the sandbox's namespaces: {0}")]
    Namespaces(#[source] Errno),
    /// A step inside the sandbox failed before the command ran.
    #[error("{what} in the sandbox: {errno}")]
    Setup {
        /// The step.
        step: Step,
        /// The step and its subject, e.g. "mount /proc" or "bind-mount /src onto /dst".
        what: String,
        /// The system error.
        errno: Errno,
    },
    /// Waiting for the sandbox failed.
    #[error("wait for the sandbox: {0}")]
    Wait(#[source] Errno),
    /// The sandbox's init ended without reporting the command's status: something outside
    /// killed it.
    #[error("the sandbox ended without reporting the command's status (init wait status {0:#x})")]
    Lost(i32),
    /// A stream file named in the spec could not be opened.
    #[error("open {path} for the command's {stream}: {source}")]
    Stream {
        /// `stdin`, `stdout` or `stderr`.
        stream: &'static str,
        /// The host path.
        path: PathBuf,
        /// The system error.
        #[source]
        source: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::Step;

    #[test]
    fn every_step_round_trips_through_its_code() {
        for step in Step::ALL {
            assert_eq!(Step::from_code(step as u32), Some(step));
        }
        assert_eq!(Step::from_code(0), None);
        assert_eq!(Step::from_code(Step::ALL.len() as u32 + 1), None);
    }
}
