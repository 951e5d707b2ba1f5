//! GetTree: every Directory under a root, streamed in pages.
//!
//! The walk is depth-first, parents before children, children in name order (buildbox-casd's
//! order), and lists each distinct Directory once: buildbox-casd repeats a shared subtree at
//! every place it occurs, which only costs bytes since clients index directories by digest.
//! Every directory is checked with [`crate::tree::validate_directory`] before anything is sent,
//! so a hostile tree fails the call with `INVALID_ARGUMENT` naming the entry, instead of
//! arriving in part. As REAPI asks, a subdirectory missing from the CAS is left out (with its
//! subtree); a missing root is `NOT_FOUND`.
//!
//! Paging: a response holds at most `page_size` directories (no count limit when 0, as
//! buildbox-casd) and at most [`PAGE_BYTES`], so that clients with gRPC's default 4 MiB receive
//! limit can read every page. All pages are streamed in one call; each but the last carries
//! `next_page_token`, the decimal index of the next page's first directory in the walk, which
//! a later call may pass as `page_token` to resume there. (buildbox-casd numbers pages instead;
//! tokens are opaque to clients, and with `page_size` 1 the two agree.)

use std::collections::HashSet;

use prost::Message;
use tonic::Status;

use crate::digest::Digest;
use crate::grpc::Shared;
use crate::grpc::blocking::blocking;
use crate::grpc::request::{check_digest_function, check_instance, required_digest};
use crate::proto::build::bazel::remote::execution::v2 as reapi;
use crate::store::{Store, StoreError};
use crate::tree::{MAX_DEPTH, TreeError, validate_directory};

/// Most encoded bytes of directories in one response: 4 MiB less room for framing.
pub const PAGE_BYTES: usize = 4 * 1024 * 1024 - 64 * 1024;

/// The response stream of GetTree.
pub type GetTreeStream = tokio_stream::Iter<std::vec::IntoIter<Result<reapi::GetTreeResponse, Status>>>;

/// Every page of the tree, from `page_token` on.
pub async fn get_tree(shared: &Shared, request: reapi::GetTreeRequest) -> Result<GetTreeStream, Status> {
    check_instance(shared, &request.instance_name)?;
    let function = check_digest_function(shared, request.digest_function)?;
    let root = required_digest(request.root_digest.as_ref(), "root_digest", function)?;
    let page_size = usize::try_from(request.page_size)
        .map_err(|_| Status::invalid_argument(format!("page_size {} is negative", request.page_size)))?;
    let start = match request.page_token.as_str() {
        "" => 0,
        token => token.parse::<usize>().map_err(|_| {
            Status::invalid_argument(format!("page_token {token:?} is not one this server issued"))
        })?,
    };
    let store = shared.store.clone();
    let directories = blocking(move || walk(&store, &root)).await??;
    if start > 0 && start >= directories.len() {
        return Err(Status::invalid_argument(format!(
            "page_token {:?} is past the end of the tree of {root} ({} directories)",
            request.page_token,
            directories.len()
        )));
    }
    let pages = paginate(directories, start, page_size);
    Ok(tokio_stream::iter(pages.into_iter().map(Ok).collect::<Vec<_>>()))
}

/// The distinct directories of the tree under `root`, validated, in walk order.
fn walk(store: &Store, root: &Digest) -> Result<Vec<reapi::Directory>, Status> {
    let function = store.digest_function();
    let mut seen = HashSet::new();
    let mut directories = Vec::new();
    let mut pending = vec![(".".to_owned(), *root, 0usize)];
    while let Some((path, digest, depth)) = pending.pop() {
        if !seen.insert(digest) {
            continue;
        }
        if depth > MAX_DEPTH {
            return Err(TreeError::TooDeep { dir: path, limit: MAX_DEPTH }.into());
        }
        let bytes = match store.read(&digest) {
            Ok(bytes) => bytes,
            Err(StoreError::NotFound { .. }) if depth == 0 => {
                return Err(Status::not_found(format!("root directory {digest} is not in the CAS")));
            }
            Err(StoreError::NotFound { .. }) => continue,
            Err(e) => return Err(e.into()),
        };
        let directory = reapi::Directory::decode(bytes.as_slice()).map_err(|source| TreeError::Decode {
            dir: path.clone(),
            digest,
            source,
        })?;
        let children = validate_directory(&directory, &path, function)?;
        for (name, child) in children.into_iter().rev() {
            pending.push((join(&path, &name), child, depth + 1));
        }
        directories.push(directory);
    }
    Ok(directories)
}

/// Splits `directories[start..]` into responses of at most `page_size` directories (0: any
/// number) and [`PAGE_BYTES`] bytes; a single larger directory gets a response of its own.
fn paginate(
    directories: Vec<reapi::Directory>,
    start: usize,
    page_size: usize,
) -> Vec<reapi::GetTreeResponse> {
    let mut pages = Vec::new();
    let mut page = Vec::new();
    let mut bytes = 0;
    for (index, directory) in directories.into_iter().enumerate().skip(start) {
        let len = directory.encoded_len();
        let full = page.len() == page_size || bytes + len > PAGE_BYTES;
        if !page.is_empty() && full {
            let directories = std::mem::take(&mut page);
            pages.push(reapi::GetTreeResponse { directories, next_page_token: index.to_string() });
            bytes = 0;
        }
        bytes += len;
        page.push(directory);
    }
    pages.push(reapi::GetTreeResponse { directories: page, next_page_token: String::new() });
    pages
}

fn join(parent: &str, name: &str) -> String {
    if parent == "." { name.to_owned() } else { format!("{parent}/{name}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(files: usize, name_len: usize) -> reapi::Directory {
        let files = (0..files)
            .map(|i| reapi::FileNode { name: format!("{i:0name_len$}"), ..Default::default() })
            .collect();
        reapi::Directory { files, ..Default::default() }
    }

    fn shape(pages: &[reapi::GetTreeResponse]) -> Vec<(usize, &str)> {
        pages.iter().map(|p| (p.directories.len(), p.next_page_token.as_str())).collect()
    }

    #[test]
    fn pages_hold_page_size_directories_and_tokens_index_the_next() {
        let dirs: Vec<_> = (0..5).map(|i| dir(i, 4)).collect();
        assert_eq!(shape(&paginate(dirs.clone(), 0, 2)), [(2, "2"), (2, "4"), (1, "")]);
        assert_eq!(shape(&paginate(dirs.clone(), 2, 2)), [(2, "4"), (1, "")]);
        assert_eq!(shape(&paginate(dirs.clone(), 0, 0)), [(5, "")]);
        assert_eq!(shape(&paginate(dirs.clone(), 0, 1)), [(1, "1"), (1, "2"), (1, "3"), (1, "4"), (1, "")]);
        let resumed = paginate(dirs.clone(), 3, 0);
        assert_eq!(resumed[0].directories, dirs[3..]);
    }

    #[test]
    fn pages_stay_under_the_byte_budget() {
        // ~1 MiB directories: at most 3 fit in a page, whatever page_size says.
        let big = dir(16 * 1024, 64);
        let len = big.encoded_len();
        assert!(len > 1024 * 1024 && 3 * len < PAGE_BYTES && 4 * len > PAGE_BYTES, "{len}");
        let pages = paginate(vec![big; 7], 0, 0);
        assert_eq!(shape(&pages), [(3, "3"), (3, "6"), (1, "")]);
        for page in &pages {
            assert!(page.encoded_len() <= 4 * 1024 * 1024);
        }
    }
}
