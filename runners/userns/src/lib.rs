//! The user-namespace sandbox backend (being written: see issue #4).

use rebox_runner_spec::{Cancel, Completion, Runner, Spec};

/// Runs a [`Spec`] in fresh user, mount, pid, net, ipc and uts namespaces.
#[derive(Debug, Default)]
pub struct UsernsRunner {}

/// Why a sandbox could not be set up or run.
#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    /// Not written yet.
    #[error("the user-namespace runner is not implemented yet")]
    Unimplemented,
}

impl Runner for UsernsRunner {
    type Error = UsernsError;

    fn run(&self, _spec: &Spec, _cancel: &Cancel) -> Result<Completion, UsernsError> {
        Err(UsernsError::Unimplemented)
    }
}
