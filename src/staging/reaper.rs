//! Removing what an unstage leaves (the upper dir with the action's writes, a copied tree), off
//! the unstage's critical path: the dirs are renamed into the daemon's own dir at once (one
//! metadata operation) and deleted by a background thread. A crash leaves them in the daemon's
//! dir, which start-up clean-up removes.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Sender};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;

use super::error::Result;
use super::remove::remove_tree;

/// Deletes trees in the background.
#[derive(Debug)]
pub struct Reaper {
    trash: PathBuf,
    next: AtomicU64,
    queue: Mutex<Sender<PathBuf>>,
    /// How many queued trees are not deleted yet, to wait on.
    pending: Arc<(Mutex<usize>, Condvar)>,
}

impl Reaper {
    /// A reaper whose trash lives in `dir` (the daemon's own dir, on the store's filesystem).
    pub fn start(dir: &Path) -> Self {
        let (queue, trees) = mpsc::channel::<PathBuf>();
        let pending = Arc::new((Mutex::new(0usize), Condvar::new()));
        let counter = pending.clone();
        let spawned = thread::Builder::new().name("rebox-reaper".into()).spawn(move || {
            for tree in trees {
                if let Err(error) = remove_tree(&tree) {
                    tracing::warn!(%error, "cannot remove an unstaged tree");
                }
                let (count, done) = &*counter;
                *count.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
                done.notify_all();
            }
        });
        if let Err(error) = spawned {
            // Every tree is then removed inline (see `remove`).
            tracing::warn!(%error, "cannot start the reaper thread");
        }
        Self { trash: dir.to_owned(), next: AtomicU64::new(0), queue: Mutex::new(queue), pending }
    }

    /// Removes `path` (and all below it): moved out of the way now, deleted in the background.
    /// A path on another filesystem (a client's stage dir) is removed inline.
    pub fn remove(&self, path: &Path) -> Result<()> {
        let trash = self.trash.join(format!("trash-{}", self.next.fetch_add(1, Ordering::Relaxed)));
        if fs::rename(path, &trash).is_err() {
            return remove_tree(path);
        }
        let (count, _) = &*self.pending;
        *count.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        if let Err(mpsc::SendError(trash)) = self.queue.lock().unwrap_or_else(|p| p.into_inner()).send(trash)
        {
            *count.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
            return remove_tree(&trash);
        }
        Ok(())
    }

    /// Waits until everything queued is deleted.
    pub fn flush(&self) {
        let (count, done) = &*self.pending;
        let mut count = count.lock().unwrap_or_else(|p| p.into_inner());
        while *count > 0 {
            count = done.wait(count).unwrap_or_else(|p| p.into_inner());
        }
    }
}
