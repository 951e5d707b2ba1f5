//! The gRPC services of rebox's local CAS, served together on one socket by `rebox casd`.
//!
//! Each service is a thin adapter: it decodes and checks the request, runs the blocking work
//! (filesystem, hashing) off the async executor, and maps errors to gRPC statuses. The work itself
//! lives in [`crate::store`], [`crate::tree`], [`crate::staging`] and [`crate::capture`].

pub mod client;
pub mod local_cas;
mod shared;

pub use shared::Shared;

use std::sync::Arc;

use tonic::service::Routes;

use crate::proto::build::buildgrid::local_content_addressable_storage_server::LocalContentAddressableStorageServer;

/// Largest message rebox decodes or encodes. REAPI batch calls and Tree messages exceed tonic's
/// 4 MiB default; clients size batches by Capabilities' `max_batch_total_size_bytes`.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// Every service, ready to be served on one socket.
pub fn routes(shared: Arc<Shared>) -> Routes {
    let local_cas = LocalContentAddressableStorageServer::new(local_cas::LocalCas::new(shared))
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    Routes::new(local_cas)
}
