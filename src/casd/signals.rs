//! SIGTERM and SIGINT, the signals that stop the daemon (BuildStream sends SIGTERM, then SIGKILL
//! after 15 s).

use std::io;

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Handlers for the stop signals. Installed before the daemon announces itself, so that an early
/// signal stops it cleanly instead of killing it.
#[derive(Debug)]
pub struct StopSignals {
    term: Signal,
    interrupt: Signal,
}

impl StopSignals {
    /// Installs the handlers. Must run inside a Tokio runtime.
    pub fn install() -> io::Result<Self> {
        Ok(Self { term: signal(SignalKind::terminate())?, interrupt: signal(SignalKind::interrupt())? })
    }

    /// Waits for either signal; returns its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }
}
