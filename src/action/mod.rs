//! Running one REAPI Action: what `rebox run` (`buildbox-run`) and `rebox exec` do.
//!
//! [`execute`] takes an Action, a [`Runner`](rebox_runner_spec::Runner) (the sandbox) and an
//! [`ActionCas`] (where inputs come from and outputs go), and gives an ActionResult:
//!
//! 1. the Command is read from the CAS and checked with the platform ([`Plan`], [`Platform`]),
//!    so a bad action is refused before anything is staged; when the Action carries its own
//!    platform, an unsupported one is refused before anything is read, and the Command is read
//!    while the input root is staged (a Command refused then unstages it);
//! 2. the input root is staged; the working directory and the parents of every output are
//!    created inside it ([`stage_fs`], confined to the stage);
//! 3. the sandbox runs the command (environment exactly as given, hostname `buildbox`);
//! 4. outputs are captured into their fields (files, directories, symlinks; legacy fields too),
//!    and stdout/stderr stored as blobs;
//! 5. the stage is removed.
//!
//! [`ActionCas`] implementations: [`LocalCasClient`] (a LocalCAS server, rebox casd or
//! buildbox-casd), [`EmbeddedCas`] (the store in-process, with casd's staging and capture), and
//! [`FetchingCas`] (`--disable-localcas`: the embedded one, filled from and emptied into a plain
//! REAPI CAS server).
//! A timeout is reported as such (see [`metadata`]) and by [`TIMEOUT_EXIT_CODE`].

mod cas;
mod connection;
mod embedded;
mod error;
mod execute;
mod fetching;
pub mod last_failed;
mod local_cas;
pub mod materialise;
pub mod metadata;
mod outputs;
mod paths;
mod plan;
mod platform;
pub mod signals;
pub mod stage_fs;

pub use cas::{ActionCas, DirectoryDigests, StageOptions};
pub use connection::CasConnection;
pub use embedded::EmbeddedCas;
pub use error::ActionError;
pub use execute::{Executed, HOSTNAME, Mount, RunOptions, execute};
pub use fetching::FetchingCas;
pub use local_cas::LocalCasClient;
pub use plan::{Output, OutputField, Plan};
pub use platform::{ISAS, Platform};

/// The runner's exit status when the action's timeout expired (as `timeout(1)`'s): the
/// ActionResult was written, with a DEADLINE_EXCEEDED status in its execution metadata.
pub const TIMEOUT_EXIT_CODE: u8 = 124;
