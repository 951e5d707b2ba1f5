//! The flags choosing the CAS an action comes from and runs against: a LocalCAS server, or the
//! embedded store (`rebox run`, `rebox shell`).

use std::path::PathBuf;

use clap::Args;

/// `--remote`, `--instance`, `--cas-dir`.
#[derive(Debug, Args)]
pub(super) struct CasFlags {
    /// LocalCAS server (unix:PATH or http://HOST:PORT); without it, the embedded store
    #[arg(long, value_name = "URL")]
    pub remote: Option<String>,
    /// Name of the CAS instance
    #[arg(long, value_name = "NAME", default_value = "")]
    pub instance: String,
    /// The embedded store's root, without --remote [default: $XDG_CACHE_HOME/rebox, else
    /// ~/.cache/rebox]
    #[arg(long, env = "REBOX_CAS_DIR", value_name = "DIR")]
    pub cas_dir: Option<PathBuf>,
}

impl CasFlags {
    /// The embedded store's root: `--cas-dir`, else the default (none without a home).
    pub fn embedded_root(&self) -> Option<PathBuf> {
        self.cas_dir.clone().or_else(super::cas::default_cas_dir)
    }
}
