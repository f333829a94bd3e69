//! Pull of a large Amazon profile from the fake server in another process.
//!
//! Run: `cargo bench --bench pull` (add `-- --quick` for a profile 10× smaller,
//! `-- --pulls N` to pull it N times, `-- --page-size N` for other page sizes).
//! `cargo bench --bench pull -- --ramp [--runs N]` measures the ramp case
//! instead (see [`ramp`]).
//!
//! The bench starts itself again as the fake server (`--serve`, the profile
//! generated there), so the fake's copy of the profile is not in the measured
//! process: the RSS reported is the pulling client's alone, as for `adsync
//! pull` with the server elsewhere. It uses the binary's allocator (mimalloc)
//! with the setting `adsync pull` gives it: freed memory returned at once
//! (`MIMALLOC_PURGE_DELAY=1000` measures the default of the mimalloc linked,
//! v3). It reads each phase's own peak by resetting `VmHWM` before it.
//!
//! Pulls 2,000 campaigns, 20,000 ad groups and 500,000 keywords (pages of 1,000,
//! each staged durably with its checkpoint) into a sled store on disk, then
//! persists them as a new generation. Reports:
//! * fetch time (every page requested, staged and checkpointed);
//! * persist time (staging → chunks → generation flip in the Completed commit)
//!   and persist entities/second — target ≥ 500,000/s;
//! * a second pull of the same profile (persist replaces generation 1);
//! * peak RSS (`VmHWM` from /proc/self/status) of the client process — target
//!   ≤ 150 MB;
//! * the decode cost of the fields adsync keeps verbatim (`Extra`): a page of
//!   1,000 keywords decoded as the fake lists it and with those fields
//!   removed.

use std::sync::Arc;

// The allocator of the `adsync` binary, so the RSS is the one `adsync pull` has.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `purge_delay` option (see `cli/src/main.rs`, which sets it as
/// here for `adsync pull`).
const MI_OPTION_PURGE_DELAY: i32 = 15;

extern "C" {
    fn mi_option_get(option: i32) -> std::os::raw::c_long;
    fn mi_option_set(option: i32, value: std::os::raw::c_long);
}

/// What `adsync pull` does to its allocator: freed memory goes back to the
/// system at once (unless `MIMALLOC_PURGE_DELAY` is set). Returns the delay in
/// force, in milliseconds.
fn purge_freed_memory_at_once() -> std::os::raw::c_long {
    // SAFETY: plain calls into the allocator linked above, which reads and
    // sets an integer option.
    unsafe {
        if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none()
            && [10, 1000].contains(&mi_option_get(MI_OPTION_PURGE_DELAY))
        {
            mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        }
        mi_option_get(MI_OPTION_PURGE_DELAY)
    }
}
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

/// The highest `VmHWM` seen before a [`reset_peak`]: the peak of the process
/// is the larger of this and the current `VmHWM`.
static PEAK_KB: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

fn peak_kb() -> u64 {
    proc_status_kb("VmHWM:").max(PEAK_KB.load(std::sync::atomic::Ordering::Relaxed))
}

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

/// Resets the peak RSS (`VmHWM`) to the current RSS, so that a phase's own
/// peak can be read (Linux: `echo 5 > /proc/PID/clear_refs`).
fn reset_peak() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
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
    let hwm_before = proc_status_kb("VmHWM:");
    reset_peak();
    let t0 = Instant::now();
    puller
        .begin(PROFILE, PullMode::ResumeOrStart)
        .await
        .expect("begin");
    // The first step clears leftovers of earlier pulls (Idle → FetchingCampaigns).
    let mut steps = step_until(puller, PullPhase::FetchingCampaigns).await;
    let peak_clear = proc_status_kb("VmHWM:");
    steps += step_until(puller, PullPhase::Persisting).await;
    let fetch = t0.elapsed();
    let rss_fetched = proc_status_kb("VmRSS:");
    let peak_fetch = proc_status_kb("VmHWM:");
    reset_peak();
    let t1 = Instant::now();
    step_until(puller, PullPhase::Completed).await;
    let persist = t1.elapsed();
    let rss_persisted = proc_status_kb("VmRSS:");
    let peak_persist = proc_status_kb("VmHWM:");
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
        "{label}: peak {:.0} MB while clearing leftovers; RSS {:.0} MB after fetch (peak while fetching {:.0} MB), {:.0} MB after persist (peak while persisting {:.0} MB)",
        mb(peak_clear),
        mb(rss_fetched),
        mb(peak_fetch),
        mb(rss_persisted),
        mb(peak_persist),
    );
    // The peak of the whole process so far, for the caller.
    PEAK_KB.fetch_max(
        hwm_before.max(peak_fetch).max(peak_persist),
        std::sync::atomic::Ordering::Relaxed,
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

fn arg_value<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
}

fn generator(quick: bool) -> Generator {
    Generator {
        campaigns: if quick { 200 } else { 2000 },
        ad_groups_per_campaign: 10,
        keywords_per_ad_group: 25,
        seed: 42,
    }
}

/// `--serve`: the fake server of the measured runs, in its own process. Prints
/// its URL, then serves until its stdin closes (the bench ended or died).
fn serve(quick: bool) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let data = generator(quick).generate();
    let server = rt
        .block_on(FakeAmazon::start(
            FakeAmazonConfig::default().with_profile(PROFILE, data),
        ))
        .expect("fake server");
    println!("{}", server.base_url());
    let mut sink = String::new();
    while std::io::stdin().read_line(&mut sink).is_ok_and(|n| n > 0) {
        sink.clear();
    }
    rt.block_on(server.shutdown());
}

/// The fake server process; killed when dropped.
struct ServerProcess {
    child: std::process::Child,
    url: String,
}

impl ServerProcess {
    fn start(quick: bool) -> Self {
        use std::io::BufRead as _;
        use std::process::{Command, Stdio};
        let mut command = Command::new(std::env::current_exe().expect("own path"));
        command.arg("--serve");
        if quick {
            command.arg("--quick");
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("fake server process");
        let mut url = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut url)
            .expect("the server prints its URL");
        ServerProcess {
            child,
            url: url.trim().to_string(),
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The decode cost of the fields kept verbatim: one page of 1,000 keywords
/// (the wire JSON the fake sends) decoded into `SpKeyword`s `rounds` times,
/// as listed and with every field adsync does not model removed; then the
/// staging encode of the decoded page.
fn extra_decode_cost(rounds: usize) {
    let data = Generator {
        campaigns: 4,
        ad_groups_per_campaign: 10,
        keywords_per_ad_group: 25,
        seed: 42,
    }
    .generate();
    let listed = wire_json(&data.keywords);
    let modelled = [
        "keywordId",
        "campaignId",
        "adGroupId",
        "keywordText",
        "matchType",
        "state",
        "bid",
    ];
    let mut bare = listed.clone();
    for keyword in bare.as_array_mut().expect("array") {
        keyword
            .as_object_mut()
            .expect("object")
            .retain(|k, _| modelled.contains(&k.as_str()));
    }
    let time = |value: &serde_json::Value| {
        let text = serde_json::to_string(value).expect("json");
        let t = Instant::now();
        let mut n = 0;
        for _ in 0..rounds {
            let page: Vec<SpKeyword> = serde_json::from_str(&text).expect("decodes");
            n += page.len();
        }
        let took = t.elapsed().as_secs_f64();
        (text.len(), n as f64 / took)
    };
    let (bytes_listed, rate_listed) = time(&listed);
    let (bytes_bare, rate_bare) = time(&bare);
    println!(
        "Extra decode: {:.0} keywords/s as listed ({} bytes/page) vs {:.0} keywords/s without the unmodelled fields ({} bytes/page): {:.2}× the time",
        rate_listed,
        bytes_listed,
        rate_bare,
        bytes_bare,
        rate_bare / rate_listed
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    if args.iter().any(|a| a == "--serve") {
        serve(quick);
        return;
    }
    if args.iter().any(|a| a == "--ramp") {
        // `--runs N`: alternate the two settings N times (default 3).
        let runs: usize = arg_value(&args, "--runs").unwrap_or(3).max(1);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        ramp(&rt, runs);
        return;
    }
    // `--pulls N`: pull the profile N times (at least 2; later ones replace generations).
    let pulls: usize = arg_value(&args, "--pulls").unwrap_or(2);
    // `--page-size N`: maxResults (default 1000, the fake's largest; Amazon connectors use 100).
    let page_size: u32 = arg_value(&args, "--page-size").unwrap_or(1000);
    let server = ServerProcess::start(quick);
    let purge_delay = purge_freed_memory_at_once();
    println!(
        "fake server in process {} at {}; client RSS before pulling: {:.0} MB; mimalloc purge delay {purge_delay} ms",
        server.child.id(),
        server.url,
        mb(proc_status_kb("VmRSS:"))
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(dir.path().join("adsync.db")).expect("store");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let config = AmazonConfig::new("fake-client-id", "fake-token")
        .with_host(server.url.clone())
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
        let (fetch, persist, n) = one_pull(&puller, "pull 1 (new profile)").await;
        let hwm1 = peak_kb();
        let (fetch2, persist2, n2) = one_pull(&puller, "pull 2 (replaces generation 1)").await;
        for extra in 3..=pulls {
            one_pull(&puller, &format!("pull {extra} (replaces generation {})", extra - 1)).await;
        }
        let hwm_pulls = peak_kb();
        let rate = n as f64 / persist.as_secs_f64();
        let rate2 = n2 as f64 / persist2.as_secs_f64();
        println!(
            "fetch: {:.2} s (pull 1), {:.2} s (pull 2)",
            fetch.as_secs_f64(),
            fetch2.as_secs_f64()
        );
        println!(
            "persist: {:.3} s = {rate:.0} entities/s (pull 1), {:.3} s = {rate2:.0} entities/s (pull 2) — target ≥ 500000: {}",
            persist.as_secs_f64(),
            persist2.as_secs_f64(),
            if rate.min(rate2) >= 500_000.0 { "met" } else { "MISSED" }
        );
        println!(
            "peak RSS (VmHWM) of the client process: {:.0} MB after pull 1, {:.0} MB after the last pull — target ≤ 150 MB: {}",
            mb(hwm1),
            mb(hwm_pulls),
            if mb(hwm_pulls) <= 150.0 { "met" } else { "MISSED" }
        );
        // The fake's profile, regenerated here (after the peak was read) to
        // check what was pulled.
        let data = generator(quick).generate();
        let sample_keyword = data.keywords[data.keywords.len() / 2].clone();
        drop(data);
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
            mb(peak_kb())
        );
    });
    drop(server);
    extra_decode_cost(if quick { 20 } else { 200 });
}
