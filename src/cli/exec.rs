//! `rebox exec [OPTIONS] -- CMD...`: runs a command in the sandbox on the embedded store, with no
//! daemon and no setup. The input root is uploaded (`--input-root DIR`, else empty), the action
//! run, its outputs written into the current directory and its stdout and stderr replayed; a
//! short summary goes to stderr. A successful result is cached in the store's ActionCache: an
//! identical second run is a cache hit that runs nothing (unless `--no-cache`). A failed one is
//! recorded for `rebox shell --last-failed` ([`last_failed`]).
//!
//! Exit status: the command's (124 when its `--timeout` expired); 125 when rebox itself failed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::Args;
use prost::Message;
use rebox_runner_spec::{BindMount, Outcome};
use rebox_runner_userns::UsernsRunner;

use crate::action::materialise::{Written, materialise};
use crate::action::{self, ActionError, EmbeddedCas, Mount, RunOptions, TIMEOUT_EXIT_CODE, last_failed};
use crate::action_cache::{ActionCache, Lookup};
use crate::casd::logging::{self, LogLevel};
use crate::digest::{Digest, DigestFunction};
use crate::proto::build::bazel::remote::execution::v2 as reapi;
use crate::tree::{UploadOptions, to_proto, upload_dir};

/// Exit status when rebox itself failed (as `docker run`'s).
const FAILURE: u8 = 125;

/// Host directories `--host-tools` binds read-only, when they exist.
const HOST_TOOLS: &[&str] = &["/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"];

/// `PATH` inside the sandbox with `--host-tools`.
const HOST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Options of `rebox exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Directory to upload as the input root (the sandbox's `/`) [default: an empty one]
    #[arg(long, value_name = "DIR")]
    input_root: Option<PathBuf>,
    /// Bind the host's /usr, /bin, /sbin and /lib* read-only, and set PATH, so host programs work
    #[arg(long)]
    host_tools: bool,
    /// Share the host's network (otherwise only loopback)
    #[arg(long)]
    network: bool,
    /// A path (relative to the input root) to capture and write into the current directory;
    /// repeatable
    #[arg(long = "output", value_name = "PATH")]
    outputs: Vec<String>,
    /// Set an environment variable in the sandbox (otherwise it is empty, but for PATH with
    /// --host-tools); repeatable
    #[arg(long = "env", short = 'e', value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// Kill the command after this many seconds
    #[arg(long, value_name = "SECONDS")]
    timeout: Option<u64>,
    /// Run even if the ActionCache has a result, and do not cache this one
    #[arg(long)]
    no_cache: bool,
    /// Store root [default: $XDG_CACHE_HOME/rebox, else ~/.cache/rebox]
    #[arg(long, env = "REBOX_CAS_DIR", value_name = "DIR")]
    cas_dir: Option<PathBuf>,
    /// The command and its arguments
    #[arg(value_name = "CMD", required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Runs `rebox exec`.
pub fn run(args: ExecArgs) -> ExitCode {
    // Errors only: the summary says what happened (staging's one-off notes, such as "no overlay
    // when not root: copying", would repeat on every run).
    logging::init(LogLevel::Error);
    match exec(&args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("rebox exec: error: {error}");
            ExitCode::from(FAILURE)
        }
    }
}

fn exec(args: &ExecArgs) -> Result<ExitCode, ActionError> {
    let root = args
        .cas_dir
        .clone()
        .or_else(super::cas::default_cas_dir)
        .ok_or_else(|| ActionError::Invalid("no store directory: pass --cas-dir, or set HOME".into()))?;
    let mut cas = EmbeddedCas::open(&root, DigestFunction::Sha256)?;
    let store = cas.store().clone();
    let (action, action_digest) = build_action(args, &store)?;
    let cache = ActionCache::new(store.clone());
    if !args.no_cache
        && let Ok(Lookup::Hit(result)) = cache.get(&action_digest)
    {
        eprintln!("rebox exec: cache hit for action {action_digest}: nothing ran");
        return finish(&store, &result, None);
    }
    let mut mounts = Vec::new();
    if args.host_tools {
        for dir in HOST_TOOLS.iter().map(Path::new).filter(|d| d.exists()) {
            let mount = BindMount { source: dir.to_owned(), target: dir.to_owned(), writable: false };
            mounts.push(Mount { mount, only_with_inject: None });
        }
    }
    let options = RunOptions { mounts, capture_logs: true, ..Default::default() };
    let cancel = action::signals::cancel_on_signals();
    let executed = match action::execute(&mut cas, &UsernsRunner::default(), &action, &options, &cancel) {
        Err(ActionError::Cancelled(signal)) => {
            eprintln!("rebox exec: stopped by signal {signal}");
            return Ok(ExitCode::from(128u8.saturating_add(signal as u8)));
        }
        executed => executed?,
    };
    let cacheable = executed.result.exit_code == 0 && executed.outcome != Outcome::TimedOut;
    if !cacheable {
        match last_failed::record(&store, &action, &options.mounts, executed.result.exit_code) {
            Ok(_) => eprintln!("rebox exec: recorded as the last failed action: rebox shell --last-failed"),
            Err(error) => eprintln!("rebox exec: warning: cannot record the failed action: {error}"),
        }
    }
    if cacheable
        && !args.no_cache
        && let Err(error) = cache.put(&action_digest, &executed.result)
    {
        eprintln!("rebox exec: warning: cannot cache the result: {error}");
    }
    finish(&store, &executed.result, Some(executed.outcome))
}

/// The Action (and its digest) for the command line, its Command and input root stored.
fn build_action(
    args: &ExecArgs,
    store: &crate::store::Store,
) -> Result<(reapi::Action, Digest), ActionError> {
    let input_root = match &args.input_root {
        Some(dir) => upload_dir(store, dir, UploadOptions::default())
            .map_err(|e| ActionError::capture(dir.display().to_string(), e))?,
        None => store.put_bytes(&reapi::Directory::default().encode_to_vec())?,
    };
    let mut environment: Vec<(String, String)> = Vec::new();
    if args.host_tools {
        environment.push(("PATH".into(), HOST_PATH.into()));
    }
    for pair in &args.env {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| ActionError::Invalid(format!("--env {pair:?} is not NAME=VALUE")))?;
        environment.retain(|(n, _)| n != name);
        environment.push((name.to_owned(), value.to_owned()));
    }
    environment.sort();
    let mut outputs = args.outputs.clone();
    outputs.sort();
    outputs.dedup();
    let mut properties = vec![("ISA", "x86-64"), ("OSFamily", "linux")];
    if args.network {
        properties.push(("network", "on"));
    }
    properties.sort();
    let platform = reapi::Platform {
        properties: properties
            .into_iter()
            .map(|(name, value)| reapi::platform::Property { name: name.into(), value: value.into() })
            .collect(),
    };
    let command = reapi::Command {
        arguments: args.command.clone(),
        environment_variables: environment
            .into_iter()
            .map(|(name, value)| reapi::command::EnvironmentVariable { name, value })
            .collect(),
        output_paths: outputs,
        platform: Some(platform.clone()),
        output_directory_format: reapi::command::OutputDirectoryFormat::DirectoryOnly as i32,
        ..Default::default()
    };
    let command_digest = store.put_bytes(&command.encode_to_vec())?;
    let action = reapi::Action {
        command_digest: Some(to_proto(&command_digest)),
        input_root_digest: Some(to_proto(&input_root)),
        timeout: args.timeout.map(|s| prost_types::Duration { seconds: s as i64, nanos: 0 }),
        do_not_cache: args.no_cache,
        // The host's tools are part of what the command sees, though not of its input root.
        salt: if args.host_tools { b"rebox exec --host-tools".to_vec() } else { Vec::new() },
        platform: Some(platform),
    };
    let digest = store.digest_function().hash_bytes(&action.encode_to_vec());
    Ok((action, digest))
}

/// Replays the logs, writes the outputs, prints the summary; the command's exit status.
fn finish(
    store: &crate::store::Store,
    result: &reapi::ActionResult,
    outcome: Option<Outcome>,
) -> Result<ExitCode, ActionError> {
    for (digest, mut sink) in [
        (&result.stdout_digest, Box::new(std::io::stdout()) as Box<dyn Write>),
        (&result.stderr_digest, Box::new(std::io::stderr())),
    ] {
        if let Some(digest) = digest {
            let digest = Digest::from_hex(&digest.hash, digest.size_bytes)
                .map_err(|source| ActionError::Digest { what: "log", source })?;
            let _ = sink.write_all(&store.read(&digest)?);
            let _ = sink.flush();
        }
    }
    let cwd = std::env::current_dir().map_err(|e| ActionError::io("find", "the current directory", e))?;
    let written = materialise(store, result, &cwd)?;
    summarise(result, outcome, &written);
    Ok(match outcome {
        Some(Outcome::TimedOut) => ExitCode::from(TIMEOUT_EXIT_CODE),
        _ => ExitCode::from(u8::try_from(result.exit_code).unwrap_or(FAILURE)),
    })
}

fn summarise(result: &reapi::ActionResult, outcome: Option<Outcome>, written: &[Written]) {
    let timed_out = if outcome == Some(Outcome::TimedOut) { " (timed out: killed)" } else { "" };
    eprintln!("rebox exec: exit code {}{timed_out}", result.exit_code);
    if let (Some(_), Some(m)) = (outcome, &result.execution_metadata) {
        let span = |from: &Option<prost_types::Timestamp>, to: &Option<prost_types::Timestamp>| {
            let time = |t: &Option<prost_types::Timestamp>| (*t).and_then(|t| SystemTime::try_from(t).ok());
            match (time(from), time(to)) {
                (Some(from), Some(to)) => to.duration_since(from).unwrap_or(Duration::ZERO),
                _ => Duration::ZERO,
            }
        };
        eprintln!(
            "rebox exec: stage {:.1?}, run {:.1?}, capture {:.1?}, total {:.1?}",
            span(&m.input_fetch_start_timestamp, &m.input_fetch_completed_timestamp),
            span(&m.execution_start_timestamp, &m.execution_completed_timestamp),
            span(&m.output_upload_start_timestamp, &m.output_upload_completed_timestamp),
            span(&m.worker_start_timestamp, &m.worker_completed_timestamp),
        );
    }
    for output in written {
        eprintln!("rebox exec: output {} ({} {})", output.path, output.kind, output.detail);
    }
}
