//! 1 vs 3 workers on one PostgreSQL database (issue #16): how much more
//! three workers in lease mode push than one, in one run against one
//! throwaway server (`adsync_fakes::postgres::TestServer`;
//! `ADSYNC_TEST_POSTGRES_URL` to use another).
//!
//! Each phase gets a fresh database on that server. `ADSYNC_BENCH_PUSHES`
//! pushes (default 384; one-campaign sets, each to its own account: a
//! campaign, an ad group, an ad and two keywords, five creates) are submitted
//! to the store first, not timed; then 1 or 3 `Worker`s, each with its own
//! `PgStore` (its own pool and group-commit writer, as separate machines have)
//! and the default limits, lease ttl and claim interval, drain them against
//! one in-memory platform that answers each call after
//! `ADSYNC_BENCH_LATENCY_MS` (default 50; real ad platforms answer slower).
//! Timed: from the workers' start until no sync is running. Reported per
//! phase: pushes/s, transitions/s (the workers' own counters), how the
//! transitions were shared, and the share of the latency bound (the pushes/s
//! the workers' default limits allow when every call takes the latency and
//! nothing else costs); then the ratio 3 : 1. Every sync must succeed and
//! every entity exist once on the platform.
//!
//! The phases alternate (1, 3, 1, 3, …; `ADSYNC_BENCH_ROUNDS` rounds,
//! default 3): the machine's load moves within seconds, and each round's
//! ratio compares neighbours. The workers share this process's runtime and
//! this machine's cores with each other and with PostgreSQL, which separate
//! machines would not.
//!
//! Run: `cargo bench -p adsync-postgres --bench workers`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use adsync::memory::MemoryPlatform;
use adsync::{
    CampaignSet, CheckpointStore, Limits, Pusher, SharedStore, Status, SystemClock, Worker,
};
use adsync_fakes::bench::SlowPlatform;
use adsync_fakes::fixtures::{campaign, Shape};
use adsync_fakes::postgres::TestServer;
use adsync_postgres::PgStore;

const SHAPE: Shape = Shape {
    ad_groups: 1,
    ads: 1,
    keywords: 2,
};

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let pushes = knob("ADSYNC_BENCH_PUSHES", 384) as usize;
    let rounds = knob("ADSYNC_BENCH_ROUNDS", 3);
    let latency = Duration::from_millis(knob("ADSYNC_BENCH_LATENCY_MS", 50));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    println!(
        "{pushes} pushes per phase, platform latency {} ms, {rounds} rounds, default limits \
         ({} syncs at once per worker)",
        latency.as_millis(),
        Limits::default().max_running,
    );
    let mut ratios = Vec::new();
    let (mut one, mut three) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let a = runtime.block_on(phase(1, pushes, latency));
        let b = runtime.block_on(phase(3, pushes, latency));
        println!(
            "round {round}: 1 worker  {a}; {:.0}% of its latency bound",
            100.0 * a.pushes_per_sec() / a.latency_bound(1, latency)
        );
        println!(
            "round {round}: 3 workers {b}; {:.0}% of their latency bound",
            100.0 * b.pushes_per_sec() / b.latency_bound(3, latency)
        );
        let ratio = b.pushes_per_sec() / a.pushes_per_sec();
        println!("round {round}: 3 : 1 = {ratio:.2}x");
        ratios.push(ratio);
        one.push(a);
        three.push(b);
    }
    let mean = |figures: &[Figures]| {
        let pushes: f64 = figures.iter().map(Figures::pushes_per_sec).sum::<f64>();
        let transitions: f64 = figures
            .iter()
            .map(Figures::transitions_per_sec)
            .sum::<f64>();
        let n = figures.len() as f64;
        (pushes / n, transitions / n)
    };
    let (one_p, one_t) = mean(&one);
    let (three_p, three_t) = mean(&three);
    ratios.sort_by(f64::total_cmp);
    println!(
        "mean: 1 worker {one_p:.0} pushes/s ({one_t:.0} transitions/s); 3 workers {three_p:.0} pushes/s ({three_t:.0} transitions/s); 3 : 1 = {:.2}x (rounds {:.2}x to {:.2}x)",
        three_p / one_p,
        ratios[0],
        ratios[ratios.len() - 1],
    );
}

/// What one phase measured.
struct Figures {
    pushes: usize,
    elapsed: Duration,
    /// Transitions each worker ran.
    transitions: Vec<u64>,
    /// Platform calls made (each paid the latency).
    calls: usize,
    /// CPU time this process used (the workers, the platform), and the
    /// share of the machine's cores busy (every process: PostgreSQL, and
    /// whatever else runs), over the phase; Linux only.
    cpu: Option<(Duration, f64)>,
}

impl Figures {
    fn pushes_per_sec(&self) -> f64 {
        self.pushes as f64 / self.elapsed.as_secs_f64()
    }

    fn transitions_per_sec(&self) -> f64 {
        self.transitions.iter().sum::<u64>() as f64 / self.elapsed.as_secs_f64()
    }

    /// Pushes per second that `workers` workers could reach if only the
    /// platform's latency limited them: each runs `max_running` syncs at
    /// once, and a push makes its calls one after the other.
    fn latency_bound(&self, workers: usize, latency: Duration) -> f64 {
        let running = (workers * Limits::default().max_running) as f64;
        let calls_per_push = self.calls as f64 / self.pushes as f64;
        running / (calls_per_push * latency.as_secs_f64())
    }
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shares: Vec<String> = self.transitions.iter().map(u64::to_string).collect();
        write!(
            f,
            "{:>6.0} pushes/s, {:>6.0} transitions/s ({} pushes, {} platform calls, in {:.2} s; transitions by worker: {})",
            self.pushes_per_sec(),
            self.transitions_per_sec(),
            self.pushes,
            self.calls,
            self.elapsed.as_secs_f64(),
            shares.join(" + "),
        )?;
        if let Some((own, busy)) = self.cpu {
            write!(
                f,
                "; CPU: this process {:.2} s, the machine's cores {:.0}% busy",
                own.as_secs_f64(),
                busy * 100.0
            )?;
        }
        Ok(())
    }
}

/// Submits `pushes` pushes to a fresh database, drains them with `workers`
/// workers, and checks the outcome.
async fn phase(workers: usize, pushes: usize, latency: Duration) -> Figures {
    let server = TestServer::start();
    let url = server.url();
    let clock = Arc::new(SystemClock);
    let platform = Arc::new(MemoryPlatform::new(clock.clone()));
    let calls = Arc::new(AtomicUsize::new(0));
    let mut all = Vec::new();
    for w in 0..workers {
        let pg = PgStore::connect(&url).await.expect("connects");
        let store: SharedStore = Arc::new(pg);
        let adapter = Arc::new(SlowPlatform::new(platform.clone(), latency, calls.clone()));
        all.push(
            Worker::builder(store.clone())
                .pusher(Pusher::new(store, adapter, clock.clone()))
                .owner(format!("bench-{w}"))
                .build(),
        );
    }

    // Submitted before the clock starts (a worker in lease mode only stores
    // a submission; the claims run it), 32 at a time.
    let mut ids = Vec::new();
    for chunk in (0..pushes).collect::<Vec<_>>().chunks(32) {
        let submitted: Vec<_> = chunk
            .iter()
            .map(|&n| {
                let worker = all[0].clone();
                tokio::spawn(async move {
                    let set = CampaignSet {
                        name: format!("set{n}"),
                        campaigns: vec![campaign(n, SHAPE)],
                    };
                    worker
                        .submit_push(&set, &format!("acct{n}"), "memory")
                        .await
                        .expect("submitted")
                })
            })
            .collect();
        for task in submitted {
            ids.extend(task.await.expect("a submitter"));
        }
    }
    assert_eq!(ids.len(), pushes);

    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(connection);
    let cpu_before = cpu();
    let started = Instant::now();
    let running: Vec<_> = all
        .iter()
        .map(|worker| {
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let worker = worker.clone();
            let task = tokio::spawn(async move {
                worker
                    .run(async {
                        let _ = stopped.await;
                    })
                    .await
                    .expect("runs");
            });
            (stop, task)
        })
        .collect();
    let deadline = started + Duration::from_secs(600);
    loop {
        let left: i64 = client
            .query_one(
                "SELECT count(*) FROM adsync_syncs WHERE status = 'running'",
                &[],
            )
            .await
            .expect("counts")
            .get(0);
        if left == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "{left} pushes still running");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = started.elapsed();
    let cpu_after = cpu();
    for (stop, task) in running {
        let _ = stop.send(());
        task.await.expect("a worker");
    }

    let mut transitions = Vec::new();
    for worker in &all {
        transitions.push(metric(worker, "adsync_transitions_total").await);
    }
    let store = all[0].store().clone();
    let statuses: Vec<Status> = {
        let store: &dyn CheckpointStore = &*store;
        store
            .read(move |s| {
                ids.iter()
                    .map(|id| s.record(id).expect("reads").expect("exists").status)
                    .collect()
            })
            .await
            .expect("reads")
    };
    assert!(
        statuses.iter().all(|s| *s == Status::Succeeded),
        "every push succeeds"
    );
    assert!(
        platform.duplicates().is_empty(),
        "{:?}",
        platform.duplicates()
    );
    let per_push = 1 + SHAPE.ad_groups * (1 + SHAPE.ads + SHAPE.keywords);
    assert_eq!(
        platform.creations(),
        (pushes * per_push) as u64,
        "every entity once"
    );
    Figures {
        pushes,
        elapsed,
        transitions,
        calls: calls.load(Ordering::Relaxed),
        cpu: cpu_before.zip(cpu_after).map(|(a, b)| {
            let own = Duration::from_secs_f64((b.own - a.own) as f64 / TICKS);
            let busy = (b.busy - a.busy) as f64 / (b.total - a.total).max(1) as f64;
            (own, busy)
        }),
    }
}

/// Clock ticks per second of /proc's CPU counters (USER_HZ: 100 on Linux).
const TICKS: f64 = 100.0;

/// CPU counters, in clock ticks: this process's (user + system), and the
/// machine's busy and total over all cores.
struct Cpu {
    own: u64,
    busy: u64,
    total: u64,
}

fn cpu() -> Option<Cpu> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command's closing parenthesis; utime and stime are
    // the 14th and 15th of the whole line.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let own = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let machine = std::fs::read_to_string("/proc/stat").ok()?;
    let times: Vec<u64> = machine
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …: idle and iowait are
    // not busy.
    let total: u64 = times.iter().take(8).sum();
    let idle = times.get(3)? + times.get(4).copied().unwrap_or(0);
    Some(Cpu {
        own,
        busy: total - idle,
        total,
    })
}

/// The sum of a counter's samples in this worker's metrics.
async fn metric(worker: &Worker, name: &str) -> u64 {
    worker
        .render_metrics()
        .await
        .expect("metrics")
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}
