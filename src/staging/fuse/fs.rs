//! The FUSE requests of a stage, answered from its [`Model`] and [`Handles`].

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use fuser::{
    AccessFlags, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner,
    OpenFlags, RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry,
    ReplyLseek, ReplyOpen, ReplyStatfs, ReplyWrite, Request, TimeOrNow, WriteFlags,
};
use nix::errno::Errno;

use super::handles::{Handles, Io};
use super::model::{Model, io_errno};
use super::mutate::{Change, Maker};
use super::node::{Content, Ino};

/// How long the kernel may keep names and attributes: every change goes through this
/// filesystem, so the kernel's caches only go stale by what the kernel itself did.
const TTL: Duration = Duration::from_secs(60);

/// The largest write the kernel sends in one request.
const MAX_WRITE: u32 = 1 << 20;

/// The state one stage's request threads share.
#[derive(Debug)]
pub struct Shared {
    pub model: Mutex<Model>,
    handles: Mutex<Handles>,
    /// Whether to ask for passthrough, then whether the kernel gave it.
    passthrough: AtomicBool,
}

impl Shared {
    pub fn new(model: Model, passthrough: bool) -> Arc<Self> {
        Arc::new(Self {
            model: Mutex::new(model),
            handles: Mutex::default(),
            passthrough: AtomicBool::new(passthrough),
        })
    }

    pub fn model(&self) -> MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn handles(&self) -> MutexGuard<'_, Handles> {
        self.handles.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the kernel agreed to pass I/O through to backing files.
    pub fn passthrough(&self) -> bool {
        self.passthrough.load(Ordering::Relaxed)
    }
}

/// A stage's filesystem, as fuser drives it.
#[derive(Debug)]
pub struct StageFs(pub Arc<Shared>);

fn errno(e: Errno) -> fuser::Errno {
    fuser::Errno::from_i32(e as i32)
}

fn maker(req: &Request, mode: u32) -> Maker {
    Maker { uid: req.uid(), gid: req.gid(), mode }
}

fn time(time: Option<TimeOrNow>) -> Option<SystemTime> {
    time.map(|t| match t {
        TimeOrNow::SpecificTime(time) => time,
        TimeOrNow::Now => SystemTime::now(),
    })
}

/// The attributes of a negative entry (only its inode number, 0, matters).
fn absent() -> fuser::FileAttr {
    fuser::FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: SystemTime::UNIX_EPOCH,
        mtime: SystemTime::UNIX_EPOCH,
        ctime: SystemTime::UNIX_EPOCH,
        crtime: SystemTime::UNIX_EPOCH,
        kind: fuser::FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 0,
        flags: 0,
    }
}

/// Whether an open may change the file.
fn writes(flags: i32) -> bool {
    flags & libc::O_ACCMODE != libc::O_RDONLY || flags & libc::O_TRUNC != 0
}

impl StageFs {
    fn entry(&self, reply: ReplyEntry, made: Result<Ino, Errno>) {
        let attr = made.and_then(|ino| self.0.model().attr(ino));
        match attr {
            Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    /// Opens `ino` for a request with `flags`: copies it up first if the open may write.
    fn open_file(&self, ino: Ino, flags: i32) -> Result<(File, Content), Errno> {
        let mut model = self.0.model();
        if writes(flags) {
            model.copy_up(ino, false)?;
        }
        let opened = model.open_content(ino)?;
        model.node_mut(ino)?.opens += 1;
        Ok(opened)
    }

    /// Registers the open of `ino` and chooses how its I/O is done: a passthrough backing id,
    /// or `None` with the flags for I/O through the daemon.
    fn register(
        &self,
        ino: Ino,
        file: File,
        content: Content,
        register: impl FnOnce(&File) -> std::io::Result<fuser::BackingId>,
    ) -> (u64, Option<Arc<fuser::BackingId>>, FopenFlags) {
        let file = Arc::new(file);
        let scratch = content == Content::Scratch;
        let mut handles = self.0.handles();
        // A staged file's bytes never change until copied up: its page cache stays valid.
        let cached = if scratch { FopenFlags::empty() } else { FopenFlags::FOPEN_KEEP_CACHE };
        if !self.0.passthrough() {
            return (handles.add(ino, file, scratch, None), None, cached);
        }
        let (backing, flags) = match handles.io_for(ino, scratch) {
            Io::Passthrough(id) => (id, FopenFlags::empty()),
            Io::Direct(id) => (id, FopenFlags::FOPEN_DIRECT_IO),
            Io::Register => match register(&file) {
                Ok(id) => (Arc::new(id), FopenFlags::empty()),
                Err(error) => {
                    // Not passed through (nor, then, any open of this inode while this lasts).
                    tracing::warn!(%error, "cannot pass file I/O through to the kernel; serving it instead");
                    return (handles.add(ino, file, scratch, None), None, cached);
                }
            },
        };
        let fh = handles.add(ino, file, scratch, Some(backing.clone()));
        (fh, Some(backing), flags)
    }

    /// The file `fh` reads and writes: the inode's scratch file once there is one.
    fn handle(&self, fh: FileHandle) -> Result<Arc<File>, Errno> {
        let (ino, file, scratch) = self.0.handles().get(fh.0).ok_or(Errno::EBADF)?;
        if scratch {
            return Ok(file);
        }
        let model = self.0.model();
        match model.node(ino)?.kind {
            super::node::Kind::File(Content::Scratch) => {
                let file = Arc::new(model.scratch.open_file(ino).map_err(io_errno)?);
                drop(model);
                self.0.handles().use_scratch(fh.0, file.clone());
                Ok(file)
            }
            _ => Ok(file),
        }
    }
}

impl Filesystem for StageFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        for flag in [
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
            InitFlags::FUSE_NO_EXPORT_SUPPORT,
        ] {
            let _ = config.add_capabilities(flag);
        }
        let _ = config.set_max_write(MAX_WRITE);
        let _ = config.set_time_granularity(Duration::from_nanos(1));
        let passthrough = self.0.passthrough()
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            // Backing files may sit on an overlay (a container's root): allow one level below.
            && config.set_max_stack_depth(2).is_ok();
        if passthrough {
            let _ = config.add_capabilities(InitFlags::FUSE_DIRECT_IO_ALLOW_MMAP);
        }
        self.0.passthrough.store(passthrough, Ordering::Relaxed);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let found = self.0.model().lookup(parent.0, name.as_bytes());
        match found {
            // Inode 0: "no such entry", which the kernel may remember as long as a name (every
            // name is made through the kernel, which then forgets the negative entry). Saves a
            // round trip before each file an action creates.
            Err(Errno::ENOENT) => reply.entry(&TTL, &absent(), Generation(0)),
            found => self.entry(reply, found),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.0.model().forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.0.model().attr(ino.0) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let change = Change { mode, uid, gid, size, atime: time(atime), mtime: time(mtime) };
        let mut model = self.0.model();
        match model.set_attr(ino.0, change).and_then(|()| model.attr(ino.0)) {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.0.model().readlink(ino.0) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mknod(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _rdev: u32,
        reply: ReplyEntry,
    ) {
        let made = self.0.model().mknod(parent.0, name.as_bytes(), maker(req, mode));
        self.entry(reply, made);
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, _umask: u32, reply: ReplyEntry) {
        let made = self.0.model().mkdir(parent.0, name.as_bytes(), maker(req, mode));
        self.entry(reply, made);
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.0.model().unlink(parent.0, name.as_bytes()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.0.model().rmdir(parent.0, name.as_bytes()) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        let made = self.0.model().symlink(
            parent.0,
            link_name.as_bytes(),
            target.as_os_str().as_bytes(),
            maker(req, 0),
        );
        self.entry(reply, made);
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let renamed =
            self.0.model().rename(parent.0, name.as_bytes(), newparent.0, newname.as_bytes(), flags.bits());
        match renamed {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        let linked = self.0.model().link(ino.0, newparent.0, newname.as_bytes()).map(|()| ino.0);
        self.entry(reply, linked);
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let (file, content) = match self.open_file(ino.0, flags.0) {
            Ok(opened) => opened,
            Err(e) => return reply.error(errno(e)),
        };
        let (fh, backing, fopen) =
            self.register(ino.0, file, content, |file| reply.open_backing(file.as_fd()));
        match backing {
            Some(id) => reply.opened_passthrough(FileHandle(fh), fopen, &id),
            None => reply.opened(FileHandle(fh), fopen),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        _umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        let made = {
            let mut model = self.0.model();
            model.create_file(parent.0, name.as_bytes(), maker(req, mode)).and_then(|(ino, file)| {
                model.node_mut(ino)?.opens += 1;
                Ok((ino, file, model.attr(ino)?))
            })
        };
        let (ino, file, attr) = match made {
            Ok(made) => made,
            Err(e) => return reply.error(errno(e)),
        };
        let (fh, backing, fopen) =
            self.register(ino, file, Content::Scratch, |file| reply.open_backing(file.as_fd()));
        match backing {
            Some(id) => reply.created_passthrough(&TTL, &attr, Generation(0), FileHandle(fh), fopen, &id),
            None => reply.created(&TTL, &attr, Generation(0), FileHandle(fh), fopen),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let file = match self.handle(fh) {
            Ok(file) => file,
            Err(e) => return reply.error(errno(e)),
        };
        let mut buffer = vec![0; size as usize];
        let mut filled = 0;
        while filled < buffer.len() {
            match file.read_at(&mut buffer[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return reply.error(errno(io_errno(e))),
            }
        }
        reply.data(&buffer[..filled]);
    }

    fn write(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let written = self.handle(fh).and_then(|file| file.write_all_at(data, offset).map_err(io_errno));
        match written {
            Ok(()) => reply.written(data.len() as u32),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing to do on close(2) (no locks, no write-back): ENOSYS tells the kernel never to
        // ask again, which saves a round trip on every close.
        reply.error(fuser::Errno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        let closed = self.0.handles().remove(fh.0);
        if let Some(ino) = closed {
            let mut model = self.0.model();
            if let Ok(node) = model.node_mut(ino) {
                node.opens = node.opens.saturating_sub(1);
            }
            model.free_if_unused(ino);
        }
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        // A stage is thrown away when it ends: like an overlay mounted `volatile`, never sync.
        reply.ok();
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let listed = self.0.model().list(ino.0, offset, 512);
        match listed {
            Ok(listed) => {
                for entry in listed {
                    if reply.add(INodeNo(entry.ino), entry.offset, entry.kind, OsStr::from_bytes(&entry.name))
                    {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fsyncdir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.0.model().scratch.statvfs() {
            Ok(s) => reply.statfs(
                s.blocks(),
                s.blocks_free(),
                s.blocks_available(),
                s.files(),
                s.files_free(),
                s.block_size() as u32,
                s.name_max() as u32,
                s.fragment_size() as u32,
            ),
            Err(e) => reply.error(errno(io_errno(e))),
        }
    }

    fn getxattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, _size: u32, reply: fuser::ReplyXattr) {
        // No extended attributes: ENOSYS makes the kernel stop asking (and answer EOPNOTSUPP),
        // which spares the `security.capability` lookup it makes before every write.
        reply.error(fuser::Errno::ENOSYS);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, _size: u32, reply: fuser::ReplyXattr) {
        reply.error(fuser::Errno::ENOSYS);
    }

    fn setxattr(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _name: &OsStr,
        _value: &[u8],
        _flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        reply.error(fuser::Errno::ENOSYS);
    }

    fn removexattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, reply: ReplyEmpty) {
        reply.error(fuser::Errno::ENOSYS);
    }

    fn access(&self, _req: &Request, _ino: INodeNo, _mask: AccessFlags, reply: ReplyEmpty) {
        // Mounted with `default_permissions`: the kernel checks; this is only asked by old kernels.
        reply.ok();
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        let done = self.handle(fh).and_then(|file| {
            let mode = nix::fcntl::FallocateFlags::from_bits_truncate(mode);
            nix::fcntl::fallocate(file.as_fd(), mode, offset as i64, length as i64)
        });
        match done {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn lseek(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: i64,
        whence: i32,
        reply: ReplyLseek,
    ) {
        let whence = match whence {
            libc::SEEK_DATA => nix::unistd::Whence::SeekData,
            libc::SEEK_HOLE => nix::unistd::Whence::SeekHole,
            libc::SEEK_END => nix::unistd::Whence::SeekEnd,
            libc::SEEK_CUR => nix::unistd::Whence::SeekCur,
            _ => nix::unistd::Whence::SeekSet,
        };
        let found = self.handle(fh).and_then(|file| nix::unistd::lseek(file.as_fd(), offset, whence));
        match found {
            Ok(position) => reply.offset(position),
            Err(e) => reply.error(errno(e)),
        }
    }
}
