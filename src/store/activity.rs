//! Store calls that are writing right now. An expiry policy gives way to them while it has room
//! to spare: its unlinks compete with their creations, writes and links for the CPU and for the
//! filesystem's allocation locks, and a write's latency is what a client waits on.

use std::sync::atomic::{AtomicUsize, Ordering};

/// How many store calls are writing now.
#[derive(Debug, Default)]
pub(super) struct WriteActivity(AtomicUsize);

/// One call's share of the [`WriteActivity`], given back when dropped.
#[derive(Debug)]
#[must_use = "a write counts only as long as its guard lives"]
pub(super) struct Writing<'a>(&'a AtomicUsize);

impl WriteActivity {
    /// Counts a write until the guard is dropped.
    pub fn begin(&self) -> Writing<'_> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Writing(&self.0)
    }

    /// Writes in progress.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_write_while_its_guard_lives() {
        let activity = WriteActivity::default();
        let first = activity.begin();
        let second = activity.begin();
        assert_eq!(activity.count(), 2);
        drop(first);
        assert_eq!(activity.count(), 1);
        drop(second);
        assert_eq!(activity.count(), 0);
    }
}
