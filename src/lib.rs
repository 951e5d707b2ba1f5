//! rebox: a sandboxed REAPI v2 build runner with its own local content-addressable store.
//!
//! Layers, each depending only on those below it:
//! - [`cli`]: the `rebox` command line (also invoked as `buildbox-run` / `buildbox-casd`);
//! - [`action`]: running one REAPI Action in a sandbox (`rebox run`, `rebox exec`);
//! - [`casd`]: the local CAS daemon (`rebox casd`, alias `buildbox-casd`);
//! - [`grpc`]: the daemon's gRPC services (REAPI CAS, ByteStream, LocalCAS, ...);
//! - [`expiry`]: keeping the store under its quota (LRU, in the background);
//! - [`tree`]: Directory protos built from and checked against the store;
//! - [`store`]: the content-addressable store on disk;
//! - [`digest`]: content digests and hashing;
//! - [`proto`]: the wire types.

pub mod action;
pub mod action_cache;
pub mod anonymous_file;
pub mod capture;
pub mod casd;
pub mod cli;
pub mod digest;
pub mod expiry;
pub mod grpc;
pub mod locked_dir;
pub mod proto;
pub mod staged_capture;
pub mod staging;
pub mod store;
pub mod tree;
