//! Submissions acknowledged per second through the control API (issue #14):
//! `POST /v1/pushes` from 32 concurrent HTTP clients (keep-alive), each
//! pushing one-campaign sets to its own account, every 202 durable; beside
//! the raw `fdatasync` rate of the same disk, measured just before and after
//! in the same run. The daemon (router + worker over a sled store) runs in
//! this process on 127.0.0.1; the clients are tokio tasks. Measured three
//! ways, one after the other:
//!
//! 1. the submission path alone: the router over a worker that is not running
//!    (acknowledged work waits in the store);
//! 2. the whole daemon, its worker running every push (at its default limits)
//!    against an in-memory platform that answers each call after
//!    `--latency-ms` (default 50; real ad platforms answer slower);
//! 3. the whole daemon against a platform that answers at once, so the worker
//!    runs pushes as fast as the two cores allow and competes with the
//!    submissions for them (a saturation figure, not a deployment).
//!
//! mimalloc is the allocator, as in the `adsync` binary.
//!
//! `cargo bench -p adsync-daemon --bench submit [-- --clients 32 --seconds 3 --latency-ms 50]`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use adsync::memory::MemoryPlatform;
use adsync::{Pusher, Store, SystemClock, Worker};
use adsync_fakes::bench::{arg, raw_fdatasync_rate, SlowPlatform};
use adsync_fakes::fixtures::{campaign, Shape};

/// The allocator of the `adsync` binary, which runs the daemon.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How the daemon under load is set up.
#[derive(Clone, Copy)]
enum Mode {
    /// The router over a worker that does not run.
    SubmissionPath,
    /// The worker runs the pushes against a platform answering after a latency.
    Daemon { latency: Duration },
}

fn main() {
    let latency_ms: u64 = arg("--latency-ms")
        .and_then(|v| v.parse().ok())
        .unwrap_or(50);
    for mode in [
        Mode::SubmissionPath,
        Mode::Daemon {
            latency: Duration::from_millis(latency_ms),
        },
        Mode::Daemon {
            latency: Duration::ZERO,
        },
    ] {
        measure(mode);
    }
}

fn measure(mode: Mode) {
    let clients: usize = arg("--clients").and_then(|v| v.parse().ok()).unwrap_or(32);
    let seconds: f64 = arg("--seconds").and_then(|v| v.parse().ok()).unwrap_or(3.0);
    let dir = tempfile::tempdir().expect("tempdir");
    let raw_before = raw_fdatasync_rate(dir.path(), 1.0);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let (acked, elapsed, writer, created) = runtime.block_on(async {
        let store = Store::open_from_async(dir.path().join("db"))
            .await
            .expect("store");
        let clock = Arc::new(SystemClock);
        let platform = Arc::new(MemoryPlatform::new(clock.clone()));
        let latency = match mode {
            Mode::SubmissionPath => Duration::ZERO,
            Mode::Daemon { latency } => latency,
        };
        let worker = Worker::builder(store.clone())
            .pusher(Pusher::new(
                store.clone(),
                Arc::new(SlowPlatform::new(
                    platform.clone(),
                    latency,
                    Arc::new(AtomicUsize::new(0)),
                )),
                clock,
            ))
            .build();
        let config = adsync_daemon::Config::new().listen(([127, 0, 0, 1], 0).into());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let stopped = async {
            let _ = stopped.await;
        };
        let (url, serving) = if let Mode::Daemon { .. } = mode {
            // The whole daemon: the worker runs each push while others arrive.
            let bound = adsync_daemon::bind(config).await.expect("binds");
            let url = format!("http://{}/v1/pushes", bound.addr());
            (
                url,
                tokio::spawn(async move { drop(bound.serve(worker, stopped).await) }),
            )
        } else {
            // The submission path alone: the router over a worker that does
            // not run (acknowledged work waits in the store).
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("binds");
            let url = format!("http://{}/v1/pushes", listener.local_addr().expect("addr"));
            let app = adsync_daemon::router(worker, config);
            (
                url,
                tokio::spawn(async move {
                    drop(
                        axum::serve(listener, app)
                            .with_graceful_shutdown(stopped)
                            .await,
                    )
                }),
            )
        };
        // Request bodies are serialized before the clock starts: the load
        // generator shares the two cores with the daemon, and building JSON
        // values is its cost, not the daemon's.
        let per_client = (seconds * 1_000.0) as usize + 100;
        let bodies: Vec<Vec<bytes::Bytes>> = (0..clients)
            .map(|c| (0..per_client).map(|i| body(c, i)).collect())
            .collect();
        let acked = Arc::new(AtomicUsize::new(0));
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let before = store.writer_stats();
        let start = Instant::now();
        let tasks: Vec<_> = bodies
            .into_iter()
            .map(|bodies| {
                let (url, acked) = (url.clone(), acked.clone());
                tokio::spawn(async move {
                    let http = reqwest::Client::builder()
                        .no_proxy()
                        .build()
                        .expect("client");
                    let mut bodies = bodies.into_iter();
                    while Instant::now() < deadline {
                        let body = bodies.next().expect("enough bodies were prepared");
                        let response = http
                            .post(&url)
                            .header("content-type", "application/json")
                            .body(body)
                            .send()
                            .await
                            .expect("sent");
                        assert_eq!(
                            response.status().as_u16(),
                            202,
                            "{:?}",
                            response.text().await
                        );
                        acked.fetch_add(1, Ordering::Relaxed);
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
            (
                after.commits - before.commits,
                after.flushes - before.flushes,
            ),
            platform.creations(),
        )
    });
    let raw_after = raw_fdatasync_rate(dir.path(), 1.0);
    let rate = acked as f64 / elapsed.as_secs_f64();
    let raw = (raw_before + raw_after) / 2.0;
    let setup = match mode {
        Mode::SubmissionPath => "submission path alone".to_string(),
        Mode::Daemon { latency } if latency.is_zero() => {
            "whole daemon, platform answering at once (saturation)".to_string()
        }
        Mode::Daemon { latency } => format!(
            "whole daemon, platform answering after {} ms",
            latency.as_millis()
        ),
    };
    println!(
        "control API ({setup}), {clients} clients: {acked} submissions in {:.2} s = {rate:.0} acknowledged/s (target ≥ 2,000: {}); {created} entities created on the platform meanwhile; raw fdatasync {raw:.0}/s (before {raw_before:.0}, after {raw_after:.0}); {:.1} submissions per raw fdatasync; {} commits in {} durable writes ({:.1} per write)",
        elapsed.as_secs_f64(),
        if rate >= 2000.0 { "met" } else { "NOT met" },
        rate / raw,
        writer.0,
        writer.1,
        writer.0 as f64 / writer.1.max(1) as f64,
    );
}

/// One `POST /v1/pushes` body: a one-campaign set pushed to client `c`'s own account.
fn body(c: usize, i: usize) -> bytes::Bytes {
    let shape = Shape {
        ad_groups: 1,
        ads: 1,
        keywords: 2,
    };
    let body = serde_json::json!({
        "set": {"name": format!("s{c}-{i}"), "campaigns": [campaign(c * 1_000_000 + i, shape)]},
        "account": format!("acct{c}"),
        "platform": "memory",
    });
    serde_json::to_vec(&body).expect("serializes").into()
}
