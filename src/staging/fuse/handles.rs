//! Open files of a FUSE stage, and their passthrough backing files.
//!
//! With FUSE passthrough (Linux 6.9+, the daemon root), an open file is handed to the kernel
//! with a backing file, the CAS object or (once written) the scratch file, and its reads, writes
//! and mappings never reach the daemon; a staged file's pages are then the CAS object's, shared
//! by every stage of it. The kernel wants one backing file per inode while any open lasts, so a
//! second open of an inode reuses the first's. A staged file copied up while readers still have
//! its CAS object as backing gets its later opens as direct I/O served by the daemon from the
//! scratch file (same backing id, as the kernel requires): those see every write, while the
//! earlier descriptors go on reading the staged bytes until closed (the one place a FUSE stage
//! is not POSIX, as overlayfs was before Linux 4.19). Without passthrough every open is served
//! by the daemon, from the inode's current content, into a page cache kept across opens.

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
    /// Whether it holds a use of the inode's backing file.
    pub backed: bool,
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

/// How an open's I/O is done, with passthrough available.
#[derive(Debug)]
pub enum Io {
    /// Passed through to the inode's backing file, registered already.
    Passthrough(Arc<BackingId>),
    /// Passed through to this open's file, to register as the inode's backing file now.
    Register,
    /// Served by the daemon (direct I/O) from the scratch file, naming the inode's backing
    /// file (still the CAS object, for earlier opens), as the kernel requires.
    Direct(Arc<BackingId>),
}

impl Handles {
    /// How to open `ino`, whose content is the scratch file or still the CAS object.
    pub fn io_for(&self, ino: Ino, scratch: bool) -> Io {
        match self.backings.get(&ino) {
            Some(backing) if backing.scratch == scratch => Io::Passthrough(backing.id.clone()),
            Some(backing) => Io::Direct(backing.id.clone()),
            None => Io::Register,
        }
    }

    /// Records an open; `backing` is the inode's backing file it holds a use of, if any.
    pub fn add(&mut self, ino: Ino, file: Arc<File>, scratch: bool, backing: Option<Arc<BackingId>>) -> u64 {
        let backed = backing.is_some();
        if let Some(id) = backing {
            self.backings.entry(ino).or_insert(Backing { id, scratch, users: 0 }).users += 1;
        }
        self.next += 1;
        self.open.insert(self.next, Handle { ino, file, scratch, backed });
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
        if handle.backed
            && let Some(backing) = self.backings.get_mut(&ino)
        {
            backing.users -= 1;
            if backing.users == 0 {
                self.backings.remove(&ino);
            }
        }
        Some(ino)
    }
}
