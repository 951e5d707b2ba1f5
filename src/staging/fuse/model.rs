//! The inode table of a FUSE stage and the lookups and attributes it answers. Directories are
//! read from their Directory messages only when first looked into, so a stage costs what the
//! action touches. Changes to the namespace are in `mutate.rs`.

use std::collections::HashMap;
use std::fs::File;
use std::sync::Arc;
use std::time::SystemTime;

use nix::errno::Errno;

use super::node::{Content, Dir, Entries, Ino, Kind, Node, ROOT};
use super::scratch::{Scratch, system_time};
use crate::staging::attrs::{Attrs, DIRECTORY_MODE, Mtime, Owner};
use crate::staging::build::parse_digest;
use crate::store::Store;
use crate::tree::DirectorySource;

/// `readdir` offsets of entries are this less their sequence number (see [`Entries`]).
const LISTING_BASE: u64 = 1 << 62;

/// Block size reported by `stat`.
const BLOCK_SIZE: u32 = 4096;

/// A FUSE stage's inodes.
#[derive(Debug)]
pub struct Model {
    pub(super) tree: Arc<dyn DirectorySource>,
    pub(super) store: Store,
    pub(super) scratch: Scratch,
    owner: Owner,
    pub(super) nodes: HashMap<Ino, Node>,
    next_ino: Ino,
    /// The first blob an open found missing from the CAS.
    missing: Option<crate::digest::Digest>,
    /// Whether missing blobs are expected to be found at open (the stage did not check them
    /// up front, and its owner asks [`Model::missing`]): then they are not logged as errors.
    lazy: bool,
}

impl Model {
    /// The stage of `tree`, owned by `owner`, writing into `scratch`.
    pub fn new(
        tree: Arc<dyn DirectorySource>,
        store: Store,
        scratch: Scratch,
        owner: Owner,
        lazy: bool,
    ) -> Self {
        let attrs = Attrs::of_directory(owner);
        let time = mtime(attrs.mtime);
        let root = Node {
            kind: Kind::Dir(Dir { parent: ROOT, source: Some(tree.root()), entries: None }),
            perm: DIRECTORY_MODE,
            uid: owner.uid,
            gid: owner.gid,
            nlink: 2 + tree.directory(&tree.root()).map_or(0, |d| d.directories.len() as u32),
            atime: time,
            mtime: time,
            ctime: time,
            lookups: 1,
            opens: 0,
        };
        let nodes = HashMap::from([(ROOT, root)]);
        Self { tree, store, scratch, owner, nodes, next_ino: ROOT + 1, missing: None, lazy }
    }

    /// The first blob the action found missing from the CAS (its open failed with EIO).
    pub fn missing(&self) -> Option<crate::digest::Digest> {
        self.missing
    }

    pub fn node(&self, ino: Ino) -> Result<&Node, Errno> {
        self.nodes.get(&ino).ok_or(Errno::ESTALE)
    }

    pub fn node_mut(&mut self, ino: Ino) -> Result<&mut Node, Errno> {
        self.nodes.get_mut(&ino).ok_or(Errno::ESTALE)
    }

    /// The entry `name` of directory `parent`, counted as a kernel reference.
    pub fn lookup(&mut self, parent: Ino, name: &[u8]) -> Result<Ino, Errno> {
        let ino = self.entries(parent)?.get(name).ok_or(Errno::ENOENT)?;
        self.node_mut(ino)?.lookups += 1;
        Ok(ino)
    }

    /// The kernel dropped `count` references to `ino`.
    pub fn forget(&mut self, ino: Ino, count: u64) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.lookups = node.lookups.saturating_sub(count);
            self.free_if_unused(ino);
        }
    }

    /// Drops an inode no name, kernel reference or open handle keeps (and its scratch file).
    pub fn free_if_unused(&mut self, ino: Ino) {
        let Some(node) = self.nodes.get(&ino) else { return };
        if ino == ROOT || node.nlink > 0 || node.lookups > 0 || node.opens > 0 {
            return;
        }
        if matches!(node.kind, Kind::File(Content::Scratch))
            && let Err(error) = self.scratch.remove(ino)
        {
            tracing::debug!(ino, %error, "cannot remove a scratch file");
        }
        self.nodes.remove(&ino);
    }

    /// The entries of directory `ino`, read from its Directory message on first use.
    pub fn entries(&mut self, ino: Ino) -> Result<&mut Entries, Errno> {
        let source = match &self.node(ino)?.kind {
            Kind::Dir(Dir { entries: Some(_), .. }) => None,
            Kind::Dir(Dir { source: Some(digest), .. }) => Some(*digest),
            Kind::Dir(_) => return Err(Errno::EIO),
            _ => return Err(Errno::ENOTDIR),
        };
        if let Some(digest) = source {
            let (entries, subdirectories) = self.read_directory(ino, &digest)?;
            let node = self.node_mut(ino)?;
            // Exact from now on, kept so by mkdir, rmdir and rename (see `attr` until then).
            node.nlink = 2 + subdirectories;
            if let Kind::Dir(dir) = &mut node.kind {
                dir.entries = Some(entries);
                dir.source = None;
            }
        }
        match &mut self.node_mut(ino)?.kind {
            Kind::Dir(Dir { entries: Some(entries), .. }) => Ok(entries),
            _ => Err(Errno::EIO),
        }
    }

    /// Makes an inode for each entry of the staged Directory `digest` (the directory `parent`);
    /// also gives the number of its subdirectories.
    fn read_directory(
        &mut self,
        parent: Ino,
        digest: &crate::digest::Digest,
    ) -> Result<(Entries, u32), Errno> {
        let Some(directory) = self.tree.directory(digest) else {
            // Only a lazily read tree can lack one: its blob went from the CAS.
            self.missing.get_or_insert(*digest);
            return Err(Errno::EIO);
        };
        let mut entries = Entries::default();
        // The tree was validated (names, digests, properties) before the stage was mounted.
        for file in &directory.files {
            let attrs = Attrs::of_file(file, self.owner, &file.name).map_err(|_| Errno::EIO)?;
            let digest = parse_digest(file.digest.as_ref()).ok_or(Errno::EIO)?;
            let ino = self.add_staged(Kind::File(Content::Cas(digest)), attrs, 1);
            entries.insert(file.name.clone().into_bytes(), ino);
        }
        for symlink in &directory.symlinks {
            let attrs = Attrs::of_symlink(symlink, self.owner, &symlink.name).map_err(|_| Errno::EIO)?;
            let ino = self.add_staged(Kind::Symlink(symlink.target.clone().into_bytes()), attrs, 1);
            entries.insert(symlink.name.clone().into_bytes(), ino);
        }
        for subdirectory in &directory.directories {
            let digest = parse_digest(subdirectory.digest.as_ref()).ok_or(Errno::EIO)?;
            let kind = Kind::Dir(Dir { parent, source: Some(digest), entries: None });
            // Its own subdirectories are counted when it is looked at (`attr`), not here: a lazily
            // read tree would read every sibling for it.
            let ino = self.add_staged(kind, Attrs::of_directory(self.owner), 2);
            entries.insert(subdirectory.name.clone().into_bytes(), ino);
        }
        Ok((entries, directory.directories.len() as u32))
    }

    fn add_staged(&mut self, kind: Kind, attrs: Attrs, nlink: u32) -> Ino {
        let time = mtime(attrs.mtime);
        self.add(Node {
            kind,
            perm: attrs.mode,
            uid: attrs.owner.uid,
            gid: attrs.owner.gid,
            nlink,
            atime: time,
            mtime: time,
            ctime: time,
            lookups: 0,
            opens: 0,
        })
    }

    /// Adds a node under a fresh inode number (never reused within a stage).
    pub(super) fn add(&mut self, node: Node) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        ino
    }

    /// The attributes of `ino` as `stat` shows them.
    pub fn attr(&self, ino: Ino) -> Result<fuser::FileAttr, Errno> {
        let node = self.node(ino)?;
        let (mut size, mut atime, mut mtime, mut ctime) = (0, node.atime, node.mtime, node.ctime);
        let mut blocks = None;
        match &node.kind {
            Kind::File(Content::Cas(digest)) => size = digest.size(),
            Kind::File(Content::Scratch) => {
                let stat = self.scratch.stat(ino).map_err(io_errno)?;
                size = stat.st_size as u64;
                blocks = Some(stat.st_blocks as u64);
                atime = system_time(stat.st_atime, stat.st_atime_nsec);
                mtime = system_time(stat.st_mtime, stat.st_mtime_nsec);
                ctime = ctime.max(system_time(stat.st_ctime, stat.st_ctime_nsec));
            }
            Kind::Dir(_) => size = u64::from(BLOCK_SIZE),
            Kind::Symlink(target) => size = target.len() as u64,
            Kind::Special(_) => {}
        }
        Ok(fuser::FileAttr {
            ino: fuser::INodeNo(ino),
            size,
            blocks: blocks.unwrap_or(size.div_ceil(512)),
            atime,
            mtime,
            ctime,
            crtime: ctime,
            kind: node.file_type(),
            perm: node.perm as u16,
            nlink: self.nlink(node),
            uid: node.uid,
            gid: node.gid,
            rdev: 0,
            blksize: BLOCK_SIZE,
            flags: 0,
        })
    }

    /// `node`'s link count: for a directory not looked into yet, 2 and one per subdirectory of
    /// its Directory message (read now from a lazily read tree; 2 if that fails, and entering it
    /// fails too).
    fn nlink(&self, node: &Node) -> u32 {
        match &node.kind {
            Kind::Dir(Dir { entries: None, source: Some(digest), .. }) => {
                2 + self.tree.directory(digest).map_or(0, |d| d.directories.len() as u32)
            }
            _ => node.nlink,
        }
    }

    /// The target of symlink `ino`.
    pub fn readlink(&self, ino: Ino) -> Result<Vec<u8>, Errno> {
        match &self.node(ino)?.kind {
            Kind::Symlink(target) => Ok(target.clone()),
            _ => Err(Errno::EINVAL),
        }
    }

    /// Up to `max` entries of directory `ino` after listing offset `offset`, `.` and `..` first.
    pub fn list(&mut self, ino: Ino, offset: u64, max: usize) -> Result<Vec<Listed>, Errno> {
        let parent = match &self.node(ino)?.kind {
            Kind::Dir(dir) => dir.parent,
            _ => return Err(Errno::ENOTDIR),
        };
        let mut listed = Vec::new();
        if offset == 0 {
            listed.push(Listed { offset: 1, name: b".".to_vec(), ino, kind: fuser::FileType::Directory });
        }
        if offset <= 1 {
            listed.push(Listed {
                offset: 2,
                name: b"..".to_vec(),
                ino: parent,
                kind: fuser::FileType::Directory,
            });
        }
        // Entry positions go down from LISTING_BASE, leaving 1 and 2 to `.` and `..`.
        let resume = if offset <= 2 { 0 } else { LISTING_BASE - offset };
        let entries: Vec<(u64, Vec<u8>, Ino)> = self
            .entries(ino)?
            .after(resume)
            .take(max)
            .map(|(seq, name, ino)| (seq, name.to_vec(), ino))
            .collect();
        for (seq, name, child) in entries {
            let kind = self.node(child)?.file_type();
            listed.push(Listed { offset: LISTING_BASE - seq, name, ino: child, kind });
        }
        Ok(listed)
    }

    /// Opens what a file's bytes are read from: its CAS object or its scratch file.
    pub fn open_content(&mut self, ino: Ino) -> Result<(File, Content), Errno> {
        let content = match &self.node(ino)?.kind {
            Kind::File(content) => *content,
            Kind::Dir(_) => return Err(Errno::EISDIR),
            _ => return Err(Errno::EINVAL),
        };
        let file = match content {
            Content::Cas(digest) => match self.store.open_blob(&digest) {
                Ok(file) => file,
                Err(error) => {
                    if !self.lazy {
                        tracing::error!(ino, %digest, %error, "a staged file's blob is missing from the CAS");
                    }
                    self.missing.get_or_insert(digest);
                    return Err(Errno::EIO);
                }
            },
            Content::Scratch => self.scratch.open_file(ino).map_err(io_errno)?,
        };
        Ok((file, content))
    }

    /// Makes file `ino` writable: its blob is copied into its scratch file (once), unless
    /// `empty`, when the scratch file starts empty (the file is about to be truncated to 0).
    pub fn copy_up(&mut self, ino: Ino, empty: bool) -> Result<(), Errno> {
        let node = self.node(ino)?;
        let digest = match node.kind {
            Kind::File(Content::Cas(digest)) => digest,
            Kind::File(Content::Scratch) => return Ok(()),
            Kind::Dir(_) => return Err(Errno::EISDIR),
            _ => return Err(Errno::EINVAL),
        };
        let (atime, mtime) = (node.atime, node.mtime);
        let made = if empty {
            self.scratch
                .create(ino)
                .and_then(|file| self.scratch.set_times(ino, Some(atime), Some(mtime)).map(|()| file))
        } else {
            let mut blob = self.store.open_blob(&digest).map_err(|error| {
                tracing::error!(%digest, %error, "cannot open a staged blob to copy it up");
                Errno::EIO
            })?;
            self.scratch.copy_up(ino, &mut blob, atime, mtime)
        };
        made.map_err(io_errno)?;
        self.node_mut(ino)?.kind = Kind::File(Content::Scratch);
        Ok(())
    }
}

/// One `readdir` entry.
#[derive(Debug)]
pub struct Listed {
    pub offset: u64,
    pub name: Vec<u8>,
    pub ino: Ino,
    pub kind: fuser::FileType,
}

pub(super) fn io_errno(error: std::io::Error) -> Errno {
    Errno::from_raw(error.raw_os_error().unwrap_or(libc::EIO))
}

fn mtime(mtime: Mtime) -> SystemTime {
    system_time(mtime.seconds, i64::from(mtime.nanos))
}
