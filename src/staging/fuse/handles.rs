//! Open files of a FUSE stage, and their passthrough backing files.
//!
//! With FUSE passthrough (Linux 6.9+, the daemon root), a file the action wrote is handed to
//! the kernel with its scratch file as backing file, and its reads and writes never reach the
//! daemon. Staged files still as staged are served by the daemon into the page cache, which
//! keeps them across opens: their bytes never change, and an inode once opened through a
//! passthrough backing file must keep that one backing file (of the kernel's rules) while
//! any open lasts, which a read-only CAS object could not be once a writer comes. The kernel
//! also refuses to mix passthrough and cached opens of one inode, so an inode with cached
//! opens live gets cached opens only, until they are all closed.

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;

use fuser::BackingId;

use super::node::Ino;

/// One open file.
#[derive(Debug)]
pub struct Handle {
    pub ino: Ino,
    /// What it reads and writes: the CAS object (until a writer copies the file up) or the
    /// scratch file.
    pub file: Arc<File>,
    pub scratch: bool,
    /// Whether it was opened with a backing file (its I/O never reaches the daemon).
    pub passthrough: bool,
}

/// The passthrough backing file (the scratch file) of one inode.
#[derive(Debug)]
struct Backing {
    id: Arc<BackingId>,
    users: u32,
}

/// The open files of a stage.
#[derive(Debug, Default)]
pub struct Handles {
    open: HashMap<u64, Handle>,
    backings: HashMap<Ino, Backing>,
    /// Open handles served by the daemon, by inode.
    cached: HashMap<Ino, u32>,
    next: u64,
}

/// How an open's I/O is done.
#[derive(Debug)]
pub enum Io {
    /// Passed through to this backing file, registered already.
    Passthrough(Arc<BackingId>),
    /// Passed through to a backing file to register now.
    Register,
    /// Served by the daemon.
    Cached,
}

impl Handles {
    /// How to open `ino`: only the scratch file of an inode with no cached opens live may be
    /// passed through.
    pub fn io_for(&self, ino: Ino, scratch: bool) -> Io {
        if !scratch || self.cached.get(&ino).is_some_and(|&n| n > 0) {
            return Io::Cached;
        }
        match self.backings.get(&ino) {
            Some(backing) => Io::Passthrough(backing.id.clone()),
            None => Io::Register,
        }
    }

    /// Records an open; `backing` is the passthrough backing file it uses, if any.
    pub fn add(&mut self, ino: Ino, file: Arc<File>, scratch: bool, backing: Option<Arc<BackingId>>) -> u64 {
        let passthrough = backing.is_some();
        match backing {
            Some(id) => self.backings.entry(ino).or_insert(Backing { id, users: 0 }).users += 1,
            None => *self.cached.entry(ino).or_default() += 1,
        }
        self.next += 1;
        self.open.insert(self.next, Handle { ino, file, scratch, passthrough });
        self.next
    }

    /// The inode of `fh`, the file it uses, and whether that is the scratch file.
    pub fn get(&self, fh: u64) -> Option<(Ino, Arc<File>, bool)> {
        self.open.get(&fh).map(|h| (h.ino, h.file.clone(), h.scratch))
    }

    /// Points `fh` at the inode's scratch file (its CAS object was copied up meanwhile).
    pub fn use_scratch(&mut self, fh: u64, file: Arc<File>) {
        if let Some(handle) = self.open.get_mut(&fh) {
            handle.file = file;
            handle.scratch = true;
        }
    }

    /// Closes `fh`; the inode's backing file goes with its last user. Returns the inode.
    pub fn remove(&mut self, fh: u64) -> Option<Ino> {
        let handle = self.open.remove(&fh)?;
        let ino = handle.ino;
        if handle.passthrough {
            if let Some(backing) = self.backings.get_mut(&ino) {
                backing.users -= 1;
                if backing.users == 0 {
                    self.backings.remove(&ino);
                }
            }
        } else if let Some(count) = self.cached.get_mut(&ino) {
            *count -= 1;
            if *count == 0 {
                self.cached.remove(&ino);
            }
        }
        Some(ino)
    }
}
