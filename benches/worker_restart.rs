//! Issue #14's restart figures: a store holding N unfinished push syncs (default
//! 10,000) is opened by a new process, which builds a `Worker` and resumes:
//!
//! * time from process start until every sync is queued (target < 1 s);
//! * resident memory per waiting sync (target < 2 KiB): RSS after the resume
//!   minus RSS with the store open and the worker built, over N.
//!
//! `cargo bench --bench worker_restart [-- --syncs N]`. The parent process
//! prepares the store (one campaign per sync, one ad group with an ad and two
//! keywords each) and runs the measured restart as a child process, so the
//! child's memory is the restart's alone.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use adsync::memory::MemoryPlatform;
use adsync::{CampaignSet, Pusher, Store, SystemClock, Worker};
use adsync_fakes::bench::arg;
use adsync_fakes::fixtures::{campaign, Shape};

fn rss_kb() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn prepare(db: &Path, syncs: usize) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = Store::open_from_async(db).await.expect("store");
        let clock = Arc::new(SystemClock);
        let pusher = Pusher::new(
            store.clone(),
            Arc::new(MemoryPlatform::new(clock.clone())),
            clock,
        );
        let shape = Shape {
            ad_groups: 1,
            ads: 1,
            keywords: 2,
        };
        let set = CampaignSet {
            name: "restart".into(),
            campaigns: (0..syncs).map(|i| campaign(i, shape)).collect(),
        };
        let started = Instant::now();
        let ids = pusher.start(&set, "acct").await.expect("started");
        assert_eq!(ids.len(), syncs);
        eprintln!(
            "prepared {syncs} unfinished syncs in {:.2} s",
            started.elapsed().as_secs_f64()
        );
        store.close();
    });
}

/// The measured child: open, build, resume; print one line of figures.
fn restart(db: &Path, syncs: usize) {
    let process_start = Instant::now();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let store = Store::open_from_async(db).await.expect("store");
        let clock = Arc::new(SystemClock);
        let worker = Worker::builder(store.clone())
            .pusher(Pusher::new(
                store.clone(),
                Arc::new(MemoryPlatform::new(clock.clone())),
                clock,
            ))
            .build();
        let opened = process_start.elapsed();
        let rss_before = rss_kb();
        worker.resume().await.expect("resumes");
        let queued = process_start.elapsed();
        let depth = worker.depth();
        assert_eq!(depth.ready, syncs, "every sync queued");
        let rss_after = rss_kb();
        let per_sync = (rss_after.saturating_sub(rss_before) as f64 * 1024.0) / syncs as f64;
        println!(
            "restart with {syncs} unfinished syncs: store open + worker built {:.3} s; every sync queued {:.3} s after process start (target < 1 s: {}); RSS {} KiB → {} KiB, {:.0} B per waiting sync (target < 2048: {})",
            opened.as_secs_f64(),
            queued.as_secs_f64(),
            if queued.as_secs_f64() < 1.0 { "met" } else { "NOT met" },
            rss_before,
            rss_after,
            per_sync,
            if per_sync < 2048.0 { "met" } else { "NOT met" },
        );
        drop(worker);
        store.close();
    });
}

fn main() {
    let syncs: usize = arg("--syncs")
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000);
    if let Some(db) = arg("--child") {
        restart(&PathBuf::from(db), syncs);
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("db");
    prepare(&db, syncs);
    let runs: usize = arg("--runs").and_then(|v| v.parse().ok()).unwrap_or(3);
    for _ in 0..runs {
        let status = std::process::Command::new(std::env::current_exe().expect("self"))
            .args(["--child", db.to_str().expect("utf-8 path")])
            .args(["--syncs", &syncs.to_string()])
            .status()
            .expect("child runs");
        assert!(status.success(), "the restart child failed");
    }
}
