//! Writing a validated tree into a fresh, private directory: a farm (hardlinks to pool variants)
//! or a stage dir (copies of CAS objects, the fallback when no overlay can be mounted).
//!
//! Every entry is created with `*at` syscalls relative to the open directory it goes in, and
//! every directory is opened `O_NOFOLLOW` right after `mkdirat` made it: nothing is ever resolved
//! through a symlink, so no tree (even one that slipped past validation with a symlink and a
//! directory of the same name) can make staging write outside the directory it writes into.
//! Directories are filled in parallel; each gets its attributes last, once its entries (which
//! change its mtime) are in.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, UtimensatFlags, mkdirat, utimensat};
use nix::unistd::{Gid, Uid, fchownat, symlinkat};
use rayon::prelude::*;

use super::attrs::{Attrs, Owner};
use super::error::{Result, StagingError};
use super::pool::{Pool, VariantName, create_file, set_attrs};
use super::sys::Sys;
use crate::proto::build::bazel::remote::execution::v2 as reapi;
use crate::store::Store;
use crate::tree::Tree;

/// Files in one directory below this count are written on one thread.
const PARALLEL_FILES_MIN: usize = 128;

/// Where staged files come from.
#[derive(Debug, Clone, Copy)]
pub enum FileSource<'a> {
    /// Hardlinks to pool variants (a farm); a variant is copied only where a link can't be made
    /// (EMLINK: too many links to it already; EXDEV: another filesystem).
    Pool(&'a Pool),
    /// Copies of CAS objects, given their attributes.
    Store(&'a Store),
}

/// Writes one tree.
#[derive(Debug)]
pub struct TreeWriter<'a> {
    /// The tree.
    pub tree: &'a Tree,
    /// Who owns everything written.
    pub owner: Owner,
    /// Where file content comes from.
    pub source: FileSource<'a>,
    /// The syscalls that tests watch.
    pub sys: &'a dyn Sys,
    /// The directory written into, for messages.
    pub base: &'a Path,
}

impl TreeWriter<'_> {
    /// Writes the tree into the empty directory `dir` (open for reading), which gets the tree
    /// root's attributes.
    pub fn write(&self, dir: &File) -> Result<()> {
        self.write_dir(dir, self.tree.root_directory(), ".")
    }

    fn write_dir(&self, dir: &File, directory: &reapi::Directory, path: &str) -> Result<()> {
        let fd = dir.as_fd();
        if directory.files.len() < PARALLEL_FILES_MIN {
            directory.files.iter().try_for_each(|file| self.write_file(fd, file, path))?;
        } else {
            directory
                .files
                .par_iter()
                .with_min_len(PARALLEL_FILES_MIN / 2)
                .try_for_each(|file| self.write_file(fd, file, path))?;
        }
        for symlink in &directory.symlinks {
            self.write_symlink(fd, symlink, path)?;
        }
        directory.directories.par_iter().try_for_each(|node| {
            let child_path = join(path, &node.name);
            let child = self.child(node, &child_path)?;
            let child_dir =
                make_dir(fd, &node.name).map_err(|e| self.error("create directory", &child_path, e))?;
            self.write_dir(&child_dir, child, &child_path)
        })?;
        set_attrs(dir, &Attrs::of_directory(self.owner))
            .map_err(|e| StagingError::io("set the attributes of", self.base.join(path), e))
    }

    fn child(&self, node: &reapi::DirectoryNode, path: &str) -> Result<&reapi::Directory> {
        // Validation (Tree::read) guarantees both; stay an error, not a panic, all the same.
        let digest = parse_digest(node.digest.as_ref());
        digest.and_then(|d| self.tree.directory(&d)).ok_or_else(|| StagingError::BadProperty {
            path: path.to_owned(),
            reason: "directory digest is not part of the validated tree".to_owned(),
        })
    }

    fn write_file(&self, dir: BorrowedFd<'_>, node: &reapi::FileNode, path: &str) -> Result<()> {
        let file_path = || join(path, &node.name);
        let attrs = Attrs::of_file(node, self.owner, path)?;
        let digest = parse_digest(node.digest.as_ref()).ok_or_else(|| StagingError::BadProperty {
            path: file_path(),
            reason: "file digest is missing or malformed".to_owned(),
        })?;
        match self.source {
            FileSource::Pool(pool) => {
                let variant = VariantName::new(&digest, &attrs);
                match self.sys.link_at(pool.fd(), variant.as_str(), dir, &node.name) {
                    Ok(()) => Ok(()),
                    Err(errno @ (Errno::EMLINK | Errno::EXDEV)) => {
                        tracing::debug!(path = %file_path(), %errno, "cannot link a pool variant; copying it");
                        let source = open_read(pool.fd(), variant.as_str())
                            .map_err(|e| StagingError::io("open", pool.path().join(variant.as_str()), e))?;
                        self.copy_file(source, dir, node, &attrs, &file_path())
                    }
                    Err(errno) => Err(self.error("link", &file_path(), errno.into())),
                }
            }
            FileSource::Store(store) => {
                let object = store.object_path(&digest);
                let source = match File::open(&object) {
                    Ok(file) => file,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(StagingError::MissingBlob { path: file_path(), digest });
                    }
                    Err(e) => return Err(StagingError::io("open", object, e)),
                };
                self.copy_file(source, dir, node, &attrs, &file_path())
            }
        }
    }

    fn copy_file(
        &self,
        mut source: File,
        dir: BorrowedFd<'_>,
        node: &reapi::FileNode,
        attrs: &Attrs,
        path: &str,
    ) -> Result<()> {
        let mut file = create_file(dir, &node.name).map_err(|e| self.error("create", path, e))?;
        self.sys.copy(&mut source, &mut file).map_err(|e| self.error("copy into", path, e))?;
        set_attrs(&file, attrs).map_err(|e| self.error("set the attributes of", path, e))
    }

    fn write_symlink(&self, dir: BorrowedFd<'_>, node: &reapi::SymlinkNode, path: &str) -> Result<()> {
        let link_path = || join(path, &node.name);
        let attrs = Attrs::of_symlink(node, self.owner, path)?;
        symlinkat(node.target.as_str(), dir, node.name.as_str())
            .map_err(|e| self.error("create symlink", &link_path(), e.into()))?;
        if attrs.owner != Owner::current() {
            let (uid, gid) = (Uid::from_raw(attrs.owner.uid), Gid::from_raw(attrs.owner.gid));
            fchownat(dir, node.name.as_str(), Some(uid), Some(gid), AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(|e| self.error("chown symlink", &link_path(), e.into()))?;
        }
        let time = attrs.mtime.timespec();
        utimensat(dir, node.name.as_str(), &time, &time, UtimensatFlags::NoFollowSymlink)
            .map_err(|e| self.error("set the mtime of symlink", &link_path(), e.into()))
    }

    fn error(&self, action: &'static str, path: &str, source: std::io::Error) -> StagingError {
        StagingError::io(action, self.base.join(path), source)
    }
}

/// Makes the new directory `name` in `parent` and opens it, refusing to follow a symlink.
pub fn make_dir(parent: BorrowedFd<'_>, name: &str) -> std::io::Result<File> {
    mkdirat(parent, name, Mode::from_bits_truncate(0o700))?;
    open_dir(parent, name)
}

/// Opens the directory `name` in `parent` for reading, refusing to follow a symlink.
pub fn open_dir(parent: BorrowedFd<'_>, name: &str) -> std::io::Result<File> {
    let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    Ok(File::from(nix::fcntl::openat(parent, name, flags, Mode::empty())?))
}

fn open_read(dir: BorrowedFd<'_>, name: &str) -> std::io::Result<File> {
    let flags = OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    Ok(File::from(nix::fcntl::openat(dir, name, flags, Mode::empty())?))
}

pub use crate::tree::parse_digest;

/// `parent/name`, with the root written `.`.
pub fn join(parent: &str, name: &str) -> String {
    if parent == "." { name.to_owned() } else { format!("{parent}/{name}") }
}
