//! What the sandbox sees of the host: its own processes, a minimal /dev, read-only host-global
//! kernel files, no /sys, and only loopback unless the network is shared.

mod support;

use std::collections::BTreeSet;

use rebox_runner_spec::Outcome;
use support::Fixture;

#[test]
fn proc_shows_only_the_sandboxs_processes() {
    let fixture = Fixture::new();
    let pids = fixture.output("for p in /proc/[0-9]*; do echo ${p#/proc/}; done");
    let pids: BTreeSet<u32> = pids.lines().map(|p| p.parse().unwrap()).collect();
    // init (1), sh and nothing else of the host (which has dozens).
    assert!(pids.contains(&1), "{pids:?}");
    assert!(pids.len() <= 3, "{pids:?}");
    assert_eq!(fixture.output("echo $$"), "2\n");
}

#[test]
fn dev_is_minimal_and_works() {
    let fixture = Fixture::new();
    let listing = fixture.output("echo gone > /dev/null && ls -A /dev && head -c 4 /dev/zero | wc -c");
    let mut lines: Vec<&str> = listing.lines().collect();
    assert_eq!(lines.pop(), Some("4"));
    let expected = [
        "fd", "full", "null", "ptmx", "pts", "random", "shm", "stderr", "stdin", "stdout", "tty", "urandom",
        "zero",
    ];
    assert_eq!(lines, expected);
    // The host's disks exist on the host, not inside.
    assert!(
        fixture
            .run(&fixture.spec("test -e /dev/sda || test -e /dev/vda || test -e /dev/mem"))
            .unwrap()
            .completion
            .outcome
            == Outcome::Exited(1)
    );
    assert_eq!(fixture.output("echo hi > /dev/shm/f && cat /dev/shm/f && ls -A /dev/pts"), "hi\nptmx\n");
}

#[test]
fn host_kernel_settings_cannot_be_written() {
    let fixture = Fixture::new();
    let before = std::fs::read("/proc/sys/kernel/core_pattern").unwrap();
    let run = fixture.run(&fixture.spec("echo '|/bin/evil' > /proc/sys/kernel/core_pattern")).unwrap();
    assert_eq!(run.completion.outcome, Outcome::Exited(1));
    assert!(run.stderr.contains("Read-only file system"), "{}", run.stderr);
    assert_eq!(std::fs::read("/proc/sys/kernel/core_pattern").unwrap(), before);
    // sysrq-trigger only exists on kernels built with magic SysRq (not this test VM's).
    if std::path::Path::new("/proc/sysrq-trigger").exists() {
        let run = fixture.run(&fixture.spec("echo h > /proc/sysrq-trigger")).unwrap();
        assert_eq!(run.completion.outcome, Outcome::Exited(1));
        assert!(run.stderr.contains("Read-only file system"), "{}", run.stderr);
    }
    // Each host-global part of /proc is a read-only mount of its own.
    let mounts = fixture.output("cat /proc/self/mountinfo");
    for part in ["/proc/sys", "/proc/irq", "/proc/bus", "/proc/fs"] {
        if std::path::Path::new(part).exists() {
            let line = mounts.lines().find(|l| l.split(' ').nth(4) == Some(part));
            let options =
                line.and_then(|l| l.split(' ').nth(5)).unwrap_or_else(|| panic!("{part}: {mounts}"));
            assert!(options.split(',').any(|o| o == "ro"), "{part} is mounted {options}");
        }
    }
    // The rest of /proc is the sandbox's own and stays usable.
    assert_eq!(fixture.output("cat /proc/self/comm"), "cat\n");
}

#[test]
fn sys_is_absent() {
    let fixture = Fixture::new();
    assert_eq!(fixture.output("test -e /sys/class && echo present || echo absent"), "absent\n");
}

#[test]
fn without_network_only_loopback_exists_and_it_is_up() {
    let fixture = Fixture::new();
    let interfaces = fixture.output("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '");
    assert_eq!(interfaces, "lo\n");
    let link = fixture.output("ip link show lo");
    assert!(link.contains("<LOOPBACK,UP"), "{link}");
    // Something listens on the sandbox's loopback and is reachable there.
    let served = fixture.output("nc -l -p 4321 -e echo served & sleep 0.2; nc 127.0.0.1 4321 </dev/null");
    assert_eq!(served, "served\n");
}

#[test]
fn with_network_the_hosts_interfaces_are_visible() {
    let fixture = Fixture::new();
    let host: BTreeSet<String> = std::fs::read_to_string("/proc/net/dev")
        .unwrap()
        .lines()
        .skip(2)
        .map(|line| line.split(':').next().unwrap().trim().to_owned())
        .collect();
    let mut spec = fixture.spec("tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '");
    spec.network = true;
    let inside: BTreeSet<String> = fixture.run(&spec).unwrap().stdout.lines().map(str::to_owned).collect();
    assert_eq!(inside, host);
}
