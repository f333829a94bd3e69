//! Pull of a large Amazon profile from the in-process fake server.
//!
//! Run: `cargo bench --bench pull` (add `-- --quick` for a profile 10× smaller,
//! `-- --pulls N` to pull it N times, `-- --page-size N` for other page sizes).
//! `cargo bench --bench pull -- --ramp [--runs N]` measures the ramp case
//! instead (see [`ramp`]).
//!
//! Pulls 2,000 campaigns, 20,000 ad groups and 500,000 keywords (pages of 1,000,
//! each staged durably with its checkpoint) into a sled store on disk, then
//! persists them as a new generation. Reports:
//! * fetch time (every page requested, staged and checkpointed);
//! * persist time (staging → chunks → generation flip in the Completed commit)
//!   and persist entities/second — target ≥ 200,000/s;
//! * a second pull of the same profile (persist replaces generation 1);
//! * peak RSS (`VmHWM` from /proc/self/status) — target ≤ 500 MB. The fake
//!   server's copy of the profile lives in this process too and is included.

use std::sync::Arc;
use std::time::{Duration, Instant};

use adsync::amazon::{AmazonClient, AmazonConfig, SpKeyword, ThrottleConfig};
use adsync::Backoff;
use adsync::Step;
use adsync::Store;
use adsync::{Clock, SystemClock};
use adsync::{PullMode, PullPhase, PullPolicy, Puller};
use adsync_fakes::amazon::wire_json;
use adsync_fakes::{FakeAmazon, FakeAmazonConfig, Generator};

const PROFILE: &str = "1000000001";

fn proc_status_kb(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        })
        .unwrap_or(0)
}

fn mb(kb: u64) -> f64 {
    kb as f64 / 1024.0
}

async fn step_until(puller: &Puller, stop: PullPhase) -> usize {
    let id = puller.sync_id(PROFILE);
    let mut steps = 0;
    loop {
        let checkpoint = puller.runner().get(&id).await.expect("checkpoint");
        if checkpoint.state.phase == stop {
            return steps;
        }
        match puller.step(&id).await.expect("step") {
            Step::Settled(status) => panic!(
                "settled ({status}) before {stop}: {:?}",
                checkpoint.record.last_error
            ),
            Step::Transitioned(_) => steps += 1,
        }
    }
}

async fn one_pull(puller: &Puller, label: &str) -> (Duration, Duration, u64) {
    let t0 = Instant::now();
    puller
        .begin(PROFILE, PullMode::ResumeOrStart)
        .await
        .expect("begin");
    let steps = step_until(puller, PullPhase::Persisting).await;
    let fetch = t0.elapsed();
    let rss_fetched = proc_status_kb("VmRSS:");
    let t1 = Instant::now();
    step_until(puller, PullPhase::Completed).await;
    let persist = t1.elapsed();
    let rss_persisted = proc_status_kb("VmRSS:");
    let status = puller
        .status(PROFILE)
        .await
        .expect("status")
        .expect("exists");
    let counts = status.counts.expect("persisted");
    let n = counts.total();
    println!(
        "{label}: fetch {:.2} s ({steps} checkpoints, {} pages), persist {:.3} s for {n} entities = {:.0} entities/s  ({counts})",
        fetch.as_secs_f64(),
        status.pages.total(),
        persist.as_secs_f64(),
        n as f64 / persist.as_secs_f64()
    );
    println!(
        "{label}: RSS {:.0} MB after fetch, {:.0} MB after persist, peak so far {:.0} MB",
        mb(rss_fetched),
        mb(rss_persisted),
        mb(proc_status_kb("VmHWM:"))
    );
    (fetch, persist, n)
}

/// The ramp case: how much slower a pull is when the limiter has to find the
/// allowed rate than when it starts there. 50,000 keywords (200 campaigns,
/// 2,000 ad groups) at page size 100 — 522 pages fetched one after another —
/// from a server that never throttles, each pull into a fresh store, with the
/// CLI's rate settings `--rate 50 --max-rate 1000` against `--rate 1000
/// --max-rate 1000`. The two alternate `runs` times; medians are compared
/// (target: at most 1.3×).
fn ramp(rt: &tokio::runtime::Runtime, runs: usize) {
    let generator = Generator {
        campaigns: 200,
        ad_groups_per_campaign: 10,
        keywords_per_ad_group: 25,
        seed: 42,
    };
    let server = rt
        .block_on(FakeAmazon::start(
            FakeAmazonConfig::default().with_profile(PROFILE, generator.generate()),
        ))
        .expect("fake server");
    let settings = [
        ("--rate 50 --max-rate 1000", 50.0),
        ("--rate 1000 --max-rate 1000", 1000.0),
    ];
    let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for run in 1..=runs {
        for (i, (label, initial_rate)) in settings.iter().enumerate() {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = Store::open(dir.path().join("adsync.db")).expect("store");
            // What `adsync pull --rate R --max-rate 1000` configures.
            let throttle = ThrottleConfig {
                initial_rate: *initial_rate,
                max_rate: 1000.0,
                min_rate: ThrottleConfig::default().min_rate.min(*initial_rate),
                ..ThrottleConfig::default()
            };
            let config = AmazonConfig::new("fake-client-id", "fake-token")
                .with_host(server.base_url())
                .with_throttle(throttle);
            let client = AmazonClient::new(config).expect("client");
            let clock: Arc<dyn Clock> = Arc::new(SystemClock);
            let puller = Puller::new(store, client.clone(), clock).with_policy(PullPolicy {
                page_size: 100,
                ..PullPolicy::default()
            });
            server.clear_requests();
            let t = Instant::now();
            let status = rt
                .block_on(puller.pull(PROFILE, PullMode::ResumeOrStart))
                .expect("pull");
            let took = t.elapsed().as_secs_f64();
            let log = server.requests();
            let throttled = log.iter().filter(|r| r.status == 429).count();
            println!(
                "ramp run {run}, {label}: {took:.2} s, {} requests ({throttled} answered 429), {} keywords, final rate {:.0}/s, state {:?}",
                log.len(),
                status.fetched.keywords,
                client.current_rate(),
                status.state
            );
            times[i].push(took);
        }
    }
    let median = |v: &mut [f64]| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (ramped, at_max) = (median(&mut times[0]), median(&mut times[1]));
    let ratio = ramped / at_max;
    println!(
        "ramp: median {ramped:.2} s ({}) vs {at_max:.2} s ({}) = {ratio:.2}× — target ≤ 1.3×: {}",
        settings[0].0,
        settings[1].0,
        if ratio <= 1.3 { "met" } else { "MISSED" }
    );
    rt.block_on(server.shutdown());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    if args.iter().any(|a| a == "--ramp") {
        // `--runs N`: alternate the two settings N times (default 3).
        let runs: usize = args
            .iter()
            .position(|a| a == "--runs")
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(3)
            .max(1);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        ramp(&rt, runs);
        return;
    }
    // `--pulls N`: pull the profile N times (at least 2; later ones replace generations).
    let pulls: usize = args
        .iter()
        .position(|a| a == "--pulls")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(2);
    // `--page-size N`: maxResults (default 1000, the fake's largest; Amazon connectors use 100).
    let page_size: u32 = args
        .iter()
        .position(|a| a == "--page-size")
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let generator = Generator {
        campaigns: if quick { 200 } else { 2000 },
        ad_groups_per_campaign: 10,
        keywords_per_ad_group: 25,
        seed: 42,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let data = generator.generate();
    println!(
        "profile: {} campaigns, {} ad groups, {} keywords; RSS after generating: {:.0} MB",
        data.campaigns.len(),
        data.ad_groups.len(),
        data.keywords.len(),
        mb(proc_status_kb("VmRSS:"))
    );
    let sample_keyword = data.keywords[data.keywords.len() / 2].clone();
    let server = rt
        .block_on(FakeAmazon::start(
            FakeAmazonConfig::default().with_profile(PROFILE, data),
        ))
        .expect("fake server");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path().join("adsync.db")).expect("store");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let config = AmazonConfig::new("fake-client-id", "fake-token")
        .with_host(server.base_url())
        .with_timeout(Duration::from_secs(60))
        .with_backoff(Backoff {
            base: Duration::from_millis(10),
            max: Duration::from_millis(100),
            max_attempts: 3,
        })
        .with_throttle(ThrottleConfig {
            initial_rate: 10_000.0,
            max_rate: 10_000.0,
            min_rate: 1.0,
            burst: 10.0,
            ..ThrottleConfig::default()
        });
    let client = AmazonClient::new(config).expect("client");
    let puller = Puller::new(store.clone(), client, clock).with_policy(PullPolicy {
        page_size,
        ..PullPolicy::default()
    });

    rt.block_on(async {
        let (_, persist, n) = one_pull(&puller, "pull 1 (new profile)").await;
        let hwm1 = proc_status_kb("VmHWM:");
        let (_, persist2, n2) = one_pull(&puller, "pull 2 (replaces generation 1)").await;
        for extra in 3..=pulls {
            one_pull(&puller, &format!("pull {extra} (replaces generation {})", extra - 1)).await;
        }
        let hwm_pulls = proc_status_kb("VmHWM:");
        let rate = n as f64 / persist.as_secs_f64();
        let rate2 = n2 as f64 / persist2.as_secs_f64();
        println!(
            "persist: {rate:.0} entities/s (pull 1), {rate2:.0} entities/s (pull 2) — target ≥ 200000: {}",
            if rate.min(rate2) >= 200_000.0 { "met" } else { "MISSED" }
        );
        println!(
            "peak RSS (VmHWM) of the whole process, fake server's data included: {:.0} MB after pull 1, {:.0} MB after the last pull — target ≤ 500 MB: {}",
            mb(hwm1),
            mb(hwm_pulls),
            if mb(hwm_pulls) <= 500.0 { "met" } else { "MISSED" }
        );
        let t = Instant::now();
        let found = puller
            .find::<SpKeyword>(PROFILE, &sample_keyword.keyword_id)
            .await
            .expect("find");
        let find = t.elapsed();
        assert_eq!(wire_json(&found), wire_json(&Some(&sample_keyword)));
        let t = Instant::now();
        let keywords = puller.keywords(PROFILE).await.expect("keywords");
        let read = t.elapsed();
        println!(
            "query: find one keyword by id {:.2} ms; read all {} keywords {:.2} s (peak RSS then {:.0} MB: the caller holds them all)",
            find.as_secs_f64() * 1e3,
            keywords.len(),
            read.as_secs_f64(),
            mb(proc_status_kb("VmHWM:"))
        );
    });
    rt.block_on(server.shutdown());
}
