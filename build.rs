//! Compiles rebox's own protocol definitions (`proto/`) with protox (no system `protoc`) and
//! generates the message types and gRPC clients/servers with tonic-prost-build. The encoded
//! descriptor set is kept too: the wire-compatibility check and gRPC reflection read it.

use std::path::{Path, PathBuf};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_root = Path::new("proto");
    let mut files = Vec::new();
    collect_protos(proto_root, &mut files)?;
    files.sort();
    println!("cargo:rerun-if-changed=proto");

    let descriptors = protox::compile(&files, [proto_root])?;
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out_dir.join("rebox_descriptor.bin"), prost::Message::encode_to_vec(&descriptors))?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // Uploaded blob data is received as slices of the message buffer, never copied again.
        .bytes(".build.bazel.remote.execution.v2.BatchUpdateBlobsRequest.Request.data")
        .bytes(".google.bytestream.WriteRequest.data")
        .compile_fds(descriptors)?;
    Ok(())
}

fn collect_protos(dir: &Path, out: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_protos(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "proto") {
            out.push(path);
        }
    }
    Ok(())
}
