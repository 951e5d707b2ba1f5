//! The seam through which a quota policy ([`crate::expiry`]) watches and gates the store.
//!
//! The store itself knows nothing of quotas: it calls the [`StoreHooks`] installed with
//! [`Store::set_hooks`] when an object is about to be created, was created, was used or was
//! removed. Without hooks (the default, e.g. for `rebox cas`) every call here is a no-op.

use std::fmt;
use std::sync::{Arc, Weak};

use super::error::Result;
use super::{Inner, Store};
use crate::digest::Digest;

/// What a quota policy sees of the store. Called from whichever thread does the store work (never
/// from the async executor: store work is blocking), so implementations must be cheap or may block.
pub trait StoreHooks: Send + Sync + fmt::Debug {
    /// Whether `size` more bytes fit under the quota right now, without waiting.
    fn fits(&self, size: u64) -> bool;
    /// Admits a new object of `size` bytes, waiting (bounded) for space to be freed if need be;
    /// refuses with [`QuotaExceeded`] when nothing more can be freed.
    fn admit(&self, size: u64) -> std::result::Result<(), QuotaExceeded>;
    /// A new object was published.
    fn added(&self, digest: &Digest);
    /// Objects were used: read, found by `find_missing`, or stored again. May include digests
    /// that are not stored; those are to be ignored.
    fn used(&self, digests: &[Digest]);
    /// An object was removed.
    fn removed(&self, digest: &Digest);
}

/// A write refused because the store is full and nothing more can be expired.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "cannot store a blob of {size} bytes: the local cache holds {usage} bytes of its {quota}-byte quota \
     and {reason}"
)]
pub struct QuotaExceeded {
    /// The size of the refused blob.
    pub size: u64,
    /// Bytes in use when it was refused.
    pub usage: u64,
    /// The effective quota (`--quota-high`, lowered to keep `--reserved` bytes of disk free).
    pub quota: u64,
    /// Why no room could be made, e.g. "every remaining blob is protected by this session".
    pub reason: String,
}

impl From<QuotaExceeded> for tonic::Status {
    fn from(error: QuotaExceeded) -> Self {
        tonic::Status::resource_exhausted(error.to_string())
    }
}

/// A handle on a store that does not keep it alive (hooks are owned by the store, so a strong
/// handle would be a cycle).
#[derive(Debug, Clone)]
pub struct WeakStore(Weak<Inner>);

impl WeakStore {
    /// The store, if it is still open.
    pub fn upgrade(&self) -> Option<Store> {
        self.0.upgrade().map(|inner| Store { inner })
    }
}

impl Store {
    /// Installs the hooks of a quota policy. A store has at most one set; returns `false` (and
    /// changes nothing) if hooks were installed already.
    pub fn set_hooks(&self, hooks: Arc<dyn StoreHooks>) -> bool {
        self.inner.hooks.set(hooks).is_ok()
    }

    /// A handle that does not keep the store open.
    pub fn downgrade(&self) -> WeakStore {
        WeakStore(Arc::downgrade(&self.inner))
    }
}

impl Inner {
    /// Admits a new object of `size` bytes; `stored` says whether it is already there (then it
    /// takes no room and is always admitted, as is the empty blob).
    pub(super) fn admit(&self, size: u64, stored: impl FnOnce() -> bool) -> Result<()> {
        match self.hooks.get() {
            Some(hooks) if size > 0 && !hooks.fits(size) && !stored() => Ok(hooks.admit(size)?),
            _ => Ok(()),
        }
    }
}
