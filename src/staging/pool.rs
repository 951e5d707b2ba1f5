//! The pool of staging variants: one private copy of a blob per set of attributes it is staged
//! with, shared by every farm that stages it so.
//!
//! CAS objects can't be the staged inodes: they are 0444, owned by the daemon, and their mtime
//! is the LRU clock, while a staged file must show the tree's mode, mtime and owner. So a blob
//! is copied once per (digest, mode, mtime, owner) actually staged, and hardlinked from then on.
//! A variant is written as an unnamed file (O_TMPFILE; a private temporary name where the
//! filesystem can't), given its attributes, then linked into place (no-clobber): a variant
//! visible in the pool is always complete, and two daemons making the same one at once both
//! succeed. Nothing ever writes to a variant once published.

use std::fs::File;
use std::io::{self, Seek};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, fchmod, fstatat, futimens, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, unlinkat};

use super::attrs::{Attrs, Owner};
use super::error::{Context, Result, StagingError};
use super::owner::{OwnerDir, create_dir_with_mode};
use super::sys::Sys;
use crate::anonymous_file;
use crate::digest::Digest;
use crate::store::Store;

/// `ROOT/cas/staging-pool`, open for `*at` calls.
#[derive(Debug)]
pub struct Pool {
    path: PathBuf,
    fd: OwnedFd,
    /// Which fan-out dirs are known to exist.
    fan_outs: [AtomicBool; 256],
}

impl Pool {
    /// Opens (creating, owner-only) the pool at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        create_dir_with_mode(path, 0o700)?;
        let fd = open_dir_path(path)?;
        Ok(Self { path: path.to_owned(), fd, fan_outs: [const { AtomicBool::new(false) }; 256] })
    }

    /// The pool's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The open pool dir.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// Whether the variant is in the pool.
    pub fn contains(&self, name: &VariantName) -> bool {
        fstatat(self.fd.as_fd(), name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW).is_ok()
    }

    /// Makes the variant from the CAS object of `digest` (which must be present: checked by the
    /// caller, before anything is written). `tmp` is where it is written before publication when
    /// the filesystem can't make unnamed files (O_TMPFILE).
    pub fn create(
        &self,
        sys: &dyn Sys,
        store: &Store,
        tmp: &OwnerDir,
        digest: &Digest,
        attrs: &Attrs,
        name: &VariantName,
    ) -> Result<()> {
        let object = store.object_path(digest);
        let mut source = match File::open(&object) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(StagingError::MissingBlob { path: name.as_str().to_owned(), digest: *digest });
            }
            Err(e) => return Err(StagingError::io("open", object, e)),
        };
        self.make_fan_out(name)?;
        let path = self.path.join(name.as_str());
        // An unnamed file, linked into place once complete: no name to create and remove.
        match anonymous_file::create(self.fd.as_fd(), name.fan_out(), 0o600) {
            Ok(Some(mut file)) => {
                sys.copy(&mut source, &mut file).at("copy the CAS object into", &path)?;
                set_attrs(&file, attrs).at("set the attributes of", &path)?;
                match sys.link_file(&file, self.fd.as_fd(), name.as_str()) {
                    // Another stage published the same variant: it is complete, use it.
                    Ok(()) | Err(Errno::EEXIST) => Ok(()),
                    // No /proc to name the file by: write it again, named.
                    Err(Errno::ENOENT) => self.create_named(sys, &mut source, tmp, attrs, name),
                    Err(errno) => Err(StagingError::errno("link into the pool", path, errno)),
                }
            }
            Ok(None) => self.create_named(sys, &mut source, tmp, attrs, name),
            Err(errno) => Err(StagingError::errno("create a file in", self.path.join(name.fan_out()), errno)),
        }
    }

    /// [`Pool::create`] through a named temporary file in `tmp`.
    fn create_named(
        &self,
        sys: &dyn Sys,
        source: &mut File,
        tmp: &OwnerDir,
        attrs: &Attrs,
        name: &VariantName,
    ) -> Result<()> {
        source.rewind().at("rewind", &self.path.join(name.as_str()))?;
        let tmp_name = format!("pool-{}", tmp.next_number());
        let tmp_path = tmp.path().join(&tmp_name);
        let mut file = create_file(tmp.fd(), &tmp_name).at("create", &tmp_path)?;
        let written = (|| {
            sys.copy(source, &mut file).at("copy the CAS object into", &tmp_path)?;
            set_attrs(&file, attrs).at("set the attributes of", &tmp_path)?;
            match sys.link_at(tmp.fd(), &tmp_name, self.fd.as_fd(), name.as_str()) {
                Ok(()) | Err(Errno::EEXIST) => Ok(()),
                Err(errno) => {
                    Err(StagingError::errno("link into the pool", self.path.join(name.as_str()), errno))
                }
            }
        })();
        // The temporary name goes either way; a crash leaves it in the owner dir for clean-up.
        let _ = unlinkat(tmp.fd(), tmp_name.as_str(), UnlinkatFlags::NoRemoveDir);
        written
    }

    /// Makes the variant's fan-out dir, once per pool.
    fn make_fan_out(&self, name: &VariantName) -> Result<()> {
        let index = usize::from(u8::from_str_radix(name.fan_out(), 16).unwrap_or(0));
        if self.fan_outs[index].load(Ordering::Relaxed) {
            return Ok(());
        }
        match mkdirat(self.fd.as_fd(), name.fan_out(), Mode::from_bits_truncate(0o700)) {
            Ok(()) | Err(Errno::EEXIST) => {
                self.fan_outs[index].store(true, Ordering::Relaxed);
                Ok(())
            }
            Err(errno) => Err(StagingError::errno("create directory", self.path.join(name.fan_out()), errno)),
        }
    }
}

/// A variant's path relative to the pool: `<hh>/<rest of hash>.<mode>.<s>.<ns>.<uid>.<gid>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VariantName(String);

impl VariantName {
    /// The name of `digest` staged with `attrs`.
    pub fn new(digest: &Digest, attrs: &Attrs) -> Self {
        let hex = digest.hash_hex();
        let (fan_out, rest) = hex.split_at(2);
        let Attrs { mode, mtime, owner: Owner { uid, gid } } = attrs;
        Self(format!("{fan_out}/{rest}.{mode:o}.{}.{}.{uid}.{gid}", mtime.seconds, mtime.nanos))
    }

    /// The relative path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The fan-out dir (the first two hex digits).
    pub fn fan_out(&self) -> &str {
        &self.0[..2]
    }
}

/// Gives an open file its staged owner, mode and times (atime = mtime, for reproducibility).
pub fn set_attrs(file: &File, attrs: &Attrs) -> io::Result<()> {
    if attrs.owner != Owner::current() {
        fchown(file, Some(Uid::from_raw(attrs.owner.uid)), Some(Gid::from_raw(attrs.owner.gid)))?;
    }
    // After fchown, which may clear mode bits.
    fchmod(file, Mode::from_bits_truncate(attrs.mode))?;
    let time = attrs.mtime.timespec();
    futimens(file, &time, &time)?;
    Ok(())
}

/// Creates a new owner-only file `name` in `dir`, never following a symlink.
pub fn create_file(dir: BorrowedFd<'_>, name: &str) -> io::Result<File> {
    let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_WRONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = nix::fcntl::openat(dir, name, flags, Mode::from_bits_truncate(0o600))?;
    Ok(File::from(fd))
}

/// Opens a directory (`O_PATH`) for `*at` calls.
pub fn open_dir_path(path: &Path) -> Result<OwnedFd> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
    nix::fcntl::open(path, flags, Mode::empty()).at("open directory", path)
}
