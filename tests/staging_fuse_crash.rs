//! FUSE stages of `rebox casd` (the real binary) when the daemon goes: killed, it leaves dead
//! mounts, which the next daemon started on the same cache dir removes before serving; stopped
//! with SIGTERM, it unstages everything and exits cleanly. Mounting FUSE needs root.

#[path = "casd_support/daemon.rs"]
mod daemon;
mod fuse_support;
mod staging_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use daemon::{Daemon, group_has_processes, rebox};
use fuse_support::sample::sample_tree;
use fuse_support::*;
use nix::sys::signal::Signal;
use rebox::digest::{Digest, DigestFunction};
use rebox::proto::build::bazel::remote::execution::v2 as reapi;
use rebox::proto::build::buildgrid::local_content_addressable_storage_client::LocalContentAddressableStorageClient;
use rebox::proto::build::buildgrid::stage_tree_request::StagingMode;
use rebox::proto::build::buildgrid::{StageTreeRequest, StageTreeResponse};
use rebox::staging::FUSE_FSTYPE;
use rebox::store::Store;
use rebox::tree::to_proto;
use staging_support::{dir, file, fuse_skipped, put_dir, read_only};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

/// A cache dir holding the sample tree and a tree with read-only parts (stored before any
/// daemon starts), and where a daemon on it listens.
struct Cache {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    cache: PathBuf,
    socket: PathBuf,
    sample: Digest,
    read_only: Digest,
}

impl Cache {
    fn new() -> Cache {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().to_owned();
        let cache = top.join("cache");
        let store = Store::open(&cache, DigestFunction::Sha256).unwrap();
        let sample = sample_tree(&store);
        let rw = reapi::Directory {
            files: vec![file(&store, "w", b"w\n")],
            node_properties: read_only("false"),
            ..Default::default()
        };
        let ro = reapi::Directory {
            files: vec![file(&store, "r", b"r\n")],
            directories: vec![dir(&store, "rw", &rw)],
            node_properties: read_only("true"),
            ..Default::default()
        };
        let read_only = put_dir(
            &store,
            &reapi::Directory {
                files: vec![file(&store, "top", b"top\n")],
                directories: vec![dir(&store, "ro", &ro)],
                ..Default::default()
            },
        );
        let socket = top.join("casd.sock");
        Cache { _tmp: tmp, dir: top, cache, socket, sample, read_only }
    }

    fn start(&self) -> Daemon {
        let args = [
            "casd".to_owned(),
            format!("--bind=unix:{}", self.socket.display()),
            "--log-level=info".to_owned(),
            self.cache.display().to_string(),
        ];
        Daemon::start(rebox(), &args, &self.cache, &self.socket)
    }
}

/// A live StageTree call: dropping it (or the daemon dying) ends the stage.
struct Stage {
    path: PathBuf,
    _requests: mpsc::Sender<StageTreeRequest>,
    _replies: Streaming<StageTreeResponse>,
}

async fn stage(
    client: &mut LocalContentAddressableStorageClient<Channel>,
    root: Digest,
    path: &str,
) -> Stage {
    let request = StageTreeRequest {
        root_digest: Some(to_proto(&root)),
        path: path.to_owned(),
        staging_mode: StagingMode::Fuse as i32,
        ..Default::default()
    };
    let (requests, rx) = mpsc::channel(2);
    requests.send(request).await.unwrap();
    let mut replies = client.stage_tree(ReceiverStream::new(rx)).await.unwrap().into_inner();
    let path = PathBuf::from(replies.message().await.unwrap().unwrap().path);
    Stage { path, _requests: requests, _replies: replies }
}

/// The stage's mount is a live FUSE stage showing the tree.
fn assert_served(path: &Path, file: &str, content: &[u8]) {
    let mounts = mounts_at(path);
    assert_eq!(mounts.len(), 1, "{mounts:?}");
    assert_eq!(mounts[0].fstype, FUSE_FSTYPE);
    assert!(mounts[0].source.starts_with("rebox-stage:"), "{mounts:?}");
    assert_eq!(fs::read(path.join(file)).unwrap(), content);
}

/// Detaches, when dropped, whatever a test leaves mounted with a daemon's tag (a lazy detach of
/// a stage root takes everything mounted below it), so that a failing test leaves nothing dead.
struct DetachOnDrop(String);

impl Drop for DetachOnDrop {
    fn drop(&mut self) {
        for mount in mounts_tagged(&self.0) {
            let _ = nix::mount::umount2(&mount.point, nix::mount::MntFlags::MNT_DETACH);
        }
    }
}

#[test]
fn a_killed_daemons_fuse_stages_are_removed_by_the_next_one() {
    if fuse_skipped() {
        return;
    }
    killed_then_restarted(Duration::ZERO);
}

/// As above, with the restart once the kernel's cached names in the dead stages have expired
/// (the stager answers lookups with a 60 s TTL): finding a mount below a stage root then asks
/// the dead daemon, and fails with ENOTCONN.
#[test]
fn a_daemon_killed_a_while_ago_has_its_fuse_stages_removed_too() {
    if fuse_skipped() {
        return;
    }
    killed_then_restarted(Duration::from_secs(62));
}

/// Kills a daemon serving three FUSE stages (one with `SubtreeReadOnly` binds), waits `wait`,
/// and starts another on the same cache dir: it must remove them all and stage as usual.
fn killed_then_restarted(wait: Duration) {
    let cache = Cache::new();
    let runtime = Runtime::new().unwrap();
    let mut daemon = cache.start();
    let mut client = runtime.block_on(daemon.local_cas());
    let generated = runtime.block_on(stage(&mut client, cache.read_only, ""));
    let created = cache.dir.join("client/stage");
    let at_created = runtime.block_on(stage(&mut client, cache.sample, created.to_str().unwrap()));
    let existing = cache.dir.join("existing");
    fs::create_dir(&existing).unwrap();
    let at_existing = runtime.block_on(stage(&mut client, cache.sample, existing.to_str().unwrap()));
    assert_eq!(
        (at_created.path.as_path(), at_existing.path.as_path()),
        (created.as_path(), existing.as_path())
    );
    assert_served(&generated.path, "ro/r", b"r\n");
    assert_served(&created, "sub/nested/deep", b"deep\n");
    assert_served(&existing, "plain", b"hello\n");
    let tag = owner_tag(&generated.path);
    let _detach = DetachOnDrop(tag.clone());
    let owner_dir = owner_dir_and_number(&generated.path).0;
    assert_eq!(mounts_tagged(&tag).len(), 5, "three stages and two SubtreeReadOnly binds");

    let group = daemon.pid();
    let status = daemon.stop_with(Signal::SIGKILL);
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(libc::SIGKILL));
    assert!(!group_has_processes(group));
    // Left dead: still mounted, but nothing serves them.
    assert_eq!(mounts_tagged(&tag).len(), 5, "{:?}", mounts_tagged(&tag));
    for (path, seen) in [(&generated.path, "ro/r"), (&created, "sub/nested/deep"), (&existing, "plain")] {
        assert_eq!(stat_errno(&path.join("never-looked-up")), Some(libc::ENOTCONN), "{}", path.display());
        let read = fs::read(path.join(seen)).unwrap_err();
        assert_eq!(read.raw_os_error(), Some(libc::ENOTCONN), "{}: {read}", path.display());
    }
    drop((client, generated, at_created, at_existing));
    std::thread::sleep(wait);

    let mut daemon = cache.start();
    let log = daemon.log();
    assert!(mounts_tagged(&tag).is_empty(), "{:?}\n{log}", mounts_tagged(&tag));
    assert!(log.contains("removed the stages of 1 dead daemon(s), 5 mount(s)"), "{log}");
    assert!(is_gone(&owner_dir), "the dead daemon's dir {}", owner_dir.display());
    assert!(is_gone(&created), "the client path it made");
    assert!(mounts_at(&existing).is_empty() && fs::read_dir(&existing).unwrap().count() == 0, "kept, empty");
    for path in [&created, &existing] {
        assert_ne!(stat_errno(path), Some(libc::ENOTCONN));
    }

    // The new daemon stages and serves as usual, at the client path too.
    let mut client = runtime.block_on(daemon.local_cas());
    let again = runtime.block_on(stage(&mut client, cache.sample, existing.to_str().unwrap()));
    assert_served(&again.path, "sub/nested/deep", b"deep\n");
    assert_eq!(fs::read(again.path.join("big")).unwrap(), fuse_support::sample::big_content());
    let fresh = runtime.block_on(stage(&mut client, cache.read_only, ""));
    assert_served(&fresh.path, "ro/rw/w", b"w\n");
    let new_tag = owner_tag(&fresh.path);
    assert_ne!(new_tag, tag);
    let _detach_new = DetachOnDrop(new_tag.clone());
    assert_eq!(daemon.stop_with(Signal::SIGTERM).code(), Some(0), "{}", daemon.log());
    assert!(mounts_tagged(&new_tag).is_empty() && !fresh.path.exists());
}

#[test]
fn sigterm_unstages_every_fuse_stage_and_exits_cleanly() {
    if fuse_skipped() {
        return;
    }
    let cache = Cache::new();
    let runtime = Runtime::new().unwrap();
    let mut daemon = cache.start();
    let mut client = runtime.block_on(daemon.local_cas());
    let generated = runtime.block_on(stage(&mut client, cache.read_only, ""));
    let created = cache.dir.join("made-by-casd");
    let at_created = runtime.block_on(stage(&mut client, cache.sample, created.to_str().unwrap()));
    assert_served(&generated.path, "top", b"top\n");
    assert_served(&created, "exe", b"#!/bin/sh\necho hi\n");
    fs::write(generated.path.join("ro/rw/new"), b"written\n").unwrap();
    fs::write(created.join("plain"), b"changed\n").unwrap();
    let tag = owner_tag(&generated.path);
    let _detach = DetachOnDrop(tag.clone());
    let owner_dir = owner_dir_and_number(&generated.path).0;
    // A file kept open makes one stage busy at shutdown.
    let busy = fs::File::open(created.join("sub/tool")).unwrap();

    let group = daemon.pid();
    let status = daemon.stop_with(Signal::SIGTERM);
    let log = daemon.log();
    assert_eq!(status.code(), Some(0), "{log}");
    assert!(!group_has_processes(group), "a process of the daemon's group is left");
    assert!(mounts_tagged(&tag).is_empty(), "{:?}", mounts_tagged(&tag));
    assert!(is_gone(&generated.path) && is_gone(&created), "{log}");
    assert!(is_gone(&owner_dir), "the daemon's staging dir: {log}");
    drop((busy, client, generated, at_created));
}
