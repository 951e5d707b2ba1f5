//! `rebox run` / `buildbox-run`'s command line, through the real binary: capabilities,
//! `--validate-parameters`, both flag forms, unknown flags, and refusals that happen before any
//! sandbox is set up (bad actions, missing blobs, unsupported platform properties).

mod run_support;

use std::os::unix::fs::symlink;
use std::process::Command;

use run_support::{Cas, Kind, Spec, rebox, run_action, run_spec, store_action};

fn buildbox_run() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let link = dir.path().join("buildbox-run");
    symlink(rebox(), &link).unwrap();
    (dir, link)
}

#[test]
fn capabilities_list_what_buildstream_looks_for_and_network() {
    let (_dir, link) = buildbox_run();
    let output = Command::new(link).arg("--capabilities").output().unwrap();
    assert!(output.status.success());
    let lines: Vec<String> = String::from_utf8(output.stdout).unwrap().lines().map(str::to_owned).collect();
    for wanted in [
        "no-logs-capture",
        "bind-mount",
        "platform:OSFamily=linux",
        "platform:ISA=x86-64",
        "platform:ISA=x86-32",
        "platform:unixUID",
        "platform:unixGID",
        "platform:remoteApisSocketPath",
        "platform:network=on",
    ] {
        assert!(lines.iter().any(|l| l == wanted), "{wanted} missing from {lines:?}");
    }
}

#[test]
fn validate_parameters_accepts_both_flag_forms_and_refuses_unknown_flags() {
    let (_dir, link) = buildbox_run();
    let run = |args: &[&str]| Command::new(&link).args(args).output().unwrap();
    // As BuildStream calls it.
    let ok = run(&[
        "--validate-parameters",
        "--remote=unix:/nonexistent.sock",
        "--action=a",
        "--action-result=r",
        "--instance=",
        "--nested-ac-enable-update",
        "--no-logs-capture",
        "--bind-mount=/dev:/dev",
        "--retry-limit=3",
        "--digest-function=SHA256",
        "--log-level=debug",
        "--staging-mode=copy-or-link",
    ]);
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stderr));
    let spaced = run(&["--validate-parameters", "--action", "a", "--action-result", "r", "--ra-remote", "x"]);
    assert_eq!(spaced.status.code(), Some(0), "{}", String::from_utf8_lossy(&spaced.stderr));

    let unknown = run(&["--validate-parameters", "--action=a", "--action-result=r", "--bogus"]);
    assert_eq!(unknown.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(stderr.contains("--bogus") && stderr.contains("Usage: buildbox-run [OPTIONS]"), "{stderr}");

    let missing = run(&["--validate-parameters", "--action=a"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("--action-result=PATH is required"));

    let mode = run(&["--validate-parameters", "--action=a", "--action-result=r", "--staging-mode=lazy"]);
    assert_eq!(mode.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&mode.stderr).contains("--staging-mode \"lazy\""));

    let mount = run(&["--validate-parameters", "--action=a", "--action-result=r", "--bind-mount=/dev"]);
    assert_eq!(mount.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&mount.stderr).contains("expected HOSTPATH:PATH"));
}

#[test]
fn help_documents_the_timeout_exit_status() {
    let output = Command::new(rebox()).args(["run", "--help"]).output().unwrap();
    assert!(output.status.success());
    let help = String::from_utf8(output.stdout).unwrap();
    assert!(help.contains("124 when the action's timeout expired"), "{help}");
    assert!(help.contains("DEADLINE_EXCEEDED"), "{help}");
}

#[test]
fn unsupported_platform_properties_are_refused_before_staging() {
    let cas = Cas::new(Kind::Embedded);
    for (name, value, expected) in [
        ("OSFamily", "windows", "OSFamily=\"windows\""),
        ("ISA", "arm64", "ISA=\"arm64\""),
        ("unixUID", "nobody", "unixUID=\"nobody\""),
        ("network", "sometimes", "network=\"sometimes\""),
        // Without --remote there is no socket to bind.
        ("remoteApisSocketPath", "/run/cas.sock", "no CAS socket"),
    ] {
        let mut spec = Spec::new(&["true"]);
        spec.platform(name, value);
        let run = run_spec(&cas, &spec, &[]);
        assert_eq!(run.status.code(), Some(1), "{name}={value}: {}", run.stderr);
        assert!(run.stderr.contains(expected), "{name}={value}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "one line: {}", run.stderr);
        assert!(run.result.is_none());
    }
    // Nothing was staged.
    assert!(!cas.root.join("cas/staging-farms").exists());
    assert!(cas.stages_left().is_empty());
}

/// With its platform in the Action, the Command is read while the input root is staged: a
/// Command refused then must still be a one-line error that leaves no stage behind.
#[test]
fn a_bad_command_read_while_staging_leaves_no_stage() {
    for kind in [Kind::Embedded, Kind::ReboxCasd] {
        let cas = Cas::new(kind);
        let mut spec = Spec::new(&[]);
        spec.platform("OSFamily", "linux");
        let run = run_spec(&cas, &spec, &[]);
        assert_eq!(run.status.code(), Some(1), "{kind:?}: {}", run.stderr);
        assert!(run.stderr.contains("no arguments"), "{kind:?}: {}", run.stderr);
        assert_eq!(run.stderr.lines().count(), 1, "{kind:?}: {}", run.stderr);
        assert!(cas.stages_left().is_empty(), "{kind:?}: {:?}", cas.stages_left());
        assert!(cas.mounts_left().is_empty(), "{kind:?}: {:?}", cas.mounts_left());
    }
}

#[test]
fn unknown_platform_properties_are_ignored() {
    let cas = Cas::new(Kind::Embedded);
    let mut spec = Spec::new(&["true"]);
    spec.platform("OSFamily", "linux").platform("someOtherProperty", "whatever");
    assert_eq!(run_spec(&cas, &spec, &[]).ok().exit_code, 0);
}

#[test]
fn missing_blobs_and_bad_actions_are_clear_errors() {
    let cas = Cas::new(Kind::Embedded);
    let root = tempfile::tempdir().unwrap();
    let action = store_action(&cas, root.path(), &Spec::new(&["true"]));
    // A fresh store lacks the Command.
    let other = Cas::new(Kind::Embedded);
    let moved = other.dir.path().join("action");
    std::fs::copy(&action, &moved).unwrap();
    let run = run_action(&other, &moved, &[]);
    assert_eq!(run.status.code(), Some(1));
    assert!(run.stderr.contains("(command) is missing from the CAS"), "{}", run.stderr);

    std::fs::write(&moved, b"\xff\xff not an action").unwrap();
    let run = run_action(&other, &moved, &[]);
    assert_eq!(run.status.code(), Some(1));
    assert!(run.stderr.contains("the Action does not decode"), "{}", run.stderr);

    let run = run_action(&other, &other.dir.path().join("nonexistent"), &[]);
    assert_eq!(run.status.code(), Some(1));
    assert!(run.stderr.contains("cannot read"), "{}", run.stderr);
}

#[test]
fn a_bad_input_tree_is_refused_before_anything_runs() {
    use prost::Message;
    use rebox::proto::build::bazel::remote::execution::v2 as reapi;
    let cas = Cas::new(Kind::Embedded);
    let empty = cas.put(&[]);
    let bad = reapi::Directory {
        files: vec![reapi::FileNode { name: "..".into(), digest: Some(empty), ..Default::default() }],
        ..Default::default()
    };
    let root = cas.put(&bad.encode_to_vec());
    let command = cas.put(&Spec::new(&["true"]).command.encode_to_vec());
    let action =
        reapi::Action { command_digest: Some(command), input_root_digest: Some(root), ..Default::default() };
    let path = cas.dir.path().join("bad-action");
    std::fs::write(&path, action.encode_to_vec()).unwrap();
    let run = run_action(&cas, &path, &[]);
    assert_eq!(run.status.code(), Some(1));
    assert!(run.stderr.contains("invalid tree") && run.stderr.contains("\"..\""), "{}", run.stderr);
    assert!(cas.stages_left().is_empty() && cas.mounts_left().is_empty());
}

#[test]
fn disable_localcas_needs_a_remote() {
    let output = Command::new(rebox())
        .args(["run", "--validate-parameters", "--action=a", "--action-result=r", "--disable-localcas"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--disable-localcas"));
}
