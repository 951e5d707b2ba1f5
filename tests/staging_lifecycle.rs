//! Staging lifecycle with real mounts: concurrent stages, client paths, clean-up at shutdown and
//! after a crash, and trees refused before anything is written. Needs root (overlay mounts).

mod staging_support;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;

use rebox::digest::{Digest, DigestFunction};
use rebox::proto::build::bazel::remote::execution::v2 as reapi;
use rebox::staging::{Method, StageRequest, Stages, StagingError, StagingMode, cleanup_stale};
use rebox::store::Store;
use rebox::tree::to_proto;
use staging_support::*;

fn request(root: Digest) -> StageRequest {
    StageRequest { root, path: None, credentials: None, mode: StagingMode::CopyOrLink }
}

fn tree(store: &Store, tag: &str) -> Digest {
    let ro = reapi::Directory {
        files: vec![file(store, "r", format!("read-only {tag}").as_bytes())],
        directories: vec![dir(
            store,
            "rw",
            &reapi::Directory { node_properties: read_only("false"), ..Default::default() },
        )],
        node_properties: read_only("true"),
        ..Default::default()
    };
    put_dir(
        store,
        &reapi::Directory {
            files: vec![executable(store, "exe", tag.as_bytes()), file(store, "plain", b"plain")],
            directories: vec![dir(store, "ro", &ro)],
            symlinks: vec![symlink("link", "plain")],
            ..Default::default()
        },
    )
}

fn entries(path: &Path) -> Vec<PathBuf> {
    fs::read_dir(path).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default()
}

#[test]
fn concurrent_stages_of_one_tree_share_one_farm_and_not_their_changes() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let (_tmp, store) = store();
    let root = tree(&store, "t");
    let staged: Vec<_> = thread::scope(|scope| {
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let stages = Cleaning::new(&store); // As four daemons on one cache.
                scope.spawn(move || (stages.stage(&request(root)).unwrap(), stages))
            })
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    assert_eq!(entries(staged[0].1.layout().farms()).len(), 1, "one farm published");
    for (i, (s, _)) in staged.iter().enumerate() {
        assert_eq!(s.method, Method::Overlay);
        fs::write(s.dir.join(format!("out-{i}")), b"x").unwrap();
        fs::write(s.dir.join("plain"), format!("changed by {i}")).unwrap();
    }
    for (i, (s, _)) in staged.iter().enumerate() {
        assert_eq!(fs::read_to_string(s.dir.join("plain")).unwrap(), format!("changed by {i}"));
        assert_eq!(entries(&s.dir).iter().filter(|p| p.to_string_lossy().contains("out-")).count(), 1);
    }
    for (s, stages) in &staged {
        stages.unstage(s.id).unwrap();
        assert!(mounts_under(&s.dir).is_empty() && !s.dir.exists());
    }
}

#[test]
fn cleanup_all_leaves_no_mount_and_no_dir() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let (_tmp, store) = store();
    let stages = Cleaning::new(&store);
    let client = tempfile::tempdir().unwrap();
    let given = client.path().join("a/b/stage");
    let staged = [
        stages.stage(&request(tree(&store, "1"))).unwrap(),
        stages.stage(&request(tree(&store, "2"))).unwrap(),
        stages.stage(&StageRequest { path: Some(given.clone()), ..request(tree(&store, "1")) }).unwrap(),
    ];
    assert_eq!(staged[2].path, given.to_str().unwrap(), "a client path is answered as given");
    assert_eq!(mounts_under(stages.layout().staging()).len(), 6);
    assert_eq!(mounts_under(&given).len(), 3);
    assert_eq!(stages.cleanup_all(), 3);
    assert!(mounts_under(stages.layout().staging()).is_empty());
    assert!(mounts_under(client.path()).is_empty());
    let owner_dirs = entries(stages.layout().staging());
    assert_eq!(owner_dirs.len(), 1);
    assert!(entries(&owner_dirs[0]).is_empty(), "left: {:?}", entries(&owner_dirs[0]));
    assert!(!given.exists() && client.path().join("a/b").exists(), "the created path goes, its parents stay");
}

#[test]
fn detach_unmounts_now_and_leaves_its_dir_to_the_next_clean_up() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let (_tmp, store) = store();
    let stages = Stages::new(store.clone());
    let staged = stages.stage(&request(tree(&store, "1"))).unwrap();
    assert!(!mounts_under(stages.layout().staging()).is_empty());
    assert_eq!(stages.detach(), 1);
    assert!(mounts_under(stages.layout().staging()).is_empty(), "a detached stage stays mounted");
    assert!(!Path::new(&staged.path).join("plain").exists());
    // The dir is no longer locked: the next clean-up (another process's) takes it.
    let report = cleanup_stale(store.root()).unwrap();
    assert_eq!(report.daemons, 1, "the detached dir was not left to the next clean-up");
    assert!(entries(stages.layout().staging()).is_empty());
}

#[test]
fn a_stage_is_closed_to_other_host_users() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let (_tmp, store) = store();
    let stages = Stages::new(store.clone());
    let staged = stages.stage(&request(tree(&store, "1"))).unwrap();
    let as_nobody =
        |args: &[&str]| Command::new(args[0]).args(&args[1..]).uid(65534).gid(65534).output().unwrap();
    // The stage's path is no secret (it is in /proc/mounts), so its own dirs must keep others out.
    let plain = format!("{}/plain", staged.path);
    for args in [&["ls", staged.path.as_str()][..], &["cat", plain.as_str()]] {
        let output = as_nobody(args);
        assert!(!output.status.success(), "{args:?} worked as nobody");
        assert!(String::from_utf8_lossy(&output.stderr).contains("Permission denied"), "{output:?}");
    }
    // The owner can read it.
    assert_eq!(fs::read(&plain).unwrap(), b"plain");
    stages.cleanup_all();
}

#[test]
fn client_paths_must_be_missing_or_empty_directories() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let (_tmp, store) = store();
    let stages = Cleaning::new(&store);
    let root = tree(&store, "c");
    let client = tempfile::tempdir().unwrap();

    let empty = client.path().join("empty");
    fs::create_dir(&empty).unwrap();
    let staged = stages.stage(&StageRequest { path: Some(empty.clone()), ..request(root) }).unwrap();
    assert_eq!(fs::read(empty.join("plain")).unwrap(), b"plain");
    stages.unstage(staged.id).unwrap();
    assert!(empty.is_dir() && entries(&empty).is_empty(), "an existing dir is kept, empty");

    let full = client.path().join("full");
    fs::create_dir(&full).unwrap();
    fs::write(full.join("mine"), b"mine").unwrap();
    let error = stages.stage(&StageRequest { path: Some(full.clone()), ..request(root) }).unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(error.to_string().contains("not empty"), "{error}");
    assert_eq!(entries(&full).len(), 1);

    let not_dir = client.path().join("file");
    fs::write(&not_dir, b"").unwrap();
    let error = stages.stage(&StageRequest { path: Some(not_dir), ..request(root) }).unwrap_err();
    assert!(matches!(error, StagingError::BadTarget { .. }), "{error}");
    assert!(stages.live().is_empty());
    assert!(mounts_under(client.path()).is_empty());
}

#[test]
fn bad_trees_are_refused_before_anything_is_written() {
    let (_tmp, store) = store();
    let stages = Cleaning::new(&store);
    let outside = tempfile::tempdir().unwrap();
    let cases: Vec<(&str, reapi::Directory)> = vec![
        ("..", reapi::Directory { files: vec![file(&store, "..", b"x")], ..Default::default() }),
        ("slash", reapi::Directory { files: vec![file(&store, "a/b", b"x")], ..Default::default() }),
        (
            // The symlink-then-directory trick: `a` -> outside, then a directory `a` with a file.
            "symlink-then-directory",
            reapi::Directory {
                directories: vec![dir(
                    &store,
                    "a",
                    &reapi::Directory { files: vec![file(&store, "pwned", b"x")], ..Default::default() },
                )],
                symlinks: vec![symlink("a", outside.path().to_str().unwrap())],
                ..Default::default()
            },
        ),
        ("bad mode value", reapi::Directory { node_properties: read_only("yes"), ..Default::default() }),
    ];
    for (what, directory) in cases {
        let error = stages.stage(&request(put_dir(&store, &directory))).unwrap_err();
        assert_eq!(error.code(), tonic::Code::InvalidArgument, "{what}: {error}");
    }
    // A tree that shares subtrees can describe more entries than any disk holds.
    let mut bomb = reapi::Directory { files: vec![file(&store, "f", b"x")], ..Default::default() };
    for _ in 0..40 {
        let digest = to_proto(&put_dir(&store, &bomb));
        let node = |name: &str| reapi::DirectoryNode { name: name.into(), digest: Some(digest.clone()) };
        bomb = reapi::Directory { directories: vec![node("a"), node("b")], ..Default::default() };
    }
    let error = stages.stage(&request(put_dir(&store, &bomb))).unwrap_err();
    assert_eq!(error.code(), tonic::Code::InvalidArgument);
    assert!(error.to_string().contains("expands to"), "{error}");

    assert!(entries(outside.path()).is_empty());
    let cas = store.root().join("cas");
    for staging_dir in ["staging", "staging-pool", "staging-farms"] {
        assert!(!cas.join(staging_dir).exists(), "{staging_dir} was created for a bad tree");
    }
}

/// Env var naming the store root in which the crash helper stages and then dies.
const CRASH_ROOT: &str = "REBOX_STAGING_CRASH_ROOT";

#[test]
#[ignore = "helper process of stale_cleanup_removes_what_a_crashed_daemon_left"]
fn crash_helper() {
    let root = PathBuf::from(std::env::var(CRASH_ROOT).expect("run by the stale clean-up test"));
    let store = Store::open(&root, DigestFunction::Sha256).unwrap();
    let stages = Stages::new(store.clone());
    let generated = stages.stage(&request(tree(&store, "crash"))).unwrap();
    let client = StageRequest { path: Some(root.join("client-stage")), ..request(tree(&store, "crash")) };
    let given = stages.stage(&client).unwrap();
    println!("STAGED {}", generated.dir.display());
    println!("STAGED {}", given.dir.display());
    // Die without unstaging, as a crashed daemon does.
    std::process::exit(0);
}

#[test]
fn stale_cleanup_removes_what_a_crashed_daemon_left() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let (_tmp, store) = store();
    let live = Cleaning::new(&store);
    let alive = live.stage(&request(tree(&store, "alive"))).unwrap();

    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "crash_helper", "--ignored", "--nocapture", "--test-threads=1"])
        .env(CRASH_ROOT, store.root())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let left: Vec<PathBuf> = stdout
        .lines()
        .filter_map(|l| l.split_once("STAGED ").map(|(_, path)| path))
        .map(PathBuf::from)
        .collect();
    assert_eq!(left.len(), 2, "helper output: {stdout} {}", String::from_utf8_lossy(&output.stderr));
    for path in &left {
        assert_eq!(mounts_under(path).len(), 3, "the dead daemon's mounts are still there");
    }

    let report = cleanup_stale(store.root()).unwrap();
    assert_eq!((report.daemons, report.mounts), (1, 6));
    for path in &left {
        assert!(mounts_under(path).is_empty(), "{} still mounted", path.display());
        assert!(!path.exists(), "{} still there", path.display());
    }
    assert_eq!(entries(live.layout().staging()).len(), 1, "only the live daemon's dir is left");
    // The live daemon's stage was not touched.
    assert_eq!(mounts_under(&alive.dir).len(), 3);
    assert_eq!(fs::read(alive.dir.join("exe")).unwrap(), b"alive");
    assert_eq!(cleanup_stale(store.root()).unwrap().daemons, 0);
    live.unstage(alive.id).unwrap();
}

#[test]
fn prune_keeps_farms_another_daemon_has_mounted() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    let (_tmp, store) = store();
    let other_daemon = Cleaning::new(&store);
    let pruner = Cleaning::new(&store);
    let (mounted, unused) = (tree(&store, "mounted"), tree(&store, "unused"));
    let live = other_daemon.stage(&request(mounted)).unwrap();
    let done = pruner.stage(&request(unused)).unwrap();
    pruner.unstage(done.id).unwrap();

    let report = pruner.prune(std::time::Duration::ZERO).unwrap();
    assert_eq!(report.farms, 1, "only the unused farm goes");
    assert_eq!(report.variants, 2, "its two blobs no other farm stages the same way");
    assert_eq!(fs::read(live.dir.join("exe")).unwrap(), b"mounted", "the mounted farm is intact");
    let again = pruner.stage(&request(mounted)).unwrap();
    assert_eq!(fs::read(again.dir.join("ro/r")).unwrap(), b"read-only mounted");
}

/// Env var naming the dir in which the not-root helper makes its store.
const NOT_ROOT_DIR: &str = "REBOX_STAGING_NOT_ROOT_DIR";

#[test]
#[ignore = "helper process of a_daemon_that_is_not_root_stages_by_copying"]
fn not_root_helper() {
    let dir = PathBuf::from(std::env::var(NOT_ROOT_DIR).expect("run by the not-root test"));
    assert!(!nix::unistd::geteuid().is_root());
    let store = Store::open(&dir.join("cache"), DigestFunction::Sha256).unwrap();
    let stages = Stages::new(store.clone());
    let root = tree(&store, "copied");
    // Asking for another owner is ignored (as buildbox-casd ignores it): files stay the daemon's.
    let credentials = Some(rebox::staging::Owner { uid: 0, gid: 0 });
    let staged = stages.stage(&StageRequest { credentials, ..request(root) }).unwrap();
    assert_eq!(staged.method, Method::Copy);
    assert_eq!(fs::read(staged.dir.join("exe")).unwrap(), b"copied");
    let metadata = fs::metadata(staged.dir.join("exe")).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!((metadata.mode() & 0o7777, metadata.uid(), metadata.mtime()), (0o755, 65534, 1321009871));
    fs::write(staged.dir.join("plain"), b"changed").unwrap();
    assert!(store.verify(&store.digest_function().hash_bytes(b"plain")).unwrap());
    // Not root: no bind mounts either, so SubtreeReadOnly is not enforced (and that is logged).
    fs::write(staged.dir.join("ro/r"), b"changed").unwrap();
    assert!(
        !store.root().join("cas/staging-farms").read_dir().unwrap().any(|_| true),
        "no farm built for nothing"
    );
    stages.unstage(staged.id).unwrap();
    stages.flush();
    assert!(!staged.dir.exists());
    println!("NOT-ROOT-OK");
}

#[test]
fn a_daemon_that_is_not_root_stages_by_copying() {
    if !is_root() {
        return eprintln!("skipped: needs root (to run the helper as another user)");
    }
    let dir = tempfile::tempdir().unwrap();
    fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "not_root_helper", "--ignored", "--nocapture", "--test-threads=1"])
        .env(NOT_ROOT_DIR, dir.path())
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("NOT-ROOT-OK"), "{stdout}{}", String::from_utf8_lossy(&output.stderr));
}
