//! Keeping the local cache under its quota, as buildbox-casd does: least recently used objects
//! (object mtime is the clock) are removed from `--quota-high` down to `--quota-low`.
//!
//! - [`config`]: the settings and the byte limits they give (`--reserved` lowers the high mark
//!   to keep that much disk free);
//! - [`index`]: the LRU order in memory, built by one scan at start and then kept current by the
//!   store's hooks, so expiry never rescans the disk;
//! - [`policy`]: the hooks the store calls: bookkeeping, and admission of new objects (a write
//!   that does not fit waits for cleanup, and is refused with [`crate::store::QuotaExceeded`]
//!   only when nothing more can be expired);
//! - [`cleaner`]: the background thread that removes objects. It starts at the cleanup
//!   threshold, below the high mark, so writes normally never wait, and gives way to writes in
//!   progress until the usage is halfway from there to the high mark.

mod cleaner;
mod config;
mod disk;
mod error;
mod index;
mod policy;
mod size;

pub use config::{DEFAULT_LOW, DEFAULT_RESERVED, Limits, QuotaConfig};
pub use error::ExpiryError;
pub use size::{ByteSize, LowMark, Percent};

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use index::LruIndex;
use policy::{Policy, lock};

use crate::store::Store;

/// A running expiry policy on one store. Stops its thread when stopped or dropped.
#[derive(Debug)]
pub struct Expiry {
    policy: Arc<Policy>,
    cleaner: Mutex<Option<JoinHandle<()>>>,
}

/// What the expiry policy has done so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExpiryStatus {
    /// Whether the objects found on disk at start are indexed (expiry can only start then).
    pub loaded: bool,
    /// Cleanup passes completed.
    pub passes: u64,
    /// Whether a pass is under way or due.
    pub busy: bool,
    /// Objects in the LRU index.
    pub indexed: usize,
}

impl Expiry {
    /// Starts keeping `store` under `config`'s quota: installs the store's hooks and starts the
    /// cleaner thread, which first indexes the objects already stored.
    pub fn start(store: &Store, config: QuotaConfig) -> Result<Self, ExpiryError> {
        config.validate()?;
        let index = LruIndex::new(store.digest_function(), config.protect_session_blobs);
        let policy = Arc::new(Policy::new(config, store.downgrade(), store.root().to_owned(), index));
        policy.refresh_limits();
        if !store.set_hooks(policy.clone()) {
            return Err(ExpiryError::AlreadyWatched);
        }
        let (thread_policy, thread_store) = (Arc::clone(&policy), store.clone());
        let cleaner = std::thread::Builder::new()
            .name("rebox-expiry".to_owned())
            .spawn(move || cleaner::run(thread_policy, thread_store))
            .map_err(ExpiryError::Thread)?;
        Ok(Self { policy, cleaner: Mutex::new(Some(cleaner)) })
    }

    /// The settings.
    pub fn config(&self) -> &QuotaConfig {
        &self.policy.config
    }

    /// The current limits (the high mark is what GetLocalDiskUsage reports as the quota).
    pub fn limits(&self) -> Limits {
        self.policy.limits()
    }

    /// What has been done so far.
    pub fn status(&self) -> ExpiryStatus {
        let control = lock(&self.policy.control);
        ExpiryStatus {
            loaded: control.loaded,
            passes: control.completed,
            busy: control.started > control.completed || control.pending > 0,
            indexed: lock(&self.policy.index).len(),
        }
    }

    /// Waits until the initial index is loaded and no pass is under way or due (the usage is at
    /// most the cleanup threshold, or nothing more may be expired). Returns whether that happened
    /// within `timeout`.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut control = lock(&self.policy.control);
        loop {
            let due = self.policy.usage() > self.policy.limits().threshold && !control.backoff;
            let busy = control.started > control.completed || control.pending > 0;
            if control.loaded && !busy && !due {
                return true;
            }
            let now = Instant::now();
            if now >= deadline || control.stop {
                return false;
            }
            // Re-check at least every 10 ms: the usage can drop without a notification.
            let wait = (deadline - now).min(Duration::from_millis(10));
            control = self.policy.progress.wait_timeout(control, wait).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Stops the cleaner thread (waiting for its current batch) and refuses writes that are
    /// waiting for room. The store keeps its hooks: bookkeeping goes on, expiry does not.
    pub fn stop(&self) {
        self.policy.stop();
        if let Some(cleaner) = lock(&self.cleaner).take() {
            let _ = cleaner.join();
        }
    }
}

impl Drop for Expiry {
    fn drop(&mut self) {
        self.stop();
    }
}
