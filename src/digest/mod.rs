//! Content digests as REAPI defines them: a lowercase hex hash and a size in bytes.
//!
//! A [`Digest`] is a small `Copy` value (no heap) so that large sets of them (FindMissingBlobs,
//! tree walks) cost no allocation. The hash function is not part of the value: REAPI carries it
//! beside the digest, per request, so callers validate with [`DigestFunction::check`].

mod function;
mod hasher;

pub use function::DigestFunction;
pub use hasher::Hasher;

use std::fmt;
use std::str::FromStr;

/// The longest hash rebox supports (SHA-512), in bytes.
const MAX_HASH_BYTES: usize = 64;

/// Why a digest was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DigestError {
    /// A message carries no digest where one is required.
    #[error("the digest is missing")]
    Missing,
    /// The text is not `HASH/SIZE`.
    #[error("digest {0:?} is not of the form HASH/SIZE")]
    Format(String),
    /// The hash is not lowercase hex of a supported length.
    #[error("hash {hash:?} {reason}")]
    Hash { hash: String, reason: &'static str },
    /// The size is negative or not a number.
    #[error("digest size {0:?} is not a non-negative integer")]
    Size(String),
    /// The hash length does not fit the digest function in use.
    #[error("hash {hash:?} has {len} hex digits; {function} hashes have {expected}")]
    Length { hash: String, len: usize, function: DigestFunction, expected: usize },
    /// The digest function is unknown or not supported by rebox.
    #[error("digest function {0:?} is not supported (use SHA256, SHA384, SHA512, SHA1, MD5 or BLAKE3)")]
    Function(String),
}

/// A content digest: the hash of a blob and its size.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest {
    len: u8,
    hash: [u8; MAX_HASH_BYTES],
    size: u64,
}

impl Digest {
    /// A digest from raw hash bytes (at most 64) and a size.
    pub fn from_raw(hash: &[u8], size: u64) -> Self {
        assert!(hash.len() <= MAX_HASH_BYTES, "hash longer than {MAX_HASH_BYTES} bytes");
        let mut bytes = [0u8; MAX_HASH_BYTES];
        bytes[..hash.len()].copy_from_slice(hash);
        Self { len: hash.len() as u8, hash: bytes, size }
    }

    /// Parses a hex hash and a size as REAPI sends them (`size_bytes` is an `int64`).
    pub fn from_hex(hash: &str, size: i64) -> Result<Self, DigestError> {
        Self::from_hex_bytes(hash.as_bytes(), size)
    }

    /// [`Digest::from_hex`] of a hash still in the bytes it arrived in (a protobuf `string` not
    /// yet checked to be UTF-8: anything but lowercase hex is refused anyway).
    pub fn from_hex_bytes(hash: &[u8], size: i64) -> Result<Self, DigestError> {
        let size = u64::try_from(size).map_err(|_| DigestError::Size(size.to_string()))?;
        let bad = |reason| DigestError::Hash { hash: String::from_utf8_lossy(hash).into_owned(), reason };
        if hash.is_empty() {
            return Err(bad("is empty"));
        }
        if !DigestFunction::ALL.iter().any(|f| f.hex_len() == hash.len()) {
            return Err(bad("has a length no supported digest function produces"));
        }
        let mut raw = [0u8; MAX_HASH_BYTES];
        let raw = &mut raw[..hash.len() / 2];
        // The decoder (SIMD) takes either case; REAPI hashes are lowercase only. The case check
        // has no early exit, so that it vectorises: it runs for every node of every tree read.
        let decoded = const_hex::decode_to_slice(hash, raw);
        let uppercase = hash.iter().fold(false, |seen, b| seen | b.is_ascii_uppercase());
        if decoded.is_err() || uppercase {
            return Err(bad("is not lowercase hexadecimal"));
        }
        Ok(Self::from_raw(raw, size))
    }

    /// The raw hash bytes.
    pub fn hash_bytes(&self) -> &[u8] {
        &self.hash[..usize::from(self.len)]
    }

    /// The hash as lowercase hex.
    pub fn hash_hex(&self) -> String {
        const_hex::encode(self.hash_bytes())
    }

    /// The size of the blob in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The size as REAPI's `int64 size_bytes`.
    pub fn size_i64(&self) -> i64 {
        // Sizes come from files or from validated non-negative i64s, so they always fit.
        i64::try_from(self.size).unwrap_or(i64::MAX)
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.hash_hex(), self.size)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl FromStr for Digest {
    type Err = DigestError;

    /// Parses `HASH/SIZE`, the form REAPI uses in resource names and rebox prints.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (hash, size) = text.split_once('/').ok_or_else(|| DigestError::Format(text.to_owned()))?;
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DigestError::Size(size.to_owned()));
        }
        let size: i64 = size.parse().map_err(|_| DigestError::Size(size.to_owned()))?;
        Self::from_hex(hash, size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats() {
        let text = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/0";
        let digest: Digest = text.parse().unwrap();
        assert_eq!(digest.to_string(), text);
        assert_eq!(digest, DigestFunction::Sha256.hash_bytes(b""));
    }

    #[test]
    fn refuses_malformed_text() {
        let cases = [
            ("abc", "not of the form"),
            ("/0", "is empty"),
            ("E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855/0", "lowercase"),
            ("g3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/0", "hexadecimal"),
            ("e3b0/0", "length"),
            ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/-1", "non-negative"),
            ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/1x", "non-negative"),
            ("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855/", "non-negative"),
        ];
        for (text, message) in cases {
            let error = text.parse::<Digest>().unwrap_err().to_string();
            assert!(error.contains(message), "{text}: {error}");
        }
    }

    proptest::proptest! {
        #[test]
        fn text_form_round_trips(data: Vec<u8>, index in 0..DigestFunction::ALL.len()) {
            let function = DigestFunction::ALL[index];
            let digest = function.hash_bytes(&data);
            let parsed: Digest = digest.to_string().parse().unwrap();
            proptest::prop_assert_eq!(parsed, digest);
            proptest::prop_assert_eq!(Digest::from_hex(&digest.hash_hex(), digest.size_i64()).unwrap(), digest);
            function.check(&parsed).unwrap();
        }

        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,80}") {
            let _ = text.parse::<Digest>();
        }
    }

    #[test]
    fn a_hash_that_is_not_utf8_is_refused_and_shown() {
        let mut hash = vec![b'a'; 64];
        hash[10] = 0xff;
        let error = Digest::from_hex_bytes(&hash, 1).unwrap_err().to_string();
        assert!(
            error.contains("aaaaaaaaaa\u{fffd}aaa") && error.contains("lowercase hexadecimal"),
            "{error}"
        );
    }

    #[test]
    fn negative_proto_size_is_refused() {
        assert!(matches!(Digest::from_hex(&"0".repeat(64), -5), Err(DigestError::Size(_))));
    }
}
