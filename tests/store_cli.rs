//! The store through the real `rebox cas` binary: crash safety, several processes, errors.

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rebox::digest::{Digest, DigestFunction};
use rebox::store::Store;

const MIB: usize = 1 << 20;

fn rebox(root: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rebox"));
    command.arg("cas").arg("--cas-dir").arg(root).env_remove("REBOX_CAS_DIR");
    command
}

fn spawn_put_stdin(root: &Path) -> Child {
    rebox(root)
        .args(["put", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn rebox")
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            found.extend(files_under(&entry.path()));
        } else {
            found.push(entry.path());
        }
    }
    found
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i / 4096 + i) as u8).collect()
}

fn stdout_text(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

/// Asserts the command failed with status 1 and exactly one stderr line containing `needle`.
fn assert_one_line_error(output: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    assert!(stderr.starts_with("rebox cas: "), "{stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
    assert!(output.stdout.is_empty(), "stdout: {:?}", String::from_utf8_lossy(&output.stdout));
}

/// Waits until process `pid` has a temporary file under `tmp` open that holds at least `bytes`;
/// returns the private directory it was created under. The file is anonymous (`O_TMPFILE`), so it
/// is found through the writer's open descriptors, not by name.
fn wait_for_partial_write(pid: u32, tmp: &Path, bytes: u64) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(60);
    let fds = PathBuf::from(format!("/proc/{pid}/fd"));
    loop {
        for fd in fs::read_dir(&fds).into_iter().flatten().flatten() {
            let Ok(target) = fs::read_link(fd.path()) else { continue };
            if target.starts_with(tmp)
                && fs::metadata(fd.path()).is_ok_and(|m| m.is_file() && m.len() >= bytes)
            {
                // The writer's private directory: the file is in one of its generations.
                return tmp.join(target.strip_prefix(tmp).unwrap().components().next().unwrap());
            }
        }
        assert!(Instant::now() < deadline, "the writer never got {bytes} bytes into {}", tmp.display());
        thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn kill_9_during_a_large_write_leaves_no_object_and_no_temporary_file() {
    let root = tempfile::tempdir().unwrap();
    let mut child = spawn_put_stdin(root.path());
    let mut stdin = child.stdin.take().unwrap();
    let content = data(64 * MIB);
    // Feed half of it slowly, then kill the writer while it waits for more.
    for chunk in content[..32 * MIB].chunks(MIB) {
        stdin.write_all(chunk).unwrap();
        thread::sleep(Duration::from_millis(5));
    }
    let tmp = root.path().join("cas/tmp");
    let dead_dir = wait_for_partial_write(child.id(), &tmp, 16 * MIB as u64);
    assert!(files_under(&tmp).is_empty(), "the partial write has a name: {:?}", files_under(&tmp));
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
    drop(stdin);

    assert!(dead_dir.exists(), "the dead writer's private directory is there until clean-up");
    assert!(files_under(&root.path().join("cas/objects")).is_empty(), "a partial object is visible");
    let digest = DigestFunction::Sha256.hash_bytes(&content);

    let store = Store::open(root.path(), DigestFunction::Sha256).unwrap();
    assert!(!store.contains(&digest));
    assert_eq!(store.usage(), 0);
    assert!(files_under(&tmp).is_empty(), "stray temporary files: {:?}", files_under(&tmp));
    assert!(!dead_dir.exists(), "the dead writer's directory {} is left", dead_dir.display());

    // The same content written to the end is stored whole.
    assert_eq!(store.put_bytes(&content).unwrap(), digest);
    assert_eq!(store.read_verified(&digest).unwrap().len(), 64 * MIB);
}

#[test]
fn a_live_writer_s_private_directory_survives_another_process_opening_the_store() {
    let root = tempfile::tempdir().unwrap();
    let mut child = spawn_put_stdin(root.path());
    let mut stdin = child.stdin.take().unwrap();
    let content = data(4 * MIB);
    stdin.write_all(&content[..MIB]).unwrap();
    let private_dir = wait_for_partial_write(child.id(), &root.path().join("cas/tmp"), MIB as u64);

    // Another process opens the same root (its start-up clean-up runs) while the writer lives.
    let other = rebox(root.path()).args(["put", "-"]).stdin(Stdio::null()).output().unwrap();
    assert!(other.status.success(), "{}", String::from_utf8_lossy(&other.stderr));
    assert!(private_dir.exists(), "a live writer's private directory was removed");

    stdin.write_all(&content[MIB..]).unwrap();
    drop(stdin);
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let digest = DigestFunction::Sha256.hash_bytes(&content);
    assert_eq!(stdout_text(&output), format!("{digest}\n"));
}

#[test]
fn two_processes_writing_one_blob_both_succeed_with_one_object() {
    let root = tempfile::tempdir().unwrap();
    let content = data(8 * MIB);
    let mut writers = [spawn_put_stdin(root.path()), spawn_put_stdin(root.path())];
    let mut inputs: Vec<_> = writers.iter_mut().map(|w| w.stdin.take().unwrap()).collect();
    // Both are mid-write at once, then both finish.
    for input in &mut inputs {
        input.write_all(&content[..4 * MIB]).unwrap();
    }
    for input in &mut inputs {
        input.write_all(&content[4 * MIB..]).unwrap();
    }
    drop(inputs);
    let digest = DigestFunction::Sha256.hash_bytes(&content);
    for writer in writers {
        let output = writer.wait_with_output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        assert_eq!(stdout_text(&output), format!("{digest}\n"));
    }
    let store = Store::open(root.path(), DigestFunction::Sha256).unwrap();
    assert_eq!(files_under(&root.path().join("cas/objects")), [store.object_path(&digest)]);
    assert_eq!(store.usage(), 8 * MIB as u64);
    assert!(files_under(&root.path().join("cas/tmp")).is_empty());
}

#[test]
fn put_prints_what_sha256sum_computes_and_cat_gives_it_back() {
    let root = tempfile::tempdir().unwrap();
    let input = root.path().join("input");
    let content = data(300_000);
    fs::write(&input, &content).unwrap();

    let output = rebox(root.path())
        .arg("put")
        .arg(&input)
        .arg("-")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let output = {
        let mut child = output;
        child.stdin.take().unwrap().write_all(b"from stdin").unwrap();
        child.wait_with_output().unwrap()
    };
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let sha256sum = Command::new("sha256sum").arg(&input).output().unwrap();
    let hex = String::from_utf8(sha256sum.stdout).unwrap()[..64].to_owned();
    let stdin_digest = DigestFunction::Sha256.hash_bytes(b"from stdin");
    assert_eq!(stdout_text(&output), format!("{hex}/300000\n{stdin_digest}\n"));

    let object = root.path().join("cas/objects").join(&hex[..2]).join(&hex[2..]);
    assert_eq!(fs::metadata(&object).unwrap().permissions().mode() & 0o7777, 0o444);
    let cat = rebox(root.path()).args(["cat", &format!("{hex}/300000")]).output().unwrap();
    assert!(cat.status.success());
    assert_eq!(cat.stdout, content);
}

#[test]
fn other_digest_functions_are_selected_by_name() {
    let root = tempfile::tempdir().unwrap();
    let output = rebox(root.path())
        .args(["--digest-function", "BLAKE3", "put", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut child = output;
    child.stdin.take().unwrap().write_all(b"abc").unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let expected = "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85/3\n";
    assert_eq!(stdout_text(&output), expected);
    let cat = rebox(root.path()).args(["cat", "--digest-function=blake3", expected.trim()]).output().unwrap();
    assert_eq!(cat.stdout, b"abc");
}

#[test]
fn verify_reports_tampered_objects() {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path(), DigestFunction::Sha256).unwrap();
    let digests: Vec<Digest> = (0..20).map(|i| store.put_bytes(&data(1000 + i)).unwrap()).collect();
    drop(store);
    let clean = rebox(root.path()).arg("verify").output().unwrap();
    assert!(clean.status.success(), "{}", String::from_utf8_lossy(&clean.stdout));
    assert_eq!(stdout_text(&clean), "20 objects verified, 0 corrupt\n");

    let victim =
        root.path().join("cas/objects").join(&digests[7].hash_hex()[..2]).join(&digests[7].hash_hex()[2..]);
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
    let mut altered = fs::read(&victim).unwrap();
    altered[500] ^= 0xff;
    fs::write(&victim, &altered).unwrap();

    let output = rebox(root.path()).arg("verify").output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    let actual = DigestFunction::Sha256.hash_bytes(&altered);
    assert_eq!(
        stdout_text(&output),
        format!(
            "stored object {} hashes to {actual}, not {}\n20 objects verified, 1 corrupt\n",
            victim.display(),
            digests[7]
        )
    );
}

#[test]
fn bad_digest_text_is_a_one_line_error() {
    let root = tempfile::tempdir().unwrap();
    for (text, needle) in [
        ("nonsense", "is not of the form HASH/SIZE"),
        ("abcd/12", "has a length no supported digest function produces"),
        (&format!("{}/-1", "a".repeat(64)), "is not a non-negative integer"),
        (&format!("{}/1", "a".repeat(40)), "SHA256 hashes have 64"),
    ] {
        let output = rebox(root.path()).args(["cat", text]).output().unwrap();
        assert_one_line_error(&output, needle);
    }
    let output = rebox(root.path()).args(["--digest-function", "SHA3", "verify"]).output().unwrap();
    assert_one_line_error(&output, "digest function \"SHA3\" is not supported");
}

#[test]
fn a_missing_blob_is_a_one_line_error() {
    let root = tempfile::tempdir().unwrap();
    let digest = DigestFunction::Sha256.hash_bytes(b"never stored");
    let output = rebox(root.path()).args(["cat", &digest.to_string()]).output().unwrap();
    assert_one_line_error(&output, &format!("blob {digest} is not in the store"));
}

#[test]
fn an_unreadable_input_is_a_one_line_error() {
    let root = tempfile::tempdir().unwrap();
    let absent = root.path().join("absent");
    let output = rebox(root.path()).arg("put").arg(&absent).output().unwrap();
    assert_one_line_error(&output, &format!("cannot open {}: No such file or directory", absent.display()));
    let output = rebox(root.path()).arg("put").arg(root.path()).output().unwrap();
    assert_one_line_error(&output, "Is a directory");
    assert!(files_under(&root.path().join("cas/objects")).is_empty());
}

#[test]
fn the_store_directory_defaults_to_the_xdg_cache() {
    let home = tempfile::tempdir().unwrap();
    let run = |xdg: Option<&Path>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_rebox"));
        command.args(["cas", "put", "-"]).env_remove("REBOX_CAS_DIR").env("HOME", home.path());
        match xdg {
            Some(xdg) => command.env("XDG_CACHE_HOME", xdg),
            None => command.env_remove("XDG_CACHE_HOME"),
        };
        let output = command.stdin(Stdio::null()).output().unwrap();
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    };
    run(None);
    assert!(home.path().join(".cache/rebox/cas/objects").is_dir());
    let xdg = home.path().join("xdg");
    run(Some(&xdg));
    assert!(xdg.join("rebox/cas/objects").is_dir());

    let env_dir = home.path().join("from-env");
    let output = Command::new(env!("CARGO_BIN_EXE_rebox"))
        .args(["cas", "verify"])
        .env("REBOX_CAS_DIR", &env_dir)
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(env_dir.join("cas/objects").is_dir());
}
