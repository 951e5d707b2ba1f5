//! Hashing throughput per digest function, in memory and streamed from a file.
//!
//! `scripts/bench hashing` runs this next to `sha256sum` on the same file, so the SHA-256 figure
//! can be read as a ratio to coreutils.

use std::hint::black_box;
use std::io::Write;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rebox::digest::DigestFunction;

const SIZE: usize = 64 * 1024 * 1024;

fn data() -> Vec<u8> {
    // Incompressible-looking but deterministic content.
    let mut state = 0x9e37_79b9_7f4a_7c15_u64;
    (0..SIZE)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

fn in_memory(c: &mut Criterion) {
    let data = data();
    let mut group = c.benchmark_group("hash_bytes_64MiB");
    group.throughput(Throughput::Bytes(SIZE as u64)).sample_size(10);
    for function in DigestFunction::ALL {
        group.bench_function(function.name(), |b| b.iter(|| function.hash_bytes(black_box(&data))));
    }
    group.finish();
}

fn from_file(c: &mut Criterion) {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(&data()).expect("write temp file");
    let path = file.path().to_owned();
    let mut group = c.benchmark_group("hash_file_64MiB");
    group.throughput(Throughput::Bytes(SIZE as u64)).sample_size(10);
    group.bench_function("SHA256", |b| {
        b.iter(|| {
            DigestFunction::Sha256.hash_reader(std::fs::File::open(&path).expect("open")).expect("read")
        })
    });
    group.finish();
}

criterion_group!(benches, in_memory, from_file);
criterion_main!(benches);
