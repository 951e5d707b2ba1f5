//! Hardlink farms: a tree written once per (root digest, owner) as directories and hardlinks to
//! pool variants, then kept, unchanged, as the read-only lower layer of every stage of that tree.
//!
//! A farm is built in the daemon's own dir and renamed into place with RENAME_NOREPLACE, so a
//! farm visible under `staging-farms` is always complete, and concurrent builders of one farm
//! (other daemons included) all end up using the first one published. Nothing writes to a
//! published farm: stages see it through an overlay, which copies up before any change.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, RenameFlags, renameat2};
use nix::sys::stat::{UtimensatFlags, fstatat, utimensat};
use nix::sys::time::TimeSpec;
use rayon::prelude::*;

use super::attrs::Owner;
use super::build::{FileSource, TreeWriter, make_dir};
use super::error::{Result, StagingError};
use super::owner::{OwnerDir, create_dir_with_mode};
use super::plan::{Variant, first_path_of_blob};
use super::pool::{Pool, VariantName, open_dir_path};
use super::remove::remove_tree;
use super::sys::Sys;
use crate::digest::Digest;
use crate::store::Store;
use crate::tree::Tree;

/// A farm used less than this long ago is not marked used again.
const TOUCH_GRANULARITY_SECONDS: i64 = 60;

/// The farm dir's name for a tree staged for `owner`.
pub fn farm_key(root: &Digest, owner: Owner) -> String {
    format!("{}-{}.{}.{}", root.hash_hex(), root.size(), owner.uid, owner.gid)
}

/// `ROOT/cas/staging-farms`, open for `*at` calls.
#[derive(Debug)]
pub struct Farms {
    path: PathBuf,
    fd: OwnedFd,
}

/// Everything building a farm needs.
#[derive(Debug)]
pub struct FarmInputs<'a> {
    /// The syscalls tests watch.
    pub sys: &'a dyn Sys,
    /// The CAS the blobs come from.
    pub store: &'a Store,
    /// The pool the farm links to.
    pub pool: &'a Pool,
    /// Where the farm is built before it is published.
    pub owner_dir: &'a OwnerDir,
    /// The validated tree.
    pub tree: &'a Tree,
    /// Who owns the staged files.
    pub owner: Owner,
}

impl Farms {
    /// Opens (creating, owner-only) the farms dir at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        create_dir_with_mode(path, 0o700)?;
        Ok(Self { path: path.to_owned(), fd: open_dir_path(path)? })
    }

    /// The published farm's root dir for `key`, if there is one. Marks it used (the farm dir's
    /// mtime, which no stage sees, is its LRU clock), at most once a minute: a metadata write on
    /// every stage would cost more than the rest of a warm stage.
    pub fn lookup(&self, key: &str) -> Option<PathBuf> {
        let stat = fstatat(self.fd.as_fd(), key, AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
        let now = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        if now.saturating_sub(stat.st_mtime) >= TOUCH_GRANULARITY_SECONDS {
            let now = TimeSpec::UTIME_NOW;
            let _ = utimensat(self.fd.as_fd(), key, &now, &now, UtimensatFlags::NoFollowSymlink);
        }
        Some(self.root_of(key))
    }

    fn root_of(&self, key: &str) -> PathBuf {
        self.path.join(key).join("root")
    }

    /// Builds and publishes the farm `key`, making the pool variants it needs first. `variants`
    /// are the tree's (from [`super::plan::variants`]). Every blob a missing variant needs is
    /// checked to be in the CAS before anything is written.
    pub fn build(&self, key: &str, inputs: &FarmInputs<'_>, variants: &[Variant]) -> Result<PathBuf> {
        let FarmInputs { sys, store, pool, owner_dir, tree, owner } = *inputs;
        let missing: Vec<(&Variant, VariantName)> = variants
            .par_iter()
            .map(|v| (v, VariantName::new(&v.digest, &v.attrs)))
            .filter(|(_, name)| !pool.contains(name))
            .collect();
        let mut blobs: Vec<Digest> = missing.iter().map(|(v, _)| v.digest).collect();
        blobs.sort_unstable();
        blobs.dedup();
        // find_missing also marks them used: staging is a use.
        if let Some(absent) = store.find_missing(&blobs).first() {
            return Err(StagingError::MissingBlob {
                path: first_path_of_blob(tree, absent),
                digest: *absent,
            });
        }
        let started = std::time::Instant::now();
        missing
            .par_iter()
            .try_for_each(|(v, name)| pool.create(sys, store, owner_dir, &v.digest, &v.attrs, name))?;
        let pool_ms = started.elapsed().as_secs_f64() * 1e3;
        tracing::debug!(
            key,
            variants = variants.len(),
            new = missing.len(),
            pool_ms,
            "pool ready; linking the farm"
        );

        let tmp_name = format!("farm-{}", owner_dir.next_number());
        let tmp = owner_dir.path().join(&tmp_name);
        let built = (|| {
            let holder =
                make_dir(owner_dir.fd(), &tmp_name).map_err(|e| StagingError::io("create", &tmp, e))?;
            let base = tmp.join("root");
            let root = make_dir(holder.as_fd(), "root").map_err(|e| StagingError::io("create", &base, e))?;
            let writer = TreeWriter { tree, owner, source: FileSource::Pool(pool), sys, base: &base };
            writer.write(&root)?;
            drop::<File>(root);
            self.publish(owner_dir, &tmp_name, key)
        })();
        if built.is_err() || tmp.exists() {
            let _ = remove_tree(&tmp);
        }
        built
    }

    /// Renames the finished farm into place, or keeps the one another builder published first.
    fn publish(&self, owner_dir: &OwnerDir, tmp_name: &str, key: &str) -> Result<PathBuf> {
        match renameat2(owner_dir.fd(), tmp_name, self.fd.as_fd(), key, RenameFlags::RENAME_NOREPLACE) {
            Ok(()) => Ok(self.root_of(key)),
            Err(Errno::EEXIST | Errno::ENOTEMPTY) => {
                tracing::debug!(key, "another stage published this farm first; using it");
                Ok(self.root_of(key))
            }
            Err(errno) => Err(StagingError::errno("publish farm", self.path.join(key), errno)),
        }
    }
}
