//! Submissions acknowledged per second through the control API (issue #14):
//! `POST /v1/pushes` from 32 concurrent HTTP clients (keep-alive), each
//! pushing one-campaign sets to its own account, every 202 durable; beside
//! the raw `fdatasync` rate of the same disk, measured just before and after
//! in the same run. The daemon (router + worker over a sled store) runs in
//! this process on 127.0.0.1; the clients are tokio tasks. Measured twice:
//! the submission path alone (the router over a worker that is not running),
//! then the whole daemon, whose worker runs every push while others arrive.
//! mimalloc is the allocator, as in the `adsync` binary.
//!
//! `cargo bench -p adsync-daemon --bench submit [-- --clients 32 --seconds 3]`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use adsync::memory::MemoryPlatform;
use adsync::{Pusher, Store, SystemClock, Worker};
use adsync_fakes::bench::{arg, raw_fdatasync_rate};
use adsync_fakes::fixtures::{campaign, Shape};

/// The allocator of the `adsync` binary, which runs the daemon.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    for running in [false, true] {
        measure(running);
    }
}

fn measure(running: bool) {
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
        let config = adsync_daemon::Config::new().listen(([127, 0, 0, 1], 0).into());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stopped = async {
            let _ = stopped.await;
        };
        let (url, serving) = if running {
            // The whole daemon: the worker runs each push while others arrive.
            let bound = adsync_daemon::bind(config).await.expect("binds");
            let url = format!("http://{}/v1/pushes", bound.addr());
            (url, tokio::spawn(async move { drop(bound.serve(worker, stopped).await) }))
        } else {
            // The submission path alone: the router over a worker that does
            // not run (acknowledged work waits in the store).
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("binds");
            let url = format!("http://{}/v1/pushes", listener.local_addr().expect("addr"));
            let app = adsync_daemon::router(worker, config);
            (
                url,
                tokio::spawn(async move {
                    drop(axum::serve(listener, app).with_graceful_shutdown(stopped).await)
                }),
            )
        };
        let acked = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let before = store.writer_stats();
        let start = Instant::now();
        let tasks: Vec<_> = (0..clients)
            .map(|c| {
                let (url, acked) = (url.clone(), acked.clone());
                tokio::spawn(async move {
                    let http = reqwest::Client::builder()
                        .no_proxy()
                        .build()
                        .expect("client");
                    let shape = Shape {
                        ad_groups: 1,
                        ads: 1,
                        keywords: 2,
                    };
                    let mut i = 0;
                    while Instant::now() < deadline {
                        let body = serde_json::json!({
                            "set": {"name": format!("s{c}-{i}"), "campaigns": [campaign(c * 1_000_000 + i, shape)]},
                            "account": format!("acct{c}"),
                            "platform": "memory",
                        });
                        let response = http.post(&url).json(&body).send().await.expect("sent");
                        assert_eq!(response.status().as_u16(), 202, "{:?}", response.text().await);
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
        let _ = stop.send(());
        let _ = serving.await;
        (
            acked.load(Ordering::Relaxed),
            elapsed,
            (after.commits - before.commits, after.flushes - before.flushes),
        )
    });
    let raw_after = raw_fdatasync_rate(dir.path(), 1.0);
    let rate = acked as f64 / elapsed.as_secs_f64();
    let raw = (raw_before + raw_after) / 2.0;
    println!(
        "control API ({}), {clients} clients: {acked} submissions in {:.2} s = {rate:.0} acknowledged/s (target ≥ 2,000: {}); raw fdatasync {raw:.0}/s (before {raw_before:.0}, after {raw_after:.0}); {:.1} submissions per raw fdatasync; {} commits in {} durable writes ({:.1} per write)",
        if running { "worker running the pushes meanwhile" } else { "submission path alone" },
        elapsed.as_secs_f64(),
        if rate >= 2000.0 { "met" } else { "NOT met" },
        rate / raw,
        writer.0,
        writer.1,
        writer.0 as f64 / writer.1.max(1) as f64,
    );
}
