//! [`ActionCas`]: where an action's inputs come from and its outputs go. Running an action
//! ([`super::execute`]) only talks to this trait; [`super::LocalCasClient`] does it over a
//! LocalCAS server (rebox casd or buildbox-casd), [`super::EmbeddedCas`] in-process on the
//! embedded store with the same staging and capture code casd uses.

use std::path::{Path, PathBuf};

use super::error::ActionError;
use crate::capture::{CapturedFile, OutputFormat, Properties};
use crate::digest::{Digest, DigestFunction};
use crate::staging::{Owner, StagingMode};

/// The digests describing a captured output directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DirectoryDigests {
    /// The `Tree` message's digest, if the format asks for one.
    pub tree: Option<Digest>,
    /// The root `Directory` message's digest, if the format asks for one.
    pub root_directory: Option<Digest>,
}

/// How to stage an input root.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StageOptions {
    /// Who should own the staged files (`unixUID`/`unixGID`); `None` for the CAS's own user.
    pub owner: Option<Owner>,
    /// The staging mode to ask for.
    pub mode: StagingMode,
    /// Where to stage (a missing or empty dir); `None` lets the CAS choose.
    pub path: Option<PathBuf>,
}

/// The CAS one action is run against: reads its blobs, stages its input root (one at a time),
/// captures its outputs and stores its logs.
pub trait ActionCas {
    /// The digest function of the CAS.
    fn digest_function(&self) -> DigestFunction;

    /// Reads the blob `digest`; `what` names it in errors.
    fn read_blob(&mut self, digest: &Digest, what: &'static str) -> Result<Vec<u8>, ActionError>;

    /// Stages the tree `root`; returns the stage's host path.
    fn stage(&mut self, root: &Digest, options: &StageOptions) -> Result<PathBuf, ActionError>;

    /// Reads the blob `blob` and stages the tree `root`: at once where the CAS can overlap the
    /// two (one round trip instead of two), else one after the other. If the read fails after
    /// the stage was made, the stage stays for [`ActionCas::unstage`].
    fn read_blob_and_stage(
        &mut self,
        blob: &Digest,
        what: &'static str,
        root: &Digest,
        options: &StageOptions,
    ) -> Result<(Vec<u8>, PathBuf), ActionError> {
        let data = self.read_blob(blob, what)?;
        Ok((data, self.stage(root, options)?))
    }

    /// Unstages what [`ActionCas::stage`] staged (nothing if nothing is staged).
    fn unstage(&mut self) -> Result<(), ActionError>;

    /// Captures the directories at `paths` (absolute host paths inside the stage, free of
    /// symlinks), in order.
    fn capture_directories(
        &mut self,
        paths: &[PathBuf],
        properties: Properties,
        format: OutputFormat,
    ) -> Result<Vec<DirectoryDigests>, ActionError>;

    /// Captures the regular files at `paths` (as for directories), in order.
    fn capture_files(
        &mut self,
        paths: &[PathBuf],
        properties: Properties,
    ) -> Result<Vec<CapturedFile>, ActionError>;

    /// Stores the host file `path` (a log) as a blob.
    fn upload_file(&mut self, path: &Path) -> Result<Digest, ActionError>;

    /// Stores `data` as a blob.
    fn upload_blob(&mut self, data: Vec<u8>) -> Result<Digest, ActionError>;
}
