//! The `rebox` command line.

mod cas;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

/// Runs the command line given by `args` (`args[0]` is the program name).
pub fn main(args: Vec<OsString>) -> ExitCode {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() { ExitCode::from(2) } else { ExitCode::SUCCESS };
        }
    };
    match cli.command {
        Command::Cas(args) => cas::run(args),
    }
}
