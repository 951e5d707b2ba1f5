//! The inodes of a FUSE stage: what each one is, its attributes, and a directory's entries.

use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

use crate::digest::Digest;

/// An inode number as the kernel sees it (1 is the stage's root).
pub type Ino = u64;

/// The root's inode number.
pub const ROOT: Ino = 1;

/// One inode.
#[derive(Debug)]
pub struct Node {
    pub kind: Kind,
    /// Permission bits, setuid/setgid/sticky included (never from the tree: staging strips them).
    pub perm: u32,
    pub uid: u32,
    pub gid: u32,
    /// Links from directories (for a directory: 2 + its subdirectories).
    pub nlink: u32,
    /// Times of everything but a scratch file, whose times are the scratch file's own.
    pub atime: SystemTime,
    pub mtime: SystemTime,
    pub ctime: SystemTime,
    /// References the kernel holds (lookups not yet forgotten).
    pub lookups: u64,
    /// Open file handles.
    pub opens: u32,
}

/// What an inode is.
#[derive(Debug)]
pub enum Kind {
    File(Content),
    Dir(Dir),
    Symlink(Vec<u8>),
    /// A FIFO or a socket made by the action (no content; the kernel does the rest).
    Special(fuser::FileType),
}

/// Where a file's bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Content {
    /// Still the staged blob: read straight from the CAS object, never written.
    Cas(Digest),
    /// Copied up (or created) into the stage's scratch dir, under the inode's number.
    Scratch,
}

/// A directory: its entries, read from its Directory message on first use.
#[derive(Debug)]
pub struct Dir {
    /// The directory holding it (the root's is itself).
    pub parent: Ino,
    /// The Directory message it was staged from, while its entries have not been read.
    pub source: Option<Digest>,
    /// Its entries, once read (or from the start for a directory the action made).
    pub entries: Option<Entries>,
}

/// A directory's entries. Each entry gets a sequence number when it is added, and listings go
/// newest first with the sequence number as the resume point (as tmpfs lists): an entry that
/// stays is listed exactly once however the directory changes between two reads of a listing,
/// and entries added meanwhile land before the reader's position, so a program that creates
/// files while it lists a directory still comes to its end.
#[derive(Debug, Default)]
pub struct Entries {
    by_name: HashMap<Vec<u8>, (Ino, u64)>,
    by_seq: BTreeMap<u64, Vec<u8>>,
    next_seq: u64,
}

impl Entries {
    pub fn get(&self, name: &[u8]) -> Option<Ino> {
        self.by_name.get(name).map(|&(ino, _)| ino)
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Adds or replaces `name`; a replaced entry keeps its place in listings.
    pub fn insert(&mut self, name: Vec<u8>, ino: Ino) {
        if let Some(entry) = self.by_name.get_mut(&name) {
            entry.0 = ino;
            return;
        }
        self.next_seq += 1;
        self.by_seq.insert(self.next_seq, name.clone());
        self.by_name.insert(name, (ino, self.next_seq));
    }

    pub fn remove(&mut self, name: &[u8]) -> Option<Ino> {
        let (ino, seq) = self.by_name.remove(name)?;
        self.by_seq.remove(&seq);
        Some(ino)
    }

    /// The entries listed after the one at `position` (0: from the start), newest first, each
    /// with its own position.
    pub fn after(&self, position: u64) -> impl Iterator<Item = (u64, &[u8], Ino)> {
        let below = if position == 0 { u64::MAX } else { position };
        self.by_seq.range(..below).rev().map(|(&seq, name)| (seq, name.as_slice(), self.by_name[name].0))
    }
}

impl Node {
    pub fn is_dir(&self) -> bool {
        matches!(self.kind, Kind::Dir(_))
    }

    pub fn file_type(&self) -> fuser::FileType {
        match &self.kind {
            Kind::File(_) => fuser::FileType::RegularFile,
            Kind::Dir(_) => fuser::FileType::Directory,
            Kind::Symlink(_) => fuser::FileType::Symlink,
            Kind::Special(kind) => *kind,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_offsets_survive_changes() {
        let mut entries = Entries::default();
        for (i, name) in ["a", "b", "c"].iter().enumerate() {
            entries.insert(name.as_bytes().to_vec(), i as Ino + 10);
        }
        let first: Vec<_> = entries.after(0).take(1).map(|(seq, name, _)| (seq, name.to_vec())).collect();
        assert_eq!(first[0].1, b"c", "newest first");
        // Between two reads: "b" goes, "d" comes (before the reader), "a" is replaced (same place).
        entries.remove(b"b");
        entries.insert(b"d".to_vec(), 13);
        entries.insert(b"a".to_vec(), 14);
        let rest: Vec<_> = entries.after(first[0].0).map(|(_, name, ino)| (name.to_vec(), ino)).collect();
        assert_eq!(rest, [(b"a".to_vec(), 14)]);
        assert_eq!(entries.after(0).count(), 3);
        assert_eq!((entries.len(), entries.get(b"b")), (3, None));
    }
}
