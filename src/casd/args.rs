//! `rebox casd`'s command line: every flag of buildbox-casd 1.4.25, in both the `--flag=value`
//! and the `--flag value` form. Switches take `--flag`, `--flag=true` or `--flag=false`
//! (BuildStream passes `--cache-failures=false`). Flags for features rebox does not have are
//! accepted and checked, so that callers written for buildbox-casd work; see
//! [`super::config`] for what each one does.

use std::path::PathBuf;

use clap::{ArgAction, Args};

use super::bind::BindAddress;
use super::logging::LogLevel;
use super::remote_args::RemoteArgs;
use crate::digest::DigestFunction;
use crate::expiry::{ByteSize, LowMark, Percent};

/// Options of `rebox casd` (alias `buildbox-casd`).
#[derive(Debug, Args)]
pub struct CasdArgs {
    /// Print the version (the buildbox-casd version rebox is compatible with, and rebox's own)
    /// and exit
    #[arg(long)]
    pub version: bool,

    /// Cache directory: the store lives in CACHE_DIR/cas
    #[arg(value_name = "CACHE_DIR", required_unless_present = "version")]
    pub cache_dir: Option<PathBuf>,

    /// Listen on unix:PATH or HOST:PORT; repeatable [default: unix:CACHE_DIR/casd.sock]
    #[arg(long, value_name = "ADDRESS", help_heading = "Server")]
    pub bind: Vec<BindAddress>,

    /// Group to give Unix sockets
    #[arg(long, value_name = "GROUP", help_heading = "Server")]
    pub unix_socket_group: Option<String>,

    /// Mode of Unix sockets, in octal, e.g. 0770
    #[arg(long, value_name = "MODE", value_parser = octal_mode, help_heading = "Server")]
    pub unix_socket_mode: Option<u32>,

    /// Minimum seconds between client keepalive pings (accepted; not enforced)
    #[arg(long, value_name = "SECONDS", help_heading = "Server")]
    pub permit_keepalive_time: Option<u64>,

    /// Instance name of the local server [default: ""]
    #[arg(long, value_name = "NAME", help_heading = "Server")]
    pub local_server_instance: Option<String>,

    /// Deprecated alias of --local-server-instance
    #[arg(long, value_name = "NAME", help_heading = "Server")]
    pub server_instance: Option<String>,

    /// Seconds to let calls in flight finish after SIGTERM/SIGINT before cancelling them
    /// [default: 5]
    #[arg(long, value_name = "SECONDS", help_heading = "Server")]
    pub shutdown_deadline: Option<u64>,

    /// Digest function: SHA256, SHA384, SHA512, SHA1, MD5 or BLAKE3
    #[arg(long, value_name = "NAME", default_value = "SHA256", help_heading = "Storage")]
    pub digest_function: DigestFunction,

    /// Maximum cache size, e.g. 50G (K, M, G, T are powers of 1000) [default: no quota]
    #[arg(long, value_name = "BYTES", help_heading = "Storage")]
    pub quota_high: Option<ByteSize>,

    /// Size to expire down to: bytes, or a percentage of --quota-high
    #[arg(long, value_name = "BYTES|N%", default_value = "65%", help_heading = "Storage")]
    pub quota_low: LowMark,

    /// Usage, as a percentage of --quota-high, at which expiry starts; above --quota-low
    /// [default: 65% of the way from low to high]
    #[arg(long, value_name = "N%", help_heading = "Storage")]
    pub cleanup_threshold: Option<Percent>,

    /// Disk space to keep free: --quota-high is lowered to leave it
    #[arg(long, value_name = "BYTES", default_value = "2G", help_heading = "Storage")]
    pub reserved: ByteSize,

    /// Never expire blobs stored or used in this session
    #[arg(long, value_name = "BOOL", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false, help_heading = "Storage")]
    pub protect_session_blobs: bool,

    /// Refuse writes at once (RESOURCE_EXHAUSTED) rather than wait while expiry makes room
    #[arg(long, value_name = "BOOL", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false, help_heading = "Storage")]
    pub fail_fast_during_cleanup: bool,

    /// Store objects writable (accepted; rebox keeps objects read-only)
    #[arg(long, value_name = "BOOL", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false, help_heading = "Storage")]
    pub store_writable_objects: bool,

    /// Let captures with move_files move files into the CAS
    #[arg(long, value_name = "BOOL", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false, help_heading = "Storage")]
    pub capture_allow_file_moves: bool,

    /// Executable allowed to run before a stage is undone (absolute path; repeatable)
    #[arg(long, value_name = "PATH", help_heading = "Storage")]
    pub allow_pre_unstage_command: Vec<PathBuf>,

    /// Threads hashing files (accepted; rebox sizes its own pool)
    #[arg(long, value_name = "N", help_heading = "Storage")]
    pub num_digest_threads: Option<usize>,

    /// Threads for remote transfers (accepted; no remotes yet)
    #[arg(long, value_name = "N", help_heading = "Storage")]
    pub num_io_threads: Option<usize>,

    /// Runner for the local Execution service (accepted; not served yet)
    #[arg(long, value_name = "PATH", help_heading = "Local execution")]
    pub buildbox_run: Option<PathBuf>,

    /// Argument passed to the runner (repeatable)
    #[arg(long, value_name = "ARG", allow_hyphen_values = true, help_heading = "Local execution")]
    pub runner_arg: Vec<String>,

    /// Actions run at once by local execution
    #[arg(long, value_name = "N", default_value_t = 4, help_heading = "Local execution")]
    pub jobs: u32,

    /// Queue length limit for hybrid execution in a proxy instance
    #[arg(long, value_name = "N", help_heading = "Local execution")]
    pub exec_hybrid_queue_limit: Option<u32>,

    /// Fall back to local execution when the remote cannot schedule
    #[arg(long, value_name = "BOOL", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false, help_heading = "Local execution")]
    pub exec_fallback_to_local: bool,

    /// Cache results of local actions that exit non-zero
    #[arg(long, value_name = "BOOL", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = true, help_heading = "Local execution")]
    pub cache_failures: bool,

    /// Proxy instance, PROXY_INSTANCE[:REMOTE_INSTANCE] (repeatable)
    #[arg(long, value_name = "INSTANCE", help_heading = "Proxy")]
    pub proxy_instance: Vec<String>,

    /// Proxy instance to use CAS chunking for (repeatable)
    #[arg(long, value_name = "INSTANCE", help_heading = "Proxy")]
    pub enable_chunking_for_instance: Vec<String>,

    /// Seconds to cache FindMissingBlobs results in proxy mode
    #[arg(long, value_name = "SECONDS", help_heading = "Proxy")]
    pub findmissingblobs_cache_ttl: Option<u64>,

    /// Seconds to cache GetActionResult validations in proxy mode
    #[arg(long, value_name = "SECONDS", help_heading = "Proxy")]
    pub ac_validation_cache_ttl: Option<u64>,

    /// Never update the remote CAS
    #[arg(long, value_name = "BOOL", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false, help_heading = "Proxy")]
    pub read_only_remote: bool,

    /// Metrics destination: udp://HOST:PORT, file:///PATH or stderr (accepted; no metrics yet)
    #[arg(long, value_name = "MODE", help_heading = "Metrics")]
    pub metrics_mode: Option<String>,

    /// Seconds between metrics publications
    #[arg(long, value_name = "SECONDS", help_heading = "Metrics")]
    pub metrics_publish_interval: Option<u64>,

    /// Prefix of metric names
    #[arg(long, value_name = "PREFIX", help_heading = "Metrics")]
    pub metrics_prefix: Option<String>,

    /// Log level
    #[arg(long, value_name = "LEVEL", value_enum, default_value = "error", help_heading = "Logging")]
    pub log_level: LogLevel,

    /// Log at debug level
    #[arg(long, value_name = "BOOL", action = ArgAction::Set, num_args = 0..=1, require_equals = true,
          default_missing_value = "true", default_value_t = false, help_heading = "Logging")]
    pub verbose: bool,

    #[command(flatten)]
    pub remotes: RemoteArgs,
}

/// An octal file mode such as `0770` or `770`.
fn octal_mode(text: &str) -> Result<u32, String> {
    u32::from_str_radix(text, 8)
        .ok()
        .filter(|mode| *mode <= 0o7777)
        .ok_or_else(|| format!("{text:?} is not an octal mode such as 0770"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    struct Test {
        #[command(flatten)]
        casd: CasdArgs,
    }

    fn parse(args: &[&str]) -> Result<CasdArgs, clap::Error> {
        Test::try_parse_from(std::iter::once("casd").chain(args.iter().copied())).map(|t| t.casd)
    }

    #[test]
    fn buildstreams_command_line_parses() {
        let args = parse(&[
            "--bind=unix:/tmp/bst/casd.sock",
            "--log-level=warning",
            "--cache-failures=false",
            "--quota-high=10000000000",
            "--quota-low=50%",
            "--reserved=1000000000",
            "--protect-session-blobs",
            "--buildbox-run=/usr/bin/buildbox-run",
            "--jobs=8",
            "/home/me/.cache/buildstream",
        ])
        .unwrap();
        assert_eq!(args.bind, [BindAddress::Unix("/tmp/bst/casd.sock".into())]);
        assert_eq!(args.log_level, LogLevel::Warning);
        assert!(!args.cache_failures);
        assert_eq!(args.quota_high, Some(ByteSize(10_000_000_000)));
        assert_eq!(args.quota_low, LowMark::Percent(Percent(50.0)));
        assert_eq!(args.reserved, ByteSize(1_000_000_000));
        assert!(args.protect_session_blobs);
        assert_eq!(args.jobs, 8);
        assert_eq!(args.cache_dir, Some("/home/me/.cache/buildstream".into()));
    }

    #[test]
    fn defaults_and_the_space_separated_form() {
        let args = parse(&["--bind", "localhost:50051", "--quota-high", "5G", "--bind", "unix:a.sock", "c"])
            .unwrap();
        assert_eq!(args.bind.len(), 2);
        assert_eq!(args.quota_high, Some(ByteSize(5_000_000_000)));
        assert_eq!(args.quota_low, LowMark::Percent(Percent(65.0)));
        assert_eq!(args.reserved, ByteSize(2_000_000_000));
        assert_eq!(args.log_level, LogLevel::Error);
        assert_eq!(args.digest_function, DigestFunction::Sha256);
        assert!(args.cache_failures && !args.protect_session_blobs);
    }

    #[test]
    fn version_needs_no_cache_dir_and_accepts_one() {
        assert!(parse(&["--version"]).unwrap().version);
        assert!(parse(&["--version", "/"]).unwrap().version);
        assert!(parse(&[]).is_err(), "CACHE_DIR is required otherwise");
    }

    #[test]
    fn bad_values_name_their_flag() {
        for args in [
            &["--quota-high=1.5G", "c"][..],
            &["--quota-low=150%", "c"],
            &["--reserved=-1", "c"],
            &["--log-level=loud", "c"],
            &["--digest-function=SHA3", "c"],
            &["--bind=/tmp/x.sock", "c"],
            &["--jobs=abc", "c"],
            &["--unix-socket-mode=999", "c"],
            &["--protect-session-blobs=yes", "c"],
            &["--no-such-flag", "c"],
        ] {
            let error = parse(args).unwrap_err().to_string();
            let flag = args[0].split('=').next().unwrap();
            assert!(error.contains(flag), "{args:?}: {error}");
        }
    }

    #[test]
    fn octal_modes() {
        assert_eq!(octal_mode("0770"), Ok(0o770));
        assert_eq!(octal_mode("600"), Ok(0o600));
        assert!(octal_mode("0o770").is_err());
        assert!(octal_mode("8").is_err());
    }
}
