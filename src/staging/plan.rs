//! What staging a tree needs, worked out (and checked) before anything is written: its size once
//! expanded, the pool variants its files need, and which directories the action may not write to.

use std::collections::{HashMap, HashSet};

use super::attrs::{Attrs, Owner, subtree_read_only};
use super::build::{join, parse_digest};
use super::error::{Result, StagingError};
use crate::digest::Digest;
use crate::proto::build::bazel::remote::execution::v2 as reapi;
use crate::tree::{DirectorySource, Tree};

/// Most entries a staged tree may have once shared subtrees are expanded. A few kilobytes of
/// Directory messages that share subtrees can describe an exponentially large tree; staging one
/// would fill the disk. Real input roots are far below this.
pub const MAX_STAGED_ENTRIES: u64 = 10_000_000;

/// Refuses a tree that would expand to more than [`MAX_STAGED_ENTRIES`] entries.
pub fn check_expanded_size(tree: &Tree) -> Result<u64> {
    fn size(tree: &Tree, digest: &Digest, memo: &mut HashMap<Digest, u64>) -> u64 {
        if let Some(&n) = memo.get(digest) {
            return n;
        }
        let Some(directory) = tree.directory(digest) else { return 0 };
        let mut n = (directory.files.len() + directory.symlinks.len() + directory.directories.len()) as u64;
        for node in &directory.directories {
            if let Some(child) = parse_digest(node.digest.as_ref()) {
                n = n.saturating_add(size(tree, &child, memo));
            }
        }
        memo.insert(*digest, n);
        n
    }
    // Depth is bounded by Tree::read's MAX_DEPTH, so this recursion is too.
    let entries = size(tree, &tree.root(), &mut HashMap::new());
    if entries > MAX_STAGED_ENTRIES {
        return Err(StagingError::BadProperty {
            path: ".".to_owned(),
            reason: format!(
                "the tree expands to {entries} entries (shared subtrees counted at each place), \
                 more than the {MAX_STAGED_ENTRIES} rebox stages"
            ),
        });
    }
    Ok(entries)
}

/// A blob staged with given attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Variant {
    /// The blob.
    pub digest: Digest,
    /// How it is staged.
    pub attrs: Attrs,
}

/// Every distinct (blob, attributes) pair of the tree's files. Checks every file's and symlink's
/// properties, naming the first path of an offending entry.
pub fn variants(tree: &Tree, owner: Owner) -> Result<Vec<Variant>> {
    let mut seen: HashSet<Variant> = HashSet::new();
    visit_variants(tree, owner, |variant| {
        seen.insert(variant);
    })?;
    Ok(seen.into_iter().collect())
}

/// Checks every file's and symlink's properties, as [`variants`] does, without collecting.
pub fn check_properties(tree: &Tree, owner: Owner) -> Result<()> {
    visit_variants(tree, owner, |_| {})
}

fn visit_variants(tree: &Tree, owner: Owner, mut found: impl FnMut(Variant)) -> Result<()> {
    // Shared subtrees yield the same variants: visit each distinct directory once.
    for (digest, directory) in tree.directories() {
        let located = |error: StagingError, name: &str| relocate(error, tree, digest, name);
        for file in &directory.files {
            let bad_digest = || StagingError::BadProperty {
                path: String::new(),
                reason: "file digest is missing or malformed".to_owned(),
            };
            let digest = parse_digest(file.digest.as_ref()).ok_or_else(bad_digest);
            let digest = digest.map_err(|e| located(e, &file.name))?;
            let attrs = Attrs::of_file(file, owner, "").map_err(|e| located(e, &file.name))?;
            found(Variant { digest, attrs });
        }
        for symlink in &directory.symlinks {
            Attrs::of_symlink(symlink, owner, "").map_err(|e| located(e, &symlink.name))?;
        }
    }
    Ok(())
}

/// Puts the entry's full path (its directory's first path, plus `name`) into a property error.
fn relocate(error: StagingError, tree: &Tree, directory: &Digest, name: &str) -> StagingError {
    match error {
        StagingError::BadProperty { reason, .. } => {
            StagingError::BadProperty { path: join(&first_path_of_directory(tree, directory), name), reason }
        }
        other => other,
    }
}

/// A directory whose writability differs from its parent's, and so needs a mount of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WritabilityChange {
    /// The directory's path from the tree's root (`.` for the root itself).
    pub path: String,
    /// Whether the action may not write below it.
    pub read_only: bool,
}

/// The directories where `SubtreeReadOnly` changes what the action may write, parents before
/// children. The stage root is writable unless it says otherwise.
pub fn writability_changes(tree: &Tree) -> Result<Vec<WritabilityChange>> {
    let mut changes = Vec::new();
    let mut read_only_at: HashMap<String, bool> = HashMap::new();
    for (path, directory) in tree.paths() {
        let parent = match path.rsplit_once('/') {
            _ if path == "." => false,
            Some((parent, _)) => read_only_at[parent],
            None => read_only_at["."],
        };
        let read_only = subtree_read_only(directory, &path)?.unwrap_or(parent);
        if read_only != parent {
            changes.push(WritabilityChange { path: path.clone(), read_only });
        }
        read_only_at.insert(path, read_only);
    }
    Ok(changes)
}

/// The first path (in name order) at which the directory `digest` appears in the tree.
pub fn first_path_of_directory(tree: &Tree, digest: &Digest) -> String {
    find_path(tree, |path, directory, _| {
        (directory_digest_is(tree, directory, digest)).then(|| path.to_owned())
    })
    .unwrap_or_else(|| digest.to_string())
}

/// The first path at which a file with content `digest` (or, in a lazily read tree, the
/// directory `digest`) is staged; the digest itself if none is found.
pub fn first_path_of_blob(tree: &dyn DirectorySource, digest: &Digest) -> String {
    crate::tree::first_path_of(tree, digest).unwrap_or_else(|| digest.to_string())
}

fn directory_digest_is(tree: &Tree, directory: &reapi::Directory, digest: &Digest) -> bool {
    tree.directory(digest).is_some_and(|d| std::ptr::eq(d, directory))
}

fn find_path(
    tree: &Tree,
    mut found: impl FnMut(&str, &reapi::Directory, &Tree) -> Option<String>,
) -> Option<String> {
    tree.paths().into_iter().find_map(|(path, directory)| found(&path, directory, tree))
}
