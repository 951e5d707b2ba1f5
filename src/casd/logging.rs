//! `--log-level`: buildbox-casd's levels, through `tracing` to stderr (BuildStream sends the
//! daemon's stderr to a log file, so colours only when stderr is a terminal).

use std::io::IsTerminal;

use clap::ValueEnum;
use tracing::level_filters::LevelFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// buildbox-casd's log levels, least verbose first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum LogLevel {
    /// Errors only (buildbox-casd's default).
    Error,
    /// Warnings and errors.
    Warning,
    /// Progress: start, binds, expiry passes, shutdown.
    Info,
    /// Detail for debugging.
    Debug,
    /// Everything.
    Trace,
}

impl From<LogLevel> for LevelFilter {
    fn from(level: LogLevel) -> Self {
        match level {
            LogLevel::Error => LevelFilter::ERROR,
            LogLevel::Warning => LevelFilter::WARN,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Trace => LevelFilter::TRACE,
        }
    }
}

/// Sends `tracing` events up to `level` to stderr. Below `trace`, the libraries under the
/// daemon (tonic, hyper, h2) log at most at info level: their debug output is per frame. Does
/// nothing if a subscriber is set already.
pub fn init(level: LogLevel) {
    let rebox = LevelFilter::from(level);
    let libraries = if level == LogLevel::Trace { rebox } else { rebox.min(LevelFilter::INFO) };
    let filter = Targets::new().with_default(libraries).with_target("rebox", rebox);
    let _ = tracing_subscriber::fmt()
        .with_max_level(rebox)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .with_target(false)
        .finish()
        .with(filter)
        .try_init();
}
