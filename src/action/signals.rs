//! SIGTERM and SIGINT to the runner cancel the running action: the sandbox is killed, the stage
//! removed, and the runner exits 128 + the signal (BuildStream's abort, or Ctrl-C).
//!
//! The handler only stores the signal in the [`Cancel`] token (an atomic: async-signal-safe);
//! the runner polls the token. Handlers are reset to the default by `exec`, so the sandboxed
//! command sees the signals as usual.

use std::sync::OnceLock;

use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};
use rebox_runner_spec::Cancel;

static TOKEN: OnceLock<Cancel> = OnceLock::new();

extern "C" fn on_signal(signal: libc::c_int) {
    if let Some(token) = TOKEN.get() {
        token.cancel(signal);
    }
}

/// The process's cancel token, cancelled by SIGTERM or SIGINT from the first call on.
pub fn cancel_on_signals() -> Cancel {
    let token = TOKEN.get_or_init(Cancel::new).clone();
    let action = SigAction::new(SigHandler::Handler(on_signal), SaFlags::SA_RESTART, SigSet::empty());
    for signal in [Signal::SIGTERM, Signal::SIGINT] {
        // SAFETY: the handler only reads a OnceLock that is set before it is installed and does an
        // atomic compare-exchange: both async-signal-safe.
        if let Err(error) = unsafe { sigaction(signal, &action) } {
            tracing::warn!(%signal, %error, "cannot handle the signal");
        }
    }
    token
}
