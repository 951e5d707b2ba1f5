//! REAPI action semantics of `rebox run`, through the real binary and sandbox, on the embedded
//! store (the LocalCAS paths are in `run_casd.rs`): arguments, environment, working directory,
//! outputs of each kind (legacy fields, symlinks, node properties, formats), logs, exit codes,
//! signals, timeouts, platform properties and execution metadata.

mod run_support;

use std::fs;
use std::time::Duration;

use prost::Message;
use rebox::proto::build::bazel::remote::execution::v2 as reapi;
use rebox::proto::google::rpc;
use run_support::{Cas, Kind, Spec, busybox_root, run_action, run_spec, store_action};

fn text(cas: &Cas, digest: &Option<reapi::Digest>) -> String {
    String::from_utf8(cas.read(digest.as_ref().expect("a digest"))).unwrap()
}

#[test]
fn the_environment_is_exactly_the_commands() {
    let cas = Cas::new(Kind::Embedded);
    let mut spec = Spec::new(&["env"]);
    spec.env("A", "1").env("EMPTY", "").env("WITH SPACE", "x y");
    let result = run_spec(&cas, &spec, &[]).ok().clone();
    let mut lines: Vec<String> = text(&cas, &result.stdout_digest).lines().map(str::to_owned).collect();
    lines.sort();
    assert_eq!(lines, ["A=1", "EMPTY=", "PATH=/bin", "WITH SPACE=x y"]);
    assert_eq!(result.exit_code, 0);
}

#[test]
fn arguments_pass_through_and_the_working_directory_is_created() {
    let cas = Cas::new(Kind::Embedded);
    let mut spec = Spec::new(&["sh", "-c", "pwd; echo \"$0|$1\"", "zero", "one two"]);
    spec.command.working_directory = "build/dir".into();
    let result = run_spec(&cas, &spec, &[]).ok().clone();
    assert_eq!(text(&cas, &result.stdout_digest), "/build/dir\nzero|one two\n");
}

#[test]
fn outputs_of_each_kind_land_in_their_fields() {
    let cas = Cas::new(Kind::Embedded);
    let mut spec = Spec::sh(
        "echo data > out/file; mkdir -p out/dir/sub; echo x > out/dir/sub/f; ln -s dir out/dirlink; \
         ln -s file out/filelink; ln -s /nowhere out/dangling; echo exe > out/exe; chmod +x out/exe",
    );
    spec.command.output_paths =
        ["out/file", "out/dir", "out/dirlink", "out/filelink", "out/dangling", "out/exe", "out/missing"]
            .map(String::from)
            .to_vec();
    spec.command.output_directory_format = reapi::command::OutputDirectoryFormat::TreeAndDirectory as i32;
    let result = run_spec(&cas, &spec, &[]).ok().clone();
    let files: Vec<(&str, bool)> =
        result.output_files.iter().map(|f| (f.path.as_str(), f.is_executable)).collect();
    assert_eq!(files, [("out/file", false), ("out/exe", true)]);
    assert_eq!(cas.read(result.output_files[0].digest.as_ref().unwrap()), b"data\n");
    let symlinks: Vec<(&str, &str)> =
        result.output_symlinks.iter().map(|s| (s.path.as_str(), s.target.as_str())).collect();
    assert_eq!(symlinks, [("out/dirlink", "dir"), ("out/filelink", "file"), ("out/dangling", "/nowhere")]);
    assert!(result.output_file_symlinks.is_empty() && result.output_directory_symlinks.is_empty());
    assert_eq!(result.output_directories.len(), 1);
    let dir = &result.output_directories[0];
    assert_eq!(dir.path, "out/dir");
    let root = cas.directory(dir.root_directory_digest.as_ref().unwrap());
    assert_eq!(root.directories[0].name, "sub");
    let tree = reapi::Tree::decode(cas.read(dir.tree_digest.as_ref().unwrap()).as_slice()).unwrap();
    assert_eq!(tree.root.unwrap(), root);
}

#[test]
fn legacy_output_fields_are_honoured_with_parents_created() {
    let cas = Cas::new(Kind::Embedded);
    let mut spec = Spec::sh("echo f > a/b/file; mkdir c/d/dir; ln -s x a/b/flink; ln -s y c/d/dlink");
    spec.command.working_directory = "w".into();
    spec.command.output_files = ["a/b/file", "a/b/flink"].map(String::from).to_vec();
    spec.command.output_directories = ["c/d/dir", "c/d/dlink"].map(String::from).to_vec();
    spec.command.output_directory_format = reapi::command::OutputDirectoryFormat::DirectoryOnly as i32;
    let result = run_spec(&cas, &spec, &[]).ok().clone();
    assert_eq!(result.output_files.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), ["a/b/file"]);
    assert_eq!(result.output_directories.iter().map(|d| d.path.as_str()).collect::<Vec<_>>(), ["c/d/dir"]);
    assert!(result.output_directories[0].tree_digest.is_none(), "DIRECTORY_ONLY stores no Tree");
    assert_eq!(result.output_file_symlinks[0].target, "x");
    assert_eq!(result.output_directory_symlinks[0].target, "y");
    assert!(result.output_symlinks.is_empty());
}

#[test]
fn the_whole_root_as_buildstream_captures_it_with_node_properties() {
    let cas = Cas::new(Kind::Embedded);
    let mut spec = Spec::sh("echo built > artifact");
    spec.command.working_directory = "buildstream/build".into();
    spec.command.output_paths = vec!["../..".into()];
    spec.command.output_node_properties = vec!["mtime".into()];
    spec.command.output_directory_format = reapi::command::OutputDirectoryFormat::DirectoryOnly as i32;
    let result = run_spec(&cas, &spec, &[]).ok().clone();
    assert_eq!(result.output_directories[0].path, "../..");
    let root = cas.directory(result.output_directories[0].root_directory_digest.as_ref().unwrap());
    let names: Vec<&str> = root.directories.iter().map(|d| d.name.as_str()).collect();
    // The sandbox's mount points (made in the stage, as bubblewrap makes them) may be there too.
    let inputs: Vec<&str> = names.iter().copied().filter(|n| !["dev", "proc", "tmp"].contains(n)).collect();
    assert_eq!(inputs, ["bin", "buildstream"], "{names:?}");
    let buildstream = root.directories.iter().find(|d| d.name == "buildstream").unwrap();
    let build = cas.directory(
        cas.directory(buildstream.digest.as_ref().unwrap()).directories[0].digest.as_ref().unwrap(),
    );
    assert_eq!(build.files[0].name, "artifact");
    let properties = build.files[0].node_properties.as_ref().expect("mtime recorded");
    assert!(properties.mtime.is_some());
}

#[test]
fn exit_codes_and_signals() {
    let cas = Cas::new(Kind::Embedded);
    assert_eq!(run_spec(&cas, &Spec::sh("exit 42"), &[]).ok().exit_code, 42);
    assert_eq!(run_spec(&cas, &Spec::sh("kill -TERM $$"), &[]).ok().exit_code, 128 + 15);
    // A command that does not exist: the action ran (and failed), the runner did not.
    let missing = run_spec(&cas, &Spec::new(&["/no/such/program"]), &[]);
    assert_eq!(missing.status.code(), Some(0), "{}", missing.stderr);
    assert_ne!(missing.ok().exit_code, 0);
}

#[test]
fn stdout_and_stderr_go_to_blobs_and_files() {
    let cas = Cas::new(Kind::Embedded);
    let logs = tempfile::tempdir().unwrap();
    let (out, err) = (logs.path().join("out"), logs.path().join("err"));
    let flags = [format!("--stdout-file={}", out.display()), format!("--stderr-file={}", err.display())];
    let spec = Spec::sh("echo to-out; echo to-err >&2");
    let run = run_spec(&cas, &spec, &[&flags[0], &flags[1]]);
    let result = run.ok();
    assert_eq!(text(&cas, &result.stdout_digest), "to-out\n");
    assert_eq!(text(&cas, &result.stderr_digest), "to-err\n");
    assert_eq!(fs::read_to_string(&out).unwrap(), "to-out\n");
    assert_eq!(fs::read_to_string(&err).unwrap(), "to-err\n");
    assert!(!run.stdout.contains("to-out"));

    // --no-logs-capture: inherited, nothing stored.
    let run = run_spec(&cas, &spec, &["--no-logs-capture"]);
    let result = run.ok();
    assert!(result.stdout_digest.is_none() && result.stderr_digest.is_none());
    assert_eq!(run.stdout, "to-out\n");
    assert!(run.stderr.contains("to-err"));
}

#[test]
fn a_timeout_kills_the_sandbox_and_is_reported_as_a_timeout() {
    let cas = Cas::new(Kind::Embedded);
    let mut spec = Spec::sh("echo started > out; echo partial; sleep 30 & sleep 30");
    spec.command.output_paths = vec!["out".into()];
    spec.timeout = Some(Duration::from_millis(500));
    let started = std::time::Instant::now();
    let run = run_spec(&cas, &spec, &[]);
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
    assert_eq!(run.status.code(), Some(124), "{}", run.stderr);
    assert!(run.stderr.contains("timeout"), "{}", run.stderr);
    let result = run.result.expect("the ActionResult is written on a timeout");
    assert_eq!(result.exit_code, 128 + 9);
    assert_eq!(cas.read(result.output_files[0].digest.as_ref().unwrap()), b"started\n");
    assert_eq!(text(&cas, &result.stdout_digest), "partial\n");
    let metadata = result.execution_metadata.unwrap();
    let status = metadata
        .auxiliary_metadata
        .iter()
        .find(|a| a.type_url == rebox::action::metadata::STATUS_TYPE_URL)
        .expect("a status");
    let status = rpc::Status::decode(status.value.as_slice()).unwrap();
    assert_eq!(status.code, tonic::Code::DeadlineExceeded as i32);
    assert!(cas.stages_left().is_empty() && cas.mounts_left().is_empty());
}

#[test]
fn metadata_has_ordered_phase_timestamps_and_optional_statistics() {
    let cas = Cas::new(Kind::Embedded);
    let run = run_spec(&cas, &Spec::new(&["true"]), &["--collect-execution-stats"]);
    let metadata = run.ok().execution_metadata.clone().unwrap();
    let times = [
        metadata.worker_start_timestamp,
        metadata.input_fetch_start_timestamp,
        metadata.input_fetch_completed_timestamp,
        metadata.execution_start_timestamp,
        metadata.execution_completed_timestamp,
        metadata.output_upload_start_timestamp,
        metadata.output_upload_completed_timestamp,
        metadata.worker_completed_timestamp,
    ]
    .map(|t| std::time::SystemTime::try_from(t.expect("every phase is stamped")).unwrap());
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    let stats = metadata
        .auxiliary_metadata
        .iter()
        .find(|a| a.type_url == rebox::action::metadata::STATISTICS_TYPE_URL)
        .expect("statistics");
    let stats = rebox::action::metadata::ExecutionStatistics::decode(stats.value.as_slice()).unwrap();
    assert!(stats.max_rss_kib > 0, "{stats:?}");

    let without = run_spec(&cas, &Spec::new(&["true"]), &[]);
    assert!(without.ok().execution_metadata.as_ref().unwrap().auxiliary_metadata.is_empty());
}

/// The network interfaces the sandbox sees (its /proc is its own network namespace's).
const INTERFACES: &str = "tail -n +3 /proc/net/dev | while IFS=: read name rest; do echo $name; done";

#[test]
fn platform_properties_set_ids_network_hostname_and_personality() {
    let cas = Cas::new(Kind::Embedded);
    let mut spec = Spec::sh(&format!(
        "id -u; id -g; hostname; uname -m; echo w > written && echo writable; {INTERFACES}"
    ));
    spec.platform("unixUID", "1234").platform("unixGID", "4321").platform("ISA", "x86-32");
    spec.command.working_directory = "work".into();
    let result = run_spec(&cas, &spec, &[]).ok().clone();
    let out = text(&cas, &result.stdout_digest);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, ["1234", "4321", "buildbox", "i686", "writable", "lo"], "{out}");

    let mut spec = Spec::sh(INTERFACES);
    spec.platform("network", "on");
    let result = run_spec(&cas, &spec, &[]).ok().clone();
    let interfaces = text(&cas, &result.stdout_digest);
    assert!(interfaces.lines().any(|l| l != "lo"), "network=on shares the host's: {interfaces}");
}

/// Connects to 127.0.0.1:PORT from inside and says whether the host's listener answered.
fn reach_host_listener(cas: &Cas, network: bool) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        use std::io::Write;
        listener.set_nonblocking(false).unwrap();
        if let Ok((mut stream, _)) = listener.accept() {
            let _ = stream.write_all(b"host listener\n");
        }
    });
    let mut spec = Spec::sh(&format!("nc -w 2 127.0.0.1 {port} </dev/null || echo unreachable"));
    if network {
        spec.platform("network", "on");
    }
    let out = text(cas, &run_spec(cas, &spec, &[]).ok().stdout_digest);
    // Unblock the accept if nothing came.
    let _ = std::net::TcpStream::connect(("127.0.0.1", port));
    server.join().unwrap();
    out
}

#[test]
fn a_host_listener_on_loopback_is_unreachable_without_network_and_reachable_with_it() {
    let cas = Cas::new(Kind::Embedded);
    assert_eq!(reach_host_listener(&cas, false), "unreachable\n", "the sandbox's lo is its own");
    assert_eq!(reach_host_listener(&cas, true), "host listener\n", "network=on shares the host's");
}

#[test]
fn host_files_are_invisible_inside() {
    let cas = Cas::new(Kind::Embedded);
    let host = tempfile::tempdir().unwrap();
    let marker = host.path().join("host-only-marker");
    fs::write(&marker, b"secret").unwrap();
    let script = format!(
        "test -e {} && echo marker-visible; test -e /etc/passwd && echo passwd-visible; \
         test -e /root && echo root-visible; test -e /sys/kernel && echo sys-visible; ls /",
        marker.display()
    );
    let out = text(&cas, &run_spec(&cas, &Spec::sh(&script), &[]).ok().stdout_digest);
    let mut entries: Vec<&str> = out.lines().collect();
    entries.sort_unstable();
    // The input root (busybox: bin) plus what the sandbox mounts; nothing of the host.
    assert_eq!(entries, ["bin", "dev", "proc", "tmp"], "{out}");
}

#[test]
fn bind_mounts_are_visible_inside_read_only_or_not() {
    let cas = Cas::new(Kind::Embedded);
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("file"), b"host data").unwrap();
    let spec = Spec::sh("cat /ro/file; echo w > /rw/new; echo w > /ro/new 2>/dev/null || echo refused");
    let flags = [
        format!("--ro-bind-mount={}:/ro", host.path().display()),
        format!("--bind-mount={}:/rw", host.path().display()),
    ];
    let result = run_spec(&cas, &spec, &[&flags[0], &flags[1]]).ok().clone();
    assert_eq!(text(&cas, &result.stdout_digest), "host datarefused\n");
    assert_eq!(fs::read_to_string(host.path().join("new")).unwrap(), "w\n");
}

#[test]
fn a_conditional_ro_bind_mount_needs_the_inject_property() {
    let cas = Cas::new(Kind::Embedded);
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("file"), b"injected").unwrap();
    let flag = format!("--ro-bind-mount=tools:{}:/tools", host.path().display());
    let spec = Spec::sh("cat /tools/file 2>/dev/null || echo absent");
    assert_eq!(text(&cas, &run_spec(&cas, &spec, &[&flag]).ok().stdout_digest), "absent\n");
    let mut with = spec.clone();
    with.platform("inject", "tools");
    assert_eq!(text(&cas, &run_spec(&cas, &with, &[&flag]).ok().stdout_digest), "injected");
}

#[test]
fn an_output_that_is_a_directory_under_a_symlinked_parent_stays_inside_the_root() {
    let cas = Cas::new(Kind::Embedded);
    let root = tempfile::tempdir().unwrap();
    busybox_root(root.path());
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), root.path().join("escape")).unwrap();
    let mut spec = Spec::sh("true");
    spec.command.output_paths = vec!["escape/x/out".into()];
    let action = store_action(&cas, root.path(), &spec);
    let run = run_action(&cas, &action, &[]);
    assert_eq!(run.status.code(), Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("/escape cannot be made a directory"), "{}", run.stderr);
    assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 0, "nothing made on the host");
}

#[test]
fn every_run_leaves_no_stage_and_no_mount() {
    let cas = Cas::new(Kind::Embedded);
    for _ in 0..3 {
        run_spec(&cas, &Spec::sh("echo x > /tmp/y; sleep 0.1 &"), &[]).ok();
    }
    assert!(cas.stages_left().is_empty(), "{:?}", cas.stages_left());
    assert!(cas.mounts_left().is_empty(), "{:?}", cas.mounts_left());
}

#[test]
fn workspace_path_is_where_the_stage_lives_and_it_is_removed() {
    let cas = Cas::new(Kind::Embedded);
    let workspace = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    busybox_root(root.path());
    let action = store_action(&cas, root.path(), &Spec::sh("sleep 1"));
    let flag = format!("--workspace-path={}", workspace.path().display());
    let mut child = run_support::runner(&cas, &action, &[&flag]).spawn().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while fs::read_dir(workspace.path()).unwrap().count() == 0 {
        assert!(std::time::Instant::now() < deadline, "nothing staged under the workspace");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(child.wait().unwrap().success());
    assert_eq!(fs::read_dir(workspace.path()).unwrap().count(), 0, "the stage is removed");
    assert!(cas.mounts_left().is_empty());
}

#[test]
fn a_big_input_root_is_remembered_and_the_next_run_reads_only_the_directories_it_enters() {
    let fuse = fs::File::options().read(true).write(true).open("/dev/fuse").is_ok();
    if !fuse || !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: FUSE staging needs root and /dev/fuse");
        return;
    }
    let cas = Cas::new(Kind::Embedded);
    let root = tempfile::tempdir().unwrap();
    busybox_root(root.path());
    for d in 0..40 {
        let dir = root.path().join(format!("data/d{d:02}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..60 {
            fs::write(dir.join(format!("f{f:02}")), format!("{d}/{f}")).unwrap();
        }
    }
    let first = store_action(&cas, root.path(), &Spec::sh("cat data/d07/f03"));
    let second = store_action(&cas, root.path(), &Spec::sh("cat data/d07/f03; echo; stat -c %h data"));
    let third = store_action(&cas, root.path(), &Spec::sh("ls data/d39"));
    assert_eq!(text(&cas, &run_action(&cas, &first, &[]).ok().stdout_digest), "7/3");
    let records = fs::read_dir(cas.root.join("cas/staging-trees")).unwrap().count();
    assert_eq!(records, 1, "the input root is remembered as valid");

    // A directory the next actions do not enter goes from the store.
    let action = reapi::Action::decode(fs::read(&first).unwrap().as_slice()).unwrap();
    let find = |directory: &reapi::Directory, name: &str| {
        directory.directories.iter().find(|d| d.name == name).and_then(|d| d.digest.clone()).unwrap()
    };
    let data = find(&cas.directory(action.input_root_digest.as_ref().unwrap()), "data");
    let d39 = find(&cas.directory(&data), "d39");
    fs::remove_file(cas.root.join("cas/objects").join(&d39.hash[..2]).join(&d39.hash[2..])).unwrap();

    assert_eq!(text(&cas, &run_action(&cas, &second, &[]).ok().stdout_digest), "7/3\n42\n");
    let run = run_action(&cas, &third, &[]);
    assert_ne!(run.status.code(), Some(0), "{}", run.stderr);
    assert!(
        run.stderr.contains("\"data/d39\"") && run.stderr.contains("missing from the CAS"),
        "{}",
        run.stderr
    );
    assert!(cas.mounts_left().is_empty(), "{:?}", cas.mounts_left());
}
