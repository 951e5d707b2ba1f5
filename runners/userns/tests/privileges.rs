//! The sandbox holds no privilege, even when the runner is root: no capability, no_new_privs,
//! no TIOCSTI, setuid bits ignored.

mod support;

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt;

use support::{Fixture, c_helper};

fn status_fields(status: &str, prefix: &str) -> Vec<(String, String)> {
    status
        .lines()
        .filter(|line| line.starts_with(prefix))
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.to_owned(), value.trim().to_owned())
        })
        .collect()
}

#[test]
fn the_command_has_no_capability_at_all() {
    let fixture = Fixture::new();
    for uid in [0, 1000] {
        let mut spec = fixture.spec("cat /proc/self/status");
        spec.uid = uid;
        let status = fixture.run(&spec).unwrap().stdout;
        let caps = status_fields(&status, "Cap");
        let names: Vec<&str> = caps.iter().map(|(name, _)| name.as_str()).collect();
        assert_eq!(names, ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]);
        for (name, value) in caps {
            assert_eq!(value, "0000000000000000", "{name} for uid {uid}");
        }
    }
}

#[test]
fn no_new_privs_and_the_seccomp_filter_are_set() {
    let fixture = Fixture::new();
    let status = fixture.output("cat /proc/self/status");
    let fields = status_fields(&status, "NoNewPrivs");
    assert_eq!(fields, [("NoNewPrivs".to_owned(), "1".to_owned())]);
    let fields = status_fields(&status, "Seccomp:");
    assert_eq!(fields, [("Seccomp".to_owned(), "2".to_owned())]);
}

#[test]
fn tiocsti_fails_even_on_the_commands_own_controlling_terminal() {
    let fixture = Fixture::new();
    std::fs::copy(c_helper(), fixture.root().join("bin/helper")).unwrap();
    let mut spec = fixture.spec("");
    spec.argv = ["/bin/helper", "tiocsti"].map(OsString::from).to_vec();
    let run = fixture.run(&spec).unwrap();
    assert_eq!(run.stdout, format!("TIOCSTI errno {}\n", libc::EPERM), "{}", run.stderr);
}

#[test]
fn setuid_bits_in_the_root_grant_nothing() {
    let fixture = Fixture::new();
    let helper = fixture.root().join("bin/suid-helper");
    std::fs::copy(c_helper(), &helper).unwrap();
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o4755)).unwrap();
    // The helper belongs to the host user running the tests (root here); inside, uid 1000.
    let mut spec =
        fixture.spec("suid-helper ids; grep -c . /proc/self/status >/dev/null; cat /proc/self/mountinfo");
    spec.uid = 1000;
    let run = fixture.run(&spec).unwrap();
    let mut lines = run.stdout.lines();
    assert_eq!(lines.next(), Some("1000 1000"), "{}", run.stderr);
    // The root and everything below it is mounted nosuid.
    let root = lines.find(|line| line.split(' ').nth(4) == Some("/")).expect("the root mount");
    let options = root.split(' ').nth(5).unwrap();
    assert!(options.split(',').any(|o| o == "nosuid"), "{root}");
}
