//! The `rebox` command line (also invoked as `buildbox-casd`: see [`multicall`]).

mod cas;
mod cas_flags;
mod casd;
mod exec;
mod multicall;
mod run;
mod shell;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

/// rebox: a sandboxed build runner for REAPI actions, with its own local CAS.
#[derive(Debug, Parser)]
#[command(name = "rebox", version, about, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Work with the local content-addressable store directly
    Cas(cas::CasArgs),
    /// Serve the local CAS over gRPC: a drop-in for buildbox-casd
    #[command(disable_version_flag = true)]
    Casd(Box<crate::casd::CasdArgs>),
    /// Run one REAPI Action in a sandbox: a drop-in for buildbox-run
    Run(Box<run::RunArgs>),
    /// Run a command in a sandbox on the embedded store, with caching
    Exec(exec::ExecArgs),
    /// Open a shell in the environment of an Action (such as the last one that failed)
    Shell(shell::ShellArgs),
}

/// Runs the command line given by `args` (`args[0]` is the program name, which may select a
/// personality such as `buildbox-casd`).
pub fn main(args: Vec<OsString>) -> ExitCode {
    let personality = args.first().and_then(|argv0| multicall::personality(argv0));
    match personality {
        // A personality parses its own arguments only: building every subcommand's parser is a
        // measurable part of a runner's start-up, which BuildStream pays for every action.
        Some(p) if p.subcommand == "run" => {
            parse_personality(p, args).map_or_else(|c| c, |a| run::run(a, p.name))
        }
        Some(p) if p.subcommand == "casd" => {
            parse_personality(p, args).map_or_else(|c| c, |a| casd::run(a, p.name))
        }
        _ => rebox_main(args),
    }
}

/// `rebox SUBCOMMAND ...`.
fn rebox_main(args: Vec<OsString>) -> ExitCode {
    let parsed =
        Cli::command().try_get_matches_from(args).and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(error) => return parse_failure(&error, ExitCode::from(2)),
    };
    match cli.command {
        Command::Cas(args) => cas::run(args),
        Command::Casd(args) => casd::run(*args, "rebox"),
        Command::Run(args) => run::run(*args, "rebox"),
        Command::Exec(args) => exec::run(args),
        Command::Shell(args) => shell::run(args),
    }
}

/// The arguments of `personality`'s subcommand, parsed from `args`; or the exit code after a
/// bad command line (1, as BuildBox's tools exit), `--help` or `--version`.
fn parse_personality<A: Args + FromArgMatches>(
    personality: &multicall::Personality,
    args: Vec<OsString>,
) -> Result<A, ExitCode> {
    let command = clap::Command::new(personality.name).override_usage(personality.usage);
    A::augment_args(command)
        .try_get_matches_from(args)
        .and_then(|matches| A::from_arg_matches(&matches))
        .map_err(|error| parse_failure(&error, ExitCode::FAILURE))
}

/// Prints a parse error (or the help or version asked for) and gives the exit code.
fn parse_failure(error: &clap::Error, on_error: ExitCode) -> ExitCode {
    let _ = error.print();
    if error.use_stderr() { on_error } else { ExitCode::SUCCESS }
}
