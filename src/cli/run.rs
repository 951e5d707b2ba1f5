//! `rebox run`, also run as `buildbox-run`: runs one REAPI Action in a sandbox and writes its
//! ActionResult. Every flag of buildbox-run 1.4.25 is accepted, in the `--flag=value` and the
//! `--flag value` form; those for features rebox does not have (TLS, retries, remote asset,
//! OCI...) are accepted and ignored (logged at debug level).
//!
//! With `--remote=URL` the inputs come from and the outputs go to that LocalCAS server (rebox
//! casd or buildbox-casd); without it, the embedded store (`--cas-dir`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use prost::Message;
use rebox_runner_spec::{BindMount, Outcome};
use rebox_runner_userns::UsernsRunner;

use super::cas_flags::CasFlags;
use crate::action::{
    self, ActionCas, ActionError, CasConnection, EmbeddedCas, FetchingCas, LocalCasClient, Mount, Plan,
    RunOptions, TIMEOUT_EXIT_CODE, last_failed,
};
use crate::casd::logging::{self, LogLevel};
use crate::digest::DigestFunction;
use crate::grpc::client::unix_socket_path;

/// The buildbox-run version whose command line rebox accepts.
pub const BUILDBOX_RUN_VERSION: &str = "1.4.25";

/// What `--capabilities` prints, one a line: what BuildStream looks for, and `network`.
pub const CAPABILITIES: &[&str] = &[
    "no-logs-capture",
    "bind-mount",
    "platform:OSFamily=linux",
    "platform:ISA=x86-32",
    "platform:ISA=x86-64",
    "platform:unixUID",
    "platform:unixGID",
    "platform:network=on",
    "platform:remoteApisSocketPath",
];

const AFTER_HELP: &str = "\
Exit status: 0 when the action ran, whatever its own exit code (that is in the ActionResult);
124 when the action's timeout expired (the sandbox was killed, the ActionResult written, with a
google.rpc.Status DEADLINE_EXCEEDED in execution_metadata.auxiliary_metadata); 128+N when the
runner was stopped by signal N (SIGTERM, SIGINT: the sandbox is killed and the stage removed);
1 with one line on stderr when the action could not be run (bad flags or action, missing blobs,
an unsupported platform property, a sandbox failure). With --interactive, the command's own exit
code instead of 0.

When stdin is the caller's terminal (--interactive, or a caller passing its terminal through, as
`bst shell` does), the command runs in the caller's session as the terminal's foreground job:
Ctrl-C and Ctrl-Z reach it (a shell has job control), and the terminal's modes and foreground
group are restored when it ends.

On the embedded store, an action whose command fails is recorded for `rebox shell --last-failed`.

--collect-execution-stats adds a rebox.v1.ExecutionStatistics message (user and system time,
max RSS, page faults, context switches of the whole sandbox) to auxiliary_metadata.";

/// Options of `rebox run` (alias `buildbox-run`).
#[derive(Debug, Args)]
#[command(disable_version_flag = true, after_help = AFTER_HELP)]
pub struct RunArgs {
    /// Print version information and exit
    #[arg(long)]
    version: bool,
    /// Print the runner's capabilities, one a line, and exit
    #[arg(long)]
    capabilities: bool,
    /// Only check the command line; exit 0 if it is valid, 1 if not
    #[arg(long)]
    validate_parameters: bool,
    /// Path to read the input Action from
    #[arg(long, value_name = "PATH")]
    action: Option<PathBuf>,
    /// Path to write the output ActionResult to
    #[arg(long, value_name = "PATH")]
    action_result: Option<PathBuf>,
    #[command(flatten)]
    cas: CasFlags,
    /// Digest function (SHA256, SHA384, SHA512, SHA1, MD5, BLAKE3)
    #[arg(long, value_name = "NAME", default_value = "SHA256")]
    digest_function: String,
    /// Log verbosity: trace/debug/info/warning/error
    #[arg(long, value_name = "LEVEL", value_enum, default_value = "warning")]
    log_level: LogLevel,
    /// Set the log level to debug
    #[arg(long)]
    verbose: bool,
    /// Write the command's stdout to FILE
    #[arg(long, value_name = "FILE")]
    stdout_file: Option<PathBuf>,
    /// Write the command's stderr to FILE
    #[arg(long, value_name = "FILE")]
    stderr_file: Option<PathBuf>,
    /// Do not store stdout and stderr in the CAS: they go to the files given, or are inherited
    #[arg(long)]
    no_logs_capture: bool,
    /// For a person at a terminal: stdin, stdout and stderr are the caller's (no logs captured)
    /// and rebox exits with the command's exit code
    #[arg(long)]
    interactive: bool,
    /// Record the sandbox's resource usage in execution_metadata.auxiliary_metadata
    #[arg(long)]
    collect_execution_stats: bool,
    /// Bind a host path into the sandbox, writable (HOSTPATH:PATH); repeatable
    #[arg(long, value_name = "HOSTPATH:PATH")]
    bind_mount: Vec<String>,
    /// Bind a host path into the sandbox read-only ([CONTENT:]HOST_PATH:CHROOT_PATH); with
    /// CONTENT, only for actions with the platform property inject=CONTENT; repeatable
    #[arg(long, value_name = "[CONTENT:]HOST_PATH:CHROOT_PATH")]
    ro_bind_mount: Vec<String>,
    /// How to stage: fuse, copy-or-link or default
    #[arg(long, value_name = "MODE", default_value = "default")]
    staging_mode: String,
    /// Stage inputs under this directory
    #[arg(long, value_name = "PATH")]
    workspace_path: Option<PathBuf>,
    /// Fetch inputs from --remote over plain CAS/ByteStream and stage and capture in the
    /// embedded store (--cas-dir), uploading outputs back: for servers without LocalCAS
    #[arg(long)]
    disable_localcas: bool,

    #[command(flatten)]
    inert: InertArgs,
}

/// buildbox-run flags for features rebox does not have: accepted so callers work, ignored.
#[derive(Debug, Args)]
struct InertArgs {
    #[arg(long, value_name = "DIR", hide = true)]
    log_directory: Option<String>,
    #[arg(long, value_name = "COMMAND", hide = true)]
    post_action_command: Option<String>,
    #[arg(long, hide = true)]
    output_bypass_local_cache: bool,
    #[arg(long, value_name = "SECONDS", hide = true)]
    graceful_shutdown_seconds: Option<String>,
    #[arg(long, hide = true)]
    enable_tmp_outputs: bool,
    #[arg(long, value_name = "PATH", hide = true)]
    oci_auth_token: Option<String>,
    #[arg(long, value_name = "N", hide = true)]
    num_parallel_layer_threads: Option<String>,
    #[arg(long, value_name = "NAME", hide = true)]
    nested_instance: Option<String>,
    #[arg(long, hide = true)]
    nested_ac_enable_update: bool,
    #[arg(long, value_name = "PATH", hide = true)]
    server_cert: Option<String>,
    #[arg(long, value_name = "PATH", hide = true)]
    client_key: Option<String>,
    #[arg(long, value_name = "PATH", hide = true)]
    client_cert: Option<String>,
    #[arg(long, value_name = "PATH", hide = true)]
    access_token: Option<String>,
    #[arg(long, value_name = "MINUTES", hide = true)]
    token_reload_interval: Option<String>,
    #[arg(long, hide = true)]
    googleapi_auth: bool,
    #[arg(long, value_name = "PATH", hide = true)]
    credential_helper: Option<String>,
    #[arg(long, value_name = "INT", hide = true)]
    retry_limit: Option<String>,
    #[arg(long, value_name = "MILLISECONDS", hide = true)]
    retry_delay: Option<String>,
    #[arg(long, value_name = "CODE", hide = true)]
    retry_on_code: Vec<String>,
    #[arg(long, value_name = "SECONDS", hide = true)]
    request_timeout: Option<String>,
    #[arg(long, value_name = "BPS", hide = true)]
    min_throughput: Option<String>,
    #[arg(long, value_name = "SECONDS", hide = true)]
    keepalive_time: Option<String>,
    #[arg(long, value_name = "POLICY", hide = true)]
    load_balancing_policy: Option<String>,
    #[arg(long, value_name = "PROTOCOL", hide = true)]
    protocol: Option<String>,
    #[arg(long, value_name = "URL", hide = true)]
    ra_remote: Option<String>,
    #[arg(long, value_name = "NAME", hide = true)]
    ra_instance: Option<String>,
    #[arg(long, value_name = "PATH", hide = true)]
    ra_server_cert: Option<String>,
    #[arg(long, value_name = "PATH", hide = true)]
    ra_client_key: Option<String>,
    #[arg(long, value_name = "PATH", hide = true)]
    ra_client_cert: Option<String>,
    #[arg(long, value_name = "PATH", hide = true)]
    ra_access_token: Option<String>,
    #[arg(long, value_name = "MINUTES", hide = true)]
    ra_token_reload_interval: Option<String>,
    #[arg(long, hide = true)]
    ra_googleapi_auth: bool,
    #[arg(long, value_name = "PATH", hide = true)]
    ra_credential_helper: Option<String>,
    #[arg(long, value_name = "INT", hide = true)]
    ra_retry_limit: Option<String>,
    #[arg(long, value_name = "MILLISECONDS", hide = true)]
    ra_retry_delay: Option<String>,
    #[arg(long, value_name = "CODE", hide = true)]
    ra_retry_on_code: Vec<String>,
    #[arg(long, value_name = "SECONDS", hide = true)]
    ra_request_timeout: Option<String>,
    #[arg(long, value_name = "BPS", hide = true)]
    ra_min_throughput: Option<String>,
    #[arg(long, value_name = "SECONDS", hide = true)]
    ra_keepalive_time: Option<String>,
    #[arg(long, value_name = "POLICY", hide = true)]
    ra_load_balancing_policy: Option<String>,
}

/// Why the command line can't be used.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error("--action=PATH is required")]
    NoAction,
    #[error("--action-result=PATH is required")]
    NoActionResult,
    #[error("bad {flag} {value:?}: {reason}")]
    BadFlag { flag: &'static str, value: String, reason: String },
    #[error("no store directory: pass --cas-dir, or set REBOX_CAS_DIR, XDG_CACHE_HOME or HOME")]
    NoCasDir,
    #[error(transparent)]
    Action(#[from] ActionError),
}

/// What a checked command line asks for.
#[derive(Debug)]
struct Checked {
    action: PathBuf,
    action_result: PathBuf,
    function: DigestFunction,
    options: RunOptions,
}

/// Runs `rebox run`; `program` names it in error messages.
pub fn run(args: RunArgs, program: &str) -> ExitCode {
    if args.version {
        println!("buildbox-run {BUILDBOX_RUN_VERSION} (rebox {})", env!("CARGO_PKG_VERSION"));
        return ExitCode::SUCCESS;
    }
    if args.capabilities {
        for capability in CAPABILITIES {
            println!("{capability}");
        }
        return ExitCode::SUCCESS;
    }
    logging::init(if args.verbose { LogLevel::Debug } else { args.log_level });
    let checked = match check(&args) {
        Ok(checked) => checked,
        Err(error) => return fail(program, &error),
    };
    if args.validate_parameters {
        return ExitCode::SUCCESS;
    }
    tracing::debug!(ignored = ?args.inert, "flags rebox accepts and ignores");
    let cancel = action::signals::cancel_on_signals();
    let executed = (|| {
        let action_bytes =
            std::fs::read(&checked.action).map_err(|e| ActionError::io("read", &checked.action, e))?;
        let action = Plan::decode_action(&action_bytes)?;
        let embedded = || {
            let root = args.cas.embedded_root().ok_or(RunError::NoCasDir)?;
            Ok::<_, RunError>(EmbeddedCas::open(&root, checked.function)?)
        };
        // Where a failure is recorded: the embedded store, when it holds the inputs.
        let mut failures = None;
        let mut cas: Box<dyn ActionCas> = match &args.cas.remote {
            Some(url) if args.disable_localcas => {
                let remote = CasConnection::connect(url, &args.cas.instance, checked.function)?;
                Box::new(FetchingCas::new(embedded()?, remote))
            }
            Some(url) => Box::new(LocalCasClient::connect(url, &args.cas.instance, checked.function)?),
            None => {
                let cas = embedded()?;
                failures = Some(cas.store().clone());
                Box::new(cas)
            }
        };
        let executed =
            action::execute(cas.as_mut(), &UsernsRunner::default(), &action, &checked.options, &cancel)?;
        write_result(&checked.action_result, &executed.result.encode_to_vec())?;
        let failed = executed.result.exit_code != 0 || executed.outcome == Outcome::TimedOut;
        if let Some(store) = failures.filter(|_| failed) {
            let mounts = &checked.options.mounts;
            if let Err(error) = last_failed::record(&store, &action, mounts, executed.result.exit_code) {
                tracing::warn!(%error, "cannot record the failed action for rebox shell --last-failed");
            }
        }
        Ok::<_, RunError>(executed)
    })();
    match executed {
        Ok(executed) if executed.outcome == Outcome::TimedOut => {
            eprintln!("{program}: the action's timeout expired; the sandbox was killed");
            ExitCode::from(TIMEOUT_EXIT_CODE)
        }
        Ok(executed) if args.interactive => {
            ExitCode::from(u8::try_from(executed.result.exit_code).unwrap_or(u8::MAX))
        }
        Ok(_) => ExitCode::SUCCESS,
        Err(RunError::Action(ActionError::Cancelled(signal))) => {
            eprintln!("{program}: stopped by signal {signal}");
            ExitCode::from(128u8.saturating_add(signal as u8))
        }
        Err(error) => fail(program, &error),
    }
}

fn fail(program: &str, error: &RunError) -> ExitCode {
    eprintln!("{program}: error: {error}");
    ExitCode::FAILURE
}

fn write_result(path: &Path, bytes: &[u8]) -> Result<(), ActionError> {
    std::fs::write(path, bytes).map_err(|e| ActionError::io("write the ActionResult to", path, e))
}

/// Checks the command line as `--validate-parameters` does, and turns it into run options.
fn check(args: &RunArgs) -> Result<Checked, RunError> {
    let action = args.action.clone().ok_or(RunError::NoAction)?;
    let action_result = args.action_result.clone().ok_or(RunError::NoActionResult)?;
    let function: DigestFunction =
        args.digest_function.parse().map_err(|e: crate::digest::DigestError| RunError::BadFlag {
            flag: "--digest-function",
            value: args.digest_function.clone(),
            reason: e.to_string(),
        })?;
    if args.disable_localcas && args.cas.remote.is_none() {
        return Err(RunError::BadFlag {
            flag: "--disable-localcas",
            value: "true".into(),
            reason: "needs --remote (a CAS server to fetch from and upload to)".into(),
        });
    }
    let staging_mode = args.staging_mode.parse().map_err(|reason| RunError::BadFlag {
        flag: "--staging-mode",
        value: args.staging_mode.clone(),
        reason,
    })?;
    let remote_apis_socket = match &args.cas.remote {
        Some(url) if url.starts_with("http://") || url.starts_with("https://") => None,
        Some(url) => Some(unix_socket_path(url).ok_or_else(|| RunError::BadFlag {
            flag: "--remote",
            value: url.clone(),
            reason: "not unix:PATH or http://HOST:PORT".into(),
        })?),
        None => None,
    };
    let mut mounts = Vec::new();
    for value in &args.bind_mount {
        mounts.push(parse_mount("--bind-mount", value, true)?);
    }
    for value in &args.ro_bind_mount {
        mounts.push(parse_mount("--ro-bind-mount", value, false)?);
    }
    let options = RunOptions {
        mounts,
        stdout_file: args.stdout_file.clone(),
        stderr_file: args.stderr_file.clone(),
        capture_logs: !args.no_logs_capture && !args.interactive,
        collect_stats: args.collect_execution_stats,
        remote_apis_socket: remote_apis_socket.map(|p| std::path::absolute(&p).unwrap_or(p)),
        staging_mode,
        workspace: args.workspace_path.clone(),
    };
    Ok(Checked { action, action_result, function, options })
}

/// `HOST:SANDBOX` (writable) or `[CONTENT:]HOST:SANDBOX` (read-only).
fn parse_mount(flag: &'static str, value: &str, writable: bool) -> Result<Mount, RunError> {
    let bad = |reason: &str| RunError::BadFlag { flag, value: value.to_owned(), reason: reason.to_owned() };
    let parts: Vec<&str> = value.split(':').collect();
    let (content, source, target) = match (parts.as_slice(), writable) {
        ([source, target], _) => (None, *source, *target),
        ([content, source, target], false) => (Some((*content).to_owned()), *source, *target),
        _ if writable => return Err(bad("expected HOSTPATH:PATH")),
        _ => return Err(bad("expected [CONTENT:]HOST_PATH:CHROOT_PATH")),
    };
    if source.is_empty() || !target.starts_with('/') {
        return Err(bad("the host path must be given and the sandbox path absolute"));
    }
    let mount = BindMount { source: PathBuf::from(source), target: PathBuf::from(target), writable };
    Ok(Mount { mount, only_with_inject: content })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mounts_parse_as_buildbox_run_spells_them() {
        let rw = parse_mount("--bind-mount", "/dev:/dev", true).unwrap();
        assert_eq!((rw.mount.writable, rw.only_with_inject), (true, None));
        let ro = parse_mount("--ro-bind-mount", "tools:/opt/t:/t", false).unwrap();
        assert_eq!(ro.only_with_inject.as_deref(), Some("tools"));
        assert_eq!(
            (ro.mount.source.to_str(), ro.mount.target.to_str(), ro.mount.writable),
            (Some("/opt/t"), Some("/t"), false)
        );
        for (flag, value, writable) in [
            ("--bind-mount", "a:b:/c", true),
            ("--bind-mount", "/a", true),
            ("--ro-bind-mount", "/a:rel", false),
        ] {
            let error = parse_mount(flag, value, writable).unwrap_err();
            assert!(error.to_string().starts_with(&format!("bad {flag} {value:?}")), "{error}");
        }
    }
}
