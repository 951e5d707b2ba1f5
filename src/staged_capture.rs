//! Capturing out of a live stage: a file the action left as it was staged keeps the digest it
//! was staged with, so capture neither reads nor hashes it. This is the glue between staging and
//! capture, which know nothing of each other; casd's CaptureTree/CaptureFiles and the embedded
//! runner both capture through it.

use std::fs::Metadata;
use std::path::Path;

use crate::capture::{KnownDigests, KnownDirectory, Target};
use crate::digest::Digest;
use crate::staging::{self, Stages};

/// Files of a live stage that are unchanged since staging keep the digest they were staged
/// with, and directories of a FUSE stage the action never looked into keep theirs: capture asks
/// the stage before hashing or walking.
impl KnownDigests for staging::KnownDigests {
    fn lookup(&self, path: &Path, metadata: &Metadata) -> Option<Digest> {
        self.get(path, metadata)
    }

    fn directory(&self, _path: &Path, metadata: &Metadata) -> Option<KnownDirectory> {
        let subtree = staging::KnownDigests::directory(self, metadata)?;
        Some(KnownDirectory {
            digest: subtree.digest,
            directories: subtree.directories,
            files: subtree.files,
        })
    }
}

/// Runs `capture` with what the live stage of `stages` holding `target` knows, if one does.
pub fn with_known_digests<T>(
    stages: &Stages,
    target: &Target,
    capture: impl FnOnce(Option<&dyn KnownDigests>) -> T,
) -> T {
    let known = stages.known_digests(&target.host_path());
    capture(known.as_ref().map(|k| k as &dyn KnownDigests))
}
