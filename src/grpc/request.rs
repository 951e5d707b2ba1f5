//! Checks every REAPI request goes through first: the instance name, the digest function and the
//! digests it carries. A request that fails them is refused with `INVALID_ARGUMENT` naming the
//! problem, before any work is done.

use tonic::Status;

use super::Shared;
use crate::digest::{Digest, DigestError, DigestFunction};
use crate::proto::build::bazel::remote::execution::v2 as reapi;

/// Refuses a request for an instance this daemon does not serve.
///
/// buildbox-casd accepts exactly its own instance name (`""` unless configured otherwise) and
/// refuses every other, `""` included when it has a name; rebox does the same.
pub fn check_instance(shared: &Shared, requested: &str) -> Result<(), Status> {
    if requested == shared.instance_name {
        return Ok(());
    }
    Err(Status::invalid_argument(format!(
        "unknown instance name {requested:?}: this server serves only instance {:?}",
        shared.instance_name
    )))
}

/// The digest function a request names (`0`, unset, means the store's), which must be the store's.
pub fn check_digest_function(shared: &Shared, value: i32) -> Result<DigestFunction, Status> {
    let store = shared.store.digest_function();
    if value == 0 {
        return Ok(store);
    }
    match DigestFunction::from_proto_value(value) {
        Ok(function) if function == store => Ok(function),
        Ok(function) => Err(Status::invalid_argument(format!(
            "digest function {function} is not supported: this server's CAS uses {store}"
        ))),
        Err(_) => Err(Status::invalid_argument(format!(
            "digest function value {value} is unknown: this server's CAS uses {store}"
        ))),
    }
}

/// Parses a digest from a request and checks it fits `function`.
pub fn parse_digest(digest: &reapi::Digest, function: DigestFunction) -> Result<Digest, DigestError> {
    let parsed = Digest::from_hex(&digest.hash, digest.size_bytes)?;
    function.check(&parsed)?;
    Ok(parsed)
}

/// Parses a required digest field named `field`; a missing or malformed one is `INVALID_ARGUMENT`.
pub fn required_digest(
    digest: Option<&reapi::Digest>,
    field: &str,
    function: DigestFunction,
) -> Result<Digest, Status> {
    let digest = digest.ok_or_else(|| Status::invalid_argument(format!("{field} is missing")))?;
    parse_digest(digest, function).map_err(|e| Status::invalid_argument(format!("{field}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;

    fn shared(instance: &str) -> (tempfile::TempDir, Shared) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), DigestFunction::Sha256).unwrap();
        (dir, Shared::new(store, instance))
    }

    #[test]
    fn only_the_daemons_own_instance_is_served() {
        let (_dir, default) = shared("");
        check_instance(&default, "").unwrap();
        let error = check_instance(&default, "foo").unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument);
        assert!(error.message().contains("\"foo\""), "{}", error.message());

        let (_dir, named) = shared("main");
        check_instance(&named, "main").unwrap();
        assert!(check_instance(&named, "").is_err(), "buildbox-casd refuses \"\" when it has a name");
    }

    #[test]
    fn digest_function_must_be_the_stores() {
        let (_dir, shared) = shared("");
        assert_eq!(check_digest_function(&shared, 0).unwrap(), DigestFunction::Sha256);
        assert_eq!(check_digest_function(&shared, 1).unwrap(), DigestFunction::Sha256);
        let sha1 = check_digest_function(&shared, DigestFunction::Sha1.proto_value()).unwrap_err();
        assert!(sha1.message().contains("SHA1") && sha1.message().contains("SHA256"), "{}", sha1.message());
        let unknown = check_digest_function(&shared, 77).unwrap_err();
        assert!(unknown.message().contains("77"), "{}", unknown.message());
    }

    #[test]
    fn digests_are_checked_against_the_function() {
        let good = DigestFunction::Sha256.hash_bytes(b"x");
        let proto = reapi::Digest { hash: good.hash_hex(), size_bytes: 1 };
        assert_eq!(required_digest(Some(&proto), "d", DigestFunction::Sha256).unwrap(), good);
        let missing = required_digest(None, "action_digest", DigestFunction::Sha256).unwrap_err();
        assert_eq!(missing.message(), "action_digest is missing");
        let sha1 = reapi::Digest { hash: DigestFunction::Sha1.hash_bytes(b"x").hash_hex(), size_bytes: 1 };
        let error = required_digest(Some(&sha1), "d", DigestFunction::Sha256).unwrap_err();
        assert!(error.message().contains("40 hex digits"), "{}", error.message());
        let negative = reapi::Digest { hash: good.hash_hex(), size_bytes: -1 };
        assert!(parse_digest(&negative, DigestFunction::Sha256).is_err());
    }
}
