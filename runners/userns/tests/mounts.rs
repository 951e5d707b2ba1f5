//! Bind mounts: read-only ones refuse writes, read-write ones accept them, the stager's
//! read-only submounts stay read-only, and symlinks in the (hostile) root never lead a mount
//! or a created directory out of it.

mod support;

use rebox_runner_spec::{BindMount, Outcome};
use rebox_runner_userns::{Step, UsernsError};
use support::{Fixture, host_root};

fn host_dir(fixture: &Fixture, name: &str) -> std::path::PathBuf {
    let dir = fixture.path(name);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("file"), "from the host\n").unwrap();
    dir
}

#[test]
fn a_read_only_bind_refuses_writes_and_a_writable_one_accepts_them() {
    let fixture = Fixture::new();
    let ro = host_dir(&fixture, "ro-source");
    let rw = host_dir(&fixture, "rw-source");
    let mut spec =
        fixture.spec("cat /mnt/ro/file; echo x > /mnt/ro/new || echo refused; echo written > /mnt/rw/new");
    spec.mounts = vec![
        BindMount { source: ro.clone(), target: "/mnt/ro".into(), writable: false },
        BindMount { source: rw.clone(), target: "/mnt/rw".into(), writable: true },
    ];
    let run = fixture.run(&spec).unwrap();
    assert_eq!(run.completion.outcome, Outcome::Exited(0), "{}", run.stderr);
    assert_eq!(run.stdout, "from the host\nrefused\n");
    assert!(run.stderr.contains("Read-only file system"), "{}", run.stderr);
    assert!(!ro.join("new").exists());
    assert_eq!(std::fs::read_to_string(rw.join("new")).unwrap(), "written\n");
}

#[test]
fn a_file_can_be_bound_onto_a_missing_path() {
    let fixture = Fixture::new();
    let source = fixture.path("config");
    std::fs::write(&source, "setting=1\n").unwrap();
    let mut spec = fixture.spec("cat /etc/rebox/config");
    spec.mounts = vec![BindMount { source, target: "/etc/rebox/config".into(), writable: false }];
    assert_eq!(fixture.run(&spec).unwrap().stdout, "setting=1\n");
    assert!(fixture.root().join("etc/rebox/config").is_file());
}

#[test]
fn a_read_only_submount_of_the_root_stays_read_only() {
    if !host_root() {
        eprintln!("skipped: making a read-only submount on the host needs root");
        return;
    }
    let fixture = Fixture::new();
    let sub = fixture.root().join("readonly");
    std::fs::create_dir(&sub).unwrap();
    use nix::mount::{MntFlags, MsFlags, mount, umount2};
    mount(Some(&sub), &sub, None::<&str>, MsFlags::MS_BIND, None::<&str>).unwrap();
    let remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    mount(None::<&str>, &sub, None::<&str>, remount, None::<&str>).unwrap();
    let run =
        fixture.run(&fixture.spec("touch /readonly/x || echo refused; touch /writable && echo written"));
    umount2(&sub, MntFlags::MNT_DETACH).unwrap();
    let run = run.unwrap();
    assert_eq!(run.stdout, "refused\nwritten\n", "{}", run.stderr);
    assert!(!sub.join("x").exists());
}

#[test]
fn symlinks_in_the_root_do_not_lead_mounts_or_directories_out_of_it() {
    let fixture = Fixture::new();
    let outside = fixture.path("outside");
    std::fs::create_dir(&outside).unwrap();
    // Absolute and climbing links to a host directory next to the root.
    std::os::unix::fs::symlink(&outside, fixture.root().join("absolute")).unwrap();
    std::os::unix::fs::symlink("../../../../../../../outside", fixture.root().join("climbing")).unwrap();
    let source = host_dir(&fixture, "source");
    for link in ["absolute", "climbing"] {
        let mut spec = fixture.spec("true");
        spec.mounts =
            vec![BindMount { source: source.clone(), target: format!("/{link}/sub").into(), writable: true }];
        let error = fixture.run(&spec).unwrap_err();
        assert!(matches!(error, UsernsError::Setup { step: Step::BindTarget, .. }), "{error}");
        let mut spec = fixture.spec("true");
        spec.cwd = format!("/{link}/work").into();
        let error = fixture.run(&spec).unwrap_err();
        assert!(matches!(error, UsernsError::Setup { step: Step::Cwd, .. }), "{error}");
    }
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "something was created outside the root");
}

#[test]
fn a_symlinked_runner_mount_point_is_refused() {
    let fixture = Fixture::new();
    let outside = fixture.path("outside");
    std::fs::create_dir(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, fixture.root().join("tmp")).unwrap();
    let error = fixture.run(&fixture.spec("true")).unwrap_err();
    assert!(matches!(error, UsernsError::Setup { step: Step::MountPoint, .. }), "{error}");
    let message = error.to_string();
    assert!(message.starts_with("create the mount point /tmp in the sandbox: ELOOP"), "{message}");
}
