//! Stage times of a 20,000-file tree: cold (pool and farm built), farm cold (pool warm), and warm
//! (farm reused), plus copy staging. A measurement, not a gate: run it in release mode with
//! `cargo test --release --test staging_timing -- --ignored --nocapture`. Needs root.

mod staging_support;

use std::fs;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rebox::digest::Digest;
use rebox::proto::build::bazel::remote::execution::v2 as reapi;
use rebox::staging::{Method, StageRequest, Stages, StagingMode};
use rebox::store::Store;
use staging_support::*;

const DIRS: usize = 200;
const FILES_PER_DIR: usize = 100;

/// 200 directories of 100 distinct small files each (every tenth executable); `extra` adds one
/// file at the root, giving a different tree over the same blobs.
fn big_tree(store: &Store, extra: bool) -> Digest {
    let dirs: Vec<reapi::DirectoryNode> = (0..DIRS)
        .map(|d| {
            let files = (0..FILES_PER_DIR)
                .map(|f| {
                    let content = format!("file {d}/{f}\n").repeat(1 + (d * FILES_PER_DIR + f) % 40);
                    let node = file(store, &format!("f{f:03}"), content.as_bytes());
                    reapi::FileNode { is_executable: f % 10 == 0, ..node }
                })
                .collect();
            dir(store, &format!("d{d:03}"), &reapi::Directory { files, ..Default::default() })
        })
        .collect();
    let files = if extra { vec![file(store, "extra", b"extra")] } else { vec![] };
    put_dir(store, &reapi::Directory { files, directories: dirs, ..Default::default() })
}

fn request(root: Digest) -> StageRequest {
    StageRequest { root, path: None, credentials: None, mode: StagingMode::CopyOrLink }
}

fn timed(stages: &Stages, root: Digest, expected: Method) -> (Duration, Duration) {
    let started = Instant::now();
    let staged = stages.stage(&request(root)).unwrap();
    let stage = started.elapsed();
    assert_eq!(staged.method, expected);
    assert_eq!(fs::read_dir(staged.dir.join("d199")).unwrap().count(), FILES_PER_DIR);
    let started = Instant::now();
    stages.unstage(staged.id).unwrap();
    (stage, started.elapsed())
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

#[test]
#[ignore = "a measurement: run in release mode with --ignored --nocapture"]
fn stage_times_of_a_20000_file_tree() {
    if !is_root() {
        return eprintln!("skipped: needs root");
    }
    // RUST_LOG=rebox=debug narrates each stage (farm build times, mounts).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let (_tmp, store) = store();
    let root = big_tree(&store, false);
    let other = big_tree(&store, true);
    let stages = Cleaning::new(&store);

    let (cold, cold_unstage) = timed(&stages, root, Method::Overlay);
    let (farm_cold, _) = timed(&stages, other, Method::Overlay);
    let warm: Vec<(Duration, Duration)> = (0..9).map(|_| timed(&stages, root, Method::Overlay)).collect();
    let median = |mut samples: Vec<Duration>| {
        samples.sort();
        samples[samples.len() / 2]
    };
    let median_warm = median(warm.iter().map(|w| w.0).collect());
    let median_warm_unstage = median(warm.iter().map(|w| w.1).collect());
    // A new daemon has no tree cached: its first stage of a tree with a farm reads the tree.
    let fresh = Cleaning::new(&store);
    let (first_warm, _) = timed(&fresh, root, Method::Overlay);
    let copying = Cleaning(Stages::with_sys(store.clone(), Arc::new(NoOverlay)));
    let (copy, copy_unstage) = timed(&copying, root, Method::Copy);

    println!("20,000 files in {DIRS} dirs:");
    println!("  cold (pool + farm built): stage {}, unstage {}", ms(cold), ms(cold_unstage));
    println!("  farm cold, pool warm:     stage {}", ms(farm_cold));
    let (warm_stage, warm_unstage) = (ms(median_warm), ms(median_warm_unstage));
    println!("  warm (farm reused):       stage {warm_stage}, unstage {warm_unstage} (median of 9)");
    println!("  warm, tree not cached:    stage {}", ms(first_warm));
    println!("  copy (no overlay):        stage {}, unstage {}", ms(copy), ms(copy_unstage));
    assert!(median_warm < farm_cold && farm_cold < cold, "reuse must pay");
}
