//! From flags to a checked daemon configuration. What each accepted buildbox-casd flag does in
//! rebox casd:
//!
//! - served: `--bind`, `--unix-socket-group`, `--unix-socket-mode`, `--local-server-instance`
//!   (`--server-instance`), `--shutdown-deadline`, `--digest-function`, the quota flags,
//!   `--log-level`, `--verbose`;
//! - refused with a clear error when used: any remote server (`--remote`, `--cas-remote`,
//!   `--ac-remote`, `--ra-remote`, `--exec-remote`) and `--proxy-instance`: rebox has no remote
//!   proxy yet;
//! - accepted and checked, no effect yet (logged at info level when given): local execution
//!   (`--buildbox-run`, `--jobs`, `--runner-arg`, `--cache-failures`, ...; BuildStream always
//!   passes these but only uses them with remote execution), metrics, thread counts,
//!   `--store-writable-objects` (objects stay read-only), `--capture-allow-file-moves`,
//!   `--allow-pre-unstage-command`, `--permit-keepalive-time`, proxy caches.

use std::path::PathBuf;
use std::time::Duration;

use nix::unistd::{Gid, Group};
use tracing::info;

use super::args::CasdArgs;
use super::bind::{BindAddress, SocketOptions};
use super::error::CasdError;
use super::logging::LogLevel;
use crate::digest::DigestFunction;
use crate::expiry::QuotaConfig;

/// How long calls in flight may run on after a stop signal, unless `--shutdown-deadline` says.
const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// A checked daemon configuration.
#[derive(Debug, Clone)]
pub struct DaemonConfig {
    /// The cache directory, absolute.
    pub cache_dir: PathBuf,
    /// Where to listen (at least one address).
    pub binds: Vec<BindAddress>,
    /// Mode and group of Unix sockets.
    pub socket: SocketOptions,
    /// The store's digest function.
    pub digest_function: DigestFunction,
    /// The local instance name.
    pub instance_name: String,
    /// The quota, if any.
    pub quota: Option<QuotaConfig>,
    /// How long calls may run on after a stop signal.
    pub shutdown_deadline: Duration,
    /// Log level.
    pub log_level: LogLevel,
}

impl DaemonConfig {
    /// Checks `args` and resolves defaults. The cache directory is made absolute against the
    /// current directory.
    pub fn from_args(args: &CasdArgs) -> Result<Self, CasdError> {
        let Some(cache_dir) = &args.cache_dir else {
            return Err(CasdError::BadFlag { flag: "CACHE_DIR", message: "is required".to_owned() });
        };
        let cache_dir = std::path::absolute(cache_dir)
            .map_err(|source| CasdError::CacheDir { path: cache_dir.clone(), source })?;
        refuse_remotes(args)?;
        let binds = if args.bind.is_empty() {
            vec![BindAddress::Unix(cache_dir.join("casd.sock"))]
        } else {
            args.bind.clone()
        };
        let quota = args.quota_high.map(|high| QuotaConfig {
            high,
            low: args.quota_low,
            cleanup_threshold: args.cleanup_threshold,
            reserved: args.reserved,
            protect_session_blobs: args.protect_session_blobs,
            fail_fast: args.fail_fast_during_cleanup,
        });
        if let Some(quota) = &quota {
            quota.validate()?;
        }
        let group = args.unix_socket_group.as_deref().map(group_id).transpose()?;
        let instance_name =
            args.local_server_instance.clone().or_else(|| args.server_instance.clone()).unwrap_or_default();
        Ok(Self {
            cache_dir,
            binds,
            socket: SocketOptions { mode: args.unix_socket_mode, group },
            digest_function: args.digest_function,
            instance_name,
            quota,
            shutdown_deadline: args.shutdown_deadline.map_or(DEFAULT_SHUTDOWN_DEADLINE, Duration::from_secs),
            log_level: if args.verbose { args.log_level.max(LogLevel::Debug) } else { args.log_level },
        })
    }
}

/// Logs the flags that are accepted but have no effect yet. Call once logging is set up.
pub fn log_inert_flags(args: &CasdArgs) {
    if let Some(runner) = &args.buildbox_run {
        info!("--buildbox-run={}: the local Execution service is not served yet", runner.display());
    }
    if args.metrics_mode.is_some() {
        info!("--metrics-mode: rebox casd publishes no metrics yet");
    }
    if args.store_writable_objects {
        info!("--store-writable-objects: rebox keeps objects read-only");
    }
}

/// Remote servers need the remote proxy, which rebox does not have yet.
fn refuse_remotes(args: &CasdArgs) -> Result<(), CasdError> {
    if let Some((flag, url)) = args.remotes.remote() {
        return Err(CasdError::Unsupported(format!(
            "--{flag}={url}: rebox casd cannot use a remote server yet (no remote proxy); run it without \
             remote flags"
        )));
    }
    if let Some(instance) = args.proxy_instance.first() {
        return Err(CasdError::Unsupported(format!(
            "--proxy-instance={instance}: rebox casd has no proxy instances yet"
        )));
    }
    Ok(())
}

/// The id of a group given by name or number.
fn group_id(name: &str) -> Result<Gid, CasdError> {
    if let Ok(number) = name.parse::<u32>() {
        return Ok(Gid::from_raw(number));
    }
    match Group::from_name(name) {
        Ok(Some(group)) => Ok(group.gid),
        Ok(None) => {
            Err(CasdError::BadFlag { flag: "--unix-socket-group", message: format!("no group {name:?}") })
        }
        Err(errno) => Err(CasdError::BadFlag {
            flag: "--unix-socket-group",
            message: format!("cannot look up group {name:?}: {errno}"),
        }),
    }
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

    fn config(args: &[&str]) -> Result<DaemonConfig, CasdError> {
        let args = Test::try_parse_from(std::iter::once("casd").chain(args.iter().copied())).unwrap().casd;
        DaemonConfig::from_args(&args)
    }

    #[test]
    fn default_socket_is_in_the_cache_dir_made_absolute() {
        let config = config(&["cache"]).unwrap();
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(config.cache_dir, cwd.join("cache"));
        assert_eq!(config.binds, [BindAddress::Unix(cwd.join("cache/casd.sock"))]);
        assert!(config.quota.is_none());
        assert_eq!(config.instance_name, "");
    }

    #[test]
    fn quota_flags_make_a_quota() {
        let config =
            config(&["--quota-high=1G", "--quota-low=100M", "--protect-session-blobs", "/c"]).unwrap();
        let quota = config.quota.unwrap();
        assert_eq!(quota.high.0, 1_000_000_000);
        assert!(quota.protect_session_blobs);
        let error = self::config(&["--quota-high=1G", "--quota-low=2G", "/c"]).unwrap_err();
        assert!(error.to_string().contains("--quota-low"), "{error}");
    }

    #[test]
    fn remotes_are_refused_with_the_flag_named() {
        let error = config(&["--cas-remote=http://cache:50051", "/c"]).unwrap_err().to_string();
        assert!(error.contains("--cas-remote=http://cache:50051") && error.contains("remote"), "{error}");
        assert!(!error.contains('\n'));
        assert!(config(&["--cas-remote=", "--cas-instance=x", "/c"]).is_ok(), "an empty remote is none");
        assert!(config(&["--proxy-instance=p", "/c"]).is_err());
    }

    #[test]
    fn verbose_means_at_least_debug() {
        assert_eq!(config(&["--verbose", "/c"]).unwrap().log_level, LogLevel::Debug);
        assert_eq!(config(&["--verbose", "--log-level=trace", "/c"]).unwrap().log_level, LogLevel::Trace);
        assert_eq!(config(&["--local-server-instance=main", "/c"]).unwrap().instance_name, "main");
        assert!(config(&["--unix-socket-group=no-such-group-here", "/c"]).is_err());
        assert!(config(&["--unix-socket-group=0", "/c"]).unwrap().socket.group.is_some());
    }
}
