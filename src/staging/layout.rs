//! Where staging keeps things under a store root.
//!
//! ```text
//! ROOT/cas/staging/                          0711  stage dirs BuildStream expects here
//! ROOT/cas/staging/rebox-<pid>-<nonce>/      0711  one live daemon's dir (flock'd, see owner.rs)
//!     <n>/                                   0700  one stage's private parent, owned by its user
//!     <n>/root/                                    the stage path handed out (a mount point)
//!     <n>.scratch/{upper,work}/              0700  the stage's overlay upper and work dirs
//!     <n>.target                                   a client-chosen stage path, for crash clean-up
//!     farm-<n>/root/                               a farm being built (renamed into place)
//!     pool-<n>                                     a pool variant being written, where O_TMPFILE
//!                                                  is not supported (linked into place)
//!     trash-<n>/                                   unstaged dirs, deleted in the background
//! ROOT/cas/staging-pool/<hh>/<rest>.<mode>.<s>.<ns>.<uid>.<gid>   0700  staging variants of blobs
//! ROOT/cas/staging-farms/<hash>-<size>.<uid>.<gid>/root/          0700  hardlink farms of trees
//! ROOT/cas/staging-trees/<hash>-<size>                            0600  trees validated before
//!                                                                       (see remembered.rs)
//! ```
//! Everything a crashed daemon can leave behind is inside its own `rebox-*` dir (or is a mount
//! recorded there), so start-up clean-up never has to guess.

use std::path::{Path, PathBuf};

/// The staging paths of one store root.
#[derive(Debug, Clone)]
pub struct StagingLayout {
    staging: PathBuf,
    pool: PathBuf,
    farms: PathBuf,
    trees: PathBuf,
}

impl StagingLayout {
    /// The layout under `root` (the store root, `CACHE_DIR` for buildbox-casd).
    pub fn new(root: &Path) -> Self {
        // Stage paths are handed to clients whose cwd is not ours, and found again in
        // /proc/self/mountinfo, which shows them resolved: make them absolute and symlink-free.
        let root = std::fs::canonicalize(root)
            .or_else(|_| std::path::absolute(root))
            .unwrap_or_else(|_| root.to_owned());
        let cas = root.join("cas");
        Self {
            staging: cas.join("staging"),
            pool: cas.join("staging-pool"),
            farms: cas.join("staging-farms"),
            trees: cas.join("staging-trees"),
        }
    }

    /// `ROOT/cas/staging`: generated stage paths live below it.
    pub fn staging(&self) -> &Path {
        &self.staging
    }

    /// `ROOT/cas/staging-pool`: one copy of a blob per set of staged attributes.
    pub fn pool(&self) -> &Path {
        &self.pool
    }

    /// `ROOT/cas/staging-farms`: one hardlink farm per staged tree and owner.
    pub fn farms(&self) -> &Path {
        &self.farms
    }

    /// `ROOT/cas/staging-trees`: trees a one-shot runner validated before.
    pub fn trees(&self) -> &Path {
        &self.trees
    }
}

/// Prefix of the daemons' own dirs under `cas/staging`; nothing else there is touched.
pub const OWNER_PREFIX: &str = "rebox-";
