//! The gRPC services of rebox's local CAS, served together on one socket by `rebox casd`.
//!
//! Each service is a thin adapter: it decodes and checks the request, runs the blocking work
//! (filesystem, hashing) off the async executor, and maps errors to gRPC statuses. The work itself
//! lives in [`crate::store`], [`crate::tree`], [`crate::staging`] and [`crate::capture`].

pub mod action_cache;
mod blocking;
pub mod bytestream;
pub mod capabilities;
pub mod cas;
pub mod client;
pub mod local_cas;
pub mod request;
mod shared;
pub mod status;

pub use shared::Shared;

use std::sync::Arc;

use tonic::service::Routes;

use crate::proto::build::bazel::remote::execution::v2::action_cache_server::ActionCacheServer;
use crate::proto::build::bazel::remote::execution::v2::capabilities_server::CapabilitiesServer;
use crate::proto::build::buildgrid::local_content_addressable_storage_server::LocalContentAddressableStorageServer;
use crate::proto::google::bytestream::byte_stream_server::ByteStreamServer;

/// Largest message rebox decodes or encodes. REAPI batch calls and Tree messages exceed tonic's
/// 4 MiB default; clients size batches by Capabilities' `max_batch_total_size_bytes`.
pub const MAX_MESSAGE_SIZE: usize = 64 * 1024 * 1024;

/// HTTP/2 flow-control windows: how much a peer may send before waiting for a window update.
/// The defaults (64 KiB a stream) cost a round trip per 64 KiB of a large request (a 100k-digest
/// FindMissingBlobs is 7 MB); these let a whole batch arrive in one go on a local socket.
pub const STREAM_WINDOW: u32 = 16 * 1024 * 1024;
/// See [`STREAM_WINDOW`]; shared by every stream of a connection.
pub const CONNECTION_WINDOW: u32 = 32 * 1024 * 1024;

/// Every service, ready to be served on one socket.
pub fn routes(shared: Arc<Shared>) -> Routes {
    let local_cas = LocalContentAddressableStorageServer::new(local_cas::LocalCas::new(Arc::clone(&shared)))
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let bytestream = ByteStreamServer::new(bytestream::ByteStreamService::new(Arc::clone(&shared)))
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let action_cache = ActionCacheServer::new(action_cache::ActionCacheService::new(Arc::clone(&shared)))
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    let capabilities = CapabilitiesServer::new(capabilities::CapabilitiesService::new(Arc::clone(&shared)))
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE);
    Routes::new(local_cas)
        .add_service(cas::CasServer::new(shared))
        .add_service(bytestream)
        .add_service(action_cache)
        .add_service(capabilities)
}
