//! Submissions acknowledged per second by a `Worker` (issue #14), in the
//! library, beside the raw `fdatasync` rate of the same disk measured in the
//! same run: 32 concurrent submitters, each submitting one-campaign sets to
//! its own account (so no two wait for the same campaign), every
//! acknowledgement durable. The worker is not running syncs meanwhile: this
//! measures the submission path (reads of what exists + the start commit),
//! which group commit shares between concurrent submitters.
//!
//! `cargo bench --bench worker_submit [-- --clients 32 --seconds 3]`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use adsync::memory::MemoryPlatform;
use adsync::{CampaignSet, Pusher, Store, SystemClock, Worker};
use adsync_fakes::bench::{arg, raw_fdatasync_rate};
use adsync_fakes::fixtures::{campaign, Shape};

fn main() {
    let clients: usize = arg("--clients").and_then(|v| v.parse().ok()).unwrap_or(32);
    let seconds: f64 = arg("--seconds").and_then(|v| v.parse().ok()).unwrap_or(3.0);
    let dir = tempfile::tempdir().expect("tempdir");
    let raw_before = raw_fdatasync_rate(dir.path(), 1.0);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (acked, elapsed, writer) = runtime.block_on(async {
        let store = Store::open_from_async(dir.path().join("db"))
            .await
            .expect("store");
        let clock = Arc::new(SystemClock);
        let worker = Worker::builder(store.clone())
            .pusher(Pusher::new(
                store.clone(),
                Arc::new(MemoryPlatform::new(clock.clone())),
                clock,
            ))
            .build();
        let acked = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let before = store.writer_stats();
        let start = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let (worker, acked) = (worker.clone(), acked.clone());
                tokio::spawn(async move {
                    let shape = Shape {
                        ad_groups: 1,
                        ads: 1,
                        keywords: 2,
                    };
                    let account = format!("acct{c}");
                    let mut i = 0;
                    while Instant::now() < deadline {
                        let set = CampaignSet {
                            name: format!("s{c}-{i}"),
                            campaigns: vec![campaign(c * 1_000_000 + i, shape)],
                        };
                        worker
                            .submit_push(&set, &account, "memory")
                            .await
                            .expect("acknowledged");
                        acked.fetch_add(1, Ordering::Relaxed);
                        i += 1;
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("client");
        }
        let elapsed = start.elapsed();
        let after = store.writer_stats();
        (
            acked.load(Ordering::Relaxed),
            elapsed,
            (
                after.commits - before.commits,
                after.flushes - before.flushes,
            ),
        )
    });
    let raw_after = raw_fdatasync_rate(dir.path(), 1.0);
    let rate = acked as f64 / elapsed.as_secs_f64();
    let raw = (raw_before + raw_after) / 2.0;
    println!(
        "{clients} clients, {acked} submissions in {:.2} s: {rate:.0} acknowledged/s (target ≥ 2,000: {}); raw fdatasync {raw:.0}/s (before {raw_before:.0}, after {raw_after:.0}): {:.1} submissions per raw fdatasync; {} commits in {} durable writes ({:.1} per write)",
        elapsed.as_secs_f64(),
        if rate >= 2000.0 { "met" } else { "NOT met" },
        rate / raw,
        writer.0,
        writer.1,
        writer.0 as f64 / writer.1.max(1) as f64,
    );
}
