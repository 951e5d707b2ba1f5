//! Expiry at scale, with its timings printed (not asserted: `scripts/bench expiry` measures
//! expiry against buildbox-casd). Ignored by default (they take minutes in a debug build); run
//! them in release:
//!
//! ```text
//! cargo test --release --test expiry_scale -- --ignored --nocapture
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rebox::digest::DigestFunction;
use rebox::expiry::{ByteSize, Expiry, QuotaConfig};
use rebox::store::Store;

fn blob(tag: u8, n: u64, len: usize) -> Vec<u8> {
    let mut data = vec![tag; len];
    data[..8].copy_from_slice(&n.to_le_bytes());
    data
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p) as usize]
}

/// A store left between the cleanup threshold and the high mark: the cleaner removes ~9k objects
/// while a writer stores a 4 KiB blob every millisecond (a busy build's pace). No write has to
/// wait for the cleaner.
#[test]
#[ignore = "timing at scale; run in release with --ignored"]
fn writes_stay_fast_while_expiry_runs() {
    const OBJECTS: u64 = 30_000;
    const OBJECT: usize = 1000;
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), DigestFunction::Sha256).unwrap();
        let fill = Instant::now();
        for n in 0..OBJECTS {
            store.put_bytes(&blob(0, n, OBJECT)).unwrap();
        }
        println!("filled {OBJECTS} objects in {:?}", fill.elapsed());
    }
    let open = Instant::now();
    let store = Store::open(dir.path(), DigestFunction::Sha256).unwrap();
    println!("opened (usage scan) in {:?}", open.elapsed());
    // The same writes without expiry, for comparison (then removed again).
    let mut baseline = Vec::new();
    for n in 0..300 {
        let start = Instant::now();
        let digest = store.put_bytes(&blob(2, n, 4096)).unwrap();
        baseline.push(start.elapsed());
        store.remove(&digest).unwrap();
    }
    baseline.sort();
    println!(
        "without expiry: p50 {:?}, p99 {:?}, max {:?}",
        percentile(&baseline, 0.5),
        percentile(&baseline, 0.99),
        baseline.last().unwrap()
    );
    let config = QuotaConfig {
        reserved: ByteSize(0),
        ..QuotaConfig::new(ByteSize(OBJECTS * OBJECT as u64 * 16 / 15))
    };
    let started = Instant::now();
    let expiry = Expiry::start(&store, config).unwrap();

    let store = Arc::new(store);
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, done) = (Arc::clone(&store), Arc::clone(&done));
        thread::spawn(move || {
            let mut latencies = Vec::new();
            let mut n = 0;
            while !done.load(Ordering::Relaxed) {
                n += 1;
                let data = blob(1, n, 4096);
                let start = Instant::now();
                store.put_bytes(&data).unwrap();
                latencies.push(start.elapsed());
                thread::sleep(Duration::from_millis(1));
            }
            latencies
        })
    };
    assert!(expiry.wait_idle(Duration::from_secs(300)));
    let expired = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let mut latencies = writer.join().unwrap();
    latencies.sort();
    let (p50, p99, max) =
        (percentile(&latencies, 0.5), percentile(&latencies, 0.99), *latencies.last().unwrap());
    println!(
        "index + expiry to the low mark: {expired:?} ({} passes); {} writes meanwhile: p50 {p50:?}, p99 {p99:?}, max {max:?}",
        expiry.status().passes,
        latencies.len(),
    );
    assert!(store.usage() <= expiry.limits().threshold);
}
