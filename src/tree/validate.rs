//! The checks every consumer of an untrusted Directory runs before acting on it.
//!
//! A Directory from an Action is hostile until checked: names become path components on the host
//! (staging), so `..`, `/` or NUL could escape the staging dir; duplicates and unsorted entries make
//! the same tree hash differently and hide entries from tools that assume canonical order.

use crate::digest::{Digest, DigestFunction};
use crate::proto::build::bazel::remote::execution::v2 as reapi;

use super::TreeError;

/// Checks one Directory message found at `dir` (the path from the tree's root, `.` for the root).
///
/// Returns the digests of its subdirectories, in order, for the caller's walk.
pub fn validate_directory(
    directory: &reapi::Directory,
    dir: &str,
    function: DigestFunction,
) -> Result<Vec<(String, Digest)>, TreeError> {
    check_sorted(dir, directory.files.iter().map(|f| f.name.as_str()))?;
    check_sorted(dir, directory.directories.iter().map(|d| d.name.as_str()))?;
    check_sorted(dir, directory.symlinks.iter().map(|s| s.name.as_str()))?;
    check_unique_across_kinds(directory, dir)?;

    for file in &directory.files {
        node_digest(dir, &file.name, file.digest.as_ref(), function)?;
    }
    for symlink in &directory.symlinks {
        check_symlink_target(dir, &symlink.name, &symlink.target)?;
    }
    directory
        .directories
        .iter()
        .map(|node| Ok((node.name.clone(), node_digest(dir, &node.name, node.digest.as_ref(), function)?)))
        .collect()
}

/// A node's digest, in a tree already validated (which checked it).
pub fn parse_digest(digest: Option<&reapi::Digest>) -> Option<Digest> {
    digest.and_then(|d| Digest::from_hex(&d.hash, d.size_bytes).ok())
}

/// Checks that `name` is a single, harmless path component.
pub fn check_name(dir: &str, name: &str) -> Result<(), TreeError> {
    let reason = match name {
        "" => Some("the name is empty"),
        "." => Some("the name is \".\""),
        ".." => Some("the name is \"..\""),
        _ if name.contains('/') => Some("the name contains '/'"),
        _ if name.contains('\0') => Some("the name contains a NUL byte"),
        _ => None,
    };
    match reason {
        Some(reason) => Err(TreeError::BadName { dir: dir.to_owned(), name: name.to_owned(), reason }),
        None => Ok(()),
    }
}

/// Parses and checks a node's digest against the digest function in use.
pub fn node_digest(
    dir: &str,
    name: &str,
    digest: Option<&reapi::Digest>,
    function: DigestFunction,
) -> Result<Digest, TreeError> {
    let bad = |source| TreeError::BadDigest { dir: dir.to_owned(), name: name.to_owned(), source };
    let digest = digest.ok_or_else(|| bad(crate::digest::DigestError::Missing))?;
    let parsed = Digest::from_hex(&digest.hash, digest.size_bytes).map_err(bad)?;
    function.check(&parsed).map_err(bad)?;
    Ok(parsed)
}

fn check_sorted<'a>(dir: &str, names: impl Iterator<Item = &'a str>) -> Result<(), TreeError> {
    let mut previous: Option<&str> = None;
    for name in names {
        check_name(dir, name)?;
        if let Some(previous) = previous {
            if name == previous {
                return Err(TreeError::Duplicate { dir: dir.to_owned(), name: name.to_owned() });
            }
            // REAPI orders names by their UTF-8 bytes, which is `str`'s order.
            if name < previous {
                return Err(TreeError::Unsorted {
                    dir: dir.to_owned(),
                    name: name.to_owned(),
                    previous: previous.to_owned(),
                });
            }
        }
        previous = Some(name);
    }
    Ok(())
}

fn check_unique_across_kinds(directory: &reapi::Directory, dir: &str) -> Result<(), TreeError> {
    let kinds = [directory.files.len(), directory.directories.len(), directory.symlinks.len()];
    if kinds.iter().filter(|&&n| n > 0).count() < 2 {
        return Ok(()); // Each list is already known to be free of duplicates.
    }
    let mut names: Vec<&str> = directory
        .files
        .iter()
        .map(|f| f.name.as_str())
        .chain(directory.directories.iter().map(|d| d.name.as_str()))
        .chain(directory.symlinks.iter().map(|s| s.name.as_str()))
        .collect();
    names.sort_unstable();
    match names.windows(2).find(|pair| pair[0] == pair[1]) {
        Some(pair) => Err(TreeError::Duplicate { dir: dir.to_owned(), name: pair[0].to_owned() }),
        None => Ok(()),
    }
}

fn check_symlink_target(dir: &str, name: &str, target: &str) -> Result<(), TreeError> {
    let reason = if target.is_empty() {
        "the target is empty"
    } else if target.contains('\0') {
        "the target contains a NUL byte"
    } else {
        return Ok(());
    };
    Err(TreeError::BadSymlink { dir: dir.to_owned(), name: name.to_owned(), reason })
}
