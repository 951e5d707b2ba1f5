//! The quota policy as the store sees it: admission of new objects, and the LRU bookkeeping of
//! every add, use and removal ([`StoreHooks`]). The cleaner thread ([`super::cleaner`]) does the
//! freeing; the two meet in [`Control`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tracing::warn;

use super::config::{Limits, QuotaConfig};
use super::disk;
use super::index::LruIndex;
use crate::digest::Digest;
use crate::store::{QuotaExceeded, StoreHooks, WeakStore};

/// How long a write waits for cleanup to make room before it is refused.
const ADMIT_WAIT: Duration = Duration::from_secs(60);

/// What the writers and the cleaner thread tell each other.
#[derive(Debug, Default)]
pub(super) struct Control {
    /// The daemon is stopping: the cleaner exits, writers stop waiting.
    pub stop: bool,
    /// The index holds the objects found on disk at start.
    pub loaded: bool,
    /// Cleanup passes started and completed.
    pub started: u64,
    pub completed: u64,
    /// Whether the last completed pass ran out of objects it may expire before reaching its goal.
    pub exhausted: bool,
    /// The largest write waiting for room (0: none); the next pass makes room for it.
    pub pending: u64,
    /// The last pass found nothing to expire: wait for a reason to try again.
    pub backoff: bool,
}

/// The state shared by the store's hooks and the cleaner thread.
#[derive(Debug)]
pub(super) struct Policy {
    pub config: QuotaConfig,
    pub store: WeakStore,
    /// The store root, for free disk space.
    pub root: PathBuf,
    pub index: Mutex<LruIndex>,
    pub control: Mutex<Control>,
    /// Wakes the cleaner: a write is waiting, or the usage passed the threshold.
    pub wake_cleaner: Condvar,
    /// Wakes waiting writers: space was freed, or a pass ended.
    pub progress: Condvar,
    high: AtomicU64,
    threshold: AtomicU64,
    low: AtomicU64,
}

/// Locks `mutex`, ignoring poisoning: every critical section leaves its data consistent.
pub(super) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Policy {
    pub fn new(config: QuotaConfig, store: WeakStore, root: PathBuf, index: LruIndex) -> Self {
        let high = config.high.0;
        Self {
            config,
            store,
            root,
            index: Mutex::new(index),
            control: Mutex::new(Control::default()),
            wake_cleaner: Condvar::new(),
            progress: Condvar::new(),
            high: AtomicU64::new(high),
            threshold: AtomicU64::new(high),
            low: AtomicU64::new(high),
        }
    }

    /// Bytes in objects now.
    pub fn usage(&self) -> u64 {
        self.store.upgrade().map_or(0, |store| store.usage())
    }

    /// The limits as last computed.
    pub fn limits(&self) -> Limits {
        Limits {
            high: self.high.load(Ordering::Relaxed),
            threshold: self.threshold.load(Ordering::Relaxed),
            low: self.low.load(Ordering::Relaxed),
        }
    }

    /// Recomputes the limits from the usage and the free disk space.
    pub fn refresh_limits(&self) -> Limits {
        let available = disk::available_bytes(&self.root).unwrap_or_else(|error| {
            warn!("cannot read the free space of {}: {error}; ignoring --reserved", self.root.display());
            u64::MAX
        });
        let limits = self.config.limits(self.usage(), available);
        self.high.store(limits.high, Ordering::Relaxed);
        self.threshold.store(limits.threshold, Ordering::Relaxed);
        self.low.store(limits.low, Ordering::Relaxed);
        limits
    }

    /// Tells the cleaner and any waiting writer to stop.
    pub fn stop(&self) {
        lock(&self.control).stop = true;
        self.wake_cleaner.notify_all();
        self.progress.notify_all();
    }

    /// Why a blob larger than the effective quota `high` can never fit.
    fn too_large_reason(&self, high: u64) -> String {
        if high < self.config.high.0 {
            format!(
                "the blob alone is larger than that (--quota-high {} is lowered to keep --reserved {} of \
                 disk free)",
                self.config.high, self.config.reserved
            )
        } else {
            "the blob alone is larger than that".to_owned()
        }
    }

    /// Why nothing more can be expired.
    fn exhausted_reason(&self) -> String {
        if self.config.protect_session_blobs {
            "every remaining blob was stored or used in this session, which --protect-session-blobs \
             keeps"
                .to_owned()
        } else {
            "no blob is left to expire".to_owned()
        }
    }
}

impl StoreHooks for Policy {
    fn fits(&self, size: u64) -> bool {
        self.usage().saturating_add(size) <= self.high.load(Ordering::Relaxed)
    }

    fn admit(&self, size: u64) -> Result<(), QuotaExceeded> {
        let deadline = Instant::now() + ADMIT_WAIT;
        let mut control = lock(&self.control);
        // The pass that has to complete before giving up: one started after this write asked.
        let mut ticket: Option<u64> = None;
        loop {
            let (usage, high) = (self.usage(), self.high.load(Ordering::Relaxed));
            if usage.saturating_add(size) <= high {
                return Ok(());
            }
            let refuse = |reason: String| Err(QuotaExceeded { size, usage, quota: high, reason });
            if size > high {
                return refuse(self.too_large_reason(high));
            }
            if self.config.fail_fast {
                return refuse(
                    "--fail-fast-during-cleanup refuses writes that would wait for cleanup".to_owned(),
                );
            }
            if control.stop {
                return refuse("the daemon is shutting down".to_owned());
            }
            match ticket {
                Some(pass) if control.completed >= pass && control.exhausted => {
                    return refuse(self.exhausted_reason());
                }
                // That pass freed space, but others took it: ask for another.
                Some(pass) if control.completed >= pass => ticket = None,
                _ => {}
            }
            if ticket.is_none() {
                ticket = Some(control.started + 1);
                control.pending = control.pending.max(size);
                self.wake_cleaner.notify_one();
            }
            let now = Instant::now();
            if now >= deadline {
                return refuse(format!("cleanup did not make room within {} s", ADMIT_WAIT.as_secs()));
            }
            control =
                self.progress.wait_timeout(control, deadline - now).unwrap_or_else(PoisonError::into_inner).0;
        }
    }

    fn added(&self, digest: &Digest) {
        lock(&self.index).add(digest);
        if self.usage() > self.threshold.load(Ordering::Relaxed) {
            // Under the lock, so that the cleaner cannot miss it between its check and its wait.
            lock(&self.control).backoff = false;
            self.wake_cleaner.notify_one();
        }
    }

    fn used(&self, digests: &[Digest]) {
        lock(&self.index).touch(digests);
    }

    fn removed(&self, digest: &Digest) {
        lock(&self.index).remove(digest);
    }
}
