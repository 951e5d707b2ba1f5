//! FUSE stages (issue #5), in-process through the library and the LocalCAS service: what the
//! action sees, that nothing it does reaches the CAS, `SubtreeReadOnly`, what capture takes
//! without reading, the limit of live FUSE stages, unstaging, and concurrent stages. Mounting
//! FUSE needs root.

mod fuse_support;
mod staging_support;

use std::collections::BTreeSet;
use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{Duration, SystemTime};

use fuse_support::local_cas::*;
use fuse_support::sample::*;
use fuse_support::*;
use prost::Message;
use rebox::digest::Digest;
use rebox::proto::build::bazel::remote::execution::v2 as reapi;
use rebox::proto::build::buildgrid::{CaptureTreeRequest, StageTreeRequest};
use rebox::staging::{FUSE_FSTYPE, Method, Owner, StageRequest, StagingMode};
use rebox::tree::to_proto;
use staging_support::*;

fn fuse(root: Digest) -> StageRequest {
    StageRequest { root, path: None, credentials: None, mode: StagingMode::Fuse }
}

#[test]
fn a_fuse_stage_shows_the_tree_with_its_modes_mtimes_owners_and_contents() {
    if fuse_skipped() {
        return;
    }
    let (_tmp, store) = store();
    let stages = Cleaning::new(&store);
    let owner = Owner { uid: 1000, gid: 1000 };
    let root = sample_tree(&store);
    // REAPI servers treat the empty blob as always present, stored or not.
    assert!(store.remove(&store.digest_function().hash_bytes(b"")).unwrap());
    let staged = stages.stage(&StageRequest { credentials: Some(owner), ..fuse(root) }).unwrap();
    assert_eq!(staged.method, Method::Fuse);
    let s = &staged.dir;
    let (owner_dir, n) = owner_dir_and_number(s);
    let owner_name = owner_dir.file_name().unwrap().to_str().unwrap();
    let expected = Mount {
        point: s.clone(),
        fstype: FUSE_FSTYPE.to_owned(),
        source: format!("rebox-stage:{owner_name}:fuse-{n}"),
    };
    assert_eq!(FUSE_FSTYPE, "fuse.rebox");
    assert_eq!(mounts_at(s), [expected]);
    assert!(owner_dir.join(format!("{n}.scratch")).is_dir(), "the stage's scratch dir");

    check(s, 0o755, DEFAULT_MTIME, owner);
    for (name, mode) in [("plain", 0o644), ("dup", 0o644), ("empty", 0o644), ("big", 0o644), ("exe", 0o755)] {
        check(&s.join(name), mode, DEFAULT_MTIME, owner);
    }
    check(&s.join("props"), 0o600, (1_500_000_000, 5), owner);
    check(&s.join("setuid"), 0o750, DEFAULT_MTIME, owner);
    for name in ["sub", "sub/nested"] {
        check(&s.join(name), 0o755, DEFAULT_MTIME, owner);
    }
    check(&s.join("sub/tool"), 0o755, DEFAULT_MTIME, owner);
    check(&s.join("sub/nested/deep"), 0o644, DEFAULT_MTIME, owner);
    check(&s.join("link"), 0, DEFAULT_MTIME, owner);
    check(&s.join("dated"), 0, (1_400_000_000, 7), owner);
    check(&s.join("sub/up"), 0, DEFAULT_MTIME, owner);

    assert_eq!(fs::read(s.join("plain")).unwrap(), b"hello\n");
    assert_eq!(fs::read(s.join("empty")).unwrap(), b"");
    assert_eq!(fs::read(s.join("big")).unwrap(), big_content());
    assert_eq!(fs::metadata(s.join("big")).unwrap().len(), 3 << 20);
    assert_eq!(fs::read(s.join("sub/up")).unwrap(), b"hello\n");
    assert_eq!(fs::read(s.join("sub/nested/deep")).unwrap(), b"deep\n");
    assert_eq!(fs::read_link(s.join("abs")).unwrap(), Path::new("/etc/passwd"));
    assert_eq!(fs::read_link(s.join("link")).unwrap(), Path::new("plain"));
    assert_eq!(fs::read_link(s.join("dated")).unwrap(), Path::new("nowhere"));
    let mut names: Vec<String> =
        fs::read_dir(s).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    let all = ["abs", "big", "dated", "dup", "empty", "exe", "link", "plain", "props", "setuid", "sub"];
    assert_eq!(names, all);
    assert_eq!(fs::metadata(s).unwrap().nlink(), 3, "2 + one subdirectory");
    // Only the stage's user can reach it: its parent is theirs, 0700.
    let parent = fs::metadata(s.parent().unwrap()).unwrap();
    assert_eq!((parent.mode() & 0o777, parent.uid()), (0o700, owner.uid));

    // The default mode stages through FUSE too, where FUSE works.
    let default = stages.stage(&StageRequest { mode: StagingMode::Default, ..fuse(root) }).unwrap();
    assert_eq!(default.method, Method::Fuse);
    assert_eq!(mounts_at(&default.dir)[0].fstype, FUSE_FSTYPE);
    assert_eq!(fs::read(default.dir.join("sub/tool")).unwrap(), b"#!/bin/sh\necho tool\n");
    check(&default.dir.join("exe"), 0o755, DEFAULT_MTIME, Owner::current());
    stages.unstage(staged.id).unwrap();
    stages.unstage(default.id).unwrap();
    assert_cas_intact(&store);
}

#[test]
fn writes_through_the_mount_never_reach_the_cas() {
    if fuse_skipped() {
        return;
    }
    let (_tmp, store) = store();
    let stages = Cleaning::new(&store);
    let root = sample_tree(&store);
    let objects = assert_cas_intact(&store);
    let staged = stages.stage(&fuse(root)).unwrap();
    let s = &staged.dir;

    let plain = OpenOptions::new().write(true).open(s.join("plain")).unwrap();
    plain.write_all_at(b"HE", 0).unwrap(); // In place, no truncation.
    drop(plain);
    OpenOptions::new().append(true).open(s.join("sub/nested/deep")).unwrap().write_all(b"more").unwrap();
    OpenOptions::new().write(true).open(s.join("props")).unwrap().set_len(2).unwrap();
    OpenOptions::new().write(true).truncate(true).open(s.join("big")).unwrap();
    fs::set_permissions(s.join("exe"), fs::Permissions::from_mode(0o777)).unwrap();
    let when = SystemTime::UNIX_EPOCH + Duration::new(1_600_000_000, 123);
    let times = fs::FileTimes::new().set_modified(when).set_accessed(when);
    fs::File::open(s.join("setuid")).unwrap().set_times(times).unwrap();
    fs::rename(s.join("exe"), s.join("dup")).unwrap(); // Over another staged file.
    fs::remove_file(s.join("empty")).unwrap();
    fs::hard_link(s.join("sub/tool"), s.join("tool-link")).unwrap();
    OpenOptions::new().append(true).open(s.join("tool-link")).unwrap().write_all(b"#").unwrap();
    fs::set_permissions(s.join("tool-link"), fs::Permissions::from_mode(0o700)).unwrap();
    let mut rw = OpenOptions::new().read(true).write(true).open(s.join("sub/nested/deep")).unwrap();
    rw.seek(SeekFrom::Start(1)).unwrap();
    rw.write_all(b"EE").unwrap();

    assert_eq!(fs::read(s.join("plain")).unwrap(), b"HEllo\n");
    assert_eq!(fs::read(s.join("sub/nested/deep")).unwrap(), b"dEEp\nmore");
    assert_eq!(fs::read(s.join("props")).unwrap(), b"pr");
    assert_eq!(fs::read(s.join("big")).unwrap(), b"");
    assert_eq!(fs::read(s.join("dup")).unwrap(), b"#!/bin/sh\necho hi\n");
    assert_eq!(fs::metadata(s.join("dup")).unwrap().mode() & 0o7777, 0o777);
    assert!(is_gone(&s.join("exe")) && is_gone(&s.join("empty")));
    let setuid = fs::metadata(s.join("setuid")).unwrap();
    assert_eq!((setuid.mtime(), setuid.mtime_nsec(), setuid.atime()), (1_600_000_000, 123, 1_600_000_000));
    assert_eq!(fs::read(s.join("sub/tool")).unwrap(), b"#!/bin/sh\necho tool\n#", "one inode, two names");
    let tool = fs::metadata(s.join("sub/tool")).unwrap();
    assert_eq!((tool.nlink(), tool.mode() & 0o7777), (2, 0o700));
    assert_eq!(tool.ino(), fs::metadata(s.join("tool-link")).unwrap().ino());
    let (owner_dir, n) = owner_dir_and_number(s);
    assert!(fs::read_dir(owner_dir.join(format!("{n}.scratch"))).unwrap().count() >= 4, "copied up");
    assert_eq!(assert_cas_intact(&store), objects, "no object came or went");

    // The next stage of the tree sees the original files.
    let again = stages.stage(&fuse(root)).unwrap();
    let a = &again.dir;
    assert_eq!(fs::read(a.join("plain")).unwrap(), b"hello\n");
    assert_eq!(fs::read(a.join("dup")).unwrap(), b"hello\n");
    assert_eq!(fs::read(a.join("big")).unwrap(), big_content());
    assert_eq!(fs::read(a.join("props")).unwrap(), b"props\n");
    assert_eq!(fs::read(a.join("sub/nested/deep")).unwrap(), b"deep\n");
    assert_eq!(fs::read(a.join("sub/tool")).unwrap(), b"#!/bin/sh\necho tool\n");
    check(&a.join("exe"), 0o755, DEFAULT_MTIME, Owner::current());
    check(&a.join("setuid"), 0o750, DEFAULT_MTIME, Owner::current());
    check(&a.join("sub/tool"), 0o755, DEFAULT_MTIME, Owner::current());
    assert_eq!(fs::metadata(a.join("sub/tool")).unwrap().nlink(), 1);
    assert!(a.join("empty").exists() && !a.join("tool-link").exists());
    stages.unstage(staged.id).unwrap();
    stages.unstage(again.id).unwrap();
    assert_eq!(assert_cas_intact(&store), objects);
}

/// A staged file open for reading can be opened for writing too, and every later open sees the
/// write. The reader opened before the write goes on reading the staged bytes: with
/// passthrough, its backing file is the CAS object (`fuse/handles.rs`), the one place a FUSE
/// stage is not POSIX.
#[test]
fn a_staged_file_open_for_reading_can_be_written_and_later_opens_see_it() {
    if fuse_skipped() {
        return;
    }
    let (_tmp, store) = store();
    let stages = Cleaning::new(&store);
    let staged = stages.stage(&fuse(sample_tree(&store))).unwrap();
    let path = staged.dir.join("plain");
    let reader = fs::File::open(&path).unwrap();
    let mut seen = [0; 6];
    reader.read_exact_at(&mut seen, 0).unwrap();
    assert_eq!(&seen, b"hello\n");
    let writer = OpenOptions::new().write(true).open(&path);
    let writer = writer.expect("open for writing a staged file that is open for reading");
    writer.write_all_at(b"J", 0).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"Jello\n", "a new open sees the write");
    let again = fs::File::open(&path).unwrap();
    reader.read_exact_at(&mut seen, 0).unwrap();
    assert_eq!(&seen, b"hello\n", "the reader opened before the write still reads the staged bytes");
    drop((reader, writer));
    let mut later = [0; 6];
    again.read_exact_at(&mut later, 0).unwrap();
    assert_eq!(&later, b"Jello\n", "an open made while the early reader lasted sees the write");
    drop(again);
    assert_eq!(fs::read(&path).unwrap(), b"Jello\n", "and so does one made after");
    stages.unstage(staged.id).unwrap();
    assert_cas_intact(&store);
}

/// `truncate(path)` of a staged file someone has open changes the file, which can still be
/// opened (as the earlier test: that one reader goes on reading the staged bytes).
#[test]
fn truncating_an_open_staged_file_by_path_changes_it_for_every_later_open() {
    if fuse_skipped() {
        return;
    }
    let (_tmp, store) = store();
    let stages = Cleaning::new(&store);
    let staged = stages.stage(&fuse(sample_tree(&store))).unwrap();
    let path = staged.dir.join("plain");
    let reader = fs::File::open(&path).unwrap();
    nix::unistd::truncate(&path, 2).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), 2);
    assert_eq!(fs::read(&path).expect("open the truncated file again"), b"he");
    let mut seen = [0; 6];
    assert_eq!(reader.read_at(&mut seen, 0).unwrap(), 6, "the early reader reads the staged bytes");
    drop(reader);
    assert_eq!(fs::read(&path).unwrap(), b"he");
    stages.unstage(staged.id).unwrap();
    assert_cas_intact(&store);
}

#[test]
fn subtree_read_only_gives_erofs_and_false_below_it_is_writable() {
    if fuse_skipped() {
        return;
    }
    let (_tmp, store) = store();
    let writable = reapi::Directory {
        files: vec![file(&store, "w", b"w")],
        node_properties: read_only("false"),
        ..Default::default()
    };
    let ro = reapi::Directory {
        files: vec![file(&store, "lib", b"lib")],
        directories: vec![dir(&store, "rw", &writable)],
        node_properties: read_only("true"),
        ..Default::default()
    };
    let root = put_dir(
        &store,
        &reapi::Directory {
            files: vec![file(&store, "top", b"top")],
            directories: vec![dir(&store, "usr", &ro)],
            ..Default::default()
        },
    );
    let stages = Cleaning::new(&store);
    let staged = stages.stage(&fuse(root)).unwrap();
    assert_eq!(staged.method, Method::Fuse);
    let s = &staged.dir;
    let erofs = |result: std::io::Result<()>, what: &str| {
        assert_eq!(result.unwrap_err().raw_os_error(), Some(libc::EROFS), "{what}");
    };
    erofs(fs::write(s.join("usr/new"), b"x"), "create in the read-only dir");
    erofs(OpenOptions::new().write(true).open(s.join("usr/lib")).map(drop), "open for writing");
    erofs(fs::set_permissions(s.join("usr/lib"), fs::Permissions::from_mode(0o777)), "chmod");
    erofs(fs::remove_file(s.join("usr/lib")), "unlink");
    erofs(fs::create_dir(s.join("usr/dir")), "mkdir");
    assert_eq!(fs::read(s.join("usr/lib")).unwrap(), b"lib");
    fs::write(s.join("top"), b"changed").unwrap();
    fs::write(s.join("usr/rw/w"), b"changed").unwrap();
    fs::write(s.join("usr/rw/new"), b"new").unwrap();
    assert_eq!(fs::read(s.join("usr/rw/w")).unwrap(), b"changed");
    let under: Vec<Mount> = mounts().into_iter().filter(|m| m.point.starts_with(s)).collect();
    assert_eq!(under.len(), 3, "the stage and two binds: {under:?}");
    assert!(under.iter().all(|m| m.fstype == FUSE_FSTYPE), "{under:?}");
    stages.unstage(staged.id).unwrap();
    assert!(mounts_under(s).is_empty());
    assert_cas_intact(&store);
}

/// Capture takes an untouched staged file's digest and an unopened staged directory's digest
/// without reading either: shown by altering their CAS objects behind the store's back (the
/// digests stay the staged ones) and by a directory message encoded non-canonically (a walk
/// would re-encode it, and give another digest).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capture_takes_untouched_files_and_directories_without_reading_them() {
    if fuse_skipped() {
        return;
    }
    let (_tmp, store) = store();
    let f = store.digest_function();
    let deeper = reapi::Directory { files: vec![file(&store, "h", b"deeper bytes")], ..Default::default() };
    let sub = reapi::Directory {
        files: vec![file(&store, "g", b"sub bytes")],
        directories: vec![dir(&store, "deeper", &deeper)],
        ..Default::default()
    };
    // Field 15 is unknown to REAPI: decoders skip it, so the staged tree is the same.
    let mut odd_encoding = sub.encode_to_vec();
    odd_encoding.extend([0x78, 0x01]);
    let sub_digest = store.put_bytes(&odd_encoding).unwrap();
    let canonical_sub = f.hash_bytes(&sub.encode_to_vec());
    assert_ne!(sub_digest, canonical_sub);
    let other = reapi::Directory { files: vec![file(&store, "o", b"other bytes")], ..Default::default() };
    let root_message = reapi::Directory {
        files: vec![file(&store, "f", b"staged bytes"), file(&store, "w", b"to be written")],
        directories: vec![
            dir(&store, "other", &other),
            reapi::DirectoryNode { name: "sub".into(), digest: Some(to_proto(&sub_digest)) },
        ],
        ..Default::default()
    };
    let root = put_dir(&store, &root_message);
    let daemon = Daemon::start(&store);
    let mut client = daemon.client().await;
    let staged = daemon.shared.stages.stage(&fuse(root)).unwrap();
    let s = staged.dir.clone();

    // An untouched file: the staged digest, though the object now holds other bytes (which the
    // stage serves, so reading it would have shown them).
    alter_object(&store.object_path(&f.hash_bytes(b"staged bytes")), b"ALTERED BYTE");
    assert_eq!(fs::read(s.join("f")).unwrap(), b"ALTERED BYTE");
    assert_eq!(capture_file(&mut client, &s.join("f")).await, f.hash_bytes(b"staged bytes"));

    // A directory never looked into keeps its staged digest ("other"). One staged in another
    // encoding than capture's ("sub") is walked all the same, so that what capture records never
    // depends on what the action looked at; its file, altered behind the store's back, is still
    // taken as staged (not read).
    alter_object(&store.object_path(&f.hash_bytes(b"sub bytes")), b"SUB BYTES");
    let captured = capture_tree(&mut client, &s, &[]).await;
    assert_eq!(subdirectory(&store, &captured, "other"), f.hash_bytes(&other.encode_to_vec()));
    assert_eq!(subdirectory(&store, &captured, "sub"), canonical_sub, "walked, re-encoded");
    assert_eq!(subdirectory(&store, &root, "sub"), sub_digest);

    // Once looked into, a directory is walked: its message re-encoded (its files still known).
    assert_eq!(fs::read_dir(s.join("sub")).unwrap().count(), 2);
    let captured = capture_tree(&mut client, &s, &[]).await;
    assert_eq!(subdirectory(&store, &captured, "sub"), canonical_sub);
    assert_eq!(subdirectory(&store, &captured, "other"), f.hash_bytes(&other.encode_to_vec()));
    assert_eq!(subdirectory(&store, &canonical_sub, "deeper"), f.hash_bytes(&deeper.encode_to_vec()));

    // A file written through the mount: its new content.
    OpenOptions::new().write(true).open(s.join("w")).unwrap().write_all_at(b"TO", 0).unwrap();
    let written = f.hash_bytes(b"TO be written");
    assert_eq!(capture_file(&mut client, &s.join("w")).await, written);
    let captured = capture_tree(&mut client, &s, &[]).await;
    let message = reapi::Directory::decode(store.read(&captured).unwrap().as_slice()).unwrap();
    let w = message.files.iter().find(|n| n.name == "w").unwrap();
    assert_eq!(digest_of(w.digest.as_ref()), written);
    assert_eq!(store.read(&written).unwrap(), b"TO be written");

    // Node properties asked for: an unopened directory is walked, and recorded with them.
    let mtime = Some(reapi::NodeProperties {
        mtime: Some(prost_types::Timestamp { seconds: DEFAULT_MTIME.0, nanos: 0 }),
        ..Default::default()
    });
    let other_with_mtime = reapi::Directory {
        files: vec![reapi::FileNode { node_properties: mtime.clone(), ..other.files[0].clone() }],
        node_properties: mtime,
        ..Default::default()
    };
    let captured = capture_tree(&mut client, &s, &["mtime"]).await;
    assert_eq!(subdirectory(&store, &captured, "other"), f.hash_bytes(&other_with_mtime.encode_to_vec()));
    daemon.shared.stages.unstage(staged.id).unwrap();
}

/// A captured Tree holds, for each directory node, the message its digest names: also for a
/// staged directory taken as known, whatever the encoding its message was staged with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_tree_holds_the_message_of_each_known_directory() {
    if fuse_skipped() {
        return;
    }
    let (_tmp, store) = store();
    let f = store.digest_function();
    let sub = reapi::Directory { files: vec![file(&store, "g", b"sub bytes")], ..Default::default() };
    let mut odd_encoding = sub.encode_to_vec();
    odd_encoding.extend([0x78, 0x01]); // Field 15, unknown to this REAPI version.
    let sub_digest = store.put_bytes(&odd_encoding).unwrap();
    let sub_node = reapi::DirectoryNode { name: "sub".into(), digest: Some(to_proto(&sub_digest)) };
    let root = put_dir(&store, &reapi::Directory { directories: vec![sub_node], ..Default::default() });
    let daemon = Daemon::start(&store);
    let mut client = daemon.client().await;
    let staged = daemon.shared.stages.stage(&fuse(root)).unwrap();
    let request = CaptureTreeRequest {
        instance_name: INSTANCE.into(),
        path: vec![staged.dir.display().to_string()],
        output_directory_format: reapi::command::OutputDirectoryFormat::TreeOnly as i32,
        ..Default::default()
    };
    let response = client.capture_tree(request).await.unwrap().into_inner();
    let tree_digest = digest_of(response.responses[0].tree_digest.as_ref());
    let tree = reapi::Tree::decode(store.read(&tree_digest).unwrap().as_slice()).unwrap();
    let named = digest_of(tree.root.as_ref().unwrap().directories[0].digest.as_ref());
    let children: Vec<Digest> = tree.children.iter().map(|c| f.hash_bytes(&c.encode_to_vec())).collect();
    daemon.shared.stages.unstage(staged.id).unwrap();
    assert!(children.contains(&named), "the root names {named}, the Tree holds {children:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beyond_the_limit_of_live_fuse_stages_staging_is_refused_until_one_goes() {
    use rebox::proto::build::buildgrid::stage_tree_request::StagingMode as ProtoMode;
    use tokio_stream::wrappers::ReceiverStream;
    if fuse_skipped() {
        return;
    }
    let (_tmp, store) = store();
    let root = sample_tree(&store);
    let daemon = Daemon::start(&store);
    daemon.shared.stages.set_fuse_limit(1);
    let mut client = daemon.client().await;
    let request = |mode: ProtoMode| StageTreeRequest {
        root_digest: Some(to_proto(&root)),
        staging_mode: mode as i32,
        ..Default::default()
    };
    let mut open = async |first: StageTreeRequest| {
        let (requests, rx) = tokio::sync::mpsc::channel(2);
        requests.send(first).await.unwrap();
        let responses = client.stage_tree(ReceiverStream::new(rx)).await.unwrap().into_inner();
        (requests, responses)
    };

    let (first, mut first_replies) = open(request(ProtoMode::Default)).await;
    let path = PathBuf::from(first_replies.message().await.unwrap().unwrap().path);
    assert_eq!(mounts_at(&path)[0].fstype, FUSE_FSTYPE);

    let (_second, mut refused) = open(request(ProtoMode::Fuse)).await;
    let status = refused.message().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");
    assert!(status.message().contains("FUSE") && status.message().contains("(1)"), "{}", status.message());
    let (_default, mut refused) = open(request(ProtoMode::Default)).await;
    assert_eq!(refused.message().await.unwrap_err().code(), tonic::Code::ResourceExhausted);
    // Copying or linking is not limited.
    let (_copy, mut copied) = open(request(ProtoMode::CopyOrLink)).await;
    let copy_path = PathBuf::from(copied.message().await.unwrap().unwrap().path);
    assert_eq!(fs::read(copy_path.join("plain")).unwrap(), b"hello\n");
    assert!(mounts_at(&copy_path).iter().all(|m| m.fstype != FUSE_FSTYPE));

    first.send(StageTreeRequest::default()).await.unwrap();
    assert_eq!(first_replies.message().await.unwrap().unwrap().path, "");
    let (_third, mut third_replies) = open(request(ProtoMode::Fuse)).await;
    let path = PathBuf::from(third_replies.message().await.unwrap().unwrap().path);
    assert_eq!(mounts_at(&path)[0].fstype, FUSE_FSTYPE);
    assert_eq!(fs::read(path.join("sub/nested/deep")).unwrap(), b"deep\n");
}

/// The limit holds when stages are asked for at once, not only one after another.
#[test]
fn the_limit_of_live_fuse_stages_holds_for_concurrent_requests() {
    if fuse_skipped() {
        return;
    }
    let (_tmp, store) = store();
    let stages = Cleaning::new(&store);
    stages.set_fuse_limit(1);
    let root = sample_tree(&store);
    let barrier = Arc::new(Barrier::new(4));
    let workers: Vec<_> = (0..4)
        .map(|_| {
            let (stages, barrier) = (stages.0.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                stages.stage(&fuse(root)).map(|staged| staged.id).map_err(|e| e.to_string())
            })
        })
        .collect();
    let results: Vec<_> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    let staged: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).copied().collect();
    for id in &staged {
        stages.unstage(*id).unwrap();
    }
    assert_eq!(staged.len(), 1, "with a limit of 1, four requests at once: {results:?}");
}

#[test]
fn unstaging_unmounts_and_removes_the_stage_and_its_scratch() {
    if fuse_skipped() {
        return;
    }
    let (tmp, store) = store();
    let stages = Cleaning::new(&store);
    let root = sample_tree(&store);
    let created = tmp.path().join("client/stage");
    let existing = tmp.path().join("empty-dir");
    fs::create_dir(&existing).unwrap();
    let generated = stages.stage(&fuse(root)).unwrap();
    let at_created = stages.stage(&StageRequest { path: Some(created.clone()), ..fuse(root) }).unwrap();
    let at_existing = stages.stage(&StageRequest { path: Some(existing.clone()), ..fuse(root) }).unwrap();
    let all = [&generated, &at_created, &at_existing];
    let tag = owner_tag(&generated.dir);
    assert_eq!(mounts_tagged(&tag).len(), 3);
    for staged in all {
        assert_eq!(staged.method, Method::Fuse);
        fs::write(staged.dir.join("plain"), b"changed").unwrap();
        fs::write(staged.dir.join("sub/new"), b"new").unwrap();
    }
    let (owner_dir, n) = owner_dir_and_number(&generated.dir);
    let scratches: Vec<PathBuf> =
        fs::read_dir(&owner_dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.is_dir()).collect();
    let scratches: Vec<PathBuf> =
        scratches.into_iter().filter(|p| p.to_str().unwrap().ends_with(".scratch")).collect();
    assert_eq!(scratches.len(), 3, "{scratches:?}");
    // A file open in a stage makes it busy: it is detached lazily, and the open file still reads.
    let busy = fs::File::open(generated.dir.join("sub/tool")).unwrap();

    for staged in all {
        stages.unstage(staged.id).unwrap();
    }
    stages.flush();
    assert!(mounts_tagged(&tag).is_empty(), "{:?}", mounts_tagged(&tag));
    assert!(mounts().iter().all(|m| !m.point.starts_with(tmp.path())), "nothing mounted in the store");
    assert!(is_gone(&owner_dir.join(&n)), "the generated stage's dir");
    assert!(scratches.iter().all(|s| is_gone(s)), "the scratch dirs");
    assert!(is_gone(&created) && created.parent().unwrap().is_dir(), "a created client path, not its parent");
    assert_eq!(fs::read_dir(&existing).unwrap().count(), 0, "an existing client dir is kept, empty");
    for path in [&generated.dir, &created, &existing, &existing.join("plain")] {
        assert_ne!(stat_errno(path), Some(libc::ENOTCONN), "{}", path.display());
    }
    let mut content = Vec::new();
    (&busy).read_to_end(&mut content).unwrap();
    assert_eq!(content, b"#!/bin/sh\necho tool\n");
    drop(busy);
    assert!(stages.live().is_empty());
    assert_cas_intact(&store);
}

#[test]
fn concurrent_stages_of_one_tree_are_correct_and_independent() {
    if fuse_skipped() {
        return;
    }
    let (_tmp, store) = store();
    let stages = Cleaning::new(&store);
    let root = sample_tree(&store);
    let objects = assert_cas_intact(&store);
    let barrier = Arc::new(Barrier::new(4));
    let workers: Vec<_> = (0..4)
        .map(|i| {
            let (stages, barrier) = (stages.0.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let staged = stages.stage(&fuse(root)).unwrap();
                let s = &staged.dir;
                assert_eq!(staged.method, Method::Fuse);
                assert_eq!(fs::read(s.join("big")).unwrap(), big_content());
                let mine = format!("thread {i}\n");
                OpenOptions::new()
                    .append(true)
                    .open(s.join("plain"))
                    .unwrap()
                    .write_all(mine.as_bytes())
                    .unwrap();
                fs::write(s.join(format!("new-{i}")), &mine).unwrap();
                fs::create_dir(s.join("sub/nested/made")).unwrap();
                fs::rename(s.join("sub/tool"), s.join("sub/nested/made/tool")).unwrap();
                barrier.wait(); // Every stage changed before any is checked.
                assert_eq!(fs::read_to_string(s.join("plain")).unwrap(), format!("hello\n{mine}"));
                let mut names: Vec<String> =
                    fs::read_dir(s).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
                names.retain(|n| n.starts_with("new-"));
                assert_eq!(names, [format!("new-{i}")]);
                assert_eq!(fs::read(s.join("sub/nested/made/tool")).unwrap(), b"#!/bin/sh\necho tool\n");
                assert_eq!(fs::read(s.join("sub/nested/deep")).unwrap(), b"deep\n");
                barrier.wait();
                stages.unstage(staged.id).unwrap();
                staged.dir
            })
        })
        .collect();
    let dirs: Vec<PathBuf> = workers.into_iter().map(|w| w.join().unwrap()).collect();
    assert_eq!(dirs.iter().collect::<BTreeSet<_>>().len(), 4, "four stages");
    stages.flush();
    assert!(dirs.iter().all(|d| is_gone(d) && mounts_under(d).is_empty()));
    assert_eq!(assert_cas_intact(&store), objects);
}

/// FUSE stages keep no extended attributes: asking gives EOPNOTSUPP (not a hang or EIO), and
/// files stay writable (the kernel's security.capability lookup before a write gets the same).
#[test]
fn extended_attributes_are_not_supported() {
    if fuse_skipped() {
        return;
    }
    let (_tmp, store) = store();
    let stages = Cleaning::new(&store);
    let staged = stages.stage(&fuse(sample_tree(&store))).unwrap();
    let path =
        std::ffi::CString::new(staged.dir.join("plain").into_os_string().into_encoded_bytes()).unwrap();
    let mut value = [0u8; 16];
    // SAFETY: a NUL-terminated path and name, and a buffer valid for writes of its length.
    let got = unsafe { libc::lgetxattr(path.as_ptr(), c"user.x".as_ptr(), value.as_mut_ptr().cast(), 16) };
    assert_eq!((got, nix::errno::Errno::last()), (-1, nix::errno::Errno::EOPNOTSUPP));
    // SAFETY: as above, with a value valid for reads of its length.
    let set = unsafe { libc::lsetxattr(path.as_ptr(), c"user.x".as_ptr(), b"v".as_ptr().cast(), 1, 0) };
    assert_eq!((set, nix::errno::Errno::last()), (-1, nix::errno::Errno::EOPNOTSUPP));
    OpenOptions::new().append(true).open(staged.dir.join("plain")).unwrap().write_all(b"more").unwrap();
    stages.unstage(staged.id).unwrap();
    assert_cas_intact(&store);
}
