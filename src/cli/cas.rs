//! `rebox cas`: direct access to the local CAS, for developers and tests.
//!
//! ```text
//! rebox cas put [PATH|-]...   store files (or stdin), print one HASH/SIZE per input
//! rebox cas cat DIGEST        write a blob to stdout
//! rebox cas verify            re-hash every object, list corrupt ones, exit 1 if any
//! ```
//! Every failure is one line on stderr and exit status 1.

use std::ffi::OsString;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use rayon::prelude::*;

use crate::digest::{Digest, DigestError, DigestFunction};
use crate::store::{Store, StoreError};

/// Read size for `cat`.
const COPY_CHUNK: usize = 256 * 1024;

/// Options of `rebox cas`.
#[derive(Debug, Args)]
pub struct CasArgs {
    /// Store root (the directory holding `cas/objects`) [default: $XDG_CACHE_HOME/rebox, else
    /// ~/.cache/rebox]
    #[arg(long, global = true, env = "REBOX_CAS_DIR", value_name = "DIR")]
    cas_dir: Option<PathBuf>,

    /// Digest function, by its REAPI name (SHA256, SHA384, SHA512, SHA1, MD5, BLAKE3)
    #[arg(long, global = true, value_name = "NAME", default_value = "SHA256")]
    digest_function: String,

    #[command(subcommand)]
    command: CasCommand,
}

#[derive(Debug, Subcommand)]
enum CasCommand {
    /// Store files (`-` or nothing: stdin) and print one HASH/SIZE line per input
    Put {
        /// Files to store; `-` is standard input
        #[arg(value_name = "PATH|-")]
        inputs: Vec<OsString>,
    },
    /// Write the blob HASH/SIZE to standard output
    Cat {
        /// The blob's digest, as HASH/SIZE
        digest: String,
    },
    /// Re-hash every object; print the corrupt ones and exit with status 1 if there are any
    Verify,
}

/// Why a `rebox cas` command failed.
#[derive(Debug, thiserror::Error)]
enum CasError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Digest(#[from] DigestError),
    #[error("no store directory: pass --cas-dir, or set REBOX_CAS_DIR, XDG_CACHE_HOME or HOME")]
    NoCasDir,
    #[error("cannot write to standard output: {0}")]
    Stdout(io::Error),
}

/// Runs `rebox cas`.
pub fn run(args: CasArgs) -> ExitCode {
    match execute(args) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("rebox cas: {error}");
            ExitCode::FAILURE
        }
    }
}

fn execute(args: CasArgs) -> Result<ExitCode, CasError> {
    let function: DigestFunction = args.digest_function.parse()?;
    let root = match args.cas_dir {
        Some(dir) => dir,
        None => default_cas_dir().ok_or(CasError::NoCasDir)?,
    };
    match args.command {
        CasCommand::Put { inputs } => put(&Store::open_unscanned(&root, function)?, &inputs),
        CasCommand::Cat { digest } => {
            // Parsed before opening (and perhaps creating) the store.
            let digest = parse_digest(&digest, function)?;
            cat(&Store::open_unscanned(&root, function)?, &digest)
        }
        CasCommand::Verify => verify(&Store::open(&root, function)?),
    }
}

/// `$XDG_CACHE_HOME/rebox` (an absolute XDG_CACHE_HOME only, as the XDG spec says), else
/// `$HOME/.cache/rebox`.
pub(super) fn default_cas_dir() -> Option<PathBuf> {
    let absolute = |name| std::env::var_os(name).map(PathBuf::from).filter(|p| p.is_absolute());
    match absolute("XDG_CACHE_HOME") {
        Some(cache) => Some(cache.join("rebox")),
        None => absolute("HOME").map(|home| home.join(".cache").join("rebox")),
    }
}

fn parse_digest(text: &str, function: DigestFunction) -> Result<Digest, DigestError> {
    let digest: Digest = text.parse()?;
    function.check(&digest)?;
    Ok(digest)
}

fn put(store: &Store, inputs: &[OsString]) -> Result<ExitCode, CasError> {
    let stdin_only = [OsString::from("-")];
    let inputs = if inputs.is_empty() { &stdin_only[..] } else { inputs };
    let mut stdout = io::stdout().lock();
    for input in inputs {
        let digest = if input == "-" {
            store.put_reader(io::stdin().lock(), None)?
        } else {
            store.put_file(Path::new(input), None)?
        };
        writeln!(stdout, "{digest}").map_err(CasError::Stdout)?;
    }
    stdout.flush().map_err(CasError::Stdout)?;
    Ok(ExitCode::SUCCESS)
}

fn cat(store: &Store, digest: &Digest) -> Result<ExitCode, CasError> {
    let mut blob = store.open_blob(digest)?;
    let mut stdout = io::stdout().lock();
    let mut buffer = vec![0u8; COPY_CHUNK];
    loop {
        let n = match blob.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                let path = store.object_path(digest);
                return Err(StoreError::Io { action: "read", path, source }.into());
            }
        };
        stdout.write_all(&buffer[..n]).map_err(CasError::Stdout)?;
    }
    stdout.flush().map_err(CasError::Stdout)?;
    Ok(ExitCode::SUCCESS)
}

fn verify(store: &Store) -> Result<ExitCode, CasError> {
    let objects = store.objects()?;
    let corrupt: Vec<StoreError> = objects
        .par_iter()
        .filter_map(|object| {
            let expected = object.digest;
            match store.rehash(&expected) {
                Ok(actual) if actual == expected => None,
                Ok(actual) => {
                    let path = Some(store.object_path(&expected));
                    Some(StoreError::DigestMismatch { expected, actual: Box::new(actual), path })
                }
                // Removed since it was listed (a concurrent expiry): nothing to verify.
                Err(StoreError::NotFound { .. }) => None,
                Err(error) => Some(error),
            }
        })
        .collect();
    let mut stdout = io::stdout().lock();
    for error in &corrupt {
        writeln!(stdout, "{error}").map_err(CasError::Stdout)?;
    }
    writeln!(stdout, "{} objects verified, {} corrupt", objects.len(), corrupt.len())
        .map_err(CasError::Stdout)?;
    stdout.flush().map_err(CasError::Stdout)?;
    Ok(if corrupt.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
