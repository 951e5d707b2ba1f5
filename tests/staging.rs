//! Staging with real mounts, through the stage path: what the action sees, what it can change,
//! and that no change reaches the CAS. These tests mount overlays, so they need root.

mod staging_support;

use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::sync::Arc;

use rebox::digest::Digest;
use rebox::proto::build::bazel::remote::execution::v2 as reapi;
use rebox::staging::{Method, Owner, StageRequest, Stages, StagingMode};
use rebox::store::Store;
use staging_support::*;

fn request(root: Digest) -> StageRequest {
    StageRequest { root, path: None, credentials: None, mode: StagingMode::CopyOrLink }
}

/// Executables, node properties, symlinks, a shared blob and nested dirs.
fn sample_tree(store: &Store) -> Digest {
    let deep = reapi::Directory { files: vec![file(store, "deep", b"deep\n")], ..Default::default() };
    let sub = reapi::Directory {
        files: vec![executable(store, "tool", b"#!/bin/sh\necho tool\n")],
        directories: vec![dir(store, "nested", &deep)],
        symlinks: vec![symlink("up", "../plain")],
        ..Default::default()
    };
    put_dir(
        store,
        &reapi::Directory {
            files: vec![
                file(store, "dup", b"hello\n"),
                file(store, "empty", b""),
                executable(store, "exe", b"#!/bin/sh\necho hi\n"),
                file(store, "plain", b"hello\n"),
                file_with(store, "props", b"props\n", Some((1_500_000_000, 5)), Some(0o600)),
                file_with(store, "setuid", b"suid\n", None, Some(0o4755)),
                file(store, "spaced \u{e9}t\u{e9} -name", b"odd\n"),
            ],
            directories: vec![dir(store, "sub", &sub)],
            symlinks: vec![symlink("abs", "/etc/passwd"), symlink("link", "plain")],
            ..Default::default()
        },
    )
}

/// Every file blob of the sample tree.
fn sample_blobs(store: &Store) -> Vec<Digest> {
    let f = store.digest_function();
    ["hello\n", "#!/bin/sh\necho hi\n", "props\n", "suid\n", "#!/bin/sh\necho tool\n", "deep\n", "", "odd\n"]
        .iter()
        .map(|content| f.hash_bytes(content.as_bytes()))
        .collect()
}

fn assert_cas_intact(store: &Store) {
    for digest in sample_blobs(store) {
        assert!(store.verify(&digest).unwrap(), "object {digest} changed");
        let metadata = fs::metadata(store.object_path(&digest)).unwrap();
        assert_eq!(metadata.mode() & 0o7777, 0o444, "object {digest} mode changed");
        assert_eq!(metadata.nlink(), 1, "object {digest} gained links");
    }
}

fn check(path: &Path, mode: u32, mtime: (i64, i64), owner: Owner) {
    let m = fs::symlink_metadata(path).unwrap();
    if !m.file_type().is_symlink() {
        assert_eq!(m.mode() & 0o7777, mode, "{}", path.display());
    }
    assert_eq!((m.mtime(), m.mtime_nsec()), mtime, "{}", path.display());
    assert_eq!((m.uid(), m.gid()), (owner.uid, owner.gid), "{}", path.display());
}

#[test]
fn the_stage_shows_the_tree_with_its_modes_mtimes_owner_and_contents() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let (_tmp, store) = store();
    let stages = Cleaning::new(&store);
    let owner = Owner { uid: 1234, gid: 567 };
    let root = sample_tree(&store);
    // REAPI servers treat the empty blob as always present, stored or not.
    assert!(store.remove(&store.digest_function().hash_bytes(b"")).unwrap());
    let staged = stages.stage(&StageRequest { credentials: Some(owner), ..request(root) }).unwrap();
    assert_eq!(staged.method, Method::Overlay);
    let s = &staged.dir;
    let default = (1321009871, 0);
    check(s, 0o755, default, owner);
    check(&s.join("plain"), 0o644, default, owner);
    check(&s.join("dup"), 0o644, default, owner);
    check(&s.join("exe"), 0o755, default, owner);
    check(&s.join("props"), 0o600, (1_500_000_000, 5), owner);
    check(&s.join("setuid"), 0o755, default, owner);
    check(&s.join("sub"), 0o755, default, owner);
    check(&s.join("sub/tool"), 0o755, default, owner);
    check(&s.join("sub/nested"), 0o755, default, owner);
    check(&s.join("sub/nested/deep"), 0o644, default, owner);
    check(&s.join("link"), 0, default, owner);
    check(&s.join("sub/up"), 0, default, owner);
    assert_eq!(fs::read(s.join("plain")).unwrap(), b"hello\n");
    assert_eq!(fs::read(s.join("sub/up")).unwrap(), b"hello\n");
    assert_eq!(fs::read(s.join("sub/nested/deep")).unwrap(), b"deep\n");
    assert_eq!(fs::read_link(s.join("abs")).unwrap(), Path::new("/etc/passwd"));
    assert_eq!(fs::read_link(s.join("link")).unwrap(), Path::new("plain"));
    let mut names: Vec<String> =
        fs::read_dir(s).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "abs",
            "dup",
            "empty",
            "exe",
            "link",
            "plain",
            "props",
            "setuid",
            "spaced \u{e9}t\u{e9} -name",
            "sub"
        ]
    );
    assert_eq!(fs::read(s.join("empty")).unwrap(), b"");
    assert_eq!(fs::read(s.join("spaced \u{e9}t\u{e9} -name")).unwrap(), b"odd\n");
    // Only the stage's user can reach it: its parent is theirs, 0700.
    let parent = fs::metadata(s.parent().unwrap()).unwrap();
    assert_eq!((parent.mode() & 0o777, parent.uid()), (0o700, owner.uid));
    assert_cas_intact(&store);
    stages.unstage(staged.id).unwrap();
}

#[test]
fn writes_chmods_truncates_unlinks_and_renames_never_reach_the_cas_or_the_farm() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let (_tmp, store) = store();
    let stages = Cleaning::new(&store);
    let root = sample_tree(&store);
    let staged = stages.stage(&request(root)).unwrap();
    let s = &staged.dir;

    let mut plain = OpenOptions::new().write(true).open(s.join("plain")).unwrap();
    plain.write_all(b"HE").unwrap(); // In place, no truncation.
    drop(plain);
    fs::set_permissions(s.join("exe"), fs::Permissions::from_mode(0o777)).unwrap();
    OpenOptions::new().write(true).open(s.join("props")).unwrap().set_len(0).unwrap();
    fs::remove_file(s.join("dup")).unwrap();
    fs::rename(s.join("sub/nested/deep"), s.join("moved")).unwrap();
    OpenOptions::new().append(true).open(s.join("moved")).unwrap().write_all(b"more").unwrap();
    fs::hard_link(s.join("sub/tool"), s.join("tool-link")).unwrap();
    OpenOptions::new().append(true).open(s.join("tool-link")).unwrap().write_all(b"#").unwrap();

    assert_eq!(fs::read(s.join("plain")).unwrap(), b"HEllo\n");
    assert_eq!(fs::metadata(s.join("exe")).unwrap().mode() & 0o777, 0o777);
    assert_eq!(fs::read(s.join("props")).unwrap(), b"");
    assert!(!s.join("dup").exists());
    assert_eq!(fs::read(s.join("moved")).unwrap(), b"deep\nmore");
    assert_cas_intact(&store);

    // The farm is intact: the next stage of the tree sees the original files.
    let again = stages.stage(&request(root)).unwrap();
    let a = &again.dir;
    assert_eq!(fs::read(a.join("plain")).unwrap(), b"hello\n");
    assert_eq!(fs::read(a.join("dup")).unwrap(), b"hello\n");
    assert_eq!(fs::metadata(a.join("exe")).unwrap().mode() & 0o777, 0o755);
    assert_eq!(fs::read(a.join("props")).unwrap(), b"props\n");
    assert_eq!(fs::read(a.join("sub/nested/deep")).unwrap(), b"deep\n");
    assert_eq!(fs::read(a.join("sub/tool")).unwrap(), b"#!/bin/sh\necho tool\n");
    assert!(!a.join("moved").exists());
    stages.unstage(staged.id).unwrap();
    stages.unstage(again.id).unwrap();
    assert_cas_intact(&store);
}

#[test]
fn subtree_read_only_gives_erofs_and_false_below_it_is_writable_again() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let (_tmp, store) = store();
    // As BuildStream marks it: the root read-only, the build dir and one deeper dir writable.
    let writable = reapi::Directory {
        files: vec![file(&store, "w", b"w")],
        node_properties: read_only("false"),
        ..Default::default()
    };
    let usr = reapi::Directory {
        files: vec![file(&store, "lib", b"lib")],
        directories: vec![dir(&store, "rw", &writable)],
        ..Default::default()
    };
    let build = reapi::Directory { node_properties: read_only("false"), ..Default::default() };
    let root = put_dir(
        &store,
        &reapi::Directory {
            files: vec![file(&store, "top", b"top")],
            directories: vec![dir(&store, "build", &build), dir(&store, "usr", &usr)],
            node_properties: read_only("true"),
            ..Default::default()
        },
    );
    let stages = Cleaning::new(&store);
    let staged = stages.stage(&request(root)).unwrap();
    let s = &staged.dir;
    let erofs = |result: std::io::Result<()>, what: &str| {
        assert_eq!(result.unwrap_err().raw_os_error(), Some(libc::EROFS), "{what}");
    };
    erofs(fs::write(s.join("new"), b"x"), "create in the read-only root");
    erofs(OpenOptions::new().write(true).open(s.join("top")).map(drop), "open a read-only file for writing");
    erofs(fs::set_permissions(s.join("usr/lib"), fs::Permissions::from_mode(0o777)), "chmod below the root");
    erofs(fs::remove_file(s.join("usr/lib")), "unlink below the root");
    erofs(fs::create_dir(s.join("usr/new")), "mkdir below the root");
    fs::write(s.join("build/out"), b"out").unwrap();
    fs::write(s.join("usr/rw/w"), b"changed").unwrap();
    fs::write(s.join("usr/rw/new"), b"new").unwrap();
    assert_eq!(fs::read(s.join("build/out")).unwrap(), b"out");
    assert_eq!(mounts_under(s).len(), 4, "the overlay, the root's and two writable binds");
    stages.unstage(staged.id).unwrap();
    assert!(mounts_under(&staged.dir).is_empty());
}

#[test]
fn known_digests_are_given_only_for_files_unchanged_since_staging() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let (_tmp, store) = store();
    let stages = Cleaning::new(&store);
    let staged = stages.stage(&request(sample_tree(&store))).unwrap();
    let s = &staged.dir;
    let known = |name: &str| {
        let path = s.join(name);
        stages.known_digest(&path, &fs::symlink_metadata(&path).unwrap())
    };
    let hello = store.digest_function().hash_bytes(b"hello\n");
    assert_eq!(known("plain"), Some(hello));
    assert_eq!(known("dup"), Some(hello));
    assert_eq!(known("sub/nested/deep"), Some(store.digest_function().hash_bytes(b"deep\n")));
    assert_eq!(known("link"), None, "symlinks are not files");
    assert_eq!(known("sub"), None);

    OpenOptions::new().write(true).open(s.join("plain")).unwrap().write_all(b"H").unwrap();
    fs::set_permissions(s.join("exe"), fs::Permissions::from_mode(0o700)).unwrap();
    fs::rename(s.join("dup"), s.join("sub/dup")).unwrap();
    fs::write(s.join("fresh"), b"hello\n").unwrap();
    fs::remove_file(s.join("props")).unwrap();
    fs::write(s.join("props"), b"props\n").unwrap();
    for changed in ["plain", "exe", "sub/dup", "fresh", "props"] {
        assert_eq!(known(changed), None, "{changed} changed since staging");
    }
    assert_eq!(known("sub/tool"), Some(store.digest_function().hash_bytes(b"#!/bin/sh\necho tool\n")));
    let lookup = stages.known_digests(s).unwrap();
    assert_eq!(lookup.stage(), s.as_path());
    stages.unstage(staged.id).unwrap();
    assert!(stages.known_digests(s).is_none());
}

#[test]
fn without_overlay_the_tree_is_copied_and_still_safe() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let (_tmp, store) = store();
    let stages = Cleaning(Stages::with_sys(store.clone(), Arc::new(NoOverlay)));
    let ro = reapi::Directory {
        files: vec![file(&store, "r", b"hello\n")],
        node_properties: read_only("true"),
        ..Default::default()
    };
    let root = put_dir(
        &store,
        &reapi::Directory {
            files: vec![
                executable(&store, "exe", b"#!/bin/sh\necho hi\n"),
                file(&store, "plain", b"hello\n"),
            ],
            directories: vec![dir(&store, "ro", &ro)],
            ..Default::default()
        },
    );
    let staged = stages.stage(&request(root)).unwrap();
    assert_eq!(staged.method, Method::Copy);
    let s = &staged.dir;
    check(&s.join("exe"), 0o755, (1321009871, 0), Owner::current());
    OpenOptions::new().write(true).open(s.join("plain")).unwrap().write_all(b"HE").unwrap();
    fs::set_permissions(s.join("exe"), fs::Permissions::from_mode(0o777)).unwrap();
    let refused = fs::write(s.join("ro/r"), b"x").unwrap_err();
    assert_eq!(refused.raw_os_error(), Some(libc::EROFS));
    let hello = store.digest_function().hash_bytes(b"hello\n");
    assert!(store.verify(&hello).unwrap());
    assert_eq!(fs::metadata(store.object_path(&hello)).unwrap().nlink(), 1);
    stages.unstage(staged.id).unwrap();
    assert!(!s.exists());
    assert!(mounts_under(s).is_empty());
}

#[test]
fn a_busy_stage_is_detached_lazily_and_still_removed() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let (_tmp, store) = store();
    let stages = Cleaning::new(&store);
    let ro = reapi::Directory {
        files: vec![file(&store, "r", b"r")],
        node_properties: read_only("true"),
        ..Default::default()
    };
    let root = put_dir(
        &store,
        &reapi::Directory { directories: vec![dir(&store, "ro", &ro)], ..Default::default() },
    );
    let staged = stages.stage(&request(root)).unwrap();
    // An open directory inside the read-only mount keeps it busy.
    let busy = fs::File::open(staged.dir.join("ro")).unwrap();
    stages.unstage(staged.id).unwrap();
    assert!(mounts_under(&staged.dir).is_empty());
    assert!(!staged.dir.exists());
    // The detached mount still serves the open directory.
    assert_eq!(
        fs::read_dir(format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&busy))).unwrap().count(),
        1
    );
    match fs::metadata(staged.dir.join("ro")) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::NotFound),
        Ok(_) => panic!("the stage is still reachable"),
    }
}

#[test]
fn a_bubblewrap_sandbox_sees_the_stage_and_its_read_only_parts() {
    let busybox = Path::new("/bin/busybox");
    if !is_root()
        || !busybox.exists()
        || std::process::Command::new("bwrap").arg("--version").output().is_err()
    {
        return eprintln!("skipped: needs root, bwrap and a static busybox");
    }
    let (_tmp, store) = store();
    let stages = Cleaning::new(&store);
    let bin = reapi::Directory {
        files: vec![executable(&store, "busybox", &fs::read(busybox).unwrap())],
        ..Default::default()
    };
    let ro = reapi::Directory {
        files: vec![file(&store, "f", b"input\n")],
        directories: vec![dir(
            &store,
            "out",
            &reapi::Directory { node_properties: read_only("false"), ..Default::default() },
        )],
        node_properties: read_only("true"),
        ..Default::default()
    };
    let root = put_dir(
        &store,
        &reapi::Directory {
            directories: vec![dir(&store, "bin", &bin), dir(&store, "ro", &ro)],
            ..Default::default()
        },
    );
    let staged = stages.stage(&request(root)).unwrap();
    // As buildbox-run does: the stage is the sandbox's root, bound recursively.
    let script = "echo in > /ro/out/new && echo wrote-out; echo x > /ro/f || echo refused-ro; \
                  echo y >> /top || echo refused-root; cat /ro/f";
    let output = std::process::Command::new("bwrap")
        .args(["--bind", staged.dir.to_str().unwrap(), "/", "--dev", "/dev", "--proc", "/proc"])
        .args(["/bin/busybox", "sh", "-c", script])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stdout, "wrote-out\nrefused-ro\ninput\n", "{stderr}");
    assert!(stderr.contains("Read-only file system"), "{stderr}");
    assert_eq!(fs::read(staged.dir.join("ro/out/new")).unwrap(), b"in\n");
    assert_eq!(fs::read(staged.dir.join("top")).unwrap(), b"y\n", "the root itself is writable");
    stages.unstage(staged.id).unwrap();
    assert!(mounts_under(&staged.dir).is_empty());
}

#[test]
fn a_read_only_root_shaped_as_buildstream_makes_it_runs_in_bubblewrap() {
    let busybox = Path::new("/bin/busybox");
    if !is_root()
        || !busybox.exists()
        || std::process::Command::new("bwrap").arg("--version").output().is_err()
    {
        return eprintln!("skipped: needs root, bwrap and a static busybox");
    }
    let (_tmp, store) = store();
    let stages = Cleaning::new(&store);
    // BuildStream (sandbox/_sandboxreapi.py) marks the root read-only and makes dev, proc, tmp
    // and the build dir writable again, creating them if need be: the runner's mount points
    // must exist, as the read-only root can't take new ones.
    let writable = || reapi::Directory { node_properties: read_only("false"), ..Default::default() };
    let bin = reapi::Directory {
        files: vec![executable(&store, "busybox", &fs::read(busybox).unwrap())],
        ..Default::default()
    };
    let buildstream =
        reapi::Directory { directories: vec![dir(&store, "build", &writable())], ..Default::default() };
    let root = put_dir(
        &store,
        &reapi::Directory {
            directories: vec![
                dir(&store, "bin", &bin),
                dir(&store, "buildstream", &buildstream),
                dir(&store, "dev", &writable()),
                dir(&store, "proc", &writable()),
                dir(&store, "tmp", &writable()),
            ],
            node_properties: read_only("true"),
            ..Default::default()
        },
    );
    let staged = stages.stage(&request(root)).unwrap();
    let script = "cd /buildstream/build && echo built > out && cat out; echo x > /bin/new || echo refused";
    let output = std::process::Command::new("bwrap")
        .args([
            "--bind",
            staged.dir.to_str().unwrap(),
            "/",
            "--dev",
            "/dev",
            "--proc",
            "/proc",
            "--tmpfs",
            "/tmp",
        ])
        .args(["/bin/busybox", "sh", "-c", script])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(String::from_utf8_lossy(&output.stdout), "built\nrefused\n", "{stderr}");
    assert_eq!(fs::read(staged.dir.join("buildstream/build/out")).unwrap(), b"built\n");
    stages.unstage(staged.id).unwrap();
}
