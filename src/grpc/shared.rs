//! The state every service of one daemon shares.

use crate::expiry::Expiry;
use crate::store::Store;

/// What the services of one `rebox casd` share: the store and the daemon's settings.
#[derive(Debug)]
pub struct Shared {
    /// The local CAS.
    pub store: Store,
    /// The instance name this daemon serves (`""` by default); requests may name it or leave it empty.
    pub instance_name: String,
    /// The quota policy keeping the store under `--quota-high`, if one is set.
    pub expiry: Option<Expiry>,
}
