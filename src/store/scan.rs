//! Walking `cas/objects`: the usage total on open, and the object list expiry will sort by mtime.
//!
//! The 256 fan-out directories are independent, so they are read in parallel; each entry costs
//! one `statx` relative to its (already open) directory.

use std::fs;
use std::io;
use std::path::Path;
use std::time::SystemTime;

use rayon::prelude::*;

use super::Store;
use super::error::{IoContext, Result, StoreError};
use super::layout::object_digest;
use crate::digest::Digest;

/// One stored object, as found on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ObjectInfo {
    /// The object's digest: the hash its path names and the file's length.
    pub digest: Digest,
    /// Last use (the LRU clock).
    pub mtime: SystemTime,
}

impl Store {
    /// Every object in the store, in no particular order. Files under `cas/objects` whose names
    /// are not hashes are left out (and not counted in the usage).
    pub fn objects(&self) -> Result<Vec<ObjectInfo>> {
        let per_fan_out = fan_outs(self.inner.layout.objects())?
            .into_par_iter()
            .map(|fan_out| {
                let mut found = Vec::new();
                scan_fan_out(self.inner.layout.objects(), &fan_out, |object| found.push(object))?;
                Ok(found)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(per_fan_out.into_iter().flatten().collect())
    }
}

/// The total length of the objects under `objects`; `found` is called with each one's digest.
pub fn total_size(objects: &Path, found: impl Fn(&Digest) + Sync) -> Result<u64> {
    fan_outs(objects)?
        .into_par_iter()
        .map(|fan_out| {
            let mut total = 0;
            scan_fan_out(objects, &fan_out, |object| {
                found(&object.digest);
                total += object.digest.size();
            })?;
            Ok(total)
        })
        .try_reduce(|| 0, |a, b| Ok(a + b))
}

/// The names of the fan-out directories (two hex digits) under `objects`.
fn fan_outs(objects: &Path) -> Result<Vec<String>> {
    let mut names = Vec::with_capacity(256);
    for entry in fs::read_dir(objects).at("list directory", objects)? {
        let entry = entry.at("list directory", objects)?;
        if let Ok(name) = entry.file_name().into_string()
            && name.len() == 2
            && entry.file_type().is_ok_and(|t| t.is_dir())
        {
            names.push(name);
        }
    }
    Ok(names)
}

/// Calls `visit` for each object in `objects/fan_out`. Entries that vanish meanwhile (removed
/// by a concurrent expiry) are skipped.
fn scan_fan_out(objects: &Path, fan_out: &str, mut visit: impl FnMut(ObjectInfo)) -> Result<()> {
    let dir = objects.join(fan_out);
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::io("list directory", dir, e)),
    };
    for entry in entries {
        let entry = entry.at("list directory", &dir)?;
        let Some(named) = entry.file_name().to_str().and_then(|name| object_digest(fan_out, name, 0)) else {
            continue;
        };
        let metadata = match entry.metadata() {
            Ok(metadata) if metadata.is_file() => metadata,
            Ok(_) => continue,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::io("stat", entry.path(), e)),
        };
        let digest = Digest::from_raw(named.hash_bytes(), metadata.len());
        let mtime = metadata.modified().at("read mtime of", &entry.path())?;
        visit(ObjectInfo { digest, mtime });
    }
    Ok(())
}
