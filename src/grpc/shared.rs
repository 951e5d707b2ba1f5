//! The state every service of one daemon shares.

use crate::staging::Stages;
use crate::store::Store;

/// What the services of one `rebox casd` share: the store and the daemon's settings.
#[derive(Debug)]
pub struct Shared {
    /// The local CAS.
    pub store: Store,
    /// The instance name this daemon serves (`""` by default); requests may name it or leave it empty.
    pub instance_name: String,
    /// The live stages (StageTree); `Stages::new(store.clone())`. The daemon calls `cleanup_all`
    /// at shutdown; capture asks it for the known digests of staged files.
    pub stages: Stages,
}
