//! Durable transitions per second, beside raw write+fdatasync on the same disk.
//!
//! Run: `cargo bench --bench durable_transitions` (add `-- --quick` for a short run).
//!
//! Measures, in one run and one directory (so one disk):
//! 1. raw: a loop of `pwrite(256 B) + fdatasync` — the floor for one durable write;
//! 2. one sync: a push of one campaign to the in-memory platform, one durable
//!    checkpoint per side effect — cost per side effect vs. the raw fdatasync;
//! 3. 64 concurrent syncs on one tokio runtime — their commits share flushes in
//!    the store's writer thread (group commit) — rate vs. the raw serial rate.
//!
//! Targets (issue #2): (2) ≤ 1.3× raw per side effect; (3) ≥ 4× the raw rate.

use std::io::Write as _;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use adsync::clock::{Clock, SystemClock};
use adsync::model::{Ad, AdGroup, Campaign, CampaignSet, ConfiguredStatus, Keyword, Objective};
use adsync::platform::memory::MemoryPlatform;
use adsync::push::{AdapterEffects, PushMachine, Pusher};
use adsync::runner::Runner;
use adsync::store::Store;

/// A campaign with 4 ad groups × (2 ads + 3 keywords): 25 entities, 25 side effects.
fn campaign(i: usize) -> Campaign {
    Campaign {
        id: format!("c{i}"),
        name: format!("Campaign {i}"),
        objective: Objective::Clicks,
        status: ConfiguredStatus::Paused,
        goal: None,
        ad_groups: (0..4)
            .map(|g| AdGroup {
                id: format!("c{i}g{g}"),
                name: format!("Group {g}"),
                status: ConfiguredStatus::Paused,
                bid_strategy: None,
                bid_type: None,
                bid_value_micros: None,
                start_time: None,
                end_time: None,
                ads: (0..2)
                    .map(|a| Ad {
                        id: format!("c{i}g{g}a{a}"),
                        name: format!("Ad {a}"),
                        post_id: "t3_x".into(),
                        click_url: None,
                        status: ConfiguredStatus::Paused,
                    })
                    .collect(),
                keywords: (0..3)
                    .map(|k| Keyword {
                        id: format!("c{i}g{g}k{k}"),
                        text: format!("keyword {k}"),
                    })
                    .collect(),
            })
            .collect(),
    }
}

fn raw_fdatasync(dir: &Path, n: usize) -> Duration {
    let path = dir.join("raw.bin");
    let mut file = std::fs::File::create(&path).expect("create raw file");
    file.write_all(&[0u8; 4096]).expect("prefill");
    file.sync_all().expect("sync");
    let buf = [7u8; 256];
    let start = Instant::now();
    for i in 0..n {
        file.write_at(&buf, ((i % 16) * 256) as u64).expect("write");
        file.sync_data().expect("fdatasync");
    }
    let elapsed = start.elapsed();
    let _ = std::fs::remove_file(&path);
    elapsed / n as u32
}

/// Pushes `campaigns` concurrently and returns (durable transitions, wall time).
fn push(
    runtime: &tokio::runtime::Runtime,
    dir: &Path,
    campaigns: usize,
) -> (u64, Duration, adsync::store::WriterStats) {
    let db = dir.join(format!("bench-{campaigns}.db"));
    let _ = std::fs::remove_dir_all(&db);
    let store = Store::open(&db).expect("open store");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let platform = Arc::new(MemoryPlatform::new(clock.clone()));
    let runner = Runner::<PushMachine>::new(
        store.clone(),
        Arc::new(AdapterEffects::new(platform.clone())),
        clock.clone(),
    );
    let pusher = Pusher::new(Arc::new(runner), platform.as_ref(), clock);
    let set = CampaignSet {
        name: "bench".into(),
        campaigns: (0..campaigns).map(campaign).collect(),
    };
    let (transitions, elapsed) = runtime.block_on(async {
        let ids = pusher.start(&set, "a2_bench").await.expect("start");
        let before = store.writer_stats().commits;
        let start = Instant::now();
        let report = pusher.run_all(&ids).await;
        let elapsed = start.elapsed();
        assert!(report.all_synced(), "{report:?}");
        (store.writer_stats().commits - before, elapsed)
    });
    let stats = store.writer_stats();
    drop(pusher);
    store.close();
    let _ = std::fs::remove_dir_all(&db);
    (transitions, elapsed, stats)
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 1 } else { 3 };
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bench-durable");
    std::fs::create_dir_all(&dir).expect("bench dir");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    // Warm up the disk and the allocator once.
    let _ = raw_fdatasync(&dir, 200);
    let _ = push(&runtime, &dir, 1);

    let mut best_single = f64::MAX;
    let mut best_group = 0f64;
    println!("round | raw fdatasync | 1 sync: per effect (ratio) | 64 syncs: transitions/s (× raw rate, commits/flush)");
    for round in 1..=rounds {
        // Interleave the measurements so disk noise hits all of them alike.
        let raw = raw_fdatasync(&dir, if quick { 500 } else { 2000 });
        let mut single = Duration::ZERO;
        let mut single_n = 0u64;
        for _ in 0..if quick { 4 } else { 12 } {
            let (n, t, _) = push(&runtime, &dir, 1);
            single += t;
            single_n += n;
        }
        let per_effect = single / single_n as u32;
        let (n64, t64, stats) = push(&runtime, &dir, 64);
        let rate64 = n64 as f64 / t64.as_secs_f64();
        let raw_rate = 1.0 / raw.as_secs_f64();
        let ratio = per_effect.as_secs_f64() / raw.as_secs_f64();
        best_single = best_single.min(ratio);
        best_group = best_group.max(rate64 / raw_rate);
        println!(
            "{round:>5} | {:>10.1} µs | {:>10.1} µs ({ratio:.2}×) | {rate64:>9.0}/s ({:.1}×, {:.1} commits per flush)",
            raw.as_secs_f64() * 1e6,
            per_effect.as_secs_f64() * 1e6,
            rate64 / raw_rate,
            stats.commits as f64 / stats.flushes.max(1) as f64,
        );
    }
    println!(
        "best of {rounds}: one sync costs {best_single:.2}× a raw fdatasync per side effect (target ≤ 1.30); \
         64 syncs reach {best_group:.1}× the raw serial fdatasync rate (target ≥ 4)"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::io::stdout().flush();
}
