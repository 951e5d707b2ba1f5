//! CaptureTree, rebox against buildbox-casd, over their LocalCAS sockets: a 20,000-file tree and
//! 5,000 files of 200 MB in all, each captured into an empty store ("cold": every blob written),
//! again into a store that holds it all ("warm": hashing only), and by rebox with `move_files`.
//!
//! Run with `cargo bench --bench capture` (needs `scripts/peers`). Prints the best of a few runs
//! and rebox's time as a ratio of buildbox-casd's. Files are read from the page cache; dirty data
//! is synced before each timed capture.

#[path = "../tests/capture/support.rs"]
mod support;

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rebox::proto::build::buildgrid::CaptureTreeRequest;
use support::{Client, Daemon, Peer};

const ROUNDS: usize = 3;

/// A cheap deterministic byte stream (xorshift), so that every file is distinct.
fn fill(buffer: &mut [u8], seed: u64) {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in buffer.chunks_mut(8) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        chunk.copy_from_slice(&state.to_le_bytes()[..chunk.len()]);
    }
}

/// `files` files in directories of 100, sizes from `min` to `max` bytes.
fn make_tree(root: &Path, files: usize, min: usize, max: usize) -> u64 {
    let mut total = 0;
    let mut buffer = vec![0u8; max];
    for i in 0..files {
        let dir = root.join(format!("d{:03}/e{}", i / 100, i / 1000));
        if i % 100 == 0 {
            fs::create_dir_all(&dir).unwrap();
        }
        let len = min + (i * 7919) % (max - min + 1);
        fill(&mut buffer[..len], i as u64 + 1);
        fs::write(dir.join(format!("f{i}")), &buffer[..len]).unwrap();
        total += len as u64;
    }
    total
}

async fn capture(client: &mut Client, path: &Path, move_files: bool) -> Duration {
    let request = CaptureTreeRequest {
        path: vec![path.to_str().unwrap().to_owned()],
        move_files,
        output_directory_format: 1,
        ..Default::default()
    };
    // Earlier writes (the last capture's, the copy's) are flushed first, not during this one.
    assert!(Command::new("sync").status().unwrap().success());
    let started = Instant::now();
    let response = client.capture_tree(request).await.expect("CaptureTree").into_inner();
    let elapsed = started.elapsed();
    assert_eq!(response.responses[0].status.as_ref().map(|s| s.code), Some(0), "{response:?}");
    elapsed
}

fn ms(d: Duration) -> String {
    format!("{:7.1} ms", d.as_secs_f64() * 1000.0)
}

async fn bench(name: &str, tree: &Path) {
    let best = |slot: &mut Option<Duration>, d: Duration| *slot = Some(slot.map_or(d, |b| b.min(d)));
    let (mut ours_cold, mut theirs_cold, mut ours_warm, mut theirs_warm, mut ours_move) =
        (None, None, None, None, None);
    for _ in 0..ROUNDS {
        let rebox = Daemon::start().await;
        let mut client = rebox.client.clone();
        best(&mut ours_cold, capture(&mut client, tree, false).await);
        best(&mut ours_warm, capture(&mut client, tree, false).await);
        drop(rebox);
        let mut peer = Peer::start().await;
        best(&mut theirs_cold, capture(&mut peer.client, tree, false).await);
        best(&mut theirs_warm, capture(&mut peer.client, tree, false).await);
        drop(peer);
        // move_files: a fresh copy on the store's filesystem, given up to the store.
        let rebox = Daemon::start().await;
        let copy = rebox.cache().join("given-up");
        let status = Command::new("cp").arg("-r").arg(tree).arg(&copy).status().unwrap();
        assert!(status.success());
        best(&mut ours_move, capture(&mut rebox.client.clone(), &copy, true).await);
    }
    let (oc, tc, ow, tw, om) = (
        ours_cold.unwrap(),
        theirs_cold.unwrap(),
        ours_warm.unwrap(),
        theirs_warm.unwrap(),
        ours_move.unwrap(),
    );
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64();
    println!("{name}");
    println!("  cold (empty store):  rebox {}  buildbox-casd {}  ratio {:.2}", ms(oc), ms(tc), ratio(oc, tc));
    println!("  warm (all present):  rebox {}  buildbox-casd {}  ratio {:.2}", ms(ow), ms(tw), ratio(ow, tw));
    println!("  rebox move_files:    rebox {}  (vs buildbox-casd cold: ratio {:.2})", ms(om), ratio(om, tc));
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let input = tempfile::tempdir().unwrap();
        let small = input.path().join("small");
        let total = make_tree(&small, 20_000, 0, 4096);
        bench(&format!("20,000 files, {} MB, best of {ROUNDS}", total / 1_000_000), &small).await;
        let large = input.path().join("large");
        let total = make_tree(&large, 5_000, 20_000, 60_000);
        bench(&format!("5,000 files, {} MB, best of {ROUNDS}", total / 1_000_000), &large).await;
    });
}
