//! `rebox casd` (alias `buildbox-casd`): the local CAS daemon that BuildStream and the runners
//! talk to, a drop-in for buildbox-casd.
//!
//! - [`args`]: the command line, every buildbox-casd flag;
//! - [`config`]: flags to a checked [`DaemonConfig`], and what each flag does here;
//! - [`bind`]: listen addresses, sockets that appear only once listening;
//! - [`authority`]: Unix-socket requests from gRPC C-core clients made acceptable to the server;
//! - [`signals`], [`lifecycle`]: stopping cleanly, and what is cleaned before and after;
//! - [`daemon`]: the run itself;
//! - [`logging`]: `--log-level` through `tracing`.

pub mod args;
mod authority;
pub mod bind;
pub mod config;
mod daemon;
mod error;
mod lifecycle;
mod limits;
pub mod logging;
mod pruner;
mod remote_args;
mod signals;

pub use args::CasdArgs;
pub use config::{DaemonConfig, log_inert_flags};
pub use daemon::run;
pub use error::CasdError;
pub use remote_args::RemoteArgs;

/// The buildbox-casd release whose interface rebox casd provides. BuildStream 2.8.1 requires at
/// least 1.3.41 and reads it from `--version`.
pub const BUILDBOX_CASD_VERSION: &str = "1.4.25";

/// What `--version` prints: BuildStream matches `buildbox-casd (\d+).(\d+).(\d+)` on it.
pub fn version_line() -> String {
    format!("buildbox-casd {BUILDBOX_CASD_VERSION} (rebox {})", env!("CARGO_PKG_VERSION"))
}
