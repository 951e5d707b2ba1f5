//! `rebox casd` through the real binary, also run as `buildbox-casd`: the version BuildStream
//! checks, start-up as BuildStream does it, the LocalCAS info RPCs, clean stops on SIGTERM and
//! SIGINT, sockets, and command-line errors.

#[path = "casd_support/daemon.rs"]
mod support;

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rebox::proto::build::buildgrid::*;
use support::{Daemon, block_on, buildbox_casd_link, children_of, group_has_processes, peers_python, rebox};

/// BuildStream's version check: `re.match(r".*buildbox-casd (\d+).(\d+).(\d+).*", output)`,
/// so on the first line, and it requires at least 1.3.41.
fn buildstream_accepts(output: &str) -> bool {
    let first_line = output.lines().next().unwrap_or("");
    let Some(at) = first_line.find("buildbox-casd ") else { return false };
    let numbers: Vec<u32> = first_line[at + "buildbox-casd ".len()..]
        .split(|c: char| !c.is_ascii_digit())
        .take(3)
        .map_while(|n| n.parse().ok())
        .collect();
    numbers.len() == 3 && (numbers[0], numbers[1], numbers[2]) >= (1, 3, 41)
}

fn stderr_of(command: &mut Command) -> (i32, String) {
    let output = command.output().unwrap();
    (output.status.code().unwrap_or(-1), String::from_utf8(output.stderr).unwrap())
}

#[test]
fn version_satisfies_buildstreams_check_under_both_names() {
    let bin = tempfile::tempdir().unwrap();
    let link = buildbox_casd_link(bin.path());
    for mut command in [Command::new(&link), Command::new(rebox())] {
        if command.get_program() == rebox().as_os_str() {
            command.arg("casd");
        }
        // BuildStream passes a path after --version: some buildbox-casd releases required one.
        let output = command.args(["--version", "/"]).output().unwrap();
        assert!(output.status.success());
        let stdout = String::from_utf8(output.stdout).unwrap();
        assert!(buildstream_accepts(&stdout), "{stdout:?}");
        assert!(stdout.contains(&format!("rebox {}", env!("CARGO_PKG_VERSION"))), "{stdout:?}");
    }
    assert!(!buildstream_accepts("buildbox-casd 1.3.40"), "the check itself can fail");
}

#[test]
fn started_as_buildstream_does_it_serves_info_and_stops_cleanly_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let link = buildbox_casd_link(dir.path());
    let cache = dir.path().join("cache");
    let socket = dir.path().join("casd.sock");
    let args = [
        format!("--bind=unix:{}", socket.display()),
        "--log-level=info".to_owned(),
        "--cache-failures=false".to_owned(),
        "--quota-high=5000000".to_owned(),
        "--quota-low=50%".to_owned(),
        "--reserved=0".to_owned(),
        "--protect-session-blobs".to_owned(),
        "--buildbox-run=/usr/bin/buildbox-run".to_owned(),
        "--jobs=8".to_owned(),
        cache.display().to_string(),
    ];
    let mut daemon = Daemon::start(&link, &args, &cache, &socket);
    // Ready means its store is: the fan-out directories are there before the first write.
    let fan_outs = std::fs::read_dir(cache.join("cas/objects")).unwrap().count();
    assert_eq!(fan_outs, 256, "fan-out directories made at start");

    block_on(async {
        let mut local_cas = daemon.local_cas().await;
        let details =
            local_cas.get_local_server_details(GetLocalServerDetailsRequest::default()).await.unwrap();
        let details = details.into_inner();
        assert_eq!(details.hostname, nix::unistd::gethostname().unwrap().to_string_lossy());
        assert_eq!(details.process_uid, i64::from(nix::unistd::getuid().as_raw()));
        assert_eq!(Path::new(&details.storage_root), cache.join("cas"));

        let usage = local_cas.get_local_disk_usage(GetLocalDiskUsageRequest {}).await.unwrap().into_inner();
        assert_eq!((usage.size_bytes, usage.quota_bytes), (0, 5_000_000));

        // BuildStream asks this for each configured remote; with none, the local instance.
        let remotes = GetInstanceNameForRemotesRequest::default();
        let name = local_cas.get_instance_name_for_remotes(remotes).await.unwrap().into_inner();
        assert_eq!(name.instance_name, "");
        let remote = Remote { url: "http://cache.example:50051".to_owned(), ..Remote::default() };
        let with_remote = GetInstanceNameForRemotesRequest {
            content_addressable_storage: Some(remote),
            ..Default::default()
        };
        let refused = local_cas.get_instance_name_for_remotes(with_remote).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unimplemented);
        assert!(refused.message().contains("http://cache.example:50051"), "{}", refused.message());
        let namespace =
            GetInstanceNameForNamespaceRequest { root: "/sysroot".to_owned(), ..Default::default() };
        let refused = local_cas.get_instance_name_for_namespace(namespace).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::Unimplemented);
        let wrong = GetLocalServerDetailsRequest { instance_name: "elsewhere".to_owned() };
        let refused = local_cas.get_local_server_details(wrong).await.unwrap_err();
        assert_eq!(refused.code(), tonic::Code::InvalidArgument);
    });

    assert!(children_of(daemon.pid()).is_empty(), "the daemon started a child process");
    let group = daemon.pid();
    let status = daemon.stop_with(Signal::SIGTERM);
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
    assert!(!socket.exists(), "the socket was left behind");
    assert!(!group_has_processes(group), "a process of the daemon's group is left");
    let log = daemon.log();
    assert!(log.contains("SIGTERM received"), "{log}");
    assert!(log.contains("--buildbox-run"), "the inert flag is logged: {log}");
}

#[test]
fn sigint_stops_it_too_even_with_a_client_still_connected() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let socket = cache.join("casd.sock");
    let args = ["casd".to_owned(), cache.display().to_string()];
    let mut daemon = Daemon::start(rebox(), &args, &cache, &socket);
    // The default socket is CACHE_DIR/casd.sock; a connection stays open through the stop (its
    // runtime's threads keep answering the server, as a real client's would).
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut local_cas = runtime.block_on(daemon.local_cas());
    runtime.block_on(local_cas.get_local_disk_usage(GetLocalDiskUsageRequest {})).unwrap();
    let started = Instant::now();
    let status = daemon.stop_with(Signal::SIGINT);
    assert_eq!(status.code(), Some(0), "{}", daemon.log());
    assert!(started.elapsed() < Duration::from_secs(4), "an idle connection held up the stop");
    assert!(!socket.exists());
    drop(local_cas);
}

#[test]
fn grpc_c_core_clients_work_over_the_unix_socket() {
    // grpcio (BuildStream) sends the socket path as :authority, which HTTP/2 servers refuse
    // unless the daemon fixes it up.
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let socket = dir.path().join("casd.sock");
    let args = ["casd".to_owned(), format!("--bind=unix:{}", socket.display()), cache.display().to_string()];
    let daemon = Daemon::start(rebox(), &args, &cache, &socket);
    let script = r#"
import sys, grpc
from buildstream._protos.build.buildgrid import local_cas_pb2, local_cas_pb2_grpc
channel = grpc.insecure_channel("unix:" + sys.argv[1])
local_cas = local_cas_pb2_grpc.LocalContentAddressableStorageStub(channel)
for _ in range(3):
    details = local_cas.GetLocalServerDetails(local_cas_pb2.GetLocalServerDetailsRequest())
    usage = local_cas.GetLocalDiskUsage(local_cas_pb2.GetLocalDiskUsageRequest())
print(details.storage_root, usage.size_bytes, usage.quota_bytes)
"#;
    let output = Command::new(peers_python()).arg("-c").arg(script).arg(&socket).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}\ndaemon log:\n{}", daemon.log());
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert_eq!(stdout.trim(), format!("{} 0 0", cache.join("cas").display()));
}

#[test]
fn a_tcp_bind_serves_beside_the_unix_socket() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let socket = dir.path().join("casd.sock");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let args = [
        "casd".to_owned(),
        format!("--bind=127.0.0.1:{port}"),
        "--bind".to_owned(),
        format!("unix:{}", socket.display()),
        cache.display().to_string(),
    ];
    let mut daemon = Daemon::start(rebox(), &args, &cache, &socket);
    block_on(async {
        let channel = rebox::grpc::client::connect(&format!("http://127.0.0.1:{port}")).await.unwrap();
        let mut local_cas =
            local_content_addressable_storage_client::LocalContentAddressableStorageClient::new(channel);
        local_cas.get_local_disk_usage(GetLocalDiskUsageRequest {}).await.unwrap();
    });
    assert_eq!(daemon.stop_with(Signal::SIGTERM).code(), Some(0));
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err(), "the port still listens");
}

#[test]
fn a_stale_socket_is_replaced_and_a_live_daemon_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    std::fs::create_dir_all(&cache).unwrap();
    let socket = cache.join("casd.sock");
    drop(UnixListener::bind(&socket).unwrap());
    assert!(socket.exists(), "a crashed daemon's socket");
    let args = ["casd".to_owned(), cache.display().to_string()];
    let mut first = Daemon::start(rebox(), &args, &cache, &socket);
    block_on(async {
        first.local_cas().await.get_local_disk_usage(GetLocalDiskUsageRequest {}).await.unwrap()
    });

    let (code, stderr) = stderr_of(Command::new(rebox()).args(&args));
    assert_eq!(code, 1);
    assert!(stderr.contains("already listening on") && stderr.contains("casd.sock"), "{stderr}");
    block_on(async {
        first.local_cas().await.get_local_disk_usage(GetLocalDiskUsageRequest {}).await.unwrap()
    });
    assert_eq!(first.stop_with(Signal::SIGTERM).code(), Some(0));
}

#[test]
fn using_a_remote_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let link = buildbox_casd_link(dir.path());
    let cache = dir.path().join("cache");
    let mut command = Command::new(&link);
    command.args(["--cas-remote=http://cache.example:50051", "--cas-instance=main"]).arg(&cache);
    let (code, stderr) = stderr_of(&mut command);
    assert_eq!(code, 1);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("buildbox-casd: error: --cas-remote=http://cache.example:50051"), "{stderr}");
    assert!(!cache.join("casd.sock").exists());
}

#[test]
fn bad_command_lines_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let link = buildbox_casd_link(dir.path());
    let cache = dir.path().join("cache").display().to_string();
    for (args, named) in [
        (vec!["--quota-high=1.5G", &cache], "1.5G"),
        (vec!["--quota-high=1G", "--quota-low=2G", &cache], "--quota-low"),
        (vec!["--log-level=loud", &cache], "--log-level"),
        (vec!["--bind=/tmp/x.sock", &cache], "unix:PATH or HOST:PORT"),
        (vec!["--bogus", &cache], "--bogus"),
        (vec![], "CACHE_DIR"),
    ] {
        // buildbox-casd exits 1 on a bad command line; so does rebox under that name.
        let (code, stderr) = stderr_of(Command::new(&link).args(&args));
        assert_eq!(code, 1, "{args:?}: {stderr}");
        assert!(stderr.contains(named), "{args:?}: {stderr}");
    }
    let (code, stderr) = stderr_of(Command::new(rebox()).args(["casd", "--bogus", &cache]));
    assert_eq!(code, 2, "rebox's own name keeps clap's usage status: {stderr}");
}

/// Started with a low soft limit on open files (the common 1024, here 256), the daemon raises it
/// to the hard limit: deep captures keep a directory open per level.
#[test]
fn the_open_files_limit_is_raised_to_the_hard_limit() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let socket = cache.join("casd.sock");
    let hard = std::fs::read_to_string("/proc/self/limits")
        .unwrap()
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(4).map(str::to_owned))
        .unwrap();
    let args = [
        "--nofile=256:".to_owned(),
        rebox().display().to_string(),
        "casd".to_owned(),
        cache.display().to_string(),
    ];
    let mut daemon = Daemon::start(Path::new("/usr/bin/prlimit"), &args, &cache, &socket);
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", daemon.pid())).unwrap();
    let open_files: Vec<&str> =
        limits.lines().find(|l| l.starts_with("Max open files")).unwrap().split_whitespace().collect();
    assert_eq!(&open_files[3..5], [hard.as_str(), hard.as_str()], "{limits}");
    assert_eq!(daemon.stop_with(Signal::SIGTERM).code(), Some(0), "{}", daemon.log());
}

/// Stages the tree of one file holding `content` through the daemon and unstages it (the
/// request stream ends after the first message); returns how many answers came.
fn stage_and_unstage(daemon: &Daemon, content: &[u8]) -> usize {
    use prost::Message;
    use rebox::proto::build::bazel::remote::execution::v2 as reapi;

    let store = rebox::store::Store::open(&daemon.cache, rebox::digest::DigestFunction::Sha256).unwrap();
    let file = store.put_bytes(content).unwrap();
    let directory = reapi::Directory {
        files: vec![reapi::FileNode {
            name: "f".into(),
            digest: Some(rebox::tree::to_proto(&file)),
            ..Default::default()
        }],
        ..Default::default()
    };
    let root = store.put_bytes(&directory.encode_to_vec()).unwrap();
    block_on(async {
        let mut local_cas = daemon.local_cas().await;
        // Farms are the hardlink stager's: ask for it (the default is FUSE).
        let request = StageTreeRequest {
            root_digest: Some(rebox::tree::to_proto(&root)),
            staging_mode: rebox::proto::build::buildgrid::stage_tree_request::StagingMode::CopyOrLink as i32,
            ..Default::default()
        };
        let mut answers = local_cas.stage_tree(tokio_stream::iter([request])).await.unwrap().into_inner();
        let mut count = 0;
        while answers.message().await.unwrap().is_some() {
            count += 1;
        }
        count
    })
}

/// The staging farms kept in `cache`.
fn farms(cache: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(cache.join("cas/staging-farms")).unwrap().map(|e| e.unwrap().path()).collect()
}

/// Farms outlive stages (restaging a tree costs a mount), so the daemon prunes those unused for a
/// day, at start and then hourly: an old farm goes, a recent one stays.
#[test]
fn staging_farms_unused_for_a_day_are_pruned() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let socket = cache.join("casd.sock");
    let args = ["casd".to_owned(), cache.display().to_string()];

    let mut daemon = Daemon::start(rebox(), &args, &cache, &socket);
    assert!(stage_and_unstage(&daemon, b"old tree") >= 1, "{}", daemon.log());
    let old = farms(&cache);
    assert_eq!(old.len(), 1, "{}", daemon.log());
    assert!(stage_and_unstage(&daemon, b"recent tree") >= 1, "{}", daemon.log());
    assert_eq!(daemon.stop_with(Signal::SIGTERM).code(), Some(0), "{}", daemon.log());
    let two_days_ago = std::time::SystemTime::now() - Duration::from_secs(2 * 24 * 3600);
    std::fs::File::open(&old[0]).unwrap().set_modified(two_days_ago).unwrap();

    let mut daemon = Daemon::start(rebox(), &args, &cache, &socket);
    let deadline = Instant::now() + Duration::from_secs(10);
    while farms(&cache).contains(&old[0]) {
        assert!(Instant::now() < deadline, "the old farm was not pruned:\n{}", daemon.log());
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(farms(&cache).len(), 1, "the recent farm must stay");
    assert_eq!(daemon.stop_with(Signal::SIGTERM).code(), Some(0), "{}", daemon.log());
}
