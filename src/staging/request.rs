//! A StageTree request, decoded and checked.

use std::path::PathBuf;

use crate::digest::{Digest, DigestFunction};
use crate::proto::build::buildgrid::StageTreeRequest;
use crate::proto::build::buildgrid::stage_tree_request::StagingMode as ProtoMode;
use crate::tree::node_digest;

use super::attrs::Owner;
use super::error::{Result, StagingError};

/// How the client asked for the tree to be materialised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StagingMode {
    /// The server's choice (what BuildStream sends).
    #[default]
    Default,
    /// Copies or hardlinks from the local cache.
    CopyOrLink,
    /// A FUSE filesystem serving the tree lazily (the overlay where `/dev/fuse` can't be used).
    Fuse,
}

impl std::str::FromStr for StagingMode {
    type Err = String;

    /// The names `--staging-mode` takes, as buildbox-run spells them.
    fn from_str(name: &str) -> Result<Self, String> {
        match name {
            "default" => Ok(StagingMode::Default),
            "copy-or-link" => Ok(StagingMode::CopyOrLink),
            "fuse" => Ok(StagingMode::Fuse),
            _ => Err("must be fuse, copy-or-link or default".to_owned()),
        }
    }
}

/// What to stage, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageRequest {
    /// The root Directory's digest.
    pub root: Digest,
    /// Where to stage: an empty or missing directory (relative paths resolve against the daemon's
    /// cwd, as buildbox-casd's do); `None` lets the daemon choose one under `cas/staging`.
    pub path: Option<PathBuf>,
    /// Who should own the staged files; `None` for the daemon's own user.
    pub credentials: Option<Owner>,
    /// The requested staging mode.
    pub mode: StagingMode,
}

impl StageRequest {
    /// Decodes a StageTree request, naming the field at fault. `pre_unstage_commands` and
    /// `remote_apis_socket_path` are ignored (buildbox-casd too ignores them unless configured).
    pub fn from_proto(request: &StageTreeRequest, function: DigestFunction) -> Result<Self> {
        let root = node_digest(".", "root_digest", request.root_digest.as_ref(), function)
            .map_err(|e| StagingError::BadRequest(format!("StageTree: {e}")))?;
        let credentials = request.access_credentials.as_ref().map(|c| {
            let id = |value: i64, what: &str| {
                u32::try_from(value).ok().filter(|&v| v != u32::MAX).ok_or_else(|| {
                    StagingError::BadRequest(format!(
                        "StageTree: access_credentials.{what} {value} is not a valid id"
                    ))
                })
            };
            Ok::<_, StagingError>(Owner { uid: id(c.uid, "uid")?, gid: id(c.gid, "gid")? })
        });
        let mode = match ProtoMode::try_from(request.staging_mode) {
            Ok(ProtoMode::Default) => StagingMode::Default,
            Ok(ProtoMode::CopyOrLink) => StagingMode::CopyOrLink,
            Ok(ProtoMode::Fuse) => StagingMode::Fuse,
            Err(_) => {
                return Err(StagingError::BadRequest(format!(
                    "StageTree: unknown staging_mode {}",
                    request.staging_mode
                )));
            }
        };
        if request.path.contains('\0') {
            return Err(StagingError::BadRequest("StageTree: path contains a NUL byte".to_owned()));
        }
        Ok(Self {
            root,
            path: (!request.path.is_empty()).then(|| PathBuf::from(&request.path)),
            credentials: credentials.transpose()?,
            mode,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::build::buildgrid::stage_tree_request::Credentials;
    use crate::tree::to_proto;

    #[test]
    fn decodes_and_names_bad_fields() {
        let function = DigestFunction::Sha256;
        let root = function.hash_bytes(b"dir");
        let mut proto = StageTreeRequest { root_digest: Some(to_proto(&root)), ..Default::default() };
        let decoded = StageRequest::from_proto(&proto, function).unwrap();
        assert_eq!(
            (decoded.root, decoded.path, decoded.credentials, decoded.mode),
            (root, None, None, StagingMode::Default)
        );

        proto.path = "/tmp/x".into();
        proto.access_credentials = Some(Credentials { uid: 1000, gid: 100 });
        proto.staging_mode = ProtoMode::Fuse as i32;
        let decoded = StageRequest::from_proto(&proto, function).unwrap();
        assert_eq!(decoded.path.as_deref(), Some(std::path::Path::new("/tmp/x")));
        assert_eq!(decoded.credentials, Some(Owner { uid: 1000, gid: 100 }));
        assert_eq!(decoded.mode, StagingMode::Fuse);

        proto.access_credentials = Some(Credentials { uid: -1, gid: 100 });
        let error = StageRequest::from_proto(&proto, function).unwrap_err();
        assert!(error.to_string().contains("access_credentials.uid -1"), "{error}");

        let error = StageRequest::from_proto(&StageTreeRequest::default(), function).unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        assert!(error.to_string().contains("root_digest"), "{error}");

        let proto =
            StageTreeRequest { root_digest: Some(to_proto(&root)), staging_mode: 7, ..Default::default() };
        let error = StageRequest::from_proto(&proto, function).unwrap_err();
        assert!(error.to_string().contains("staging_mode 7"), "{error}");
    }
}
