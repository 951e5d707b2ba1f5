//! REAPI Directory trees: built from local directories, read and validated from the store.
//!
//! Validation lives here, once, and every consumer (staging, capture, FetchTree, GetTree) goes
//! through [`Tree::read`] or [`validate_directory`], so a hostile tree is refused the same way
//! everywhere, before anything acts on it.

mod error;
mod source;
mod upload;
mod validate;
mod walk;

pub use error::TreeError;
pub use source::{DirectorySource, LazyTree, first_path_of};
pub use upload::{UploadOptions, to_proto, upload_dir};
pub use validate::{check_name, node_digest, parse_digest, validate_directory};
pub use walk::{MAX_DEPTH, Tree};
