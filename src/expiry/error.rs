//! Why an expiry policy could not be set up.

use std::io;

/// A bad quota setting, or a failure to start the policy.
#[derive(Debug, thiserror::Error)]
pub enum ExpiryError {
    /// A byte count that does not parse.
    #[error("size {text:?} {reason}")]
    BadSize {
        /// The text given.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A percentage that does not parse.
    #[error("percentage {text:?} {reason}")]
    BadPercent {
        /// The text given.
        text: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The settings contradict each other, e.g. a low mark above the high one.
    #[error("{0}")]
    Inconsistent(String),
    /// The store already has a quota policy.
    #[error("the store already has a quota policy")]
    AlreadyWatched,
    /// The background cleaner thread could not be started.
    #[error("cannot start the expiry thread: {0}")]
    Thread(#[source] io::Error),
}
