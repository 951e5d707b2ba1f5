//! Generated protocol types and gRPC stubs, from rebox's own definitions in `proto/`.
//!
//! The module tree mirrors the protobuf package names exactly: prost refers to types of other
//! packages through `super::` paths, so any other nesting would break cross-package references.
//! `google.protobuf` well-known types map to [`prost_types`].
#![allow(missing_docs, clippy::all, missing_debug_implementations)]

/// The encoded `FileDescriptorSet` of every rebox proto (for reflection and the wire check).
pub const FILE_DESCRIPTOR_SET: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/rebox_descriptor.bin"));

pub mod build {
    pub mod bazel {
        /// Semantic versions (`build.bazel.semver`).
        pub mod semver {
            tonic::include_proto!("build.bazel.semver");
        }

        pub mod remote {
            pub mod execution {
                /// The Remote Execution API v2: CAS, ActionCache, Execution, Capabilities.
                pub mod v2 {
                    tonic::include_proto!("build.bazel.remote.execution.v2");
                }
            }

            pub mod asset {
                /// The Remote Asset API v1: Fetch and Push.
                pub mod v1 {
                    tonic::include_proto!("build.bazel.remote.asset.v1");
                }
            }
        }
    }

    /// buildbox-casd's LocalContentAddressableStorage service (`build.buildgrid`).
    pub mod buildgrid {
        tonic::include_proto!("build.buildgrid");
    }
}

pub mod google {
    /// ByteStream: streamed blob reads and writes.
    pub mod bytestream {
        tonic::include_proto!("google.bytestream");
    }

    /// Long-running operations, as returned by `Execution.Execute`.
    pub mod longrunning {
        tonic::include_proto!("google.longrunning");
    }

    /// gRPC status and canonical error codes.
    pub mod rpc {
        tonic::include_proto!("google.rpc");
    }
}
