//! Capturing a directory: its entries read through open descriptors (nothing is looked up by a
//! path that could be swapped for a symlink meanwhile), files hashed and stored in parallel,
//! Directory messages built and stored bottom-up.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::os::fd::AsFd;
use std::path::Path;
use std::sync::Mutex;

use nix::dir::{Dir, Type};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{Mode, SFlag, fstatat};
use prost::Message;
use rayon::prelude::*;

use super::file::{capture_file, kind_of, node_properties, open_regular};
use super::{CaptureError, CaptureOptions, KnownDigests};
use crate::digest::Digest;
use crate::proto::build::bazel::remote::execution::v2 as reapi;
use crate::store::Store;
use crate::tree::{MAX_DEPTH, to_proto};

/// One walk over a directory tree.
pub(crate) struct Walk<'a> {
    store: &'a Store,
    options: &'a CaptureOptions,
    known: Option<&'a dyn KnownDigests>,
    /// Every subdirectory's message with its digest, when a Tree message is wanted.
    subdirectories: Option<Mutex<Vec<(Digest, reapi::Directory)>>>,
}

/// What a directory entry is, from `readdir` (or `lstat` when the filesystem does not say).
enum Kind {
    File,
    Directory,
    Symlink,
}

/// A directory entry to capture.
struct Entry {
    name: String,
    c_name: CString,
    kind: Kind,
}

impl<'a> Walk<'a> {
    /// A walk that stores into `store`; with `collect`, it keeps every subdirectory's message for
    /// [`Walk::into_subdirectories`].
    pub(crate) fn new(
        store: &'a Store,
        options: &'a CaptureOptions,
        known: Option<&'a dyn KnownDigests>,
        collect: bool,
    ) -> Self {
        Self { store, options, known, subdirectories: collect.then(|| Mutex::new(Vec::new())) }
    }

    /// The messages of every subdirectory met (empty unless collecting), with their digests.
    pub(crate) fn into_subdirectories(self) -> Vec<(Digest, reapi::Directory)> {
        self.subdirectories.map(|m| m.into_inner().unwrap_or_else(|e| e.into_inner())).unwrap_or_default()
    }

    /// Captures the open directory `dir`, found at `host_path` and `depth` levels below the
    /// captured one; stores its Directory message and returns it with its digest.
    pub(crate) fn directory(
        &self,
        dir: &File,
        host_path: &Path,
        depth: usize,
    ) -> Result<(Digest, reapi::Directory), CaptureError> {
        let mut files = Vec::new();
        let mut directories = Vec::new();
        let mut symlinks = Vec::new();
        for entry in read_entries(dir, host_path)? {
            match entry.kind {
                Kind::File => files.push(entry),
                Kind::Directory => directories.push(entry),
                Kind::Symlink => symlinks.push(entry),
            }
        }
        let file_nodes =
            files.par_iter().map(|entry| self.file(dir, host_path, entry)).collect::<Result<Vec<_>, _>>()?;
        let directory_nodes = directories
            .par_iter()
            .map(|entry| self.subdirectory(dir, host_path, entry, depth + 1))
            .collect::<Result<Vec<_>, _>>()?;
        let symlink_nodes =
            symlinks.iter().map(|entry| symlink(dir, host_path, entry)).collect::<Result<Vec<_>, _>>()?;

        let mut directory = reapi::Directory {
            files: file_nodes,
            directories: directory_nodes,
            symlinks: symlink_nodes,
            node_properties: None,
        };
        // REAPI orders names by their UTF-8 bytes, which is `str`'s order.
        directory.files.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        directory.directories.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        directory.symlinks.sort_unstable_by(|a, b| a.name.cmp(&b.name));
        if self.options.properties.any() {
            let metadata = dir.metadata().map_err(|source| io("stat", host_path, source))?;
            directory.node_properties = node_properties(&metadata, &self.options.properties);
        }
        let digest = self.store.put_bytes(&directory.encode_to_vec()).map_err(|source| {
            CaptureError::Store { path: host_path.display().to_string(), source: Box::new(source) }
        })?;
        Ok((digest, directory))
    }

    fn file(&self, dir: &File, parent: &Path, entry: &Entry) -> Result<reapi::FileNode, CaptureError> {
        let path = parent.join(&entry.name);
        let (file, metadata) = open_regular(dir.as_fd(), &entry.c_name, &path.display().to_string())?;
        let captured = capture_file(
            self.store,
            self.options,
            self.known,
            (dir.as_fd(), &entry.c_name),
            &path,
            file,
            &metadata,
        )?;
        Ok(reapi::FileNode {
            name: entry.name.clone(),
            digest: Some(to_proto(&captured.digest)),
            is_executable: captured.is_executable,
            node_properties: captured.node_properties,
        })
    }

    fn subdirectory(
        &self,
        dir: &File,
        parent: &Path,
        entry: &Entry,
        depth: usize,
    ) -> Result<reapi::DirectoryNode, CaptureError> {
        let path = parent.join(&entry.name);
        if depth > MAX_DEPTH {
            return Err(CaptureError::TooDeep { path: path.display().to_string(), limit: MAX_DEPTH });
        }
        let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let subdirectory = match openat(dir.as_fd(), entry.c_name.as_c_str(), flags, Mode::empty()) {
            Ok(fd) => File::from(fd),
            // Replaced by a symlink or a file since the directory was read.
            Err(Errno::ELOOP | Errno::ENOTDIR) => {
                return Err(CaptureError::Changed { path: path.display().to_string() });
            }
            Err(errno) => return Err(io("open", &path, errno.into())),
        };
        if let Some(known) = self.known_directory(&subdirectory, &path) {
            let digest = known.digest;
            if let Some(subdirectories) = &self.subdirectories {
                subdirectories.lock().unwrap_or_else(|e| e.into_inner()).extend(known.directories);
            }
            return Ok(reapi::DirectoryNode { name: entry.name.clone(), digest: Some(to_proto(&digest)) });
        }
        let (digest, message) = self.directory(&subdirectory, &path, depth)?;
        if let Some(subdirectories) = &self.subdirectories {
            subdirectories.lock().unwrap_or_else(|e| e.into_inner()).push((digest, message));
        }
        Ok(reapi::DirectoryNode { name: entry.name.clone(), digest: Some(to_proto(&digest)) })
    }

    /// The open directory `dir` at `path`, if [`KnownDigests`] knows its capture and the store
    /// holds everything it names: it is then not walked at all.
    fn known_directory(&self, dir: &File, path: &Path) -> Option<crate::capture::KnownDirectory> {
        if self.options.properties.any() {
            return None; // Known directories are recorded without node properties.
        }
        let known = self.known?.directory(path, &dir.metadata().ok()?)?;
        let mut blobs = known.files.clone();
        blobs.extend(known.directories.iter().map(|(digest, _)| *digest));
        self.store.find_missing_to_upload(&blobs).is_empty().then_some(known)
    }
}

fn symlink(dir: &File, parent: &Path, entry: &Entry) -> Result<reapi::SymlinkNode, CaptureError> {
    let path = || parent.join(&entry.name).display().to_string();
    let target = readlinkat(dir.as_fd(), entry.c_name.as_c_str()).map_err(|errno| CaptureError::Io {
        action: "read symlink",
        path: path(),
        source: errno.into(),
    })?;
    let target = target
        .into_string()
        .map_err(|_| CaptureError::NotUtf8 { path: path(), what: "the symlink's target" })?;
    // Symlinks carry no node properties in buildbox-casd's captures, whatever was asked.
    Ok(reapi::SymlinkNode { name: entry.name.clone(), target, node_properties: None })
}

/// The entries of `dir` (but `.` and `..`), refusing special files.
fn read_entries(dir: &File, host_path: &Path) -> Result<Vec<Entry>, CaptureError> {
    // A descriptor of its own, so that reading entries moves no offset anyone else uses.
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    let fd = openat(dir.as_fd(), c".", flags, Mode::empty()).map_err(|e| io("open", host_path, e.into()))?;
    let mut reader = Dir::from_fd(fd).map_err(|e| io("read directory", host_path, e.into()))?;
    let mut entries = Vec::new();
    for entry in reader.iter() {
        let entry = entry.map_err(|e| io("read directory", host_path, e.into()))?;
        let c_name = entry.file_name();
        if matches!(c_name.to_bytes(), b"." | b"..") {
            continue;
        }
        let path = || host_path.join(c_name.to_string_lossy().as_ref()).display().to_string();
        let name =
            c_name.to_str().map_err(|_| CaptureError::NotUtf8 { path: path(), what: "the name" })?.to_owned();
        let kind = match entry.file_type() {
            Some(Type::File) => Kind::File,
            Some(Type::Directory) => Kind::Directory,
            Some(Type::Symlink) => Kind::Symlink,
            Some(Type::Fifo) => return Err(CaptureError::Special { path: path(), kind: "a FIFO" }),
            Some(Type::Socket) => return Err(CaptureError::Special { path: path(), kind: "a socket" }),
            Some(Type::CharacterDevice) => {
                return Err(CaptureError::Special { path: path(), kind: "a character device" });
            }
            Some(Type::BlockDevice) => {
                return Err(CaptureError::Special { path: path(), kind: "a block device" });
            }
            None => kind_from_lstat(dir, c_name, &path)?,
        };
        entries.push(Entry { name, c_name: c_name.to_owned(), kind });
    }
    Ok(entries)
}

/// The kind of an entry whose filesystem does not report types in `readdir`.
fn kind_from_lstat(dir: &File, name: &CStr, path: &dyn Fn() -> String) -> Result<Kind, CaptureError> {
    let stat = fstatat(dir.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW)
        .map_err(|errno| CaptureError::Io { action: "stat", path: path(), source: errno.into() })?;
    match SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT {
        SFlag::S_IFREG => Ok(Kind::File),
        SFlag::S_IFDIR => Ok(Kind::Directory),
        SFlag::S_IFLNK => Ok(Kind::Symlink),
        kind => Err(CaptureError::Special { path: path(), kind: kind_of(kind) }),
    }
}

fn io(action: &'static str, path: &Path, source: std::io::Error) -> CaptureError {
    CaptureError::Io { action, path: path.display().to_string(), source }
}
