//! Where things live under a store root, exactly as buildbox-casd lays them out.
//!
//! ```text
//! ROOT/cas/objects/<first 2 hex digits>/<remaining hex digits>   one read-only file per blob
//! ROOT/cas/tmp/                                                  writers' temporary files
//! ```
//! BuildStream reads blobs straight from `cas/objects`, so this layout is a contract.

use std::ffi::CStr;
use std::path::{Path, PathBuf};

use crate::digest::Digest;

/// The paths of one store root.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
    objects: PathBuf,
    tmp: PathBuf,
}

impl Layout {
    /// The layout under `root`.
    pub fn new(root: &Path) -> Self {
        let cas = root.join("cas");
        Self { root: root.to_owned(), objects: cas.join("objects"), tmp: cas.join("tmp") }
    }

    /// The store root (`CACHE_DIR` for buildbox-casd).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `ROOT/cas/objects`: the fan-out directories.
    pub fn objects(&self) -> &Path {
        &self.objects
    }

    /// `ROOT/cas/tmp`: temporary files of writers.
    pub fn tmp(&self) -> &Path {
        &self.tmp
    }

    /// `ROOT/cas/objects/<hh>/<rest>` for `digest` (the size is not part of the path).
    pub fn object_path(&self, digest: &Digest) -> PathBuf {
        let hex = digest.hash_hex();
        let (fan_out, rest) = hex.split_at(2);
        let mut path = self.objects.join(fan_out);
        path.push(rest);
        path
    }
}

/// An object's path relative to `cas/objects` (`hh/rest`), built on the stack: existence checks
/// of large batches then cost no allocation and a two-component lookup from an open directory.
#[derive(Debug, Clone, Copy)]
pub struct RelativeObjectPath {
    /// `hh/rest`, then a NUL.
    bytes: [u8; RelativeObjectPath::MAX_LEN + 1],
    len: usize,
    /// `hh`, then a NUL.
    fan_out: [u8; 3],
}

impl RelativeObjectPath {
    /// The longest hash (SHA-512) in hex, plus the `/`.
    const MAX_LEN: usize = 2 * 64 + 1;

    /// The relative path of `digest`'s object.
    pub fn new(digest: &Digest) -> Self {
        let hash = digest.hash_bytes();
        let mut hex = [0u8; 2 * 64];
        let hex = &mut hex[..2 * hash.len()];
        const_hex::encode_to_slice(hash, hex).expect("the buffer fits the longest hash");
        let mut bytes = [0u8; Self::MAX_LEN + 1];
        bytes[..2].copy_from_slice(&hex[..2]);
        bytes[2] = b'/';
        bytes[3..=hex.len()].copy_from_slice(&hex[2..]);
        Self { bytes, len: hex.len() + 1, fan_out: [hex[0], hex[1], 0] }
    }

    /// The path as bytes (no terminating NUL).
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }

    /// The path as a C string, for `*at` calls.
    pub fn as_c_str(&self) -> &CStr {
        CStr::from_bytes_with_nul(&self.bytes[..=self.len]).expect("hex and '/' hold no NUL")
    }

    /// The fan-out directory's name (`hh`), as a C string.
    pub fn fan_out(&self) -> &CStr {
        CStr::from_bytes_with_nul(&self.fan_out).expect("hex holds no NUL")
    }
}

/// The digest of an object file of `size` bytes, from its fan-out directory and file names, if
/// they are lowercase hex of a supported length; `None` for anything else under `cas/objects`.
pub fn object_digest(fan_out: &str, name: &str, size: u64) -> Option<Digest> {
    if fan_out.len() != 2 {
        return None;
    }
    let size = i64::try_from(size).ok()?;
    Digest::from_hex(&format!("{fan_out}{name}"), size).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::DigestFunction;

    #[test]
    fn object_path_splits_after_two_hex_digits() {
        let layout = Layout::new(Path::new("/cache"));
        let digest = DigestFunction::Sha256.hash_bytes(b"abc");
        assert_eq!(
            layout.object_path(&digest),
            Path::new("/cache/cas/objects/ba/7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(layout.tmp(), Path::new("/cache/cas/tmp"));
    }

    #[test]
    fn relative_object_path_matches_the_full_path() {
        let layout = Layout::new(Path::new("/cache"));
        for function in DigestFunction::ALL {
            let digest = function.hash_bytes(b"abc");
            let relative = RelativeObjectPath::new(&digest);
            assert_eq!(relative.as_c_str().to_bytes(), relative.as_bytes(), "{function}");
            assert_eq!(relative.fan_out().to_bytes(), &relative.as_bytes()[..2], "{function}");
            let relative = std::str::from_utf8(relative.as_bytes()).unwrap();
            assert_eq!(layout.objects().join(relative), layout.object_path(&digest), "{function}");
        }
    }

    #[test]
    fn object_digest_accepts_only_hex_names() {
        let rest = "7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let abc = DigestFunction::Sha256.hash_bytes(b"abc");
        assert_eq!(object_digest("ba", rest, 3), Some(abc));
        assert_eq!(object_digest("bA", rest, 3), None);
        assert_eq!(object_digest("b", rest, 3), None);
        assert_eq!(object_digest("ba", "7816", 3), None);
        assert_eq!(object_digest("ba", &format!("{rest}.tmp"), 3), None);
    }
}
