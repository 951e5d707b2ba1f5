//! `rebox shell`: a shell in the environment of an Action, for a developer to look into why it
//! failed. The Action comes from a file (`--action`), from the store (`--action-digest`), or is the
//! last one whose command failed in `rebox exec` or `rebox run` on the embedded store
//! (`--last-failed`, see [`last_failed`]). The shell gets the Action's input root, environment,
//! working directory and platform properties (plus the host paths a recorded run had bound in),
//! with no timeout; `--network` shares the host's network; `--capture PATH` captures what is at
//! PATH when the shell exits, as an output, and prints its digest.
//!
//! The shell runs on the caller's terminal with job control (see the userns runner's
//! `terminal.rs`); without a terminal it is a plain run with stdin passed through.
//!
//! Exit status: the shell's; 125 when rebox itself failed (as `rebox exec`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{ArgGroup, Args};
use prost::Message;
use rebox_runner_userns::UsernsRunner;

use super::cas_flags::CasFlags;
use crate::action::{
    self, ActionCas, ActionError, EmbeddedCas, LocalCasClient, Mount, Plan, RunOptions, last_failed,
};
use crate::casd::logging::{self, LogLevel};
use crate::digest::{Digest, DigestFunction};
use crate::grpc::client::unix_socket_path;
use crate::proto::build::bazel::remote::execution::v2 as reapi;
use crate::staging::StagingMode;
use crate::tree::to_proto;

/// Exit status when rebox itself failed.
const FAILURE: u8 = 125;

/// Options of `rebox shell`.
#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["action", "action_digest", "last_failed"])))]
pub struct ShellArgs {
    /// Open the shell in this Action's environment (a serialized REAPI Action)
    #[arg(long, value_name = "FILE")]
    action: Option<PathBuf>,
    /// Open the shell in the environment of the Action stored under this digest
    #[arg(long, value_name = "HASH/SIZE")]
    action_digest: Option<String>,
    /// Open the shell in the environment of the last action whose command failed in `rebox exec`
    /// or `rebox run` on the embedded store
    #[arg(long, conflicts_with = "remote")]
    last_failed: bool,
    /// The shell to run (a path inside the sandbox)
    #[arg(long, value_name = "PATH", default_value = "/bin/sh")]
    shell: String,
    /// Share the host's network (otherwise the action's platform decides)
    #[arg(long)]
    network: bool,
    /// When the shell exits, capture PATH (relative to the action's working directory) into the
    /// store and print its digest; repeatable
    #[arg(long = "capture", value_name = "PATH")]
    captures: Vec<String>,
    /// How to stage: fuse, copy-or-link or default
    #[arg(long, value_name = "MODE", default_value = "default")]
    staging_mode: StagingMode,
    #[command(flatten)]
    cas: CasFlags,
    /// Arguments for the shell, after `--` (e.g. `-- -c 'make check'`)
    #[arg(value_name = "ARG", trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

/// Runs `rebox shell`.
pub fn run(args: ShellArgs) -> ExitCode {
    logging::init(LogLevel::Error);
    match shell(&args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("rebox shell: error: {error}");
            ExitCode::from(FAILURE)
        }
    }
}

fn shell(args: &ShellArgs) -> Result<ExitCode, ActionError> {
    let function = DigestFunction::Sha256;
    // `--last-failed` conflicts with `--remote`: the record is in the embedded store.
    let mut failed = None;
    let (mut cas, socket): (Box<dyn ActionCas>, Option<PathBuf>) = match &args.cas.remote {
        Some(url) => {
            let socket = unix_socket_path(url).map(|p| std::path::absolute(&p).unwrap_or(p));
            (Box::new(LocalCasClient::connect(url, &args.cas.instance, function)?), socket)
        }
        None => {
            let root = args.cas.embedded_root().ok_or_else(|| {
                ActionError::Invalid("no store directory: pass --cas-dir, or set HOME".into())
            })?;
            let embedded = EmbeddedCas::open(&root, function)?;
            if args.last_failed {
                failed = Some(last_failed::load(embedded.store())?);
            }
            (Box::new(embedded), None)
        }
    };
    let (action, mounts) = find_action(args, failed, cas.as_mut(), function)?;
    let action = shell_action(args, cas.as_mut(), action)?;
    let options = RunOptions {
        mounts,
        capture_logs: false,
        remote_apis_socket: socket,
        staging_mode: args.staging_mode,
        ..Default::default()
    };
    let cancel = action::signals::cancel_on_signals();
    let executed = match action::execute(cas.as_mut(), &UsernsRunner::default(), &action, &options, &cancel) {
        Err(ActionError::Cancelled(signal)) => {
            eprintln!("rebox shell: stopped by signal {signal}");
            return Ok(ExitCode::from(128u8.saturating_add(signal as u8)));
        }
        executed => executed?,
    };
    print_captured(&executed.result);
    Ok(ExitCode::from(u8::try_from(executed.outcome.exit_code()).unwrap_or(u8::MAX)))
}

/// The Action asked for, and the host mounts its recorded run had.
fn find_action(
    args: &ShellArgs,
    failed: Option<(last_failed::FailedAction, Digest)>,
    cas: &mut dyn ActionCas,
    function: DigestFunction,
) -> Result<(reapi::Action, Vec<Mount>), ActionError> {
    if let Some(path) = &args.action {
        let bytes = std::fs::read(path).map_err(|e| ActionError::io("read", path, e))?;
        return Ok((Plan::decode_action(&bytes)?, Vec::new()));
    }
    let (digest, mounts) = match (&args.action_digest, failed) {
        (Some(text), _) => {
            let digest: Digest = text
                .parse()
                .and_then(|digest| function.check(&digest).map(|()| digest))
                .map_err(|source| ActionError::Digest { what: "action", source })?;
            (digest, Vec::new())
        }
        (None, Some((record, digest))) => {
            eprintln!("rebox shell: the last failed action, {digest} (exit code {})", record.exit_code);
            (digest, record.run_mounts())
        }
        (None, None) => unreachable!("clap requires one of --action, --action-digest, --last-failed"),
    };
    Ok((Plan::decode_action(&cas.read_blob(&digest, "action")?)?, mounts))
}

/// `action` with the shell as its command: the same Command otherwise, but for the outputs
/// (the paths to capture), the network (`--network`) and no timeout. The new Command is stored.
fn shell_action(
    args: &ShellArgs,
    cas: &mut dyn ActionCas,
    mut action: reapi::Action,
) -> Result<reapi::Action, ActionError> {
    let command_digest = Plan::command_digest(&action, cas.digest_function())?;
    let bytes = cas.read_blob(&command_digest, "command")?;
    let mut command = reapi::Command::decode(bytes.as_slice())
        .map_err(|e| ActionError::Invalid(format!("the Command {command_digest} does not decode: {e}")))?;
    command.arguments = std::iter::once(args.shell.clone()).chain(args.args.iter().cloned()).collect();
    let mut captures = args.captures.clone();
    captures.sort();
    captures.dedup();
    command.output_paths = captures;
    command.output_files.clear();
    command.output_directories.clear();
    command.output_directory_format = reapi::command::OutputDirectoryFormat::DirectoryOnly as i32;
    if args.network {
        for platform in [command.platform.get_or_insert_default(), action.platform.get_or_insert_default()] {
            with_network(platform);
        }
    }
    action.command_digest = Some(to_proto(&cas.upload_blob(command.encode_to_vec())?));
    action.timeout = None;
    action.do_not_cache = true;
    Ok(action)
}

/// Sets `network=on` in `platform`, keeping its properties sorted as REAPI wants them.
fn with_network(platform: &mut reapi::Platform) {
    platform.properties.retain(|p| p.name != "network");
    platform.properties.push(reapi::platform::Property { name: "network".into(), value: "on".into() });
    platform.properties.sort_by(|a, b| (&a.name, &a.value).cmp(&(&b.name, &b.value)));
}

/// Prints one line per captured output on stdout: `DIGEST KIND PATH` (a symlink: its target).
fn print_captured(result: &reapi::ActionResult) {
    let digest = |d: &Option<reapi::Digest>| d.as_ref().map(|d| format!("{}/{}", d.hash, d.size_bytes));
    for file in &result.output_files {
        let kind = if file.is_executable { "executable" } else { "file" };
        println!("{} {kind} {}", digest(&file.digest).unwrap_or_default(), file.path);
    }
    for dir in &result.output_directories {
        let root = digest(&dir.root_directory_digest).or_else(|| digest(&dir.tree_digest));
        println!("{} directory {}", root.unwrap_or_default(), dir.path);
    }
    // The shell's Command asks for output_paths, whose symlinks all land in output_symlinks.
    for link in &result.output_symlinks {
        println!("{} symlink {}", link.target, link.path);
    }
}
