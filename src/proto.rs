//! Generated protocol types and gRPC stubs, from rebox's own definitions in `proto/`.
#![allow(missing_docs, clippy::all, missing_debug_implementations)]

/// The encoded `FileDescriptorSet` of every rebox proto (for reflection and the wire check).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/rebox_descriptor.bin"));

pub mod build {
    pub mod bazel {
        pub mod semver {
            tonic::include_proto!("build.bazel.semver");
        }
    }
}
