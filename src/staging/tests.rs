//! Unit tests of staging with recorded syscalls: what gets mounted and unmounted, in which order,
//! and what happens when a step is refused. Nothing is mounted here (the recorder only records
//! mount calls); links and copies are real. Real mounts are tested in `tests/staging*.rs`.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use nix::errno::Errno;
use prost::Message;

use super::build::{make_dir, open_dir};
use super::*;
use crate::digest::{Digest, DigestFunction};
use crate::proto::build::bazel::remote::execution::v2 as reapi;
use crate::store::Store;
use crate::tree::to_proto;

/// One recorded syscall.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Call {
    MountOverlay { target: PathBuf, options: String },
    MountFuse(PathBuf),
    Bind(PathBuf),
    Remount(PathBuf, bool),
    MakePrivate(PathBuf),
    Unmount(PathBuf, bool),
    Link(String),
    Copy,
}

/// Records every call; mount calls succeed without mounting; any kind of call can be made to fail.
#[derive(Debug, Default)]
struct Recorder {
    calls: Mutex<Vec<Call>>,
    /// Errors to return, by call kind ("overlay", "bind", "unmount", "link").
    fail: Mutex<HashMap<&'static str, Errno>>,
}

impl Recorder {
    fn record(&self, call: Call, kind: &'static str) -> Result<(), Errno> {
        self.calls.lock().unwrap().push(call);
        match self.fail.lock().unwrap().get(kind) {
            Some(&errno) => Err(errno),
            None => Ok(()),
        }
    }

    fn fail(&self, kind: &'static str, errno: Errno) {
        self.fail.lock().unwrap().insert(kind, errno);
    }

    fn take(&self) -> Vec<Call> {
        std::mem::take(&mut *self.calls.lock().unwrap())
    }
}

impl Sys for Recorder {
    fn mount_overlay(&self, _source: &str, target: &Path, options: &str) -> Result<(), Errno> {
        let call = Call::MountOverlay { target: target.to_owned(), options: options.to_owned() };
        self.record(call, "overlay")
    }
    fn mount_fuse(&self, _source: &str, target: &Path, _options: &str) -> Result<(), Errno> {
        // Nothing could serve a FUSE mount that was only recorded: FUSE is never there.
        self.record(Call::MountFuse(target.to_owned()), "fuse")?;
        Err(Errno::ENODEV)
    }
    fn bind_onto_itself(&self, path: &Path) -> Result<(), Errno> {
        self.record(Call::Bind(path.to_owned()), "bind")
    }
    fn remount_bind(&self, path: &Path, read_only: bool) -> Result<(), Errno> {
        self.record(Call::Remount(path.to_owned(), read_only), "remount")
    }
    fn make_private(&self, path: &Path) -> Result<(), Errno> {
        self.record(Call::MakePrivate(path.to_owned()), "private")
    }
    fn unmount(&self, path: &Path, detach: bool) -> Result<(), Errno> {
        // A lazy detach always works; a plain unmount may be made to fail (busy).
        let kind = if detach { "detach" } else { "unmount" };
        self.record(Call::Unmount(path.to_owned(), detach), kind)
    }
    fn link_at(
        &self,
        old_dir: BorrowedFd<'_>,
        old: &str,
        new_dir: BorrowedFd<'_>,
        new: &str,
    ) -> Result<(), Errno> {
        self.record(Call::Link(new.to_owned()), "link")?;
        RealSys.link_at(old_dir, old, new_dir, new)
    }
    fn link_file(&self, file: &File, new_dir: BorrowedFd<'_>, new: &str) -> Result<(), Errno> {
        self.record(Call::Link(new.to_owned()), "link")?;
        RealSys.link_file(file, new_dir, new)
    }
    fn copy(&self, from: &mut File, to: &mut File) -> io::Result<u64> {
        self.calls.lock().unwrap().push(Call::Copy);
        RealSys.copy(from, to)
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    store: Store,
    sys: Arc<Recorder>,
    stages: Stages,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let store = Store::open(tmp.path(), DigestFunction::Sha256).unwrap();
    let sys = Arc::new(Recorder::default());
    let stages = Stages::with_sys(store.clone(), sys.clone());
    Fixture { _tmp: tmp, store, sys, stages }
}

fn file(store: &Store, name: &str, content: &[u8]) -> reapi::FileNode {
    let digest = store.put_bytes(content).unwrap();
    reapi::FileNode { name: name.into(), digest: Some(to_proto(&digest)), ..Default::default() }
}

fn put_dir(store: &Store, directory: &reapi::Directory) -> Digest {
    store.put_bytes(&directory.encode_to_vec()).unwrap()
}

fn read_only(value: &str) -> Option<reapi::NodeProperties> {
    Some(reapi::NodeProperties {
        properties: vec![reapi::NodeProperty { name: SUBTREE_READ_ONLY.into(), value: value.into() }],
        ..Default::default()
    })
}

/// `/a` (file), `/d` (SubtreeReadOnly=true) holding `x` and `rw` (false) holding `w`.
fn tree_with_read_only_parts(store: &Store) -> Digest {
    let rw = reapi::Directory {
        files: vec![file(store, "w", b"w")],
        node_properties: read_only("false"),
        ..Default::default()
    };
    let d = reapi::Directory {
        files: vec![file(store, "x", b"x")],
        directories: vec![reapi::DirectoryNode {
            name: "rw".into(),
            digest: Some(to_proto(&put_dir(store, &rw))),
        }],
        node_properties: read_only("true"),
        ..Default::default()
    };
    let root = reapi::Directory {
        files: vec![file(store, "a", b"a")],
        directories: vec![reapi::DirectoryNode {
            name: "d".into(),
            digest: Some(to_proto(&put_dir(store, &d))),
        }],
        ..Default::default()
    };
    put_dir(store, &root)
}

fn request(root: Digest) -> StageRequest {
    StageRequest { root, path: None, credentials: None, mode: StagingMode::CopyOrLink }
}

#[test]
fn stage_mounts_the_farm_then_read_only_parts_and_unstage_unmounts_in_reverse() {
    let f = fixture();
    let root = tree_with_read_only_parts(&f.store);
    let staged = f.stages.stage(&request(root)).unwrap();
    assert_eq!(staged.method, Method::Overlay);
    let target = staged.dir.clone();
    assert_eq!(staged.path, target.to_str().unwrap(), "the reply is the stage dir");
    assert!(target.starts_with(f.stages.layout().staging()));

    let calls = f.sys.take();
    let links: Vec<&str> =
        calls.iter().filter_map(|c| if let Call::Link(n) = c { Some(n.as_str()) } else { None }).collect();
    let (mut farm_links, mut pool_links): (Vec<&str>, Vec<&str>) =
        links.iter().partition(|n| !n.contains('/'));
    farm_links.sort_unstable();
    assert_eq!(farm_links, ["a", "w", "x"], "each file linked into the farm once");
    pool_links.sort_unstable();
    pool_links.dedup();
    assert_eq!(pool_links.len(), 3, "three pool variants published: {pool_links:?}");
    let mounts: Vec<&Call> = calls.iter().filter(|c| !matches!(c, Call::Link(_) | Call::Copy)).collect();
    let Call::MountOverlay { target: overlay_target, options } = mounts[0] else { panic!("{mounts:?}") };
    assert_eq!(overlay_target, &target);
    let farm = f.stages.layout().farms().join(format!(
        "{}-{}.{}.{}",
        root.hash_hex(),
        root.size(),
        Owner::current().uid,
        Owner::current().gid
    ));
    assert!(options.starts_with(&format!("lowerdir={}/root,upperdir=", farm.display())), "{options}");
    assert!(options.contains("redirect_dir=off") && options.contains("index=off"), "{options}");
    assert_eq!(
        mounts[1..],
        [
            &Call::MakePrivate(target.clone()),
            &Call::Bind(target.join("d")),
            &Call::Remount(target.join("d"), true),
            &Call::Bind(target.join("d/rw")),
            &Call::Remount(target.join("d/rw"), false),
        ]
    );

    f.stages.unstage(staged.id).unwrap();
    assert_eq!(
        f.sys.take(),
        [
            Call::Unmount(target.join("d/rw"), false),
            Call::Unmount(target.join("d"), false),
            Call::Unmount(target.clone(), false),
        ]
    );
    assert!(!target.exists() && !target.parent().unwrap().exists(), "the stage's dirs are gone");
    assert!(matches!(f.stages.unstage(staged.id), Err(StagingError::UnknownStage(_))));
}

#[test]
fn a_published_farm_is_reused_without_linking_again() {
    let f = fixture();
    let root = tree_with_read_only_parts(&f.store);
    let first = f.stages.stage(&request(root)).unwrap();
    f.sys.take();
    let second = f.stages.stage(&request(root)).unwrap();
    assert_ne!(first.dir, second.dir);
    let calls = f.sys.take();
    assert!(!calls.iter().any(|c| matches!(c, Call::Link(_) | Call::Copy)), "{calls:?}");
    assert_eq!(f.stages.cleanup_all(), 2);
    assert!(f.stages.live().is_empty());
}

#[test]
fn a_busy_mount_is_detached_lazily() {
    let f = fixture();
    let root = tree_with_read_only_parts(&f.store);
    let staged = f.stages.stage(&request(root)).unwrap();
    f.sys.take();
    f.sys.fail("unmount", Errno::EBUSY);
    f.stages.unstage(staged.id).unwrap();
    let calls = f.sys.take();
    assert_eq!(
        calls[..2],
        [Call::Unmount(staged.dir.join("d/rw"), false), Call::Unmount(staged.dir.join("d/rw"), true)]
    );
    assert_eq!(calls.len(), 6, "each of the three mounts: a plain try, then a detach: {calls:?}");
}

#[test]
fn without_overlay_every_stage_is_a_copy() {
    let f = fixture();
    f.sys.fail("overlay", Errno::EPERM);
    let root = tree_with_read_only_parts(&f.store);
    let staged = f.stages.stage(&request(root)).unwrap();
    assert_eq!(staged.method, Method::Copy);
    assert_eq!(fs::read(staged.dir.join("d/rw/w")).unwrap(), b"w");
    let object = f.store.object_path(&f.store.digest_function().hash_bytes(b"w"));
    assert_ne!(fs::metadata(staged.dir.join("d/rw/w")).unwrap().ino(), fs::metadata(object).unwrap().ino());
    assert!(f.sys.take().iter().any(|c| matches!(c, Call::Bind(_))), "SubtreeReadOnly is still bind-mounted");

    let again = f.stages.stage(&request(root)).unwrap();
    let calls = f.sys.take();
    assert!(
        !calls.iter().any(|c| matches!(c, Call::MountOverlay { .. })),
        "the overlay is not tried again: {calls:?}"
    );
    assert_eq!(calls.iter().filter(|c| **c == Call::Copy).count(), 3);
    assert!(f.stages.known_digests(&again.dir).is_none(), "copies offer no known digests");
    f.stages.unstage(staged.id).unwrap();
    f.stages.unstage(again.id).unwrap();
    assert!(!staged.dir.exists() && !again.dir.exists());
}

#[test]
fn a_link_refused_with_emlink_becomes_a_copy() {
    let f = fixture();
    let root =
        put_dir(&f.store, &reapi::Directory { files: vec![file(&f.store, "a", b"a")], ..Default::default() });
    // Another tree staging the same blob the same way publishes the pool variant.
    let other =
        put_dir(&f.store, &reapi::Directory { files: vec![file(&f.store, "b", b"a")], ..Default::default() });
    let staged = f.stages.stage(&request(other)).unwrap();
    f.stages.unstage(staged.id).unwrap();
    f.sys.take();
    // Then the variant can't take one more link: the farm gets a copy of it.
    f.sys.fail("link", Errno::EMLINK);
    let staged = f.stages.stage(&request(root)).unwrap();
    assert!(f.sys.take().contains(&Call::Copy), "the farm's file was copied");
    let farm_file = fs::read_dir(f.stages.layout().farms())
        .unwrap()
        .flatten()
        .map(|e| e.path().join("root/a"))
        .find(|p| p.exists())
        .unwrap();
    assert_eq!(fs::read(&farm_file).unwrap(), b"a");
    assert_eq!(fs::metadata(&farm_file).unwrap().nlink(), 1);
    f.stages.unstage(staged.id).unwrap();
}

#[test]
fn bad_trees_and_missing_blobs_write_nothing() {
    let f = fixture();
    let bad = put_dir(
        &f.store,
        &reapi::Directory { files: vec![file(&f.store, "..", b"x")], ..Default::default() },
    );
    let error = f.stages.stage(&request(bad)).unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);

    let absent = f.store.digest_function().hash_bytes(b"never stored");
    let sub = reapi::Directory {
        files: vec![reapi::FileNode {
            name: "gone".into(),
            digest: Some(to_proto(&absent)),
            ..Default::default()
        }],
        ..Default::default()
    };
    let missing = put_dir(
        &f.store,
        &reapi::Directory {
            directories: vec![reapi::DirectoryNode {
                name: "sub".into(),
                digest: Some(to_proto(&put_dir(&f.store, &sub))),
            }],
            ..Default::default()
        },
    );
    let error = f.stages.stage(&request(missing)).unwrap_err();
    assert_eq!(error.code(), tonic::Code::FailedPrecondition);
    assert!(error.to_string().contains("\"sub/gone\""), "{error}");

    // Nothing in any staging dir but the daemon's own (empty) dir, made for the missing-blob case.
    let farms: Vec<_> = fs::read_dir(f.stages.layout().farms()).unwrap().collect();
    assert!(farms.is_empty());
    let owner_dirs: Vec<PathBuf> =
        fs::read_dir(f.stages.layout().staging()).unwrap().flatten().map(|e| e.path()).collect();
    assert_eq!(owner_dirs.len(), 1);
    assert_eq!(fs::read_dir(&owner_dirs[0]).unwrap().count(), 0);
    assert!(f.sys.take().is_empty());
}

#[test]
fn building_never_follows_a_symlink() {
    let tmp = tempfile::tempdir().unwrap();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let base = File::open(tmp.path()).unwrap();
    symlink(&outside, tmp.path().join("a")).unwrap();
    // A symlink where a directory is to be made: mkdirat refuses, open refuses to follow.
    assert_eq!(make_dir(base.as_fd(), "a").unwrap_err().raw_os_error(), Some(libc::EEXIST));
    let refused = open_dir(base.as_fd(), "a").unwrap_err().raw_os_error();
    assert!(matches!(refused, Some(libc::ELOOP | libc::ENOTDIR)), "{refused:?}");
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
}

#[test]
fn where_fuse_cannot_be_mounted_stages_use_the_overlay_and_fuse_is_not_tried_again() {
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: /dev/fuse is root's here");
        return;
    }
    let f = fixture();
    let root = tree_with_read_only_parts(&f.store);
    for mode in [StagingMode::Fuse, StagingMode::Default, StagingMode::Fuse] {
        let staged = f.stages.stage(&StageRequest { mode, ..request(root) }).unwrap();
        assert_eq!(staged.method, Method::Overlay, "{mode:?}");
        f.stages.unstage(staged.id).unwrap();
    }
    let fuse_mounts = f.sys.take().iter().filter(|c| matches!(c, Call::MountFuse(_))).count();
    assert_eq!(fuse_mounts, 1, "FUSE is tried once, then known not to work");
}

#[test]
fn prune_removes_unused_farms_and_the_variants_only_they_used() {
    let f = fixture();
    let shared = file(&f.store, "shared", b"in both trees");
    let only_a = put_dir(
        &f.store,
        &reapi::Directory {
            files: vec![file(&f.store, "a", b"only in a"), shared.clone()],
            ..Default::default()
        },
    );
    let only_b = put_dir(
        &f.store,
        &reapi::Directory { files: vec![file(&f.store, "b", b"only in b"), shared], ..Default::default() },
    );
    let a = f.stages.stage(&request(only_a)).unwrap();
    f.stages.unstage(a.id).unwrap();
    let b = f.stages.stage(&request(only_b)).unwrap(); // Live: its farm must stay.
    let variants = |stages: &Stages| {
        fs::read_dir(stages.layout().pool())
            .unwrap()
            .flatten()
            .flat_map(|d| fs::read_dir(d.path()).unwrap())
            .count()
    };
    assert_eq!(variants(&f.stages), 3);

    let recent = f.stages.prune(std::time::Duration::from_secs(3600)).unwrap();
    assert_eq!(recent, PruneReport::default(), "nothing is old enough");

    let report = f.stages.prune(std::time::Duration::ZERO).unwrap();
    assert_eq!((report.farms, report.variants, report.bytes), (1, 1, b"only in a".len() as u64));
    assert_eq!(variants(&f.stages), 2);
    let kept: Vec<String> = fs::read_dir(f.stages.layout().farms())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    assert_eq!(kept.len(), 1);
    assert!(kept[0].starts_with(&only_b.hash_hex()), "the live stage's farm stays: {kept:?}");
    f.stages.unstage(b.id).unwrap();

    // Tree a stages again: its farm and variant are made anew.
    let again = f.stages.stage(&request(only_a)).unwrap();
    assert_eq!(variants(&f.stages), 3);
    f.stages.unstage(again.id).unwrap();
}
