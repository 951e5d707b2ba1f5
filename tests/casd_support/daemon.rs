//! Starting and stopping the real `rebox` binary as a daemon, the way BuildStream does: its own
//! process group, cwd = the cache directory, stdout and stderr to a log file.

#![allow(dead_code, reason = "each test crate uses a different part of this support module")]

use std::fs::{self, File};
use std::os::unix::fs::symlink;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;
use rebox::proto::build::buildgrid::local_content_addressable_storage_client::LocalContentAddressableStorageClient;
use tonic::transport::Channel;

/// How long a daemon may take to create its socket, or to exit after a signal.
pub const PATIENCE: Duration = Duration::from_secs(15);

/// The rebox binary under test.
pub fn rebox() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_rebox"))
}

/// A directory holding a `buildbox-casd` symlink to rebox, as BuildStream's PATH would.
pub fn buildbox_casd_link(dir: &Path) -> PathBuf {
    let link = dir.join("buildbox-casd");
    if !link.exists() {
        symlink(rebox(), &link).unwrap();
    }
    link
}

/// A running daemon.
#[derive(Debug)]
pub struct Daemon {
    child: Option<Child>,
    /// The cache directory.
    pub cache: PathBuf,
    /// The socket it serves.
    pub socket: PathBuf,
    log: PathBuf,
}

impl Daemon {
    /// Starts `program ARGS` with cwd `cache` in its own process group, and waits for `socket`.
    pub fn start(program: &Path, args: &[String], cache: &Path, socket: &Path) -> Daemon {
        fs::create_dir_all(cache).unwrap();
        static STARTED: AtomicUsize = AtomicUsize::new(0);
        let n = STARTED.fetch_add(1, Ordering::Relaxed);
        let log = cache.parent().unwrap().join(format!("casd-{n}.log"));
        let log_file = File::create(&log).unwrap();
        let child = Command::new(program)
            .args(args)
            .current_dir(cache)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .process_group(0)
            .spawn()
            .expect("start the daemon");
        let mut daemon =
            Daemon { child: Some(child), cache: cache.to_owned(), socket: socket.to_owned(), log };
        daemon.wait_for_socket();
        daemon
    }

    /// Polls every 10 ms for the socket, as BuildStream does, until it accepts a connection
    /// (a stale socket from an earlier run may be there before the daemon replaces it).
    fn wait_for_socket(&mut self) {
        let deadline = Instant::now() + PATIENCE;
        while UnixStream::connect(&self.socket).is_err() {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("the daemon exited with {status} before serving:\n{}", self.log());
            }
            assert!(Instant::now() < deadline, "no socket after {PATIENCE:?}:\n{}", self.log());
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// The daemon's process id (also its process group id).
    pub fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().unwrap().id() as i32)
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A LocalCAS client over its socket.
    pub async fn local_cas(&self) -> LocalContentAddressableStorageClient<Channel> {
        let url = format!("unix:{}", self.socket.display());
        LocalContentAddressableStorageClient::new(rebox::grpc::client::connect(&url).await.unwrap())
    }

    /// Sends `signal` and waits for the exit status.
    pub fn stop_with(&mut self, signal: Signal) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        kill(Pid::from_raw(child.id() as i32), signal).unwrap();
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                return status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the daemon ignored {signal} for {PATIENCE:?}:\n{}", self.log());
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Whether any process is left in process group `group`.
pub fn group_has_processes(group: Pid) -> bool {
    killpg(group, None).is_ok()
}

/// The processes whose parent is `parent`.
pub fn children_of(parent: Pid) -> Vec<i32> {
    let mut children = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else { continue };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
        let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
        let ppid: i32 = after_comm.split(' ').nth(1).unwrap().parse().unwrap();
        if ppid == parent.as_raw() {
            children.push(pid);
        }
    }
    children
}

/// Runs `future` to completion on a fresh runtime (the tests themselves are synchronous).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

/// The Python of the `.peers` venv (grpcio and BuildStream's generated protos).
pub fn peers_python() -> PathBuf {
    let python = match std::env::var_os("REBOX_PEERS_PYTHON") {
        Some(python) => PathBuf::from(python),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join(".peers/bin/python"),
    };
    assert!(python.exists(), "{} is missing: run scripts/peers first", python.display());
    python
}
