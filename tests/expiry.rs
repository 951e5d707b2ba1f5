//! Expiry on a real store on disk: the cleaner keeps the usage between the low and the high
//! mark while writes go on, in LRU order, sparing protected session blobs, gives way to writes in
//! progress while there is room, and refuses a write (RESOURCE_EXHAUSTED) only when nothing more
//! can be expired.

use std::fs::{self, File};
use std::io::{PipeWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime};

use rebox::digest::{Digest, DigestFunction};
use rebox::expiry::{ByteSize, Expiry, QuotaConfig};
use rebox::store::{Store, StoreError};

const BLOB: usize = 10_000;
const HIGH: u64 = 1_000_000;
const SETTLE: Duration = Duration::from_secs(20);

/// A distinct blob of [`BLOB`] bytes for each `n` (and `tag`).
fn blob(tag: &str, n: usize) -> Vec<u8> {
    let mut data = format!("{tag}-{n:08}-").into_bytes();
    data.resize(BLOB, b'.');
    data
}

/// A 1 MB quota, defaults otherwise, but no disk reserve (the test disk's free space must not
/// matter).
fn quota(protect_session_blobs: bool) -> QuotaConfig {
    QuotaConfig { reserved: ByteSize(0), protect_session_blobs, ..QuotaConfig::new(ByteSize(HIGH)) }
}

/// Total size of the object files, as found on disk.
fn bytes_on_disk(root: &Path) -> u64 {
    let mut total = 0;
    for fan_out in fs::read_dir(root.join("cas/objects")).unwrap() {
        for object in fs::read_dir(fan_out.unwrap().path()).unwrap() {
            total += object.unwrap().metadata().unwrap().len();
        }
    }
    total
}

fn open(root: &Path) -> Store {
    Store::open(root, DigestFunction::Sha256).unwrap()
}

#[test]
fn filling_past_the_high_mark_keeps_usage_between_low_and_high() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let expiry = Expiry::start(&store, quota(false)).unwrap();
    assert!(expiry.wait_idle(SETTLE));
    let limits = expiry.limits();
    assert_eq!((limits.high, limits.threshold, limits.low), (HIGH, 877_500, 650_000));

    // Cleanup starts at the threshold, below the high mark: 90 blobs are 900 kB.
    let mut written: Vec<Digest> = (0..90).map(|n| store.put_bytes(&blob("a", n)).unwrap()).collect();
    assert!(expiry.wait_idle(SETTLE));
    let usage = store.usage();
    assert!(usage <= limits.threshold, "cleanup started at the threshold: usage {usage}");
    assert!(!store.contains(&written[0]), "the oldest blob was expired");

    // Three times the quota more: every write succeeds, the usage never passes the high mark.
    for n in 90..390 {
        written.push(store.put_bytes(&blob("a", n)).unwrap());
        assert!(store.usage() <= HIGH, "usage {} after blob {n}", store.usage());
    }
    assert!(expiry.wait_idle(SETTLE));
    let usage = store.usage();
    assert!(usage > limits.low - BLOB as u64 && usage <= HIGH, "usage {usage}");
    assert_eq!(bytes_on_disk(dir.path()), usage, "the usage counter matches the disk");

    // Oldest first: what is left is exactly the newest blobs.
    let kept = written.iter().filter(|digest| store.contains(digest)).count();
    assert_eq!(kept as u64 * BLOB as u64, usage);
    assert!(written[written.len() - kept..].iter().all(|digest| store.contains(digest)));
    assert!(!store.contains(&written[0]));
}

#[test]
fn the_least_recently_used_blobs_go_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let expiry = Expiry::start(&store, quota(false)).unwrap();
    let first: Vec<Digest> = (0..50).map(|n| store.put_bytes(&blob("a", n)).unwrap()).collect();
    // Read the two oldest, look up the third: all three become the most recently used.
    store.read(&first[0]).unwrap();
    store.read(&first[1]).unwrap();
    assert!(store.find_missing(&first[2..3]).is_empty());
    for n in 50..100 {
        store.put_bytes(&blob("a", n)).unwrap();
    }
    assert!(expiry.wait_idle(SETTLE));
    assert!(store.usage() <= 877_500);
    assert!(first[..3].iter().all(|digest| store.contains(digest)), "used blobs were kept");
    assert!(!store.contains(&first[3]), "the oldest unused blob went first");
}

#[test]
fn protected_session_blobs_survive_and_a_full_store_refuses_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    // An earlier session left 40 blobs (400 kB).
    let old: Vec<Digest> = {
        let store = open(dir.path());
        (0..40).map(|n| store.put_bytes(&blob("old", n)).unwrap()).collect()
    };
    let store = open(dir.path());
    let expiry = Expiry::start(&store, quota(true)).unwrap();
    assert!(expiry.wait_idle(SETTLE));
    assert_eq!(expiry.status().indexed, 40);
    // Using an old blob protects it too.
    store.read(&old[7]).unwrap();

    let mut session = Vec::new();
    let refusal = loop {
        match store.put_bytes(&blob("new", session.len())) {
            Ok(digest) => session.push(digest),
            Err(error) => break error,
        }
        assert!(session.len() < 200, "the store never filled up");
    };
    let StoreError::QuotaExceeded(exceeded) = &refusal else { panic!("unexpected error: {refusal}") };
    assert_eq!((exceeded.size, exceeded.quota), (BLOB as u64, HIGH));
    let message = refusal.to_string();
    assert!(message.contains("--protect-session-blobs"), "{message}");
    assert_eq!(tonic::Status::from(exceeded.clone()).code(), tonic::Code::ResourceExhausted);

    // 99 blobs fit beside the protected old one; every unprotected old blob made room for them.
    assert_eq!(session.len(), 99);
    assert!(session.iter().all(|digest| store.contains(digest)), "a session blob was expired");
    assert!(store.contains(&old[7]), "a blob used in this session was expired");
    assert_eq!(old.iter().filter(|digest| store.contains(digest)).count(), 1);
    assert!(store.usage() <= HIGH);
    assert_eq!(bytes_on_disk(dir.path()), store.usage());
}

#[test]
fn a_store_over_quota_at_start_is_cleaned_down_oldest_mtime_first() {
    let dir = tempfile::tempdir().unwrap();
    let old: Vec<Digest> = {
        let store = open(dir.path());
        (0..150).map(|n| store.put_bytes(&blob("old", n)).unwrap()).collect()
    };
    // Give the objects mtimes in reverse order of writing: the first written is the newest.
    let base = SystemTime::now() - Duration::from_secs(86_400);
    let layout = rebox::store::Layout::new(dir.path());
    for (n, digest) in old.iter().enumerate() {
        let file = File::open(layout.object_path(digest)).unwrap();
        file.set_modified(base + Duration::from_secs(1000 - n as u64)).unwrap();
    }
    let store = open(dir.path());
    assert_eq!(store.usage(), 1_500_000);
    let expiry = Expiry::start(&store, quota(false)).unwrap();
    assert!(expiry.wait_idle(SETTLE));
    assert_eq!(store.usage(), 650_000, "down to the low mark exactly (blobs are 10 kB)");
    assert!(old[..65].iter().all(|digest| store.contains(digest)), "the newest by mtime are kept");
    assert!(old[65..].iter().all(|digest| !store.contains(digest)), "the oldest by mtime are gone");
}

#[test]
fn concurrent_writers_past_the_quota_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let expiry = Expiry::start(&store, quota(false)).unwrap();
    let store = Arc::new(store);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let store = Arc::clone(&store);
            thread::spawn(move || {
                for n in 0..100 {
                    store.put_bytes(&blob(&format!("w{w}"), n)).unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    assert!(expiry.wait_idle(SETTLE));
    assert!(store.usage() <= HIGH, "usage {}", store.usage());
    assert_eq!(bytes_on_disk(dir.path()), store.usage());
}

#[test]
fn reserved_disk_space_lowers_the_quota_and_is_named_when_a_write_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // Reserve more than the whole disk: nothing may be stored at all.
    let config = QuotaConfig { reserved: ByteSize(u64::MAX / 2), ..QuotaConfig::new(ByteSize(HIGH)) };
    let expiry = Expiry::start(&store, config).unwrap();
    assert_eq!(expiry.limits().high, 0);
    let error = store.put_bytes(b"anything").unwrap_err();
    assert!(matches!(error, StoreError::QuotaExceeded(_)), "{error}");
    assert!(error.to_string().contains("--reserved"), "{error}");
    assert_eq!(store.usage(), 0);
    // The empty blob takes no room: always there.
    assert!(store.find_missing(&[DigestFunction::Sha256.hash_bytes(b"")]).is_empty());
    store.put_bytes(b"").unwrap();
}

#[test]
fn a_second_policy_on_one_store_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let _expiry = Expiry::start(&store, quota(false)).unwrap();
    assert!(Expiry::start(&store, quota(false)).is_err());
}

/// A write that stays in progress until [`SlowWrite::finish`]: a stream whose bytes have not all
/// arrived yet, as an upload's.
struct SlowWrite {
    input: PipeWriter,
    writer: JoinHandle<Digest>,
}

impl SlowWrite {
    fn start(store: &Arc<Store>) -> Self {
        let (output, input) = std::io::pipe().unwrap();
        let before = store.writes_in_progress();
        let writer = {
            let store = Arc::clone(store);
            thread::spawn(move || store.put_reader(output, None).unwrap())
        };
        let deadline = Instant::now() + SETTLE;
        while store.writes_in_progress() == before {
            assert!(Instant::now() < deadline, "the upload does not count as a write in progress");
            thread::sleep(Duration::from_millis(1));
        }
        Self { input, writer }
    }

    fn finish(mut self) -> Digest {
        self.input.write_all(b"the rest of the stream").unwrap();
        drop(self.input);
        self.writer.join().unwrap()
    }
}

/// A store under a fresh expiry policy, its initial pass done, an upload in progress, and then
/// `blobs` blobs written beside it.
fn store_with_an_upload_in_progress(blobs: usize) -> (tempfile::TempDir, Arc<Store>, Expiry, SlowWrite) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    let expiry = Expiry::start(&store, quota(false)).unwrap();
    assert!(expiry.wait_idle(SETTLE));
    let upload = SlowWrite::start(&store);
    for n in 0..blobs {
        store.put_bytes(&blob("a", n)).unwrap();
    }
    (dir, store, expiry, upload)
}

#[test]
fn cleanup_gives_way_to_writes_in_progress_while_there_is_room() {
    // 900 kB: past the threshold, short of the urgent mark. A pass starts and waits.
    let (dir, store, expiry, upload) = store_with_an_upload_in_progress(90);
    let limits = expiry.limits();
    assert!(limits.threshold < store.usage() && store.usage() < limits.urgent());
    thread::sleep(Duration::from_millis(300));
    assert!(expiry.status().busy, "a pass is under way");
    assert_eq!(store.removals(), 0, "the pass gave way to the write in progress");

    // Once the write is done, the pass goes on.
    upload.finish();
    assert!(expiry.wait_idle(SETTLE));
    assert!(store.removals() > 0);
    assert!(store.usage() <= limits.threshold, "usage {}", store.usage());
    assert_eq!(bytes_on_disk(dir.path()), store.usage());
}

#[test]
fn past_the_urgent_mark_cleanup_does_not_wait_for_writes_in_progress() {
    // 950 kB: past the urgent mark (938,750 bytes).
    let (_dir, store, expiry, upload) = store_with_an_upload_in_progress(95);
    let deadline = Instant::now() + SETTLE;
    while store.usage() >= expiry.limits().urgent() {
        assert!(Instant::now() < deadline, "cleanup waited for the write in progress");
        thread::sleep(Duration::from_millis(10));
    }
    assert!(store.removals() > 0);
    assert_eq!(store.writes_in_progress(), 1, "the upload is still in progress");
    upload.finish();
    assert!(expiry.wait_idle(SETTLE));
}

#[test]
fn a_write_waiting_for_room_is_not_kept_waiting_by_a_pass_that_gives_way() {
    let (_dir, store, expiry, upload) = store_with_an_upload_in_progress(90);
    thread::sleep(Duration::from_millis(100));
    assert_eq!(store.removals(), 0, "the pass gives way");

    // 150 kB more does not fit under the 1 MB high mark: this write waits for room, and is
    // itself a write in progress. The pass must make room rather than give way to it (a write
    // gives up after waiting 60 s).
    let started = Instant::now();
    let mut large = blob("large", 0);
    large.resize(150_000, b'L');
    let digest = store.put_bytes(&large).unwrap();
    assert!(started.elapsed() < SETTLE, "the write waited {:?} for room", started.elapsed());
    assert!(store.contains(&digest));
    assert!(store.usage() <= HIGH);
    upload.finish();
    assert!(expiry.wait_idle(SETTLE));
}
