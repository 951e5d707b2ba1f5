//! A busybox-static root and a helper running commands in it with captured output.

#![allow(dead_code)]

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use rebox_runner_spec::{Cancel, Completion, Runner, Spec, Stdio};
use rebox_runner_userns::{UsernsError, UsernsRunner};
use tempfile::TempDir;

/// A temporary directory holding `root/` (busybox in `/bin` with its applet links) and the
/// captured streams next to it (outside the sandbox).
pub struct Fixture {
    pub dir: TempDir,
}

impl Fixture {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new().prefix("rebox-userns-").tempdir().expect("tempdir");
        let bin = dir.path().join("root/bin");
        std::fs::create_dir_all(&bin).unwrap();
        std::fs::copy("/bin/busybox", bin.join("busybox")).expect("busybox-static is installed");
        let list = std::process::Command::new("/bin/busybox").arg("--list").output().unwrap();
        assert!(list.status.success());
        for applet in String::from_utf8(list.stdout).unwrap().lines() {
            if applet != "busybox" {
                std::os::unix::fs::symlink("busybox", bin.join(applet)).unwrap();
            }
        }
        Self { dir }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// A spec running `sh -c script` in the root with PATH=/bin and captured streams.
    pub fn spec(&self, script: &str) -> Spec {
        let argv = ["/bin/sh", "-c", script].map(OsString::from).to_vec();
        let mut spec = Spec::new(self.root(), argv);
        spec.env = vec![("PATH".into(), "/bin".into())];
        spec.stdin = Stdio::Null;
        spec.stdout = Stdio::File(self.dir.path().join("stdout"));
        spec.stderr = Stdio::File(self.dir.path().join("stderr"));
        spec
    }

    pub fn run(&self, spec: &Spec) -> Result<Run, UsernsError> {
        self.run_with(spec, &Cancel::new())
    }

    pub fn run_with(&self, spec: &Spec, cancel: &Cancel) -> Result<Run, UsernsError> {
        let completion = UsernsRunner::new().run(spec, cancel)?;
        let read = |name: &str| std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default();
        Ok(Run { completion, stdout: read("stdout"), stderr: read("stderr") })
    }

    /// Runs `script` and returns its stdout, asserting it exited 0.
    pub fn output(&self, script: &str) -> String {
        let run = self.run(&self.spec(script)).expect("the sandbox runs");
        assert_eq!(run.completion.outcome.exit_code(), 0, "{script}: stderr {}", run.stderr);
        run.stdout
    }

    pub fn path(&self, relative: impl AsRef<Path>) -> PathBuf {
        self.dir.path().join(relative)
    }
}

/// What a run gave.
#[derive(Debug)]
pub struct Run {
    pub completion: Completion,
    pub stdout: String,
    pub stderr: String,
}

/// A static C helper for what busybox cannot do (terminal ioctls, raw ids), built once with gcc.
///
/// `helper tiocsti`: creates a pty inside, makes it the controlling terminal, tries TIOCSTI and
/// prints `TIOCSTI ok` or `TIOCSTI errno N`. `helper ids`: prints `ruid euid`.
pub fn c_helper() -> &'static Path {
    static HELPER: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    HELPER.get_or_init(|| {
        let dir =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("userns-helper-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let source = dir.join("helper.c");
        std::fs::write(&source, HELPER_C).unwrap();
        let binary = dir.join("helper");
        let status = std::process::Command::new("gcc")
            .args(["-static", "-O1", "-o"])
            .arg(&binary)
            .arg(&source)
            .status()
            .expect("gcc is installed");
        assert!(status.success(), "gcc -static failed");
        binary
    })
}

const HELPER_C: &str = r#"
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "ids") == 0) {
        printf("%d %d\n", (int)getuid(), (int)geteuid());
        return 0;
    }
    if (argc > 1 && strcmp(argv[1], "tiocsti") == 0) {
        /* Already a session leader when the runner started a session for us. */
        if (setsid() < 0 && getsid(0) != getpid()) { perror("setsid"); return 2; }
        int master = open("/dev/ptmx", O_RDWR | O_NOCTTY);
        if (master < 0) { perror("open /dev/ptmx"); return 2; }
        if (grantpt(master) < 0 || unlockpt(master) < 0) { perror("unlockpt"); return 2; }
        int slave = open(ptsname(master), O_RDWR);
        if (slave < 0) { perror("open slave"); return 2; }
        if (ioctl(slave, TIOCSCTTY, 0) < 0) { perror("TIOCSCTTY"); return 2; }
        char c = 'x';
        if (ioctl(slave, TIOCSTI, &c) == 0) { printf("TIOCSTI ok\n"); return 0; }
        printf("TIOCSTI errno %d\n", errno);
        return 0;
    }
    return 3;
}
"#;

/// Processes on the host whose command line is exactly `argv`.
pub fn host_processes_with_cmdline(argv: &[&str]) -> Vec<u32> {
    let mut wanted = Vec::new();
    for arg in argv {
        wanted.extend_from_slice(arg.as_bytes());
        wanted.push(0);
    }
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted))
        .collect()
}

/// Whether the tests run as root on the host (some need to mount on the host).
pub fn host_root() -> bool {
    nix::unistd::geteuid().is_root()
}
