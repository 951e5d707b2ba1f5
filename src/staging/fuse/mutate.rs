//! Changes to a FUSE stage: new nodes, links, renames, removals and attribute changes, with
//! the semantics (and errors) of a POSIX filesystem. Permission checks are the kernel's
//! (`default_permissions`); what is checked here is what only the filesystem can know.

use std::fs::File;
use std::time::SystemTime;

use nix::errno::Errno;

use super::model::{Model, io_errno};
use super::node::{Content, Dir, Entries, Ino, Kind, Node, ROOT};

/// Who makes a new node, and with which mode bits (the kernel already applied the umask).
#[derive(Debug, Clone, Copy)]
pub struct Maker {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

/// An attribute change (`setattr`).
#[derive(Debug, Clone, Copy, Default)]
pub struct Change {
    pub mode: Option<u32>,
    pub uid: Option<u32>,
    pub gid: Option<u32>,
    pub size: Option<u64>,
    pub atime: Option<SystemTime>,
    pub mtime: Option<SystemTime>,
}

impl Model {
    /// Creates an empty regular file `name` in `parent`; returns it, open to read and write.
    pub fn create_file(&mut self, parent: Ino, name: &[u8], maker: Maker) -> Result<(Ino, File), Errno> {
        self.check_absent(parent, name)?;
        let ino = self.new_node(parent, Kind::File(Content::Scratch), maker, 1)?;
        let file = match self.scratch.create(ino) {
            Ok(file) => file,
            Err(error) => {
                self.nodes.remove(&ino);
                return Err(io_errno(error));
            }
        };
        self.link_new(parent, name, ino)?;
        Ok((ino, file))
    }

    /// `mknod`: a regular file, a FIFO or a socket (device nodes are refused: EPERM).
    pub fn mknod(&mut self, parent: Ino, name: &[u8], maker: Maker) -> Result<Ino, Errno> {
        let kind = match maker.mode & libc::S_IFMT {
            libc::S_IFREG | 0 => return self.create_file(parent, name, maker).map(|(ino, _)| ino),
            libc::S_IFIFO => fuser::FileType::NamedPipe,
            libc::S_IFSOCK => fuser::FileType::Socket,
            _ => return Err(Errno::EPERM),
        };
        self.check_absent(parent, name)?;
        let ino = self.new_node(parent, Kind::Special(kind), maker, 1)?;
        self.link_new(parent, name, ino)?;
        Ok(ino)
    }

    pub fn mkdir(&mut self, parent: Ino, name: &[u8], maker: Maker) -> Result<Ino, Errno> {
        self.check_absent(parent, name)?;
        let dir = Dir { parent, source: None, entries: Some(Entries::default()) };
        let ino = self.new_node(parent, Kind::Dir(dir), maker, 2)?;
        self.link_new(parent, name, ino)?;
        self.node_mut(parent)?.nlink += 1;
        Ok(ino)
    }

    pub fn symlink(&mut self, parent: Ino, name: &[u8], target: &[u8], maker: Maker) -> Result<Ino, Errno> {
        self.check_absent(parent, name)?;
        let maker = Maker { mode: 0o777, ..maker };
        let ino = self.new_node(parent, Kind::Symlink(target.to_vec()), maker, 1)?;
        self.link_new(parent, name, ino)?;
        Ok(ino)
    }

    /// A new name `name` in `parent` for the existing non-directory `ino`.
    pub fn link(&mut self, ino: Ino, parent: Ino, name: &[u8]) -> Result<(), Errno> {
        if self.node(ino)?.is_dir() {
            return Err(Errno::EPERM);
        }
        self.check_absent(parent, name)?;
        self.link_new(parent, name, ino)?;
        let node = self.node_mut(ino)?;
        node.nlink += 1;
        node.ctime = SystemTime::now();
        node.lookups += 1;
        Ok(())
    }

    pub fn unlink(&mut self, parent: Ino, name: &[u8]) -> Result<(), Errno> {
        let ino = self.entries(parent)?.get(name).ok_or(Errno::ENOENT)?;
        if self.node(ino)?.is_dir() {
            return Err(Errno::EISDIR);
        }
        self.entries(parent)?.remove(name);
        self.touch_dir(parent)?;
        self.drop_link(ino)
    }

    pub fn rmdir(&mut self, parent: Ino, name: &[u8]) -> Result<(), Errno> {
        let ino = self.entries(parent)?.get(name).ok_or(Errno::ENOENT)?;
        if !self.node(ino)?.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        if !self.entries(ino)?.is_empty() {
            return Err(Errno::ENOTEMPTY);
        }
        self.entries(parent)?.remove(name);
        self.touch_dir(parent)?;
        self.node_mut(parent)?.nlink -= 1;
        self.node_mut(ino)?.nlink = 0;
        self.free_if_unused(ino);
        Ok(())
    }

    /// `rename(2)`, with `RENAME_NOREPLACE` and `RENAME_EXCHANGE`.
    pub fn rename(
        &mut self,
        parent: Ino,
        name: &[u8],
        new_parent: Ino,
        new_name: &[u8],
        flags: u32,
    ) -> Result<(), Errno> {
        let ino = self.entries(parent)?.get(name).ok_or(Errno::ENOENT)?;
        let replaced = self.entries(new_parent)?.get(new_name);
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        if flags & libc::RENAME_NOREPLACE != 0 && replaced.is_some() {
            return Err(Errno::EEXIST);
        }
        if exchange {
            let other = replaced.ok_or(Errno::ENOENT)?;
            return self.exchange(parent, name, ino, new_parent, new_name, other);
        }
        if replaced == Some(ino) {
            return Ok(()); // Two names of one file: nothing to do, as POSIX says.
        }
        let moving_dir = self.node(ino)?.is_dir();
        if moving_dir {
            self.check_not_below(new_parent, ino)?;
        }
        if let Some(old) = replaced {
            match (moving_dir, self.node(old)?.is_dir()) {
                (true, false) => return Err(Errno::ENOTDIR),
                (false, true) => return Err(Errno::EISDIR),
                (true, true) if !self.entries(old)?.is_empty() => return Err(Errno::ENOTEMPTY),
                _ => {}
            }
        }
        self.entries(parent)?.remove(name);
        self.entries(new_parent)?.insert(new_name.to_vec(), ino);
        if let Some(old) = replaced {
            if self.node(old)?.is_dir() {
                self.node_mut(new_parent)?.nlink -= 1;
                self.node_mut(old)?.nlink = 0;
                self.free_if_unused(old);
            } else {
                self.drop_link(old)?;
            }
        }
        if moving_dir && parent != new_parent {
            self.set_parent(ino, new_parent)?;
            self.node_mut(parent)?.nlink -= 1;
            self.node_mut(new_parent)?.nlink += 1;
        }
        self.node_mut(ino)?.ctime = SystemTime::now();
        self.touch_dir(parent)?;
        self.touch_dir(new_parent)
    }

    fn exchange(
        &mut self,
        parent: Ino,
        name: &[u8],
        ino: Ino,
        new_parent: Ino,
        new_name: &[u8],
        other: Ino,
    ) -> Result<(), Errno> {
        if parent != new_parent {
            for (moved, to) in [(ino, new_parent), (other, parent)] {
                if self.node(moved)?.is_dir() {
                    self.check_not_below(to, moved)?;
                }
            }
        }
        self.entries(parent)?.insert(name.to_vec(), other);
        self.entries(new_parent)?.insert(new_name.to_vec(), ino);
        if parent != new_parent {
            for (moved, from, to) in [(ino, parent, new_parent), (other, new_parent, parent)] {
                if self.node(moved)?.is_dir() {
                    self.set_parent(moved, to)?;
                    self.node_mut(from)?.nlink -= 1;
                    self.node_mut(to)?.nlink += 1;
                }
            }
        }
        let now = SystemTime::now();
        self.node_mut(ino)?.ctime = now;
        self.node_mut(other)?.ctime = now;
        self.touch_dir(parent)?;
        self.touch_dir(new_parent)
    }

    /// Applies a `setattr`: a size change copies a staged file up first (truncating to zero
    /// copies nothing).
    pub fn set_attr(&mut self, ino: Ino, change: Change) -> Result<(), Errno> {
        if let Some(size) = change.size {
            if self.node(ino)?.is_dir() {
                return Err(Errno::EISDIR);
            }
            self.copy_up(ino, size == 0)?;
            self.scratch.open_file(ino).and_then(|file| file.set_len(size)).map_err(io_errno)?;
        }
        let now = SystemTime::now();
        let scratch = matches!(self.node(ino)?.kind, Kind::File(Content::Scratch));
        if scratch && (change.atime.is_some() || change.mtime.is_some()) {
            self.scratch.set_times(ino, change.atime, change.mtime).map_err(io_errno)?;
        }
        let node = self.node_mut(ino)?;
        if let Some(mode) = change.mode {
            node.perm = mode & 0o7777;
        }
        if let Some(uid) = change.uid {
            node.uid = uid;
        }
        if let Some(gid) = change.gid {
            node.gid = gid;
        }
        if !scratch {
            node.atime = change.atime.unwrap_or(node.atime);
            node.mtime = change.mtime.unwrap_or(node.mtime);
        }
        node.ctime = now;
        Ok(())
    }

    fn check_absent(&mut self, parent: Ino, name: &[u8]) -> Result<(), Errno> {
        match self.entries(parent)?.get(name) {
            Some(_) => Err(Errno::EEXIST),
            None => Ok(()),
        }
    }

    /// A node made by the action, with the setgid-directory rule for its group.
    fn new_node(&mut self, parent: Ino, kind: Kind, maker: Maker, nlink: u32) -> Result<Ino, Errno> {
        let (parent_perm, parent_gid) = {
            let node = self.node(parent)?;
            (node.perm, node.gid)
        };
        let inherit = parent_perm & libc::S_ISGID != 0;
        let mut perm = maker.mode & 0o7777;
        if inherit && matches!(kind, Kind::Dir(_)) {
            perm |= libc::S_ISGID;
        }
        let now = SystemTime::now();
        Ok(self.add(Node {
            kind,
            perm,
            uid: maker.uid,
            gid: if inherit { parent_gid } else { maker.gid },
            nlink,
            atime: now,
            mtime: now,
            ctime: now,
            lookups: 1,
            opens: 0,
        }))
    }

    fn link_new(&mut self, parent: Ino, name: &[u8], ino: Ino) -> Result<(), Errno> {
        self.entries(parent)?.insert(name.to_vec(), ino);
        self.touch_dir(parent)
    }

    /// One name of `ino` went.
    fn drop_link(&mut self, ino: Ino) -> Result<(), Errno> {
        let node = self.node_mut(ino)?;
        node.nlink = node.nlink.saturating_sub(1);
        node.ctime = SystemTime::now();
        self.free_if_unused(ino);
        Ok(())
    }

    fn touch_dir(&mut self, ino: Ino) -> Result<(), Errno> {
        let node = self.node_mut(ino)?;
        let now = SystemTime::now();
        node.mtime = now;
        node.ctime = now;
        Ok(())
    }

    fn set_parent(&mut self, ino: Ino, parent: Ino) -> Result<(), Errno> {
        match &mut self.node_mut(ino)?.kind {
            Kind::Dir(dir) => {
                dir.parent = parent;
                Ok(())
            }
            _ => Err(Errno::ENOTDIR),
        }
    }

    /// A directory can't move into itself or below itself (EINVAL).
    fn check_not_below(&self, mut dir: Ino, moved: Ino) -> Result<(), Errno> {
        loop {
            if dir == moved {
                return Err(Errno::EINVAL);
            }
            if dir == ROOT {
                return Ok(());
            }
            dir = match &self.node(dir)?.kind {
                Kind::Dir(d) => d.parent,
                _ => return Err(Errno::ENOTDIR),
            };
        }
    }
}
