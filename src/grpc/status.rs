//! How store and digest errors become gRPC statuses, the same way in every service.
//!
//! The message is always the error's own text, which names the digest or path concerned; the code
//! follows REAPI: bad input is `INVALID_ARGUMENT`, an absent blob `NOT_FOUND`, a full disk
//! `RESOURCE_EXHAUSTED`, a stored object that no longer matches its digest `DATA_LOSS`.

use tonic::{Code, Status};

use crate::digest::DigestError;
use crate::proto::google::rpc;
use crate::store::StoreError;

impl From<StoreError> for Status {
    fn from(error: StoreError) -> Self {
        Status::new(error.code(), error.to_string())
    }
}

impl From<DigestError> for Status {
    fn from(error: DigestError) -> Self {
        Status::invalid_argument(error.to_string())
    }
}

/// A `google.rpc.Status` (as carried per blob in batch responses) for `code` and `message`.
pub fn rpc_status(code: Code, message: impl Into<String>) -> rpc::Status {
    rpc::Status { code: code as i32, message: message.into(), details: Vec::new() }
}

/// The `google.rpc.Status` of success.
pub fn rpc_ok() -> rpc::Status {
    rpc::Status::default()
}

/// The `google.rpc.Status` for a store error.
pub fn rpc_store_status(error: &StoreError) -> rpc::Status {
    rpc_status(error.code(), error.to_string())
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::path::PathBuf;

    use super::*;
    use crate::digest::DigestFunction;

    #[test]
    fn codes_follow_reapi() {
        let digest = DigestFunction::Sha256.hash_bytes(b"x");
        let actual = Box::new(DigestFunction::Sha256.hash_bytes(b"y"));
        let io = |errno| StoreError::io("write", "/cas/tmp/1", io::Error::from_raw_os_error(errno));
        let cases = [
            (StoreError::NotFound { digest, path: PathBuf::from("/o") }, Code::NotFound),
            (
                StoreError::DigestMismatch { expected: digest, actual: actual.clone(), path: None },
                Code::InvalidArgument,
            ),
            (StoreError::SizeMismatch { expected: digest, actual: 9, path: None }, Code::InvalidArgument),
            (
                StoreError::DigestMismatch { expected: digest, actual, path: Some(PathBuf::from("/o")) },
                Code::DataLoss,
            ),
            (io(libc::ENOSPC), Code::ResourceExhausted),
            (io(libc::EDQUOT), Code::ResourceExhausted),
            (io(libc::EIO), Code::Internal),
            (StoreError::BadDigest(DigestError::Missing), Code::InvalidArgument),
        ];
        for (error, code) in cases {
            let message = error.to_string();
            let status = Status::from(error);
            assert_eq!(status.code(), code, "{message}");
            assert_eq!(status.message(), message);
        }
    }

    #[test]
    fn per_blob_status_carries_code_and_message() {
        let error = StoreError::SizeMismatch {
            expected: DigestFunction::Sha256.hash_bytes(b"ab"),
            actual: 1,
            path: None,
        };
        let status = rpc_store_status(&error);
        assert_eq!(status.code, Code::InvalidArgument as i32);
        assert!(status.message.contains("has 1 bytes"), "{}", status.message);
        assert_eq!(rpc_ok().code, 0);
    }
}
