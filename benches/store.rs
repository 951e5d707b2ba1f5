//! Store throughput: writes and reads of 4 KiB and 1 MiB blobs, `find_missing` over 100k digests
//! (half present), and the start-up scan of a store holding 50k objects.
//!
//! Run with `cargo bench --bench store`. Blobs live in a temporary directory on the same
//! filesystem as `$TMPDIR`; reads are from the page cache.

use std::fs::File;
use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rebox::digest::{Digest, DigestFunction};
use rebox::store::Store;

const KIB: usize = 1024;
const MIB: usize = 1024 * KIB;
const SIZES: [(usize, &str); 2] = [(4 * KIB, "4KiB"), (MIB, "1MiB")];

/// Blob number `n` of `len` bytes: distinct for every `n`, so no write is deduplicated.
fn blob(len: usize, n: u64) -> Vec<u8> {
    let mut data: Vec<u8> = (0..len).map(|i| (i * 131 % 251) as u8).collect();
    data[..8].copy_from_slice(&n.to_le_bytes());
    data
}

fn write(c: &mut Criterion) {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path(), DigestFunction::Sha256).unwrap();
    let mut group = c.benchmark_group("store_write");
    let mut next = 0u64;
    for (len, name) in SIZES {
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::new("new_blob", name), |b| {
            // Timed: hashing, temp file, link. Not timed: removing the blobs again, which keeps
            // the disk use bounded however many iterations criterion picks.
            b.iter_custom(|iters| {
                let mut data = blob(len, 0);
                let mut written = Vec::with_capacity(iters as usize);
                let mut elapsed = Duration::ZERO;
                for _ in 0..iters {
                    next += 1;
                    data[..8].copy_from_slice(&next.to_le_bytes());
                    let start = Instant::now();
                    written.push(store.put_bytes(black_box(&data)).unwrap());
                    elapsed += start.elapsed();
                }
                for digest in &written {
                    store.remove(digest).unwrap();
                }
                elapsed
            })
        });
        let present = blob(len, u64::MAX);
        store.put_bytes(&present).unwrap();
        group.bench_function(BenchmarkId::new("already_present", name), |b| {
            b.iter(|| store.put_bytes(black_box(&present)).unwrap())
        });
    }
    group.finish();
}

fn read(c: &mut Criterion) {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path(), DigestFunction::Sha256).unwrap();
    let mut group = c.benchmark_group("store_read");
    for (len, name) in SIZES {
        let digest = store.put_bytes(&blob(len, 1)).unwrap();
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(BenchmarkId::new("read", name), |b| {
            b.iter(|| store.read(black_box(&digest)).unwrap())
        });
        group.bench_function(BenchmarkId::new("read_verified", name), |b| {
            b.iter(|| store.read_verified(black_box(&digest)).unwrap())
        });
    }
    group.finish();
}

/// A store with `count` small objects, and their digests.
fn populated(count: u64) -> (tempfile::TempDir, Store, Vec<Digest>) {
    let root = tempfile::tempdir().unwrap();
    let store = Store::open(root.path(), DigestFunction::Sha256).unwrap();
    let digests = (0..count).map(|n| store.put_bytes(&n.to_le_bytes()).unwrap()).collect();
    (root, store, digests)
}

fn presence(c: &mut Criterion) {
    const PRESENT: u64 = 50_000;
    let (_root, store, mut query) = populated(PRESENT);
    let present_paths: Vec<_> = query.iter().map(|d| store.object_path(d)).collect();
    query.extend((PRESENT..2 * PRESENT).map(|n| DigestFunction::Sha256.hash_bytes(&n.to_le_bytes())));
    let mut group = c.benchmark_group("store_presence");
    group.throughput(Throughput::Elements(query.len() as u64)).sample_size(10);
    group.bench_function("find_missing_100k_half_present", |b| {
        b.iter(|| assert_eq!(store.find_missing(black_box(&query)).len(), PRESENT as usize))
    });
    // Every present blob last used an hour ago, so each one is touched (a second syscall).
    group.bench_function("find_missing_100k_half_present_stale", |b| {
        b.iter_batched(
            || {
                let hour_ago = SystemTime::now() - Duration::from_secs(3600);
                for path in &present_paths {
                    File::open(path).unwrap().set_modified(hour_ago).unwrap();
                }
            },
            |()| assert_eq!(store.find_missing(black_box(&query)).len(), PRESENT as usize),
            BatchSize::PerIteration,
        )
    });
    group.bench_function("contains_100k_sequential", |b| {
        b.iter(|| query.iter().filter(|d| store.contains(d)).count())
    });
    group.finish();
}

fn open_scan(c: &mut Criterion) {
    const OBJECTS: u64 = 50_000;
    let (root, store, _) = populated(OBJECTS);
    drop(store);
    let mut group = c.benchmark_group("store_open");
    group.throughput(Throughput::Elements(OBJECTS)).sample_size(10);
    group.bench_function("scan_50k_objects", |b| {
        b.iter(|| Store::open(root.path(), DigestFunction::Sha256).unwrap().usage())
    });
    group.finish();
}

criterion_group!(benches, write, read, presence, open_scan);
criterion_main!(benches);
