//! `rebox run --interactive`, and `rebox run` handed the caller's terminal as `bst shell` hands it
//! (`--bind-mount=/dev:/dev`): the shell in the sandbox gets the terminal with job control, and
//! the caller gets it back as it was.

mod pty_support;
mod run_support;

use std::io::Write;
use std::process::{Command, Stdio};

use prost::Message;
use pty_support::Terminal;
use rebox::proto::build::bazel::remote::execution::v2 as reapi;
use run_support::{Cas, Kind, Spec, busybox_root, rebox, store_action};

/// An interactive busybox shell as the action, prompting `box$ `.
fn shell_action(cas: &Cas) -> std::path::PathBuf {
    let root = tempfile::tempdir().unwrap();
    busybox_root(root.path());
    let mut spec = Spec::new(&["sh"]);
    spec.env("PS1", "box$ ");
    store_action(cas, root.path(), &spec)
}

#[test]
fn a_shell_gets_the_terminal_with_job_control_and_the_caller_gets_it_back() {
    let cas = Cas::new(Kind::Embedded);
    let action = shell_action(&cas);
    let mut args = vec![rebox().display().to_string(), "run".into()];
    args.extend(cas.flags());
    args.extend([
        "--interactive".into(),
        // As BuildStream sends it for `bst shell`.
        "--bind-mount=/dev:/dev".into(),
        format!("--action={}", action.display()),
        format!("--action-result={}.result", action.display()),
    ]);
    let mut terminal = Terminal::caller(&args);
    terminal.expect("box$ ");
    terminal.send("tty; echo $((6*7))\n");
    terminal.expect("/dev/pts/");
    terminal.expect("42");

    // A foreground job gets Ctrl-C; the shell (and the runner) live on.
    terminal.send("echo sleeping-$((1+1)); sleep 100\n");
    terminal.expect("sleeping-2");
    std::thread::sleep(std::time::Duration::from_millis(300));
    terminal.send("\x03");
    terminal.expect("box$ ");
    terminal.send("echo alive-$((1+2))\n");
    terminal.expect("alive-3");

    // The command leaves the terminal without echo and line editing; the runner restores it.
    terminal.exit_and_check_caller(7);
    let result = std::fs::read(format!("{}.result", action.display())).unwrap();
    let result = reapi::ActionResult::decode(result.as_slice()).unwrap();
    assert_eq!(result.exit_code, 7);
}

#[test]
fn without_a_terminal_interactive_is_a_plain_run_with_stdin_passed_through() {
    let cas = Cas::new(Kind::Embedded);
    let action = shell_action(&cas);
    let mut child = Command::new(rebox())
        .arg("run")
        .args(cas.flags())
        .arg("--interactive")
        .arg(format!("--action={}", action.display()))
        .arg(format!("--action-result={}.result", action.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"echo from-$((2*3)); exit 4\n").unwrap();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(4), "{stderr}");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "from-6\n", "{stderr}");
}

#[test]
fn ctrl_c_reaches_a_foreground_command_and_not_the_runner() {
    let cas = Cas::new(Kind::Embedded);
    let root = tempfile::tempdir().unwrap();
    busybox_root(root.path());
    let action = store_action(&cas, root.path(), &Spec::sh("echo started-$((3*3)); exec sleep 100"));
    let result_path = format!("{}.result", action.display());
    let mut args = vec![rebox().display().to_string(), "run".into()];
    args.extend(cas.flags());
    args.extend(["--interactive".into(), format!("--action={}", action.display())]);
    args.push(format!("--action-result={result_path}"));
    let mut terminal = Terminal::caller(&args);
    terminal.expect("started-9");
    std::thread::sleep(std::time::Duration::from_millis(300));
    terminal.send("\x03");
    // The command died of SIGINT and the runner, untouched, wrote its result: a runner that got
    // the SIGINT too would have been cancelled, with no result (and the caller interrupted).
    terminal.expect("CALLER-RC=130");
    terminal.send("more\n");
    terminal.expect("CALLER-READ:more");
    assert!(terminal.wait().success());
    let result = reapi::ActionResult::decode(std::fs::read(&result_path).unwrap().as_slice()).unwrap();
    assert_eq!(result.exit_code, 128 + libc::SIGINT);
}

#[test]
fn ctrl_z_on_a_command_without_job_control_suspends_the_runner_and_fg_resumes_it() {
    let cas = Cas::new(Kind::Embedded);
    let root = tempfile::tempdir().unwrap();
    busybox_root(root.path());
    let script = "echo started-$((3*3)); read line; echo \"got-$line\"; exit 5";
    let action = store_action(&cas, root.path(), &Spec::sh(script));
    // A caller with job control of its own: an interactive bash.
    let mut bash = Command::new("bash");
    bash.args(["--norc", "--noprofile", "-i"]).env("PS1", "caller$ ").env("TERM", "dumb");
    let mut terminal = Terminal::spawn(bash);
    terminal.expect("caller$ ");
    let flags = cas.flags().join(" ");
    let run = format!(
        "{} run {flags} --interactive --action={} --action-result={}.result",
        rebox().display(),
        action.display(),
        action.display()
    );
    terminal.send(&format!("{run}\n"));
    terminal.expect("started-9");
    std::thread::sleep(std::time::Duration::from_millis(300));
    terminal.send("\x1a");
    // The caller's shell saw its job stop and has the terminal.
    terminal.expect("Stopped");
    terminal.expect("caller$ ");
    terminal.send("echo caller-$((2+5))\n");
    terminal.expect("caller-7");
    // `fg`: the command has the terminal again and reads from it.
    terminal.send("fg\n");
    std::thread::sleep(std::time::Duration::from_millis(300));
    terminal.send("typed\n");
    terminal.expect("got-typed");
    terminal.expect("caller$ ");
    terminal.send("echo rc-$?\n");
    terminal.expect("rc-5");
    terminal.send("exit\n");
    assert!(terminal.wait().success());
}
