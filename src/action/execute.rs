//! Running one Action, phase by phase: fetch the Command, check everything, stage the input
//! root, create the working directory and output parents, run the sandbox, capture the outputs
//! and logs, unstage. Each phase is timestamped in `execution_metadata`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use rebox_runner_spec::{BindMount, Cancel, Completion, Outcome, Runner, Spec, Stdio};

use super::cas::{ActionCas, StageOptions};
use super::error::ActionError;
use super::metadata::{deadline_exceeded, now, statistics};
use super::outputs::collect;
use super::plan::Plan;
use super::platform::Platform;
use super::stage_fs::make_dirs;
use crate::proto::build::bazel::remote::execution::v2 as reapi;
use crate::staging::{Owner, StagingMode};

/// The sandbox's host name, as BuildBox sets it.
pub const HOSTNAME: &str = "buildbox";

/// A host path to bind into the sandbox, perhaps only for actions with a given property.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The mount.
    pub mount: BindMount,
    /// `--ro-bind-mount=CONTENT:...`: only when the action has the property `inject=CONTENT`.
    pub only_with_inject: Option<String>,
}

/// How to run an action, beyond what the action says.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Extra host paths to bind in, in order.
    pub mounts: Vec<Mount>,
    /// Write the command's stdout there (host path).
    pub stdout_file: Option<PathBuf>,
    /// Write the command's stderr there (host path).
    pub stderr_file: Option<PathBuf>,
    /// Store stdout and stderr as blobs (`stdout_digest`, `stderr_digest`); otherwise they go to
    /// the files given, or are inherited.
    pub capture_logs: bool,
    /// Record the sandbox's resource usage in `auxiliary_metadata`.
    pub collect_stats: bool,
    /// The CAS server's socket on the host, bound in at `remoteApisSocketPath` when asked.
    pub remote_apis_socket: Option<PathBuf>,
    /// The staging mode to ask for.
    pub staging_mode: StagingMode,
    /// Stage under this directory instead of where the CAS chooses.
    pub workspace: Option<PathBuf>,
}

/// A finished action.
#[derive(Debug, Clone)]
pub struct Executed {
    /// The result to write.
    pub result: reapi::ActionResult,
    /// How the command ended ([`Outcome::TimedOut`] when its timeout expired).
    pub outcome: Outcome,
}

/// Runs `action` against `cas` in `runner`'s sandbox. Returns an error when the action could not
/// be run (bad action, missing blob, sandbox failure, cancelled), never for its own failure.
pub fn execute<R: Runner>(
    cas: &mut dyn ActionCas,
    runner: &R,
    action: &reapi::Action,
    options: &RunOptions,
    cancel: &Cancel,
) -> Result<Executed, ActionError> {
    let mut metadata = reapi::ExecutedActionMetadata {
        worker: hostname(),
        queued_timestamp: Some(now()),
        worker_start_timestamp: Some(now()),
        input_fetch_start_timestamp: Some(now()),
        ..Default::default()
    };
    let (plan, root, mounts) = fetch_and_stage(cas, action, options, cancel)?;
    let platform = &plan.platform;
    let (uid, gid) = (
        platform.uid.unwrap_or_else(|| nix::unistd::getuid().as_raw()),
        platform.gid.unwrap_or_else(|| nix::unistd::getgid().as_raw()),
    );
    let owner = stage_owner(platform);
    let ran =
        run_staged(cas, runner, &plan, &root, options, mounts, (uid, gid), owner, &mut metadata, cancel);
    let unstaged = cas.unstage();
    let (mut result, outcome) = ran?;
    unstaged?;
    metadata.worker_completed_timestamp = Some(now());
    result.execution_metadata = Some(metadata);
    Ok(Executed { result, outcome })
}

/// Reads the Command, checks the action and stages its input root. When the Action carries its
/// platform (REAPI v2.2; BuildStream sends it), staging needs nothing from the Command, so the
/// read and the stage go out together; a Command refused afterwards unstages again.
fn fetch_and_stage(
    cas: &mut dyn ActionCas,
    action: &reapi::Action,
    options: &RunOptions,
    cancel: &Cancel,
) -> Result<(Plan, PathBuf, Vec<BindMount>), ActionError> {
    let function = cas.digest_function();
    let command_digest = Plan::command_digest(action, function)?;
    let stage_options = |platform: &Platform| StageOptions {
        owner: stage_owner(platform),
        mode: options.staging_mode,
        path: options.workspace.as_ref().map(|dir| dir.join(format!("rebox-run-{}", std::process::id()))),
    };
    let early = action.platform.as_ref().filter(|p| !p.properties.is_empty());
    let Some(early) = early else {
        let command = cas.read_blob(&command_digest, "command")?;
        let plan = Plan::new(action, &command, function)?;
        let mounts = mounts_for(&plan.platform, options)?;
        check_cancelled(cancel)?;
        let root = cas.stage(&plan.input_root, &stage_options(&plan.platform))?;
        return Ok((plan, root, mounts));
    };
    let platform = Platform::from_proto(Some(early))?;
    let mounts = mounts_for(&platform, options)?;
    let input_root = Plan::input_root(action, function)?;
    check_cancelled(cancel)?;
    let staged = cas.read_blob_and_stage(&command_digest, "command", &input_root, &stage_options(&platform));
    // The plan takes the Action's platform, the one staging was done for.
    let checked =
        staged.and_then(|(command, root)| Ok((Plan::new(action, &command, function)?, root, mounts)));
    if checked.is_err() {
        let _ = cas.unstage();
    }
    checked
}

/// Who owns the stage. The user-namespace runner maps the sandbox's uid and gid to this
/// process's effective ids: a stage owned by those is owned by the sandbox's ids inside. So with
/// unixUID/unixGID the stage's access_credentials are the host side of that map (a stage owned by
/// the sandbox ids themselves would show as unmapped "nobody" inside, and be unwritable).
fn stage_owner(platform: &Platform) -> Option<Owner> {
    (platform.uid.is_some() || platform.gid.is_some())
        .then(|| Owner { uid: nix::unistd::geteuid().as_raw(), gid: nix::unistd::getegid().as_raw() })
}

#[allow(clippy::too_many_arguments, reason = "one call site; the phases share all of these")]
fn run_staged<R: Runner>(
    cas: &mut dyn ActionCas,
    runner: &R,
    plan: &Plan,
    root: &Path,
    options: &RunOptions,
    mounts: Vec<BindMount>,
    (uid, gid): (u32, u32),
    owner: Option<Owner>,
    metadata: &mut reapi::ExecutedActionMetadata,
    cancel: &Cancel,
) -> Result<(reapi::ActionResult, Outcome), ActionError> {
    let owner = owner.map(|o| (o.uid, o.gid));
    make_dirs(root, &plan.working_directory, owner)?;
    for output in &plan.outputs {
        if let Some((_, parents)) = output.components.split_last() {
            make_dirs(root, parents, owner)?;
        }
    }
    metadata.input_fetch_completed_timestamp = Some(now());
    check_cancelled(cancel)?;

    // A private dir for logs only when they are captured without files given: creating and
    // removing a dir costs milliseconds on some disks, for nothing when logs are inherited.
    let needs_dir = options.capture_logs && (options.stdout_file.is_none() || options.stderr_file.is_none());
    let logs = match needs_dir {
        true => Some(
            tempfile::Builder::new()
                .prefix("rebox-run-logs")
                .tempdir()
                .map_err(|e| ActionError::io("create a directory for logs in", std::env::temp_dir(), e))?,
        ),
        false => None,
    };
    let log_path = |given: &Option<PathBuf>, name: &str| match (given, &logs) {
        (Some(path), _) => Some(path.clone()),
        (None, Some(logs)) if options.capture_logs => Some(logs.path().join(name)),
        (None, _) => None,
    };
    let stdout = log_path(&options.stdout_file, "stdout");
    let stderr = log_path(&options.stderr_file, "stderr");

    let mut spec = Spec::new(root, plan.arguments.iter().map(OsString::from).collect());
    spec.env = plan.environment.iter().map(|(n, v)| (OsString::from(n), OsString::from(v))).collect();
    spec.cwd = PathBuf::from(super::paths::absolute(&plan.working_directory));
    (spec.uid, spec.gid) = (uid, gid);
    spec.network = plan.platform.network;
    spec.hostname = HOSTNAME.to_owned();
    spec.mounts = mounts;
    spec.timeout = plan.timeout;
    spec.stdin = Stdio::Inherit;
    spec.stdout = stdout.clone().map_or(Stdio::Inherit, Stdio::File);
    spec.stderr = stderr.clone().map_or(Stdio::Inherit, Stdio::File);
    spec.personality = plan.platform.personality;

    metadata.execution_start_timestamp = Some(now());
    let Completion { outcome, usage } =
        runner.run(&spec, cancel).map_err(|e| ActionError::Sandbox(e.to_string()))?;
    metadata.execution_completed_timestamp = Some(now());
    if let Outcome::Cancelled(signal) = outcome {
        return Err(ActionError::Cancelled(signal));
    }

    metadata.output_upload_start_timestamp = Some(now());
    let mut result = reapi::ActionResult { exit_code: outcome.exit_code(), ..Default::default() };
    collect(cas, root, plan, &mut result)?;
    if options.capture_logs {
        for (path, digest) in [(&stdout, &mut result.stdout_digest), (&stderr, &mut result.stderr_digest)] {
            if let Some(path) = path {
                let uploaded = match std::fs::metadata(path) {
                    Ok(_) => cas.upload_file(path)?,
                    // Never created (the command could not start): an empty log.
                    Err(_) => cas.upload_blob(Vec::new())?,
                };
                *digest = Some(crate::tree::to_proto(&uploaded));
            }
        }
    }
    if options.collect_stats {
        metadata.auxiliary_metadata.push(statistics(&usage));
    }
    if outcome == Outcome::TimedOut {
        metadata.auxiliary_metadata.push(deadline_exceeded(plan.timeout.unwrap_or_default()));
    }
    metadata.output_upload_completed_timestamp = Some(now());
    Ok((result, outcome))
}

/// The bind mounts for `plan`: the options' (those whose `inject` condition holds) and the CAS
/// socket at `remoteApisSocketPath`.
fn mounts_for(platform: &Platform, options: &RunOptions) -> Result<Vec<BindMount>, ActionError> {
    let mut mounts: Vec<BindMount> = options
        .mounts
        .iter()
        .filter(|m| m.only_with_inject.as_ref().is_none_or(|content| platform.has("inject", content)))
        .map(|m| m.mount.clone())
        .collect();
    if let Some(target) = &platform.remote_apis_socket_path {
        let Some(source) = &options.remote_apis_socket else {
            return Err(ActionError::Platform {
                name: "remoteApisSocketPath".to_owned(),
                value: target.display().to_string(),
                reason: "there is no CAS socket to bind (it needs --remote=unix:PATH)".to_owned(),
            });
        };
        mounts.push(BindMount { source: source.clone(), target: target.clone(), writable: true });
    }
    Ok(mounts)
}

fn check_cancelled(cancel: &Cancel) -> Result<(), ActionError> {
    match cancel.cancelled() {
        Some(signal) => Err(ActionError::Cancelled(signal)),
        None => Ok(()),
    }
}

fn hostname() -> String {
    nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default()
}
