//! The `rebox` command line (also invoked as `buildbox-casd`: see [`multicall`]).

mod cas;
mod casd;
mod exec;
mod multicall;
mod run;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

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
}

/// Runs the command line given by `args` (`args[0]` is the program name, which may select a
/// personality such as `buildbox-casd`).
pub fn main(args: Vec<OsString>) -> ExitCode {
    let personality = args.first().and_then(|argv0| multicall::personality(argv0));
    let (args, program) = match personality {
        Some(personality) => (multicall::as_rebox(personality, args), personality.name.to_owned()),
        None => (args, "rebox".to_owned()),
    };
    let mut command = Cli::command();
    if let Some(personality) = personality {
        command = command.mut_subcommand(personality.subcommand, |sub| sub.override_usage(personality.usage));
    }
    let parsed = command.try_get_matches_from(args).and_then(|matches| Cli::from_arg_matches(&matches));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return match (error.use_stderr(), personality) {
                (false, _) => ExitCode::SUCCESS,
                // BuildBox tools exit 1 on a bad command line.
                (true, Some(_)) => ExitCode::FAILURE,
                (true, None) => ExitCode::from(2),
            };
        }
    };
    match cli.command {
        Command::Cas(args) => cas::run(args),
        Command::Casd(args) => casd::run(*args, &program),
        Command::Run(args) => run::run(*args, &program),
        Command::Exec(args) => exec::run(args),
    }
}
