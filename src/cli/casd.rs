//! `rebox casd [FLAGS] CACHE_DIR`, also run as `buildbox-casd`: see [`crate::casd`].
//!
//! Configuration errors (a bad flag value, a remote server) are one line on stderr and exit
//! status 1, as buildbox-casd's; a clean stop on SIGTERM or SIGINT is exit status 0.

use std::process::ExitCode;

use crate::casd::{self, CasdArgs, DaemonConfig};

/// Runs the daemon (or prints its version); `program` names it in error messages.
pub fn run(args: CasdArgs, program: &str) -> ExitCode {
    if args.version {
        println!("{}", casd::version_line());
        return ExitCode::SUCCESS;
    }
    let config = match DaemonConfig::from_args(&args) {
        Ok(config) => config,
        Err(error) => return fail(program, &error),
    };
    casd::logging::init(config.log_level);
    casd::log_inert_flags(&args);
    match casd::run(&config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => fail(program, &error),
    }
}

fn fail(program: &str, error: &casd::CasdError) -> ExitCode {
    eprintln!("{program}: error: {error}");
    ExitCode::FAILURE
}
