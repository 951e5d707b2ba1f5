//! The state every service of one daemon shares.

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
}
