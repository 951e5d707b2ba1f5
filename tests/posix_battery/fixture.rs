//! The tree the battery works on: one top-level dir per section, holding the staged files that
//! section changes. Built as a REAPI tree in a store (to be staged), or written to a plain dir
//! with the attributes staging gives (the control).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;

use nix::fcntl::AT_FDCWD;
use nix::sys::stat::{UtimensatFlags, utimensat};
use nix::sys::time::TimeSpec;
use rebox::digest::Digest;
use rebox::proto::build::bazel::remote::execution::v2 as reapi;
use rebox::staging::DEFAULT_MTIME;
use rebox::store::Store;

use crate::staging_support::{dir, executable, file, file_with, put_dir, symlink as symlink_node};

/// The mtime of a staged file with no node property.
pub const DEFAULT: (i64, i64) = (DEFAULT_MTIME, 0);

/// The node-property mtime of `w/props`.
pub const PROPS_MTIME: (i64, i32) = (1_500_000_000, 123_456_789);

/// How many never-touched and how many removed-while-listing entries `l/` holds.
pub const READDIR_KEPT: usize = 200;
/// See [`READDIR_KEPT`].
pub const READDIR_VOLATILE: usize = 100;

/// What an entry of the tree is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A regular file.
    File {
        content: Vec<u8>,
        executable: bool,
        /// Node properties: mtime (seconds, nanos) and unix mode.
        mtime: Option<(i64, i32)>,
        mode: Option<u32>,
    },
    /// A symlink to this target.
    Symlink(String),
    /// A directory (listed when it may be empty; parents are implied).
    Dir,
}

/// One entry of the tree, by its path from the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub kind: Kind,
}

impl Entry {
    /// The mode staging must show (permission bits).
    pub fn mode(&self) -> u32 {
        match &self.kind {
            Kind::File { mode: Some(mode), .. } => *mode,
            Kind::File { executable: true, .. } | Kind::Dir => 0o755,
            Kind::File { .. } => 0o644,
            Kind::Symlink(_) => 0o777,
        }
    }

    /// The mtime staging must show (seconds, nanoseconds).
    pub fn mtime(&self) -> (i64, i64) {
        match &self.kind {
            Kind::File { mtime: Some((seconds, nanos)), .. } => (*seconds, i64::from(*nanos)),
            _ => DEFAULT,
        }
    }
}

fn plain(path: &str, content: &[u8]) -> Entry {
    Entry {
        path: path.into(),
        kind: Kind::File { content: content.into(), executable: false, mtime: None, mode: None },
    }
}

fn exe(path: &str, content: &[u8]) -> Entry {
    Entry {
        path: path.into(),
        kind: Kind::File { content: content.into(), executable: true, mtime: None, mode: None },
    }
}

fn link(path: &str, target: &str) -> Entry {
    Entry { path: path.into(), kind: Kind::Symlink(target.into()) }
}

fn empty_dir(path: &str) -> Entry {
    Entry { path: path.into(), kind: Kind::Dir }
}

/// Every entry of the tree (files, symlinks and the dirs that may be empty).
pub fn entries() -> Vec<Entry> {
    let mut entries = vec![
        // write
        plain("w/plain", b"hello\n"),
        plain("w/dup", b"hello\n"),
        plain("w/reader", b"reader\n"),
        plain("w/mapped", b"mapped\n"),
        exe("w/exe", b"#!/bin/sh\necho hi\n"),
        Entry {
            path: "w/props".into(),
            kind: Kind::File {
                content: b"props\n".to_vec(),
                executable: false,
                mtime: Some(PROPS_MTIME),
                mode: Some(0o640),
            },
        },
        Entry {
            path: "w/private-tool".into(),
            kind: Kind::File {
                content: b"tool\n".to_vec(),
                executable: true,
                mtime: None,
                mode: Some(0o700),
            },
        },
        // append, truncate, sparse
        plain("a/log", b"line1\n"),
        plain("t/shrink", b"0123456789"),
        plain("t/grow", b"abc"),
        plain("t/otrunc", b"will be gone\n"),
        plain("t/bypath", b"truncate by path\n"),
        plain("z/staged", b"sparse-start"),
        // rename
        plain("r/src", b"src\n"),
        plain("r/victim", b"victim\n"),
        plain("r/over-me", b"over-me\n"),
        plain("r/across", b"across\n"),
        plain("r/afile", b"afile\n"),
        plain("r/dir/inner", b"inner\n"),
        plain("r/dir/deeper/leaf", b"leaf\n"),
        plain("r/hop/a", b"a\n"),
        plain("r/other/keep", b"keep\n"),
        plain("r/full/x", b"x\n"),
        plain("r/adir/f", b"f\n"),
        empty_dir("r/empty"),
        // unlink
        plain("u/gone", b"gone\n"),
        plain("u/open-ro", b"open-ro\n"),
        plain("u/open-rw", b"open-rw\n"),
        plain("u/again", b"again\n"),
        plain("u/adir/f", b"f\n"),
        // mkdir, rmdir
        plain("d/full/a", b"a\n"),
        plain("d/full/b/c", b"c\n"),
        plain("d/emptied/one", b"1\n"),
        plain("d/emptied/two", b"2\n"),
        plain("d/reborn/old", b"old\n"),
        // symlink
        plain("s/target", b"target\n"),
        link("s/link", "target"),
        link("s/dangling", "nowhere"),
        link("s/abs", "/etc/passwd"),
        link("s/dirlink", "../w"),
        link("s/replace", "target"),
        // hardlink (twin-a and twin-b: same blob and attributes, separate files)
        plain("h/file", b"linked\n"),
        plain("h/twin-a", b"same\n"),
        plain("h/twin-b", b"same\n"),
        // chmod, utimens
        plain("c/file", b"c\n"),
        exe("c/exe", b"x\n"),
        plain("c/dir/f", b"f\n"),
        plain("m/file", b"m\n"),
        plain("m/dir/f", b"f\n"),
        link("m/link", "file"),
    ];
    for n in 0..READDIR_KEPT {
        let name = format!("l/keep-{n:03}-unchanged-while-listing");
        entries.push(plain(&name, name.as_bytes()));
    }
    for n in 0..READDIR_VOLATILE {
        let name = format!("l/volatile-{n:03}-removed-while-listing");
        entries.push(plain(&name, name.as_bytes()));
    }
    entries
}

/// Every directory of the tree (explicit or implied), parents before children, without the root.
pub fn dirs(entries: &[Entry]) -> Vec<String> {
    let mut dirs = std::collections::BTreeSet::new();
    for entry in entries {
        let mut path = Path::new(&entry.path);
        if entry.kind == Kind::Dir {
            dirs.insert(entry.path.clone());
        }
        while let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            dirs.insert(parent.display().to_string());
            path = parent;
        }
    }
    dirs.into_iter().collect()
}

/// The digests of every file's content.
pub fn blobs(store: &Store) -> Vec<Digest> {
    let function = store.digest_function();
    let mut digests: Vec<Digest> = entries()
        .iter()
        .filter_map(|e| match &e.kind {
            Kind::File { content, .. } => Some(function.hash_bytes(content)),
            _ => None,
        })
        .collect();
    digests.sort_by_key(|d| d.hash_hex());
    digests.dedup();
    digests
}

#[derive(Default)]
struct DirSpec {
    files: BTreeMap<String, Entry>,
    symlinks: BTreeMap<String, String>,
    dirs: BTreeMap<String, DirSpec>,
}

impl DirSpec {
    fn child(&mut self, path: &Path) -> &mut DirSpec {
        path.iter().fold(self, |dir, name| dir.dirs.entry(name.to_string_lossy().into_owned()).or_default())
    }

    fn to_proto(&self, store: &Store) -> reapi::Directory {
        let files = self
            .files
            .iter()
            .map(|(name, entry)| match &entry.kind {
                Kind::File { content, mtime: None, mode: None, executable: true } => {
                    executable(store, name, content)
                }
                Kind::File { content, mtime: None, mode: None, .. } => file(store, name, content),
                Kind::File { content, mtime, mode, .. } => file_with(store, name, content, *mtime, *mode),
                _ => unreachable!("only files are kept as files"),
            })
            .collect();
        reapi::Directory {
            files,
            directories: self.dirs.iter().map(|(name, d)| dir(store, name, &d.to_proto(store))).collect(),
            symlinks: self.symlinks.iter().map(|(name, target)| symlink_node(name, target)).collect(),
            ..Default::default()
        }
    }
}

/// Stores the tree in `store`; its root Directory's digest.
pub fn store_tree(store: &Store) -> Digest {
    let mut root = DirSpec::default();
    for entry in entries() {
        let path = Path::new(&entry.path);
        let parent = root.child(path.parent().unwrap_or(Path::new("")));
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        match &entry.kind {
            Kind::File { .. } => {
                parent.files.insert(name, entry.clone());
            }
            Kind::Symlink(target) => {
                parent.symlinks.insert(name, target.clone());
            }
            Kind::Dir => {
                parent.dirs.entry(name).or_default();
            }
        }
    }
    put_dir(store, &root.to_proto(store))
}

fn set_mtime(path: &Path, (seconds, nanos): (i64, i64)) {
    let time = TimeSpec::new(seconds, nanos);
    utimensat(AT_FDCWD, path, &time, &time, UtimensatFlags::NoFollowSymlink)
        .unwrap_or_else(|e| panic!("utimensat {}: {e}", path.display()));
}

/// Writes the tree under `root` (an empty dir) as staging shows it: modes, mtimes, contents.
pub fn write_plain(root: &Path) {
    let entries = entries();
    let dirs = dirs(&entries);
    for dir in &dirs {
        fs::create_dir(root.join(dir)).unwrap();
        fs::set_permissions(root.join(dir), fs::Permissions::from_mode(0o755)).unwrap();
    }
    for entry in &entries {
        let path = root.join(&entry.path);
        match &entry.kind {
            Kind::File { content, .. } => {
                fs::write(&path, content).unwrap();
                fs::set_permissions(&path, fs::Permissions::from_mode(entry.mode())).unwrap();
            }
            Kind::Symlink(target) => symlink(target, &path).unwrap(),
            Kind::Dir => {}
        }
        set_mtime(&path, entry.mtime());
    }
    // Children first: making them changed their parents' mtimes.
    for dir in dirs.iter().rev().chain(std::iter::once(&String::new())) {
        fs::set_permissions(root.join(dir), fs::Permissions::from_mode(0o755)).unwrap();
        set_mtime(&root.join(dir), DEFAULT);
    }
}
