//! The `rebox` binary: a thin shell over [`rebox::cli`].

use std::process::ExitCode;

fn main() -> ExitCode {
    rebox::cli::main(std::env::args_os().collect())
}
