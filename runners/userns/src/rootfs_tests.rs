//! The setup sequences, recorded against a simulated tree.

use std::ffi::CString;

use nix::errno::Errno;

use crate::error::{Failure, Step};
use crate::paths::InsidePath;
use crate::plan::{BindPlan, MountPlan};
use crate::recording::RecordingSys;
use crate::rootfs::{MountPoints, setup};

fn plan(binds: Vec<BindPlan>, loopback: bool) -> MountPlan {
    MountPlan {
        root: CString::new("/stage/root").unwrap(),
        binds,
        cwd: InsidePath::parse("build/dir".as_ref()).unwrap(),
        hostname: b"rebox".to_vec(),
        loopback,
        points: MountPoints::new(),
    }
}

fn bind(source: &str, target: &str, writable: bool, is_dir: bool) -> BindPlan {
    BindPlan {
        source: CString::new(source).unwrap(),
        target: InsidePath::parse(target.as_ref()).unwrap(),
        writable,
        is_dir,
    }
}

fn position(lines: &[String], line: &str) -> usize {
    lines.iter().position(|l| l == line).unwrap_or_else(|| panic!("no {line:?} in {lines:#?}"))
}

#[test]
fn the_root_is_bound_recursively_nosuid_before_anything_is_mounted_in_it() {
    let sys = RecordingSys::default();
    setup(&sys, &plan(Vec::new(), true)).unwrap();
    let lines = sys.lines();
    assert_eq!(
        lines[..4],
        [
            "make-rprivate",
            "clone-mount /stage/root recursive=true",
            "set-attrs mount-of:/stage/root 0x6 recursive=true",
            "attach mount-of:/stage/root -> host:/stage/root",
        ]
    );
    // Missing mount points and the working directory are created, one component at a time.
    for dir in ["proc", "dev", "tmp", "build", "build/dir"] {
        position(&lines, &format!("mkdir {dir}"));
    }
    assert!(position(&lines, "mkdir build") < position(&lines, "mkdir build/dir"));
    // The pivot comes after every mount, then the working directory.
    assert_eq!(lines[lines.len() - 2..], ["pivot \"\"", "chdir /build/dir"]);
    assert!(position(&lines, "loopback-up") < position(&lines, "pivot \"\""));
}

#[test]
fn proc_and_its_host_global_entries_are_mounted_read_only() {
    let sys = RecordingSys::default();
    setup(&sys, &plan(Vec::new(), false)).unwrap();
    let lines = sys.lines();
    let proc = position(&lines, "new-mount proc [] 0xe");
    assert_eq!(lines[proc + 1], "attach new:proc -> proc");
    for entry in ["sys", "sysrq-trigger", "irq", "bus", "fs", "acpi"] {
        let at = position(&lines, &format!("clone-mount proc/{entry} recursive=false"));
        // RDONLY | NOSUID | NODEV | NOEXEC, then bound over itself.
        assert_eq!(lines[at + 1], format!("set-attrs mount-of:proc/{entry} 0xf recursive=false"));
        assert_eq!(lines[at + 2], format!("attach mount-of:proc/{entry} -> proc/{entry}"));
    }
    assert!(!lines.contains(&"loopback-up".to_owned()), "shared network: lo is the host's");
}

#[test]
fn dev_gets_the_host_nodes_a_private_devpts_and_links() {
    let sys = RecordingSys::default();
    setup(&sys, &plan(Vec::new(), true)).unwrap();
    let lines = sys.lines();
    assert_eq!(lines[position(&lines, "new-mount tmpfs [mode=0755] 0xa") + 1], "attach new:tmpfs -> dev");
    for node in ["null", "zero", "full", "random", "urandom", "tty"] {
        let at = position(&lines, &format!("clone-mount /dev/{node} recursive=false"));
        assert_eq!(lines[at + 1], format!("create dev/{node}"));
        assert_eq!(lines[at + 2], format!("attach mount-of:/dev/{node} -> dev/{node}"));
    }
    // devpts must not be nodev (its ptys are device nodes).
    position(&lines, "new-mount devpts [newinstance,ptmxmode=0666,mode=0620] 0xa");
    position(&lines, "symlink dev/ptmx -> pts/ptmx");
    position(&lines, "symlink dev/stderr -> /proc/self/fd/2");
    position(&lines, "new-mount tmpfs [mode=1777] 0x6");
}

#[test]
fn binds_are_read_only_unless_writable_and_their_targets_are_created() {
    let sys = RecordingSys::default();
    let binds =
        vec![bind("/host/src", "/src", false, true), bind("/host/sock", "/run/casd.sock", true, false)];
    setup(&sys, &plan(binds, true)).unwrap();
    let lines = sys.lines();
    // RDONLY | NOSUID, recursively; a writable one only NOSUID.
    position(&lines, "set-attrs mount-of:/host/src 0x3 recursive=true");
    position(&lines, "attach mount-of:/host/src -> src");
    position(&lines, "set-attrs mount-of:/host/sock 0x2 recursive=true");
    assert!(position(&lines, "mkdir run") < position(&lines, "create run/casd.sock"));
    position(&lines, "attach mount-of:/host/sock -> run/casd.sock");
}

#[test]
fn a_failing_bind_names_its_index() {
    let sys = RecordingSys::default();
    sys.failing.borrow_mut().push(("clone-mount /host/b".to_owned(), Errno::ENOENT));
    let binds = vec![bind("/host/a", "/a", false, true), bind("/host/b", "/b", false, true)];
    let failure = setup(&sys, &plan(binds, true)).unwrap_err();
    assert_eq!(failure, Failure::new(Step::Bind, 1, Errno::ENOENT));
    assert!(!sys.lines().iter().any(|l| l.starts_with("pivot")), "no pivot after a failure");
}

#[test]
fn capabilities_are_all_dropped_then_no_new_privs_is_set() {
    let sys = RecordingSys::default();
    sys.failing.borrow_mut().push(("drop-bounding 41".to_owned(), Errno::EINVAL));
    crate::caps::drop_all(&sys, &[0, 1, 40, 41]).unwrap();
    assert_eq!(
        sys.lines(),
        [
            "drop-bounding 0",
            "drop-bounding 1",
            "drop-bounding 40",
            "drop-bounding 41",
            "clear-caps",
            "no-new-privs"
        ]
    );
}
