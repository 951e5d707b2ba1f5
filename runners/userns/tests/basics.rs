//! The sandbox runs commands as asked: exit codes, signals, environment, working directory,
//! ids, host name, `PATH` search, personality, and clear errors.

mod support;

use std::ffi::OsString;

use rebox_runner_spec::{BindMount, Outcome, Personality, Spec};
use rebox_runner_userns::{Step, UsernsError};
use support::Fixture;

fn argv(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

#[test]
fn exit_codes_and_signals_are_reported() {
    let fixture = Fixture::new();
    let run = fixture.run(&fixture.spec("true")).unwrap();
    assert_eq!(run.completion.outcome, Outcome::Exited(0), "{}", run.stderr);
    let run = fixture.run(&fixture.spec("exit 42")).unwrap();
    assert_eq!(run.completion.outcome, Outcome::Exited(42));
    let run = fixture.run(&fixture.spec("kill -USR1 $$")).unwrap();
    assert_eq!(run.completion.outcome, Outcome::Signaled(libc::SIGUSR1));
}

#[test]
fn the_environment_is_exactly_the_specs() {
    let fixture = Fixture::new();
    let mut spec = fixture.spec("");
    spec.argv = argv(&["/bin/env"]);
    spec.env = vec![("PATH".into(), "/bin".into()), ("GREETING".into(), "hello world".into())];
    let run = fixture.run(&spec).unwrap();
    assert_eq!(run.stdout, "PATH=/bin\nGREETING=hello world\n");
    spec.env.clear();
    assert_eq!(fixture.run(&spec).unwrap().stdout, "");
}

#[test]
fn a_missing_working_directory_is_created() {
    let fixture = Fixture::new();
    let mut spec = fixture.spec("pwd");
    spec.cwd = "/build/deep/dir".into();
    assert_eq!(fixture.run(&spec).unwrap().stdout, "/build/deep/dir\n");
    assert!(fixture.root().join("build/deep/dir").is_dir());
    spec.cwd = "relative/work".into();
    assert_eq!(fixture.run(&spec).unwrap().stdout, "/relative/work\n");
}

#[test]
fn uid_and_gid_are_the_specs() {
    let fixture = Fixture::new();
    assert_eq!(fixture.output("id -u; id -g"), "0\n0\n");
    let mut spec = fixture.spec("id -u; id -g; touch /owned; stat -c '%u %g' /owned");
    spec.uid = 1234;
    spec.gid = 5678;
    assert_eq!(fixture.run(&spec).unwrap().stdout, "1234\n5678\n1234 5678\n");
}

#[test]
fn the_host_name_is_the_specs() {
    let fixture = Fixture::new();
    assert_eq!(fixture.output("hostname"), "rebox\n");
    let mut spec = fixture.spec("hostname");
    spec.hostname = "buildbox".into();
    assert_eq!(fixture.run(&spec).unwrap().stdout, "buildbox\n");
}

#[test]
fn a_bare_command_is_found_through_the_specs_path() {
    let fixture = Fixture::new();
    let mut spec = fixture.spec("");
    spec.argv = argv(&["echo", "found"]);
    spec.env = vec![("PATH".into(), "/nonexistent:/bin".into())];
    assert_eq!(fixture.run(&spec).unwrap().stdout, "found\n");
}

#[test]
fn a_missing_command_exits_127_with_a_message() {
    let fixture = Fixture::new();
    for program in ["no-such-tool", "/bin/no-such-tool"] {
        let mut spec = fixture.spec("");
        spec.argv = argv(&[program]);
        let run = fixture.run(&spec).unwrap();
        assert_eq!(run.completion.outcome, Outcome::Exited(127));
        assert_eq!(run.stderr, format!("rebox: command '{program}' not found in the sandbox\n"));
    }
}

#[test]
fn a_file_that_is_not_executable_exits_126() {
    let fixture = Fixture::new();
    std::fs::write(fixture.root().join("bin/data"), "not a program").unwrap();
    let mut spec = fixture.spec("");
    spec.argv = argv(&["data"]);
    let run = fixture.run(&spec).unwrap();
    assert_eq!(run.completion.outcome, Outcome::Exited(126));
    assert!(run.stderr.contains("'data': permission denied"), "{}", run.stderr);
}

#[test]
fn the_linux32_personality_reports_a_32_bit_machine() {
    let fixture = Fixture::new();
    let native = fixture.output("uname -m");
    let mut spec = fixture.spec("uname -m");
    spec.personality = Personality::Linux32;
    let run = fixture.run(&spec).unwrap();
    if cfg!(target_arch = "x86_64") {
        assert_eq!(native, "x86_64\n");
        assert_eq!(run.stdout, "i686\n");
    } else {
        assert_ne!(run.stdout, native);
    }
}

#[test]
fn bad_specs_are_refused_with_the_problem_named() {
    let fixture = Fixture::new();
    let mut spec = Spec::new(fixture.root(), Vec::new());
    let error = fixture.run(&spec).unwrap_err().to_string();
    assert!(error.contains("argv) is empty"), "{error}");
    spec.argv = argv(&["/bin/true"]);
    spec.mounts.push(BindMount { source: fixture.path("root"), target: "relative".into(), writable: false });
    let error = fixture.run(&spec).unwrap_err().to_string();
    assert!(error.contains("bind mount target relative is not absolute"), "{error}");
    let mut spec = fixture.spec("true");
    spec.cwd = "/a/../../b".into();
    let error = fixture.run(&spec).unwrap_err().to_string();
    assert!(error.contains("contains '..'"), "{error}");
}

#[test]
fn a_failing_setup_step_comes_back_as_an_error_naming_it() {
    let fixture = Fixture::new();
    let mut spec = fixture.spec("true");
    // /bin/busybox is a file: nothing can be created below it.
    spec.mounts.push(BindMount {
        source: fixture.path("root/bin"),
        target: "/bin/busybox/x".into(),
        writable: false,
    });
    let error = fixture.run(&spec).unwrap_err();
    assert!(matches!(error, UsernsError::Setup { step: Step::BindTarget, .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "create the bind mount target /bin/busybox/x in the sandbox: ENOTDIR: Not a directory"
    );
}
