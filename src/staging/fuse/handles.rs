//! Open files of a FUSE stage, and their passthrough backing files.
//!
//! With FUSE passthrough (Linux 6.9+, the daemon root), an open file is handed to the kernel
//! with a backing file (the CAS object, or the scratch file once written) and its reads and
//! writes never reach the daemon. The kernel wants one backing file per inode at a time: a
//! second open of an inode reuses the first's, and when a staged file is written while a
//! reader still has its CAS object as backing, the writer's handle is served by the daemon
//! instead (direct I/O), from the scratch file.

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;

use fuser::BackingId;

use super::node::Ino;

/// One open file.
#[derive(Debug)]
pub struct Handle {
    pub ino: Ino,
    pub file: Arc<File>,
    /// Whether it was opened with a backing file (its I/O never reaches the daemon).
    pub passthrough: bool,
}

/// The passthrough backing file of one inode.
#[derive(Debug)]
struct Backing {
    id: Arc<BackingId>,
    /// Whether it is the scratch file (else the CAS object).
    scratch: bool,
    users: u32,
}

/// The open files of a stage.
#[derive(Debug, Default)]
pub struct Handles {
    open: HashMap<u64, Handle>,
    backings: HashMap<Ino, Backing>,
    next: u64,
}

/// What an open should use as its backing file.
#[derive(Debug)]
pub enum BackingChoice {
    /// This one (registered already, or to register now).
    Use(Arc<BackingId>),
    /// Register one for this file.
    Register,
    /// None: the inode's backing is the CAS object, and this handle needs the scratch file.
    Conflict,
}

impl Handles {
    /// How to open `ino`, whose content is the scratch file or not.
    pub fn backing_for(&self, ino: Ino, scratch: bool) -> BackingChoice {
        match self.backings.get(&ino) {
            Some(backing) if backing.scratch == scratch => BackingChoice::Use(backing.id.clone()),
            Some(_) => BackingChoice::Conflict,
            None => BackingChoice::Register,
        }
    }

    /// Records an open; `backing` is the passthrough backing it uses, if any.
    pub fn add(&mut self, ino: Ino, file: Arc<File>, backing: Option<(Arc<BackingId>, bool)>) -> u64 {
        let passthrough = backing.is_some();
        if let Some((id, scratch)) = backing {
            let entry = self.backings.entry(ino).or_insert(Backing { id, scratch, users: 0 });
            entry.users += 1;
        }
        self.next += 1;
        self.open.insert(self.next, Handle { ino, file, passthrough });
        self.next
    }

    pub fn get(&self, fh: u64) -> Option<(Ino, Arc<File>)> {
        self.open.get(&fh).map(|h| (h.ino, h.file.clone()))
    }

    /// Closes `fh`; the inode's backing file goes with its last user. Returns the inode.
    pub fn remove(&mut self, fh: u64) -> Option<Ino> {
        let handle = self.open.remove(&fh)?;
        if handle.passthrough {
            if let Some(backing) = self.backings.get_mut(&handle.ino) {
                backing.users -= 1;
                if backing.users == 0 {
                    self.backings.remove(&handle.ino);
                }
            }
        }
        Some(handle.ino)
    }
}
