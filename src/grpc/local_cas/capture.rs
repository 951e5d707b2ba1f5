//! CaptureTree and CaptureFiles: each path is captured on its own and answered with its own
//! status, in request order. The whole call fails only for a bad instance name or for both
//! `skip_upload` and `bypass_local_cache` set (REAPI requires INVALID_ARGUMENT for that).
//!
//! With no remote CAS yet, `skip_upload` changes nothing and `bypass_local_cache` is ignored
//! (there is nowhere to bypass to: blobs are stored locally), as in buildbox-casd without one.

use rayon::prelude::*;
use tonic::Status;

use super::blobs::check_instance;
use crate::capture::{self, CaptureError, CaptureOptions, OutputFormat, Properties, Target};
use crate::grpc::Shared;
use crate::grpc::blocking::blocking;
use crate::grpc::status::rpc_status as status;
use crate::proto::build::buildgrid::*;
use crate::proto::google::rpc;
use crate::staged_capture::with_known_digests;
use crate::tree::to_proto;

pub async fn capture_tree(
    shared: &Shared,
    request: CaptureTreeRequest,
) -> Result<CaptureTreeResponse, Status> {
    check_request(shared, &request.instance_name, request.skip_upload, request.bypass_local_cache)?;
    let options = options(&request.node_properties, request.unix_mode_mask, request.move_files);
    let format = OutputFormat::from_proto(request.output_directory_format);
    let store = shared.store.clone();
    let stages = shared.stages.clone();
    let root = request.root;
    let paths = request.path;
    let responses = blocking(move || {
        // Paths one after the other: each capture is parallel inside already.
        paths
            .into_iter()
            .map(|path| {
                let captured = Target::resolve(Some(&root), &path).and_then(|target| {
                    with_known_digests(&stages, &target, |known| {
                        capture::capture_tree(&store, &target, &options, format, known)
                    })
                });
                match captured {
                    Ok(captured) => capture_tree_response::Response {
                        path,
                        tree_digest: captured.tree.map(|d| to_proto(&d)),
                        root_directory_digest: format
                            .root_directory()
                            .then(|| to_proto(&captured.root_directory)),
                        status: Some(status(tonic::Code::Ok, "")),
                    },
                    Err(error) => capture_tree_response::Response {
                        status: Some(failed("CaptureTree", &path, error)),
                        path,
                        ..Default::default()
                    },
                }
            })
            .collect()
    })
    .await?;
    Ok(CaptureTreeResponse { responses })
}

pub async fn capture_files(
    shared: &Shared,
    request: CaptureFilesRequest,
) -> Result<CaptureFilesResponse, Status> {
    check_request(shared, &request.instance_name, request.skip_upload, request.bypass_local_cache)?;
    let options = options(&request.node_properties, request.unix_mode_mask, request.move_files);
    let store = shared.store.clone();
    let stages = shared.stages.clone();
    let root = request.root;
    let paths = request.path;
    let responses = blocking(move || {
        // BuildStream sends many small files in one call: capture them in parallel.
        paths
            .into_par_iter()
            .map(|path| {
                let captured = Target::resolve(Some(&root), &path).and_then(|target| {
                    with_known_digests(&stages, &target, |known| {
                        capture::capture_file(&store, &target, &options, known)
                    })
                });
                match captured {
                    Ok(file) => capture_files_response::Response {
                        path,
                        digest: Some(to_proto(&file.digest)),
                        status: Some(status(tonic::Code::Ok, "")),
                        is_executable: file.is_executable,
                        node_properties: file.node_properties,
                    },
                    Err(error) => capture_files_response::Response {
                        status: Some(failed("CaptureFiles", &path, error)),
                        path,
                        ..Default::default()
                    },
                }
            })
            .collect()
    })
    .await?;
    Ok(CaptureFilesResponse { responses })
}

fn check_request(
    shared: &Shared,
    instance_name: &str,
    skip_upload: bool,
    bypass: bool,
) -> Result<(), Status> {
    check_instance(shared, instance_name)?;
    if skip_upload && bypass {
        return Err(Status::invalid_argument(
            "Only one of `skip_upload` and `bypass_local_cache` can be set",
        ));
    }
    Ok(())
}

fn options(names: &[String], unix_mode_mask: Option<u32>, move_files: bool) -> CaptureOptions {
    CaptureOptions {
        properties: Properties::from_names(names.iter().map(String::as_str), unix_mode_mask),
        move_files,
    }
}

fn failed(rpc: &str, path: &str, error: CaptureError) -> rpc::Status {
    tracing::warn!(path, %error, "{rpc} failed");
    status(error.code(), error.to_string())
}
