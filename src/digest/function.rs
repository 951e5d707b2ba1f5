//! The digest functions rebox supports, named and numbered as REAPI's `DigestFunction.Value`.

use std::fmt;
use std::io::{self, Read};
use std::str::FromStr;

use super::{Digest, DigestError, Hasher};

/// A hash function for content digests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DigestFunction {
    /// SHA-256, REAPI's default (SHA-NI accelerated where the CPU has it).
    #[default]
    Sha256,
    /// SHA-1.
    Sha1,
    /// MD5.
    Md5,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
    /// BLAKE3 with its default 256-bit output.
    Blake3,
}

/// Read size for streaming hashes: large enough to amortise syscalls, small enough for the cache.
const READ_CHUNK: usize = 256 * 1024;

impl DigestFunction {
    /// Every supported function.
    pub const ALL: [DigestFunction; 6] = [
        DigestFunction::Sha256,
        DigestFunction::Sha1,
        DigestFunction::Md5,
        DigestFunction::Sha384,
        DigestFunction::Sha512,
        DigestFunction::Blake3,
    ];

    /// The REAPI name (`--digest-function=SHA256`).
    pub fn name(self) -> &'static str {
        match self {
            DigestFunction::Sha256 => "SHA256",
            DigestFunction::Sha1 => "SHA1",
            DigestFunction::Md5 => "MD5",
            DigestFunction::Sha384 => "SHA384",
            DigestFunction::Sha512 => "SHA512",
            DigestFunction::Blake3 => "BLAKE3",
        }
    }

    /// The REAPI `DigestFunction.Value` number.
    pub fn proto_value(self) -> i32 {
        match self {
            DigestFunction::Sha256 => 1,
            DigestFunction::Sha1 => 2,
            DigestFunction::Md5 => 3,
            DigestFunction::Sha384 => 5,
            DigestFunction::Sha512 => 6,
            DigestFunction::Blake3 => 9,
        }
    }

    /// The function for a REAPI `DigestFunction.Value`; `UNKNOWN` (0) means the default, SHA-256.
    pub fn from_proto_value(value: i32) -> Result<Self, DigestError> {
        match value {
            0 => Ok(DigestFunction::Sha256),
            _ => Self::ALL
                .into_iter()
                .find(|f| f.proto_value() == value)
                .ok_or_else(|| DigestError::Function(format!("DigestFunction value {value}"))),
        }
    }

    /// Length of this function's hashes in hex digits.
    pub fn hex_len(self) -> usize {
        2 * match self {
            DigestFunction::Sha256 | DigestFunction::Blake3 => 32,
            DigestFunction::Sha1 => 20,
            DigestFunction::Md5 => 16,
            DigestFunction::Sha384 => 48,
            DigestFunction::Sha512 => 64,
        }
    }

    /// Checks that `digest` could have been produced by this function.
    pub fn check(self, digest: &Digest) -> Result<(), DigestError> {
        let len = 2 * digest.hash_bytes().len();
        if len == self.hex_len() {
            Ok(())
        } else {
            Err(DigestError::Length {
                hash: digest.hash_hex(),
                len,
                function: self,
                expected: self.hex_len(),
            })
        }
    }

    /// A fresh streaming hasher.
    pub fn hasher(self) -> Hasher {
        Hasher::new(self)
    }

    /// The digest of an in-memory blob.
    pub fn hash_bytes(self, data: &[u8]) -> Digest {
        let mut hasher = self.hasher();
        hasher.update(data);
        hasher.finish()
    }

    /// The digest of everything `reader` yields, read in fixed-size chunks (never buffered whole).
    pub fn hash_reader(self, mut reader: impl Read) -> io::Result<Digest> {
        let mut hasher = self.hasher();
        let mut buffer = vec![0u8; READ_CHUNK];
        loop {
            match reader.read(&mut buffer) {
                Ok(0) => return Ok(hasher.finish()),
                Ok(n) => hasher.update(&buffer[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl fmt::Display for DigestFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DigestFunction {
    type Err = DigestError;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| DigestError::Function(name.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Known answers for "abc" (FIPS 180 / RFC 1321 / BLAKE3 test vectors).
    #[test]
    fn known_answers() {
        let cases = [
            (DigestFunction::Sha256, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            (DigestFunction::Sha1, "a9993e364706816aba3e25717850c26c9cd0d89d"),
            (DigestFunction::Md5, "900150983cd24fb0d6963f7d28e17f72"),
            (
                DigestFunction::Sha384,
                "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7",
            ),
            (
                DigestFunction::Sha512,
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
            ),
            (DigestFunction::Blake3, "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"),
        ];
        for (function, hex) in cases {
            let digest = function.hash_bytes(b"abc");
            assert_eq!(digest.hash_hex(), hex, "{function}");
            assert_eq!(digest.size(), 3);
            assert_eq!(function.hex_len(), hex.len());
            function.check(&digest).unwrap();
        }
    }

    #[test]
    fn streaming_equals_one_shot() {
        let data: Vec<u8> = (0..3 * READ_CHUNK + 17).map(|i| (i * 7) as u8).collect();
        for function in DigestFunction::ALL {
            assert_eq!(function.hash_reader(&data[..]).unwrap(), function.hash_bytes(&data));
        }
    }

    #[test]
    fn names_and_proto_values_round_trip() {
        for function in DigestFunction::ALL {
            assert_eq!(function.name().parse::<DigestFunction>().unwrap(), function);
            assert_eq!(DigestFunction::from_proto_value(function.proto_value()).unwrap(), function);
        }
        assert_eq!(DigestFunction::from_proto_value(0).unwrap(), DigestFunction::Sha256);
        assert!(DigestFunction::from_proto_value(4).is_err(), "VSO is not supported");
        assert!("murmur3".parse::<DigestFunction>().is_err());
    }

    #[test]
    fn wrong_length_for_function_is_refused() {
        let sha1 = DigestFunction::Sha1.hash_bytes(b"x");
        let error = DigestFunction::Sha256.check(&sha1).unwrap_err().to_string();
        assert!(error.contains("40 hex digits; SHA256 hashes have 64"), "{error}");
    }
}
