//! The stage path: one the daemon makes under its own dir, or one the client chose.
//!
//! As buildbox-casd: a client path must be a missing directory (created, with its parents, and
//! removed at unstage) or an empty one (kept, emptied, at unstage); anything else is refused.
//! Generated stage paths are `<owner dir>/<n>/root`, where `<n>` is 0700 and owned by the stage's
//! user, so no other host user can reach the stage, whatever the stage root's own mode.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::unistd::{Gid, Uid, fchown};

use super::attrs::Owner;
use super::build::make_dir;
use super::error::{Context, Result, StagingError};
use super::owner::OwnerDir;
use super::reaper::Reaper;
use super::remove::empty_dir;

/// How the stage path came to be, which says what unstaging removes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetKind {
    /// `<owner dir>/<n>/root`, made by the daemon: `<n>` goes at unstage.
    Generated {
        /// The private parent, `<owner dir>/<n>`.
        parent: PathBuf,
    },
    /// A client path that did not exist: made, and removed at unstage (its parents stay).
    Created,
    /// A client's empty directory: kept, and emptied at unstage.
    Existing,
}

/// Where one stage is.
#[derive(Debug, Clone)]
pub struct Target {
    /// The stage directory, absolute and free of symlinks: the mount point.
    pub path: PathBuf,
    /// The path to answer the client with (a client path as it was given).
    pub reply: String,
    /// How it came to be.
    pub kind: TargetKind,
    /// `<owner dir>/<n>.target`, the record of a client path for crash clean-up.
    pub record: Option<PathBuf>,
}

/// The record file of stage `n`.
pub fn record_name(n: u64) -> String {
    format!("{n}.target")
}

impl Target {
    /// Makes `<owner dir>/<n>/root` for a stage owned by `owner`.
    pub fn generated(owner_dir: &OwnerDir, n: u64, owner: Owner) -> Result<Self> {
        let parent = owner_dir.path().join(n.to_string());
        let dir = make_dir(owner_dir.fd(), &n.to_string()).at("create", &parent)?;
        if owner != Owner::current() {
            fchown(&dir, Some(Uid::from_raw(owner.uid)), Some(Gid::from_raw(owner.gid)))
                .at("chown", &parent)?;
        }
        let path = parent.join("root");
        drop(make_dir(std::os::fd::AsFd::as_fd(&dir), "root").at("create", &path)?);
        let reply = path.to_string_lossy().into_owned();
        Ok(Self { path, reply, kind: TargetKind::Generated { parent }, record: None })
    }

    /// Checks (and if missing, makes) the client's `path`. The record of it is written first, so
    /// a crash at any later point leaves clean-up able to find it.
    pub fn client(path: &Path, owner_dir: &OwnerDir, n: u64) -> Result<Self> {
        let absolute = std::path::absolute(path).at("resolve", path)?;
        let reply = path.to_string_lossy().into_owned();
        let kind = match fs::metadata(&absolute) {
            Ok(metadata) if !metadata.is_dir() => {
                return Err(StagingError::BadTarget { path: absolute, reason: "it is not a directory" });
            }
            Ok(_) => {
                let mut entries = fs::read_dir(&absolute).at("list directory", &absolute)?;
                if entries.next().is_some() {
                    return Err(StagingError::BadTarget {
                        path: absolute,
                        reason: "the directory is not empty",
                    });
                }
                TargetKind::Existing
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => TargetKind::Created,
            Err(e) => return Err(StagingError::io("stat", absolute, e)),
        };
        let record = owner_dir.path().join(record_name(n));
        write_record(&record, &kind, &absolute)?;
        if kind == TargetKind::Created
            && let Err(e) = fs::create_dir_all(&absolute)
        {
            let _ = fs::remove_file(&record);
            return Err(StagingError::io("create", absolute, e));
        }
        // Mount and unmount the real directory, whatever symlinks lead to it.
        let path = fs::canonicalize(&absolute).at("resolve", &absolute)?;
        Ok(Self { path, reply, kind, record: Some(record) })
    }

    /// Removes what the stage left (after everything mounted on it is gone). `copied`: the tree
    /// was copied into the directory itself (not mounted over it).
    pub fn remove(&self, copied: bool, reaper: &Reaper) -> Result<()> {
        match &self.kind {
            TargetKind::Generated { parent } => reaper.remove(parent)?,
            TargetKind::Created => reaper.remove(&self.path)?,
            TargetKind::Existing if copied => empty_dir(&self.path)?,
            TargetKind::Existing => {}
        }
        if let Some(record) = &self.record {
            let _ = fs::remove_file(record);
        }
        Ok(())
    }
}

/// `created\n<path>` or `existing\n<path>`.
fn write_record(record: &Path, kind: &TargetKind, path: &Path) -> Result<()> {
    let word: &[u8] = if *kind == TargetKind::Created { b"created\n" } else { b"existing\n" };
    fs::write(record, [word, path.as_os_str().as_bytes()].concat()).at("write", record)
}

/// Reads a record: whether the daemon created the path, and the path.
pub fn read_record(record: &Path) -> Option<(bool, PathBuf)> {
    let bytes = fs::read(record).ok()?;
    let newline = bytes.iter().position(|&b| b == b'\n')?;
    let (word, path) = (&bytes[..newline], &bytes[newline + 1..]);
    let created = match word {
        b"created" => true,
        b"existing" => false,
        _ => return None,
    };
    Some((created, PathBuf::from(OsStr::from_bytes(path))))
}
