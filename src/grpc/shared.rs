//! The state every service of one daemon shares.

use crate::expiry::Expiry;
use crate::staging::Stages;
use crate::store::Store;

/// What the services of one `rebox casd` share: the store and the daemon's settings.
#[derive(Debug)]
pub struct Shared {
    /// The local CAS.
    pub store: Store,
    /// The instance name this daemon serves (`""` by default); requests must name exactly it, as
    /// buildbox-casd requires (see [`super::request::check_instance`]).
    pub instance_name: String,
    /// Whether this daemon runs actions itself (`--buildbox-run`): Capabilities then advertises
    /// execution too.
    pub execution_enabled: bool,
    /// The live stages (StageTree). The daemon calls `cleanup_all` at shutdown; capture asks it for
    /// the known digests of staged files.
    pub stages: Stages,
    /// The quota policy keeping the store under `--quota-high`, if one is set.
    pub expiry: Option<Expiry>,
}

impl Shared {
    /// The state of a daemon serving `store` as `instance_name`, with default settings: no
    /// execution, no stages yet.
    pub fn new(store: Store, instance_name: impl Into<String>) -> Self {
        let stages = Stages::new(store.clone());
        Self { store, instance_name: instance_name.into(), execution_enabled: false, stages, expiry: None }
    }
}
