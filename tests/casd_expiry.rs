//! Expiry through the real daemon: a cache left over quota by earlier runs is brought down to the
//! low mark, oldest objects (by mtime) first, and `--reserved` lowers the reported quota.

#[path = "casd_support/daemon.rs"]
mod support;

use std::fs::File;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::Signal;
use rebox::digest::Digest;
use rebox::proto::build::buildgrid::GetLocalDiskUsageRequest;
use rebox::store::Layout;
use support::{Daemon, block_on, rebox};

const BLOB: usize = 10_000;

/// Stores `count` distinct 10 kB blobs with `rebox cas put`; returns their digests in order.
fn put_blobs(cache: &std::path::Path, count: usize) -> Vec<Digest> {
    let inputs = tempfile::tempdir().unwrap();
    let paths: Vec<_> = (0..count)
        .map(|n| {
            let path = inputs.path().join(n.to_string());
            let mut data = format!("blob {n:06} ").into_bytes();
            data.resize(BLOB, b'#');
            std::fs::write(&path, data).unwrap();
            path
        })
        .collect();
    let output =
        Command::new(rebox()).args(["cas", "--cas-dir"]).arg(cache).arg("put").args(&paths).output().unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).unwrap().lines().map(|line| line.parse().unwrap()).collect()
}

/// Polls GetLocalDiskUsage until `done(size, quota)`; returns the last answer.
fn poll_usage(daemon: &Daemon, done: impl Fn(i64, i64) -> bool) -> (i64, i64) {
    block_on(async {
        let mut local_cas = daemon.local_cas().await;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let usage =
                local_cas.get_local_disk_usage(GetLocalDiskUsageRequest {}).await.unwrap().into_inner();
            if done(usage.size_bytes, usage.quota_bytes) || Instant::now() > deadline {
                return (usage.size_bytes, usage.quota_bytes);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

#[test]
fn a_cache_over_quota_is_expired_to_the_low_mark_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let blobs = put_blobs(&cache, 150);
    // The first stored is the oldest.
    let layout = Layout::new(&cache);
    let base = SystemTime::now() - Duration::from_secs(3600);
    for (n, digest) in blobs.iter().enumerate() {
        let object = File::open(layout.object_path(digest)).unwrap();
        object.set_modified(base + Duration::from_secs(n as u64)).unwrap();
    }
    let socket = cache.join("casd.sock");
    let args = ["casd", "--quota-high=1M", "--reserved=0", "--log-level=info"].map(String::from);
    let args: Vec<String> = args.into_iter().chain([cache.display().to_string()]).collect();
    let mut daemon = Daemon::start(rebox(), &args, &cache, &socket);

    // Polled until the pass is over (a poll in mid-pass sees usage between the marks).
    let (size, quota) = poll_usage(&daemon, |size, _| size <= 650_000);
    assert_eq!(quota, 1_000_000);
    assert_eq!(size, 650_000, "down to the low mark (65%):\n{}", daemon.log());
    let kept: Vec<bool> = blobs.iter().map(|digest| layout.object_path(digest).exists()).collect();
    assert!(kept[..85].iter().all(|kept| !kept), "the 85 oldest are gone");
    assert!(kept[85..].iter().all(|kept| *kept), "the 65 newest are kept");
    assert_eq!(daemon.stop_with(Signal::SIGTERM).code(), Some(0));
    assert!(daemon.log().contains("expiry: removed 85 objects"), "{}", daemon.log());
}

#[test]
fn reserved_disk_space_lowers_the_reported_quota() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let available = {
        let stat = nix::sys::statvfs::statvfs(dir.path()).unwrap();
        stat.blocks_available() * stat.fragment_size()
    };
    // Keep all but 10 MB of the free space: the 1 TB quota drops to about 10 MB.
    let reserved = available.saturating_sub(10_000_000);
    let socket = cache.join("casd.sock");
    let args = ["casd".to_owned(), "--quota-high=1T".to_owned(), format!("--reserved={reserved}")];
    let args: Vec<String> = args.into_iter().chain([cache.display().to_string()]).collect();
    let mut daemon = Daemon::start(rebox(), &args, &cache, &socket);
    let (_, quota) = poll_usage(&daemon, |_, _| true);
    assert!(quota < 1_000_000_000, "quota {quota} ignores --reserved={reserved}");
    assert_eq!(daemon.stop_with(Signal::SIGTERM).code(), Some(0));
}
