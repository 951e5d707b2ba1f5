//! The background thread that expires objects: it indexes what is on disk once, then waits for
//! the usage to pass the cleanup threshold (or for a write that needs room) and removes the least
//! recently used objects until the usage is back at the low mark.
//!
//! While there is room to spare (the usage is below [`Limits::urgent`] and no write waits for
//! room), a pass gives way to writes in progress: it removes small batches between them. Its
//! unlinks would otherwise take the CPU and the filesystem's allocation locks from the writes that
//! clients are waiting on. Past that mark it runs flat out, so writes never wait on a pass that
//! gives way.

use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use tracing::{debug, error, info, warn};

use super::config::Limits;
use super::policy::{Control, Policy, lock};
use crate::store::Store;

/// How often the limits are recomputed (free disk space changes under other writers).
const REFRESH: Duration = Duration::from_secs(2);

/// Objects removed between two checks of the usage (and two wake-ups of waiting writers) when a
/// pass runs flat out.
const BATCH: usize = 256;

/// Objects removed between two checks while a pass gives way to writes: a write that arrives
/// during a batch waits for at most this many unlinks (a fraction of a millisecond).
const GIVING_WAY_BATCH: usize = 32;

/// How often a pass that gives way looks whether the writes are done.
const GIVE_WAY_POLL: Duration = Duration::from_micros(250);

/// Scanned objects handed to the index per lock.
const LOAD_CHUNK: usize = 16 * 1024;

/// What the cleaner is to do next.
enum Work {
    Stop,
    Idle,
    /// A pass that also makes room for a write of this many bytes.
    Pass {
        pending: u64,
    },
}

/// The thread's body.
pub(super) fn run(policy: Arc<Policy>, store: Store) {
    load_index(&policy, &store);
    loop {
        policy.refresh_limits();
        match wait_for_work(&policy) {
            Work::Stop => return,
            Work::Idle => continue,
            Work::Pass { pending } => {
                let exhausted = pass(&policy, &store, pending);
                let mut control = lock(&policy.control);
                control.completed += 1;
                control.exhausted = exhausted;
                control.backoff = exhausted;
                policy.progress.notify_all();
            }
        }
    }
}

/// Indexes the objects on disk, oldest mtime first, a chunk at a time so writers are not held up.
fn load_index(policy: &Policy, store: &Store) {
    let started = Instant::now();
    lock(&policy.index).begin_load();
    match store.objects() {
        Ok(mut objects) => {
            lock(&policy.index).reserve(objects.len());
            objects.par_sort_unstable_by_key(|object| object.mtime);
            for chunk in objects.rchunks(LOAD_CHUNK) {
                lock(&policy.index).load_newest_first(chunk.iter().rev().map(|object| object.digest));
            }
        }
        Err(e) => error!("expiry: cannot list the stored objects ({e}); only new ones will expire"),
    }
    let indexed = {
        let mut index = lock(&policy.index);
        index.finish_load();
        index.len()
    };
    lock(&policy.control).loaded = true;
    policy.progress.notify_all();
    info!("expiry: indexed {indexed} objects in {} ms", started.elapsed().as_millis());
}

/// Waits (at most [`REFRESH`]) until a pass is due or the policy stops.
/// After a pass that found nothing to expire, only a waiting write, a new object or the next
/// refresh starts another, so a full store of protected objects costs no busy loop.
fn wait_for_work(policy: &Policy) -> Work {
    let due = |control: &Control| {
        control.pending > 0 || (!control.backoff && policy.usage() > policy.limits().threshold)
    };
    let mut control = lock(&policy.control);
    if !control.stop && !due(&control) {
        let (guard, waited) =
            policy.wake_cleaner.wait_timeout(control, REFRESH).unwrap_or_else(PoisonError::into_inner);
        control = guard;
        if waited.timed_out() {
            control.backoff = false;
        }
    }
    if control.stop {
        return Work::Stop;
    }
    if !due(&control) {
        return Work::Idle;
    }
    control.started += 1;
    Work::Pass { pending: std::mem::take(&mut control.pending) }
}

/// Removes the least recently used objects until the usage is at the low mark and `pending` more
/// bytes fit under the high one. Returns whether it ran out of objects it may expire first.
fn pass(policy: &Policy, store: &Store, pending: u64) -> bool {
    let limits = policy.refresh_limits();
    let goal = limits.low.min(limits.high.saturating_sub(pending));
    let (started, usage_before) = (Instant::now(), store.usage());
    let (mut removed, mut exhausted, mut gave_way) = (0usize, false, Duration::ZERO);
    loop {
        let flat_out = pending > 0 || give_way(policy, store, &limits, &mut gave_way);
        let excess = store.usage().saturating_sub(goal);
        if excess == 0 {
            break;
        }
        let batch_size = if flat_out { BATCH } else { GIVING_WAY_BATCH };
        let batch = lock(&policy.index).pop_oldest(batch_size, excess);
        if batch.is_empty() {
            exhausted = true;
            break;
        }
        // Unlinks cost the kernel's time, not ours: two at a time roughly halves a pass's length.
        removed += batch
            .par_iter()
            .filter(|digest| match store.remove(digest) {
                Ok(true) => true,
                Ok(false) => {
                    debug!("expiry: {digest} was already gone");
                    false
                }
                Err(e) => {
                    warn!("expiry: {e}");
                    false
                }
            })
            .count();
        // Under the lock, so that a writer between its check and its wait cannot miss it.
        let _control = lock(&policy.control);
        policy.progress.notify_all();
    }
    let usage = store.usage();
    let freed = usage_before.saturating_sub(usage);
    let took = started.elapsed().as_millis();
    let gave_way = gave_way.as_millis();
    let (low, high) = (limits.low, limits.high);
    if removed > 0 {
        info!(
            "expiry: removed {removed} objects ({freed} bytes) in {took} ms ({gave_way} ms giving way to \
             writes); usage {usage} (low {low}, high {high})"
        );
    }
    if exhausted {
        debug!("expiry: nothing more may be expired; usage {usage} (low {low}, high {high})");
    }
    exhausted
}

/// Waits while writes are in progress and there is room to spare; adds the wait to `waited`.
/// Returns whether the pass must run flat out now.
fn give_way(policy: &Policy, store: &Store, limits: &Limits, waited: &mut Duration) -> bool {
    let started = Instant::now();
    let urgent = loop {
        if is_urgent(policy, store, limits) {
            break true;
        }
        if store.writes_in_progress() == 0 {
            break false;
        }
        std::thread::sleep(GIVE_WAY_POLL);
    };
    *waited += started.elapsed();
    urgent
}

/// Whether a pass must run flat out: the usage is past the urgent mark, a write waits for room,
/// or the policy is stopping.
fn is_urgent(policy: &Policy, store: &Store, limits: &Limits) -> bool {
    if store.usage() >= limits.urgent() {
        return true;
    }
    let control = lock(&policy.control);
    control.pending > 0 || control.stop
}
