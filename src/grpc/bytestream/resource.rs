//! ByteStream resource names, as REAPI defines them:
//!
//! ```text
//! read:   [{instance}/]blobs/[{digest_function}/]{hash}/{size}
//! write:  [{instance}/]uploads/{uuid}/blobs/[{digest_function}/]{hash}/{size}[/{metadata}...]
//! ```
//! The instance name may span several segments but none of them may be empty or one of REAPI's
//! reserved words (`blobs`, `uploads`, ...), so the first reserved word ends it. The digest
//! function segment is the lowercase name of a `DigestFunction` (REAPI only sends it for
//! functions it can't infer from the hash length, such as BLAKE3; rebox accepts it for any).
//! `compressed-blobs` names are recognised and refused: rebox advertises no compressor.
//!
//! Unlike buildbox-casd, a read name with segments after the size is refused rather than read,
//! and an upload name must carry its upload id (the key for resuming it).

use crate::digest::{Digest, DigestError, DigestFunction};

/// Segments REAPI forbids in instance names, so that names parse unambiguously.
const RESERVED: [&str; 7] =
    ["blobs", "uploads", "actions", "actionResults", "operations", "capabilities", "compressed-blobs"];

const READ_FORM: &str = "[{instance}/]blobs/[{digest_function}/]{hash}/{size}";
const WRITE_FORM: &str = "[{instance}/]uploads/{uuid}/blobs/[{digest_function}/]{hash}/{size}[/{metadata}]";

/// Why a resource name was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ResourceError {
    /// Not a read name.
    #[error("resource name {0:?} is not of the form {form}", form = READ_FORM)]
    NotARead(String),
    /// Not an upload name.
    #[error("resource name {0:?} is not of the form {form}", form = WRITE_FORM)]
    NotAnUpload(String),
    /// A `compressed-blobs` name.
    #[error(
        "resource name {0:?} asks for compressed-blobs, but this server supports no compressor; use blobs/"
    )]
    Compressed(String),
    /// An instance name with an empty or reserved segment.
    #[error("resource name {0:?} has an empty or reserved segment in its instance name")]
    BadInstance(String),
    /// A digest function segment that names no function rebox knows.
    #[error("resource name {name:?} names digest function {function:?}, which is not supported")]
    UnknownFunction { name: String, function: String },
    /// The hash or size is malformed.
    #[error("resource name {name:?}: {source}")]
    BadDigest {
        name: String,
        #[source]
        source: DigestError,
    },
}

impl From<ResourceError> for tonic::Status {
    fn from(error: ResourceError) -> Self {
        tonic::Status::invalid_argument(error.to_string())
    }
}

/// A parsed read name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobResource {
    /// The instance name (`""` when the name has none).
    pub instance: String,
    /// The digest function segment, if the name has one.
    pub function: Option<DigestFunction>,
    /// The blob.
    pub digest: Digest,
}

/// A parsed upload name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadResource {
    /// The instance name (`""` when the name has none).
    pub instance: String,
    /// The client's id for this upload.
    pub uuid: String,
    /// The digest function segment, if the name has one.
    pub function: Option<DigestFunction>,
    /// The blob being uploaded.
    pub digest: Digest,
}

impl BlobResource {
    /// Parses a read name.
    pub fn parse(name: &str) -> Result<Self, ResourceError> {
        let segments: Vec<&str> = name.split('/').collect();
        let not_a_read = || ResourceError::NotARead(name.to_owned());
        let at = first_reserved(&segments).ok_or_else(not_a_read)?;
        let instance = instance(name, &segments[..at])?;
        match segments[at] {
            "blobs" => {}
            "compressed-blobs" => return Err(ResourceError::Compressed(name.to_owned())),
            _ => return Err(not_a_read()),
        }
        let (function, digest, rest) = blob(name, &segments[at + 1..]).ok_or_else(not_a_read)??;
        if !rest.is_empty() {
            return Err(not_a_read());
        }
        Ok(Self { instance, function, digest })
    }
}

impl UploadResource {
    /// Parses an upload name; segments after the size (metadata) are ignored.
    pub fn parse(name: &str) -> Result<Self, ResourceError> {
        let segments: Vec<&str> = name.split('/').collect();
        let not_an_upload = || ResourceError::NotAnUpload(name.to_owned());
        let at = first_reserved(&segments).ok_or_else(not_an_upload)?;
        let instance = instance(name, &segments[..at])?;
        let (uuid, kind) = match &segments[at..] {
            ["uploads", uuid, kind, ..] if !uuid.is_empty() && !RESERVED.contains(uuid) => (*uuid, *kind),
            _ => return Err(not_an_upload()),
        };
        match kind {
            "blobs" => {}
            "compressed-blobs" => return Err(ResourceError::Compressed(name.to_owned())),
            _ => return Err(not_an_upload()),
        }
        let (function, digest, _metadata) = blob(name, &segments[at + 3..]).ok_or_else(not_an_upload)??;
        Ok(Self { instance, uuid: uuid.to_owned(), function, digest })
    }
}

/// The index of the first reserved segment.
fn first_reserved(segments: &[&str]) -> Option<usize> {
    segments.iter().position(|s| RESERVED.contains(s))
}

/// The instance name made of `segments` (all before the first reserved one).
fn instance(name: &str, segments: &[&str]) -> Result<String, ResourceError> {
    if segments.iter().any(|s| s.is_empty()) {
        return Err(ResourceError::BadInstance(name.to_owned()));
    }
    Ok(segments.join("/"))
}

type Blob<'a> = (Option<DigestFunction>, Digest, &'a [&'a str]);

/// `[{digest_function}/]{hash}/{size}` at the start of `segments`, and the segments after it.
/// `None` if there are too few segments.
fn blob<'a>(name: &str, segments: &'a [&'a str]) -> Option<Result<Blob<'a>, ResourceError>> {
    let (function, rest) = match segments {
        [first, rest @ ..] if is_function_name(first) => (Some(*first), rest),
        _ => (None, segments),
    };
    let [hash, size, rest @ ..] = rest else { return None };
    Some(parse_blob(name, function, hash, size).map(|(function, digest)| (function, digest, rest)))
}

fn parse_blob(
    name: &str,
    function: Option<&str>,
    hash: &str,
    size: &str,
) -> Result<(Option<DigestFunction>, Digest), ResourceError> {
    let function = function
        .map(|f| {
            f.parse::<DigestFunction>()
                .map_err(|_| ResourceError::UnknownFunction { name: name.to_owned(), function: f.to_owned() })
        })
        .transpose()?;
    let digest = format!("{hash}/{size}")
        .parse::<Digest>()
        .map_err(|source| ResourceError::BadDigest { name: name.to_owned(), source })?;
    Ok((function, digest))
}

/// Whether a segment is a digest function name rather than a hash: function names are lowercase
/// letters and digits that are not all hex digits (`sha256`, `blake3`, `md5`, ...).
fn is_function_name(segment: &str) -> bool {
    !segment.is_empty()
        && segment.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && !segment.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HASH: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    fn digest(size: u64) -> Digest {
        Digest::from_hex(HASH, size as i64).unwrap()
    }

    #[test]
    fn good_read_names() {
        let cases: [(String, &str, Option<DigestFunction>); 5] = [
            (format!("blobs/{HASH}/5"), "", None),
            (format!("main/blobs/{HASH}/5"), "main", None),
            (format!("a/b/c/blobs/{HASH}/5"), "a/b/c", None),
            (format!("blobs/sha256/{HASH}/5"), "", Some(DigestFunction::Sha256)),
            (format!("x/blobs/blake3/{HASH}/5"), "x", Some(DigestFunction::Blake3)),
        ];
        for (name, instance, function) in cases {
            let parsed = BlobResource::parse(&name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                parsed,
                BlobResource { instance: instance.into(), function, digest: digest(5) },
                "{name}"
            );
        }
    }

    #[test]
    fn bad_read_names() {
        let cases: [(String, &str); 14] = [
            (String::new(), "is not of the form"),
            ("garbage".into(), "is not of the form"),
            (format!("blobs/{HASH}"), "is not of the form"),
            (format!("blobs/{HASH}/5/extra"), "is not of the form"),
            (format!("uploads/u/blobs/{HASH}/5"), "is not of the form"),
            (format!("blob/{HASH}/5"), "is not of the form"),
            (format!("/blobs/{HASH}/5"), "empty or reserved segment"),
            (format!("a//blobs/{HASH}/5"), "empty or reserved segment"),
            (format!("compressed-blobs/zstd/{HASH}/5"), "supports no compressor"),
            (format!("blobs/murmur3/{HASH}/5"), "digest function \"murmur3\""),
            (format!("blobs/{HASH}/-5"), "non-negative"),
            (format!("blobs/{HASH}/5x"), "non-negative"),
            ("blobs/abc/5".into(), "length"),
            (format!("blobs/{}/5", HASH.to_uppercase()), "lowercase"),
        ];
        for (name, message) in cases {
            let error = BlobResource::parse(&name).expect_err(&name).to_string();
            assert!(error.contains(message), "{name}: {error}");
            assert!(error.contains(&format!("{name:?}")), "the error names the resource: {error}");
        }
    }

    #[test]
    fn good_upload_names() {
        let uuid = "0b6c3a3e-5f1e-4f4e-9a8e-2d1c6b7a8f90";
        let cases: [(String, &str, Option<DigestFunction>); 5] = [
            (format!("uploads/{uuid}/blobs/{HASH}/5"), "", None),
            (format!("main/uploads/{uuid}/blobs/{HASH}/5"), "main", None),
            (format!("uploads/{uuid}/blobs/{HASH}/5/some/metadata"), "", None),
            (format!("uploads/{uuid}/blobs/sha256/{HASH}/5"), "", Some(DigestFunction::Sha256)),
            (format!("a/b/uploads/{uuid}/blobs/blake3/{HASH}/5/meta"), "a/b", Some(DigestFunction::Blake3)),
        ];
        for (name, instance, function) in cases {
            let parsed = UploadResource::parse(&name).unwrap_or_else(|e| panic!("{name}: {e}"));
            let expected =
                UploadResource { instance: instance.into(), uuid: uuid.into(), function, digest: digest(5) };
            assert_eq!(parsed, expected, "{name}");
        }
        // Any non-reserved id is accepted, as buildbox-casd does: REAPI only asks clients for UUIDs.
        assert_eq!(UploadResource::parse(&format!("uploads/x/blobs/{HASH}/5")).unwrap().uuid, "x");
    }

    #[test]
    fn bad_upload_names() {
        let cases: [(String, &str); 9] = [
            (format!("blobs/{HASH}/5"), "is not of the form"),
            (format!("uploads/blobs/{HASH}/5"), "is not of the form"),
            (format!("uploads//blobs/{HASH}/5"), "is not of the form"),
            (format!("uploads/u/{HASH}/5"), "is not of the form"),
            (format!("uploads/u/blobs/{HASH}"), "is not of the form"),
            (format!("/uploads/u/blobs/{HASH}/5"), "empty or reserved segment"),
            (format!("uploads/u/compressed-blobs/zstd/{HASH}/5"), "supports no compressor"),
            (format!("uploads/u/blobs/{HASH}/five"), "non-negative"),
            (format!("uploads/u/blobs/xyz/{HASH}/5"), "digest function \"xyz\""),
        ];
        for (name, message) in cases {
            let error = UploadResource::parse(&name).expect_err(&name).to_string();
            assert!(error.contains(message), "{name}: {error}");
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_names_never_panic(name in "[a-z0-9/-]{0,80}") {
            let _ = BlobResource::parse(&name);
            let _ = UploadResource::parse(&name);
        }
    }
}
