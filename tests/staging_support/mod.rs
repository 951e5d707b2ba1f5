//! Helpers shared by the staging tests: trees in a real store, and the mount table.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use prost::Message;
use rebox::digest::{Digest, DigestFunction};
use rebox::proto::build::bazel::remote::execution::v2 as reapi;
use rebox::store::Store;
use rebox::tree::to_proto;

/// A store in a fresh temporary dir (on /tmp: ext4 here, like a real cache).
pub fn store() -> (tempfile::TempDir, Store) {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), DigestFunction::Sha256).unwrap();
    (tmp, store)
}

/// A file node whose content is stored.
pub fn file(store: &Store, name: &str, content: &[u8]) -> reapi::FileNode {
    let digest = store.put_bytes(content).unwrap();
    reapi::FileNode { name: name.into(), digest: Some(to_proto(&digest)), ..Default::default() }
}

/// The same, executable.
pub fn executable(store: &Store, name: &str, content: &[u8]) -> reapi::FileNode {
    reapi::FileNode { is_executable: true, ..file(store, name, content) }
}

/// A file node with node properties.
pub fn file_with(
    store: &Store,
    name: &str,
    content: &[u8],
    mtime: Option<(i64, i32)>,
    mode: Option<u32>,
) -> reapi::FileNode {
    reapi::FileNode {
        node_properties: Some(reapi::NodeProperties {
            properties: vec![],
            mtime: mtime.map(|(seconds, nanos)| prost_types::Timestamp { seconds, nanos }),
            unix_mode: mode,
        }),
        ..file(store, name, content)
    }
}

/// A symlink node.
pub fn symlink(name: &str, target: &str) -> reapi::SymlinkNode {
    reapi::SymlinkNode { name: name.into(), target: target.into(), node_properties: None }
}

/// A directory node for a stored Directory.
pub fn dir(store: &Store, name: &str, directory: &reapi::Directory) -> reapi::DirectoryNode {
    reapi::DirectoryNode { name: name.into(), digest: Some(to_proto(&put_dir(store, directory))) }
}

/// Stores a Directory message.
pub fn put_dir(store: &Store, directory: &reapi::Directory) -> Digest {
    store.put_bytes(&directory.encode_to_vec()).unwrap()
}

/// `SubtreeReadOnly` set to `value`.
pub fn read_only(value: &str) -> Option<reapi::NodeProperties> {
    Some(reapi::NodeProperties {
        properties: vec![reapi::NodeProperty { name: "SubtreeReadOnly".into(), value: value.into() }],
        ..Default::default()
    })
}

/// Mount points at or below `path` in this process's mount table.
pub fn mounts_under(path: &Path) -> Vec<PathBuf> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(field.replace("\\040", " ")))
        .filter(|mount_point| mount_point.starts_with(path))
        .collect()
}

/// Whether the test runs as root (mounting and chown need it).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Whether FUSE stages can't be tested here (they need root and /dev/fuse); says so if not.
pub fn fuse_skipped() -> bool {
    let usable = is_root() && std::fs::File::options().read(true).write(true).open("/dev/fuse").is_ok();
    if !usable {
        eprintln!("skipped: needs root and /dev/fuse");
    }
    !usable
}

/// [`Stages`](rebox::staging::Stages) that unstage everything when dropped, so that a failing
/// test (which unwinds) leaves no mount behind.
#[derive(Debug)]
pub struct Cleaning(pub rebox::staging::Stages);

impl Cleaning {
    /// Stages of `store` with the real syscalls.
    pub fn new(store: &Store) -> Self {
        Self(rebox::staging::Stages::new(store.clone()))
    }
}

impl std::ops::Deref for Cleaning {
    type Target = rebox::staging::Stages;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl Drop for Cleaning {
    fn drop(&mut self) {
        self.0.cleanup_all();
    }
}

/// The real syscalls, except that overlays can't be mounted (as for a daemon that is not root).
#[derive(Debug)]
pub struct NoOverlay;

impl rebox::staging::Sys for NoOverlay {
    fn mount_overlay(&self, _: &str, _: &Path, _: &str) -> Result<(), nix::errno::Errno> {
        Err(nix::errno::Errno::EPERM)
    }
    fn mount_fuse(&self, _: &str, _: &Path, _: &str) -> Result<(), nix::errno::Errno> {
        Err(nix::errno::Errno::EPERM)
    }
    fn bind_onto_itself(&self, path: &Path) -> Result<(), nix::errno::Errno> {
        rebox::staging::RealSys.bind_onto_itself(path)
    }
    fn remount_bind(&self, path: &Path, read_only: bool) -> Result<(), nix::errno::Errno> {
        rebox::staging::RealSys.remount_bind(path, read_only)
    }
    fn make_private(&self, path: &Path) -> Result<(), nix::errno::Errno> {
        rebox::staging::RealSys.make_private(path)
    }
    fn unmount(&self, path: &Path, detach: bool) -> Result<(), nix::errno::Errno> {
        rebox::staging::RealSys.unmount(path, detach)
    }
    fn link_at(
        &self,
        old_dir: std::os::fd::BorrowedFd<'_>,
        old: &str,
        new_dir: std::os::fd::BorrowedFd<'_>,
        new: &str,
    ) -> Result<(), nix::errno::Errno> {
        rebox::staging::RealSys.link_at(old_dir, old, new_dir, new)
    }
    fn link_file(
        &self,
        file: &fs::File,
        new_dir: std::os::fd::BorrowedFd<'_>,
        new: &str,
    ) -> Result<(), nix::errno::Errno> {
        rebox::staging::RealSys.link_file(file, new_dir, new)
    }
    fn copy(&self, from: &mut fs::File, to: &mut fs::File) -> std::io::Result<u64> {
        rebox::staging::RealSys.copy(from, to)
    }
}
