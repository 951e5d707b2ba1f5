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
