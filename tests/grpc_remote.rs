//! The REAPI remote services of `rebox casd` (ContentAddressableStorage, ByteStream,
//! ActionCache, Capabilities), each called through a real tonic client over a real Unix socket,
//! and checked against the store and the files on disk.

// A test crate root resolves `mod` like a `mod.rs`, so the submodules' paths are named explicitly.
#[path = "grpc_remote/action_cache.rs"]
mod action_cache;
#[path = "grpc_remote/bytestream.rs"]
mod bytestream;
#[path = "grpc_remote/capabilities.rs"]
mod capabilities;
#[path = "grpc_remote/cas.rs"]
mod cas;
#[path = "support/server.rs"]
mod server;

use reapi::content_addressable_storage_client::ContentAddressableStorageClient;
use rebox::digest::{Digest, DigestFunction};
use rebox::grpc::MAX_MESSAGE_SIZE;
use rebox::proto::build::bazel::remote::execution::v2 as reapi;
use tonic::transport::Channel;

/// The SHA-256 digest of `data`.
fn digest(data: &[u8]) -> Digest {
    DigestFunction::Sha256.hash_bytes(data)
}

/// `digest` as a message.
fn proto(digest: &Digest) -> reapi::Digest {
    rebox::tree::to_proto(digest)
}

/// A CAS client allowed messages as large as the server's.
fn cas_client(channel: &Channel) -> ContentAddressableStorageClient<Channel> {
    ContentAddressableStorageClient::new(channel.clone())
        .max_decoding_message_size(MAX_MESSAGE_SIZE)
        .max_encoding_message_size(MAX_MESSAGE_SIZE)
}
