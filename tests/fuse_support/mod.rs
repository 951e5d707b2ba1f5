//! Helpers for the FUSE staging tests: the mount table with types and sources, errnos, and
//! tampering with a CAS object behind the store's back (to prove something was not read).

#![allow(dead_code, reason = "each test crate uses a different part of this support module")]

use std::fs;
use std::io::ErrorKind;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub point: PathBuf,
    pub fstype: String,
    pub source: String,
}

/// This process's mount table.
pub fn mounts() -> Vec<Mount> {
    let table = fs::read_to_string("/proc/self/mountinfo").unwrap();
    table
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let point = before.split(' ').nth(4)?;
            let mut after = after.split(' ');
            let fstype = after.next()?.to_owned();
            let source = unescape(after.next()?);
            Some(Mount { point: PathBuf::from(unescape(point)), fstype, source })
        })
        .collect()
}

/// Mountinfo's octal escapes (`\040` for a space...).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            let digits = std::str::from_utf8(&bytes[i + 1..i + 4]).ok();
            if let Some(value) = digits.and_then(|d| u8::from_str_radix(d, 8).ok()) {
                out.push(value);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mounts at exactly `path`.
pub fn mounts_at(path: &Path) -> Vec<Mount> {
    mounts().into_iter().filter(|m| m.point == path).collect()
}

/// The mounts whose source starts with `prefix` (say, a daemon's stage tag).
pub fn mounts_tagged(prefix: &str) -> Vec<Mount> {
    mounts().into_iter().filter(|m| m.source.starts_with(prefix)).collect()
}

/// The errno of `lstat(path)`, `None` if it succeeds.
pub fn stat_errno(path: &Path) -> Option<i32> {
    fs::symlink_metadata(path).err().map(|e| e.raw_os_error().unwrap_or(0))
}

/// Whether `path` is gone (and not merely unreachable).
pub fn is_gone(path: &Path) -> bool {
    matches!(fs::symlink_metadata(path), Err(e) if e.kind() == ErrorKind::NotFound)
}

/// Overwrites the CAS object at `object` with `bytes` (same length) behind the store's back, as
/// only root can (it is 0444): made writable, written in place, its mtime (the LRU clock) and
/// mode put back. Anything that reads the object afterwards sees `bytes`.
pub fn alter_object(object: &Path, bytes: &[u8]) {
    let before = fs::metadata(object).unwrap();
    assert_eq!(before.len(), bytes.len() as u64, "the alteration keeps the length");
    fs::set_permissions(object, fs::Permissions::from_mode(0o644)).unwrap();
    let file = fs::File::options().write(true).open(object).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&file, bytes, 0).unwrap();
    file.set_modified(before.modified().unwrap()).unwrap();
    drop(file);
    fs::set_permissions(object, fs::Permissions::from_mode(before.mode() & 0o7777)).unwrap();
    assert_eq!(fs::read(object).unwrap(), bytes);
}

/// The tag every stage mount of the daemon owning `stage` (a generated stage path,
/// `<owner dir>/<n>/root`) carries as the start of its mount source.
pub fn owner_tag(stage: &Path) -> String {
    let owner = stage.parent().and_then(Path::parent).and_then(Path::file_name).unwrap();
    format!("rebox-stage:{}:", owner.to_str().unwrap())
}

/// The owner dir and number of a generated stage path `<owner dir>/<n>/root`.
pub fn owner_dir_and_number(stage: &Path) -> (PathBuf, String) {
    let parent = stage.parent().unwrap();
    let n = parent.file_name().unwrap().to_str().unwrap().to_owned();
    (parent.parent().unwrap().to_owned(), n)
}

pub mod local_cas;
pub mod sample;
