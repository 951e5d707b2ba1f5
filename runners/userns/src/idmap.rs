//! The user namespace's id maps: the sandbox's uid and gid map to the caller's effective ids,
//! one id each, and `setgroups` is denied (required to write a gid map without privilege, and it
//! keeps the command from dropping supplementary groups that deny it access).

use crate::error::{Failure, Step};
use crate::plan::IdMaps;
use crate::sys::Sys;

/// Writes `setgroups`, `uid_map` and `gid_map` of the calling process (items 0, 1, 2).
pub(crate) fn write(sys: &impl Sys, maps: &IdMaps) -> Result<(), Failure> {
    let files: [(&std::ffi::CStr, &[u8]); 3] = [
        (c"/proc/self/setgroups", b"deny"),
        (c"/proc/self/uid_map", &maps.uid_map),
        (c"/proc/self/gid_map", &maps.gid_map),
    ];
    for (item, (path, data)) in files.into_iter().enumerate() {
        sys.write_file(path, data).map_err(|errno| Failure::new(Step::IdMap, item as u32, errno))?;
    }
    Ok(())
}
