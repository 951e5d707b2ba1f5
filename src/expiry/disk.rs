//! Free disk space, for `--reserved`.

use std::io;
use std::path::Path;

use nix::sys::statvfs::statvfs;

/// Bytes an unprivileged process may still write on the filesystem holding `path`.
#[allow(clippy::useless_conversion, reason = "the field types are narrower than u64 on 32-bit targets")]
pub fn available_bytes(path: &Path) -> io::Result<u64> {
    let stat = statvfs(path).map_err(io::Error::from)?;
    Ok(u64::from(stat.blocks_available()).saturating_mul(u64::from(stat.fragment_size())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_temporary_directory_has_some_space_and_a_missing_path_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        assert!(available_bytes(dir.path()).unwrap() > 0);
        assert!(available_bytes(&dir.path().join("missing")).is_err());
    }
}
