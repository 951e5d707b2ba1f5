//! [`EmbeddedCas`]: the store on disk, in this process, with casd's own staging ([`Stages`])
//! and capture ([`crate::capture`]): no daemon needed.

use std::path::{Path, PathBuf};

use super::cas::{ActionCas, DirectoryDigests, StageOptions};
use super::error::ActionError;
use crate::capture::{self, CaptureOptions, CapturedFile, KnownDigests, OutputFormat, Properties, Target};
use crate::digest::{Digest, DigestFunction};
use crate::staged_capture::with_known_digests;
use crate::staging::{StageId, StageRequest, Stages, cleanup_stale};
use crate::store::{Store, StoreError};

/// The embedded store and this process's stages in it.
#[derive(Debug)]
pub struct EmbeddedCas {
    store: Store,
    stages: Stages,
    staged: Option<StageId>,
}

impl EmbeddedCas {
    /// Opens (creating if needed) the store at `root`, after clearing what runs killed before
    /// they could clean up left under its staging dir.
    pub fn open(root: &Path, function: DigestFunction) -> Result<Self, ActionError> {
        let store = Store::open_unscanned(root, function)?;
        // What earlier runs left (their dirs, see `Drop`) goes in the background, while this
        // run works; whatever is not done when this process exits, the next one finishes.
        let stale_root = root.to_owned();
        let spawned = std::thread::Builder::new().name("rebox-stale".into()).spawn(move || {
            if let Err(error) = cleanup_stale(&stale_root) {
                tracing::warn!(%error, "cannot clean up stale stages");
            }
        });
        if let Err(error) = spawned {
            tracing::warn!(%error, "cannot start the stale-stage clean-up");
        }
        let stages = Stages::new(store.clone());
        // One action, whose inputs the caller put in the store: finding every blob before a
        // lazy stage would cost more than the stage.
        stages.set_lazy_blob_check(true);
        // Nor can it keep validated trees in memory for the next action: the store keeps them.
        stages.remember_trees();
        Ok(Self { store, stages, staged: None })
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Runs `capture` on `path`, with the digests its stage already knows (no re-hashing of
    /// what the action did not touch).
    fn capture_with<T>(
        &self,
        path: &Path,
        capture: impl FnOnce(&Target, Option<&dyn KnownDigests>) -> Result<T, capture::CaptureError>,
    ) -> Result<T, ActionError> {
        let target = Self::capture_target(path)?;
        with_known_digests(&self.stages, &target, |known| capture(&target, known))
            .map_err(|source| ActionError::capture(path.display().to_string(), source))
    }

    /// Fails if the action found an input blob missing from the store (its stage did not look
    /// for them all up front: see [`Stages::set_lazy_blob_check`]): the run is then void, as if
    /// staging had refused it.
    fn missing_input(&self) -> Result<(), ActionError> {
        match self.staged.and_then(|id| self.stages.missing_blob(id)) {
            Some(error) => Err(error.into()),
            None => Ok(()),
        }
    }

    fn capture_target(path: &Path) -> Result<Target, ActionError> {
        let text =
            path.to_str().ok_or_else(|| ActionError::Invalid(format!("{} is not UTF-8", path.display())))?;
        Target::resolve(None, text).map_err(|source| ActionError::capture(text, source))
    }
}

impl ActionCas for EmbeddedCas {
    fn digest_function(&self) -> DigestFunction {
        self.store.digest_function()
    }

    fn read_blob(&mut self, digest: &Digest, what: &'static str) -> Result<Vec<u8>, ActionError> {
        match self.store.read_verified(digest) {
            Ok(data) => Ok(data),
            Err(StoreError::NotFound { .. }) => Err(ActionError::MissingBlob { what, digest: *digest }),
            Err(error) => Err(error.into()),
        }
    }

    fn stage(&mut self, root: &Digest, options: &StageOptions) -> Result<PathBuf, ActionError> {
        let request = StageRequest {
            root: *root,
            path: options.path.clone(),
            credentials: options.owner,
            mode: options.mode,
        };
        let staged = self.stages.stage(&request)?;
        self.staged = Some(staged.id);
        Ok(staged.dir)
    }

    fn unstage(&mut self) -> Result<(), ActionError> {
        let missing = self.missing_input();
        if let Some(id) = self.staged.take() {
            // Unmounted now; its dirs are deleted in the background (see `Drop`).
            self.stages.unstage(id)?;
        }
        missing
    }

    fn capture_directories(
        &mut self,
        paths: &[PathBuf],
        properties: Properties,
        format: OutputFormat,
    ) -> Result<Vec<DirectoryDigests>, ActionError> {
        self.missing_input()?;
        let options = CaptureOptions { properties, move_files: false };
        paths
            .iter()
            .map(|path| {
                let captured = self.capture_with(path, |target, known| {
                    capture::capture_tree(&self.store, target, &options, format, known)
                })?;
                Ok(DirectoryDigests {
                    tree: captured.tree,
                    root_directory: format.root_directory().then_some(captured.root_directory),
                })
            })
            .collect()
    }

    fn capture_files(
        &mut self,
        paths: &[PathBuf],
        properties: Properties,
    ) -> Result<Vec<CapturedFile>, ActionError> {
        self.missing_input()?;
        let options = CaptureOptions { properties, move_files: false };
        paths
            .iter()
            .map(|path| {
                self.capture_with(path, |target, known| {
                    capture::capture_file(&self.store, target, &options, known)
                })
            })
            .collect()
    }

    fn upload_file(&mut self, path: &Path) -> Result<Digest, ActionError> {
        Ok(self.store.put_file(path, None)?)
    }

    fn upload_blob(&mut self, data: Vec<u8>) -> Result<Digest, ActionError> {
        Ok(self.store.put_bytes(&data)?)
    }
}

impl Drop for EmbeddedCas {
    fn drop(&mut self) {
        // Unstages anything left (an error path); this process's staging dir is deleted by the
        // reaper while the process lives and by the next clean-up after (`Stages::detach`).
        self.stages.detach();
    }
}
