//! A streaming hasher over every supported digest function.

use sha2::Digest as _;

use super::{Digest, DigestFunction};

/// Incremental hashing; [`Hasher::finish`] yields the digest with the byte count fed in.
#[derive(Debug, Clone)]
pub struct Hasher {
    state: State,
    size: u64,
}

#[derive(Debug, Clone)]
enum State {
    Sha256(sha2::Sha256),
    Sha1(sha1::Sha1),
    Md5(md5::Md5),
    Sha384(sha2::Sha384),
    Sha512(sha2::Sha512),
    Blake3(Box<blake3::Hasher>),
}

impl Hasher {
    /// A hasher for `function`.
    pub fn new(function: DigestFunction) -> Self {
        let state = match function {
            DigestFunction::Sha256 => State::Sha256(sha2::Sha256::new()),
            DigestFunction::Sha1 => State::Sha1(sha1::Sha1::new()),
            DigestFunction::Md5 => State::Md5(md5::Md5::new()),
            DigestFunction::Sha384 => State::Sha384(sha2::Sha384::new()),
            DigestFunction::Sha512 => State::Sha512(sha2::Sha512::new()),
            DigestFunction::Blake3 => State::Blake3(Box::default()),
        };
        Self { state, size: 0 }
    }

    /// Feeds more bytes.
    pub fn update(&mut self, data: &[u8]) {
        self.size += data.len() as u64;
        match &mut self.state {
            State::Sha256(h) => h.update(data),
            State::Sha1(h) => h.update(data),
            State::Md5(h) => h.update(data),
            State::Sha384(h) => h.update(data),
            State::Sha512(h) => h.update(data),
            State::Blake3(h) => {
                h.update(data);
            }
        }
    }

    /// Bytes fed so far.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The digest of everything fed.
    pub fn finish(self) -> Digest {
        let size = self.size;
        match self.state {
            State::Sha256(h) => Digest::from_raw(&h.finalize(), size),
            State::Sha1(h) => Digest::from_raw(&h.finalize(), size),
            State::Md5(h) => Digest::from_raw(&h.finalize(), size),
            State::Sha384(h) => Digest::from_raw(&h.finalize(), size),
            State::Sha512(h) => Digest::from_raw(&h.finalize(), size),
            State::Blake3(h) => Digest::from_raw(h.finalize().as_bytes(), size),
        }
    }
}
