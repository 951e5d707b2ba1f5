//! `rebox exec`, through the real binary on a fresh embedded store: the command runs in the
//! sandbox, its outputs land in the current directory, the summary says what happened, and an
//! identical second run is an ActionCache hit that runs nothing (unless `--no-cache`).

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn exec(cas: &Path, cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rebox"))
        .arg("exec")
        .arg(format!("--cas-dir={}", cas.display()))
        .args(args)
        .current_dir(cwd)
        .output()
        .unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn runs_with_host_tools_writes_outputs_and_caches() {
    let dir = tempfile::tempdir().unwrap();
    let (cas, cwd) = (dir.path().join("cas"), dir.path().join("work"));
    fs::create_dir(&cwd).unwrap();
    let script = "uname -n > hello.txt; mkdir -p d/e; echo x > d/e/f; ln -s hello.txt link; echo ran; \
                  echo note >&2; exit 0";
    let args = [
        "--host-tools",
        "--output",
        "hello.txt",
        "--output",
        "d",
        "--output",
        "link",
        "--",
        "sh",
        "-c",
        script,
    ];

    let first = exec(&cas, &cwd, &args);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert_eq!(String::from_utf8_lossy(&first.stdout), "ran\n");
    let summary = stderr(&first);
    assert!(summary.contains("note\n"), "{summary}");
    assert!(summary.contains("exit code 0") && summary.contains("run "), "{summary}");
    assert!(summary.contains("output hello.txt (file"), "{summary}");
    assert!(!summary.contains("cache hit"), "{summary}");
    assert_eq!(fs::read_to_string(cwd.join("hello.txt")).unwrap(), "buildbox\n");
    assert_eq!(fs::read_to_string(cwd.join("d/e/f")).unwrap(), "x\n");
    assert_eq!(fs::read_link(cwd.join("link")).unwrap(), Path::new("hello.txt"));

    fs::remove_file(cwd.join("hello.txt")).unwrap();
    let second = exec(&cas, &cwd, &args);
    assert_eq!(second.status.code(), Some(0), "{}", stderr(&second));
    assert!(stderr(&second).contains("cache hit"), "{}", stderr(&second));
    assert_eq!(String::from_utf8_lossy(&second.stdout), "ran\n", "logs are replayed");
    assert_eq!(fs::read_to_string(cwd.join("hello.txt")).unwrap(), "buildbox\n", "outputs rewritten");

    let forced = exec(&cas, &cwd, &[&["--no-cache"], &args[..]].concat());
    assert!(!stderr(&forced).contains("cache hit"), "{}", stderr(&forced));
}

#[test]
fn a_cache_hit_runs_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (cas, cwd) = (dir.path().join("cas"), dir.path().join("work"));
    fs::create_dir(&cwd).unwrap();
    let input = dir.path().join("input");
    fs::create_dir(&input).unwrap();
    fs::copy("/usr/bin/busybox", input.join("busybox")).unwrap();
    // Only a real run prints phase times.
    let args = [
        "--input-root",
        input.to_str().unwrap(),
        "--output",
        "out",
        "--",
        "/busybox",
        "sh",
        "-c",
        "echo $$ > out",
    ];
    let first = exec(&cas, &cwd, &args);
    assert_eq!(first.status.code(), Some(0), "{}", stderr(&first));
    assert!(stderr(&first).contains("stage "), "{}", stderr(&first));
    let second = exec(&cas, &cwd, &args);
    assert!(stderr(&second).contains("cache hit"), "{}", stderr(&second));
    assert!(!stderr(&second).contains("stage "), "nothing ran: {}", stderr(&second));

    // A different input root is a different action.
    fs::write(input.join("extra"), b"changed").unwrap();
    let third = exec(&cas, &cwd, &args);
    assert!(!stderr(&third).contains("cache hit"), "{}", stderr(&third));
}

#[test]
fn failures_are_not_cached_and_the_exit_code_is_the_commands() {
    let dir = tempfile::tempdir().unwrap();
    let cas = dir.path().join("cas");
    let args = ["--host-tools", "--", "sh", "-c", "exit 7"];
    let first = exec(&cas, dir.path(), &args);
    assert_eq!(first.status.code(), Some(7), "{}", stderr(&first));
    let second = exec(&cas, dir.path(), &args);
    assert_eq!(second.status.code(), Some(7));
    assert!(!stderr(&second).contains("cache hit"), "{}", stderr(&second));
}

#[test]
fn without_host_tools_the_sandbox_sees_only_its_input_root() {
    let dir = tempfile::tempdir().unwrap();
    let cas = dir.path().join("cas");
    let output = exec(&cas, dir.path(), &["--no-cache", "--", "sh", "-c", "true"]);
    assert_ne!(output.status.code(), Some(0), "no sh in an empty root: {}", stderr(&output));
    let input = dir.path().join("input");
    fs::create_dir(&input).unwrap();
    fs::copy("/usr/bin/busybox", input.join("busybox")).unwrap();
    fs::set_permissions(input.join("busybox"), fs::Permissions::from_mode(0o755)).unwrap();
    let listing =
        exec(&cas, dir.path(), &["--input-root", input.to_str().unwrap(), "--", "/busybox", "ls", "/"]);
    let names: Vec<String> =
        String::from_utf8_lossy(&listing.stdout).split_whitespace().map(str::to_owned).collect();
    assert!(names.contains(&"busybox".to_owned()) && !names.contains(&"usr".to_owned()), "{names:?}");
}

#[test]
fn a_timeout_is_reported_with_its_own_exit_code() {
    let dir = tempfile::tempdir().unwrap();
    let output =
        exec(&dir.path().join("cas"), dir.path(), &["--host-tools", "--timeout", "1", "--", "sleep", "30"]);
    assert_eq!(output.status.code(), Some(124), "{}", stderr(&output));
    assert!(stderr(&output).contains("timed out"), "{}", stderr(&output));
}
