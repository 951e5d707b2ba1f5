//! Which blobs an ActionResult needs from the CAS, as buildbox-casd checks them before answering
//! a GetActionResult: output files, stdout and stderr, and for each output directory its Tree
//! blob and every file in it (or, without a Tree, the whole tree under its root directory).

use prost::Message;

use crate::digest::{Digest, DigestFunction};
use crate::proto::build::bazel::remote::execution::v2 as reapi;
use crate::store::{Store, StoreError};
use crate::tree::{Tree, TreeError};

/// Why a stored result can't be served.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Missing {
    /// A blob the result refers to is not in the CAS.
    #[error("{what} ({digest}) is missing from the CAS")]
    Blob {
        /// Which part of the result refers to it, e.g. `output file "bin/x"`.
        what: String,
        /// The missing blob.
        digest: Digest,
    },
    /// A reference in the result is malformed, or a tree it names can't be read.
    #[error("{what}: {reason}")]
    Invalid {
        /// Which part of the result is at fault.
        what: String,
        /// What is wrong.
        reason: String,
    },
}

/// Every blob `result` refers to, each with what refers to it. Reads the Trees of output
/// directories from `store`; a Tree or directory that is itself missing is reported here.
pub fn referenced_blobs(
    store: &Store,
    result: &reapi::ActionResult,
) -> Result<Vec<(String, Digest)>, Missing> {
    let function = store.digest_function();
    let mut blobs = direct_references(result, function)?;
    for directory in &result.output_directories {
        let what = format!("output directory {:?}", directory.path);
        if directory.tree_digest.is_some() {
            let what = format!("{what} tree");
            let tree = parse(&what, directory.tree_digest.as_ref(), function)?;
            blobs.extend(tree_files(store, &what, &tree)?);
            blobs.push((what, tree));
        } else if directory.root_directory_digest.is_some() {
            let root = parse(&what, directory.root_directory_digest.as_ref(), function)?;
            blobs.extend(root_files(store, &what, &root)?);
        } else {
            return Err(no_tree(what));
        }
    }
    Ok(blobs)
}

/// Checks that every digest `result` carries is well formed for `function`, without looking
/// at the store.
pub fn check_well_formed(result: &reapi::ActionResult, function: DigestFunction) -> Result<(), Missing> {
    direct_references(result, function)?;
    for directory in &result.output_directories {
        let what = format!("output directory {:?}", directory.path);
        let digests = [&directory.tree_digest, &directory.root_directory_digest];
        if digests.iter().all(|d| d.is_none()) {
            return Err(no_tree(what));
        }
        for digest in digests.into_iter().flatten() {
            parse(&what, Some(digest), function)?;
        }
    }
    Ok(())
}

/// The blobs named directly in `result`: output files, stdout and stderr.
fn direct_references(
    result: &reapi::ActionResult,
    function: DigestFunction,
) -> Result<Vec<(String, Digest)>, Missing> {
    let mut blobs = Vec::new();
    for file in &result.output_files {
        let what = format!("output file {:?}", file.path);
        let digest = parse(&what, file.digest.as_ref(), function)?;
        blobs.push((what, digest));
    }
    for (what, digest) in [("stdout", &result.stdout_digest), ("stderr", &result.stderr_digest)] {
        if let Some(digest) = digest {
            blobs.push((what.to_owned(), parse(what, Some(digest), function)?));
        }
    }
    Ok(blobs)
}

fn no_tree(what: String) -> Missing {
    Missing::Invalid { what, reason: "has neither tree_digest nor root_directory_digest".into() }
}

/// Parses the digest `what` refers to, which must be present and fit `function`.
fn parse(what: &str, digest: Option<&reapi::Digest>, function: DigestFunction) -> Result<Digest, Missing> {
    let invalid = |reason: String| Missing::Invalid { what: what.to_owned(), reason };
    let digest = digest.ok_or_else(|| invalid("no digest".into()))?;
    let parsed = Digest::from_hex(&digest.hash, digest.size_bytes).map_err(|e| invalid(e.to_string()))?;
    function.check(&parsed).map_err(|e| invalid(e.to_string()))?;
    Ok(parsed)
}

/// The files of the Tree message stored as `tree`.
fn tree_files(store: &Store, what: &str, tree: &Digest) -> Result<Vec<(String, Digest)>, Missing> {
    let invalid = |reason: String| Missing::Invalid { what: what.to_owned(), reason };
    let bytes = match store.read(tree) {
        Ok(bytes) => bytes,
        Err(StoreError::NotFound { .. }) => {
            return Err(Missing::Blob { what: what.to_owned(), digest: *tree });
        }
        Err(e) => return Err(invalid(e.to_string())),
    };
    let tree =
        reapi::Tree::decode(bytes.as_slice()).map_err(|e| invalid(format!("not a Tree message: {e}")))?;
    let function = store.digest_function();
    let mut files = Vec::new();
    for directory in tree.root.iter().chain(&tree.children) {
        for file in &directory.files {
            let digest = crate::tree::node_digest(what, &file.name, file.digest.as_ref(), function)
                .map_err(|e| invalid(e.to_string()))?;
            files.push((format!("file {:?} in {what}", file.name), digest));
        }
    }
    Ok(files)
}

/// The files of the tree under `root`; its directories must all be present.
fn root_files(store: &Store, what: &str, root: &Digest) -> Result<Vec<(String, Digest)>, Missing> {
    let tree = match Tree::read(store, root) {
        Ok(tree) => tree,
        Err(TreeError::Missing { dir, digest }) => {
            return Err(Missing::Blob { what: format!("directory {dir:?} of {what}"), digest });
        }
        Err(e) => return Err(Missing::Invalid { what: what.to_owned(), reason: e.to_string() }),
    };
    Ok(tree.file_digests().into_iter().map(|digest| (format!("a file of {what}"), digest)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::DigestFunction;
    use crate::tree::to_proto;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), DigestFunction::Sha256).unwrap();
        (dir, store)
    }

    fn file(name: &str, digest: &Digest) -> reapi::FileNode {
        reapi::FileNode { name: name.into(), digest: Some(to_proto(digest)), ..Default::default() }
    }

    fn output_dir(tree: Option<&Digest>, root: Option<&Digest>) -> reapi::ActionResult {
        reapi::ActionResult {
            output_directories: vec![reapi::OutputDirectory {
                path: "out".into(),
                tree_digest: tree.map(to_proto),
                root_directory_digest: root.map(to_proto),
                ..Default::default()
            }],
            ..Default::default()
        }
    }

    #[test]
    fn files_streams_and_tree_contents_are_all_referenced() {
        let (_dir, store) = store();
        let (a, b, out, err) = (
            store.put_bytes(b"a").unwrap(),
            store.put_bytes(b"b").unwrap(),
            store.put_bytes(b"stdout").unwrap(),
            store.put_bytes(b"stderr").unwrap(),
        );
        let child = reapi::Directory { files: vec![file("b", &b)], ..Default::default() };
        let tree = reapi::Tree {
            root: Some(reapi::Directory { files: vec![file("a", &a)], ..Default::default() }),
            children: vec![child],
        };
        let tree_digest = store.put_bytes(&tree.encode_to_vec()).unwrap();
        let mut result = output_dir(Some(&tree_digest), None);
        result.output_files =
            vec![reapi::OutputFile { path: "f".into(), digest: Some(to_proto(&a)), ..Default::default() }];
        result.stdout_digest = Some(to_proto(&out));
        result.stderr_digest = Some(to_proto(&err));
        let mut digests: Vec<Digest> =
            referenced_blobs(&store, &result).unwrap().into_iter().map(|(_, d)| d).collect();
        digests.sort();
        let mut expected = vec![a, a, b, out, err, tree_digest];
        expected.sort();
        assert_eq!(digests, expected);
    }

    #[test]
    fn a_missing_tree_or_directory_is_reported_by_name() {
        let (_dir, store) = store();
        let gone = DigestFunction::Sha256.hash_bytes(b"never stored");
        let error = referenced_blobs(&store, &output_dir(Some(&gone), None)).unwrap_err();
        assert_eq!(error, Missing::Blob { what: "output directory \"out\" tree".into(), digest: gone });

        let root = reapi::Directory {
            directories: vec![reapi::DirectoryNode { name: "sub".into(), digest: Some(to_proto(&gone)) }],
            ..Default::default()
        };
        let root = store.put_bytes(&root.encode_to_vec()).unwrap();
        let error = referenced_blobs(&store, &output_dir(None, Some(&root))).unwrap_err().to_string();
        assert!(error.contains("\"sub\"") && error.contains(&gone.to_string()), "{error}");
    }

    #[test]
    fn malformed_references_are_invalid() {
        let (_dir, store) = store();
        let bad = reapi::ActionResult {
            stdout_digest: Some(reapi::Digest { hash: "zz".into(), size_bytes: 1 }),
            ..Default::default()
        };
        assert!(
            matches!(referenced_blobs(&store, &bad), Err(Missing::Invalid { what, .. }) if what == "stdout")
        );
        assert!(matches!(check_well_formed(&bad, DigestFunction::Sha256), Err(Missing::Invalid { .. })));
        let neither = output_dir(None, None);
        assert!(matches!(referenced_blobs(&store, &neither), Err(Missing::Invalid { .. })));
        assert!(matches!(check_well_formed(&neither, DigestFunction::Sha256), Err(Missing::Invalid { .. })));
        let gone = DigestFunction::Sha256.hash_bytes(b"gone");
        check_well_formed(&output_dir(Some(&gone), None), DigestFunction::Sha256).unwrap();
        let not_a_tree = store.put_bytes(&[0xff, 0xff]).unwrap();
        let error = referenced_blobs(&store, &output_dir(Some(&not_a_tree), None)).unwrap_err().to_string();
        assert!(error.contains("not a Tree message"), "{error}");
    }
}
