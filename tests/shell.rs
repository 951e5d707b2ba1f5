//! `rebox shell`: a shell in an action's environment (its tree, environment, working directory,
//! platform), from `--last-failed`, `--action FILE` or `--action-digest`, on a real terminal.

mod pty_support;
mod run_support;

use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use prost::Message;
use pty_support::Terminal;
use rebox::digest::{Digest, DigestFunction};
use rebox::proto::build::bazel::remote::execution::v2 as reapi;
use rebox::store::Store;
use run_support::{Cas, Kind, Spec, busybox_root, rebox, run_action, store_action};

/// A busybox input root with `/work/marker.txt`.
fn failing_tree() -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    busybox_root(root.path());
    fs::create_dir(root.path().join("work")).unwrap();
    fs::write(root.path().join("work/marker.txt"), "from the failed tree\n").unwrap();
    root
}

/// `rebox exec` of a command that fails, on the store `cas_dir`.
fn failing_exec(cas_dir: &Path, root: &Path) {
    let output = Command::new(rebox())
        .args(["exec", "--cas-dir"])
        .arg(cas_dir)
        .arg("--input-root")
        .arg(root)
        .args(["-e", "PS1=box$ ", "-e", "PATH=/bin", "-e", "HELLO=world", "--", "sh", "-c", "exit 3"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("rebox shell --last-failed"), "exec says the failure is recorded: {stderr}");
}

/// `rebox shell ARGS` without a terminal.
fn shell(cas_dir: &Path, args: &[&str]) -> Output {
    Command::new(rebox())
        .args(["shell", "--cas-dir"])
        .arg(cas_dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn a_shell_on_the_last_failed_exec_has_its_tree_and_job_control() {
    let cas = tempfile::tempdir().unwrap();
    let tree = failing_tree();
    failing_exec(cas.path(), tree.path());
    let shell = [rebox(), Path::new("shell"), Path::new("--last-failed"), Path::new("--cas-dir"), cas.path()];
    let mut terminal = Terminal::caller(&shell);
    terminal.expect("box$ ");
    terminal.send("cat /work/marker.txt; echo $HELLO-$((1*1))\n");
    terminal.expect("from the failed tree");
    terminal.expect("world-1");

    // Background jobs.
    terminal.send("sleep 100 & jobs\n");
    terminal.expect("Running");
    terminal.send("kill %1; sleep 0.2; jobs; echo killed-$((2*2))\n");
    terminal.expect("Terminated");
    terminal.expect("killed-4");

    // Ctrl-C interrupts the foreground job, not the shell.
    terminal.send("echo sleeping-$((1+1)); sleep 100\n");
    terminal.expect("sleeping-2");
    std::thread::sleep(Duration::from_millis(300));
    terminal.send("\x03");
    terminal.send("echo alive-$((1+2))\n");
    terminal.expect("alive-3");

    // Ctrl-Z stops it, and the shell can kill the stopped job.
    terminal.send("echo stopping-$((2+2)); sleep 100\n");
    terminal.expect("stopping-4");
    // A Ctrl-Z typed before the shell has started `sleep` reaches only the shell, which ignores
    // it: type it again until the job stops.
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(300));
        terminal.send("\x1a");
        if terminal.appears("Stopped", Duration::from_secs(2)) {
            break;
        }
    }
    terminal.send("jobs; kill -9 %1; echo gone-$((3+3))\n");
    terminal.expect("Stopped");
    terminal.expect("gone-6");

    // A window size change reaches the foreground job (SIGWINCH), which sees the new size.
    terminal
        .send("sh -c 'trap \"stty size; exit\" WINCH; echo ready-$((5+5)); while :; do sleep 0.1; done'\n");
    terminal.expect("ready-10");
    terminal.resize(33, 77);
    terminal.expect("33 77");

    terminal.exit_and_check_caller(7);
}

#[test]
fn a_failed_run_gets_its_environment_and_what_the_shell_changed_is_captured() {
    let cas = Cas::new(Kind::Embedded);
    let tree = failing_tree();
    let mut spec = Spec::sh("echo broken > out.txt; exit 9");
    spec.env("HELLO", "world");
    spec.command.working_directory = "work".into();
    spec.command.output_paths = vec!["out.txt".into()];
    spec.platform("OSFamily", "linux").platform("unixUID", "1000");
    let action = store_action(&cas, tree.path(), &spec);
    assert_eq!(run_action(&cas, &action, &[]).ok().exit_code, 9);

    let script = "pwd; echo $HELLO; cat marker.txt; id -u; \
                  echo changed > out.txt; mkdir made; echo x > made/f; ln -s out.txt link; exit 4";
    let captures = ["--capture", "out.txt", "--capture", "made", "--capture", "link"];
    let output = shell(&cas.root, &[&["--last-failed"], &captures[..], &["--", "-c", script]].concat());
    let (stdout, stderr) = (String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[..4], ["/work", "world", "from the failed tree", "1000"], "{stdout}");
    let function = DigestFunction::Sha256;
    let file = function.hash_bytes(b"changed\n");
    assert_eq!(lines[4], format!("{file} file out.txt"), "{stdout}");
    let (digest, rest) = lines[5].split_once(' ').unwrap();
    assert_eq!(rest, "directory made", "{stdout}");
    let store = Store::open(&cas.root, function).unwrap();
    assert_eq!(store.read(&file).unwrap(), b"changed\n");
    let made = reapi::Directory::decode(store.read(&digest.parse::<Digest>().unwrap()).unwrap().as_slice());
    let made = made.unwrap();
    assert_eq!(made.files.len(), 1);
    assert_eq!(made.files[0].name, "f");
    assert_eq!(lines[6], "out.txt symlink link", "{stdout}");
    assert_eq!(lines.len(), 7, "{stdout}");

    // Another shell, given its arguments.
    let output = shell(&cas.root, &["--last-failed", "--shell", "/bin/cat", "--", "marker.txt"]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "from the failed tree\n");
}

#[test]
fn an_action_file_or_digest_on_a_casd_opens_that_action() {
    let cas = Cas::new(Kind::ReboxCasd);
    let tree = failing_tree();
    let mut spec = Spec::sh("exit 0");
    spec.command.working_directory = "work".into();
    let action = store_action(&cas, tree.path(), &spec);
    let digest = cas.put(&fs::read(&action).unwrap());
    let remote = format!("--remote=unix:{}", cas.socket.display());
    let by_digest = format!("{}/{}", digest.hash, digest.size_bytes);
    let empty = tempfile::tempdir().unwrap();
    for source in [["--action", action.to_str().unwrap()], ["--action-digest", &by_digest]] {
        let output =
            shell(empty.path(), &[&remote, source[0], source[1], "--", "-c", "cat marker.txt; exit 5"]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(5), "{source:?}: {stderr}");
        assert_eq!(String::from_utf8_lossy(&output.stdout), "from the failed tree\n", "{source:?}");
    }
}

#[test]
fn network_shares_the_hosts_interfaces() {
    let cas = tempfile::tempdir().unwrap();
    let tree = failing_tree();
    failing_exec(cas.path(), tree.path());
    let interfaces = |output: Output| -> Vec<String> {
        assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.lines().filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_owned())).collect()
    };
    let list = ["--", "-c", "cat /proc/net/dev"];
    let host: Vec<String> = fs::read_to_string("/proc/net/dev")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':').map(|(n, _)| n.trim().to_owned()))
        .collect();
    assert_eq!(interfaces(shell(cas.path(), &[&["--last-failed"], &list[..]].concat())), ["lo"]);
    let shared = interfaces(shell(cas.path(), &[&["--last-failed", "--network"], &list[..]].concat()));
    assert_eq!(shared, host);
}

#[test]
fn without_a_recorded_failure_or_with_a_bad_digest_the_error_says_so() {
    let cas = tempfile::tempdir().unwrap();
    let output = shell(cas.path(), &["--last-failed"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(125), "{stderr}");
    assert!(stderr.starts_with("rebox shell: error: no failed action is recorded in"), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");

    let output = shell(cas.path(), &["--action-digest", "abc/3"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(125), "{stderr}");
    assert!(stderr.starts_with("rebox shell: error: bad action digest"), "{stderr}");

    let missing = DigestFunction::Sha256.hash_bytes(b"no such action").to_string();
    let output = shell(cas.path(), &["--action-digest", &missing]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains(&missing[..16]), "names the missing action: {stderr}");

    let output = shell(cas.path(), &[]);
    assert_eq!(output.status.code(), Some(2), "a source is required");
}
