//! Process limits the daemon raises for itself at start.

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use tracing::{debug, warn};

/// Raises the soft limit on open files to the hard limit: capture keeps one directory open per
/// nesting level and hashes many files at once, and the common soft limit (1024) is low for that.
pub fn raise_open_files() {
    match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok((soft, hard)) if soft < hard => match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => debug!("open files limit raised from {soft} to {hard}"),
            Err(e) => warn!("cannot raise the open files limit from {soft}: {e}"),
        },
        Ok(_) => {}
        Err(e) => warn!("cannot read the open files limit: {e}"),
    }
}
