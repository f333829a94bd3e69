//! Converging pushes of a 1,000-entity set to the fake Reddit Ads server over
//! HTTP, at the limits of the `reddit_push` bench (200 writes and 400 reads
//! per 1 s window, Reddit's 200 writes per minute scaled to a second).
//!
//! Run: `cargo bench --bench converge` (`-- --rounds N` for several rounds).
//!
//! The set is `reddit_push`'s: 20 campaigns × (1 + 7 ad groups × (1 + 6
//! ads)) = 1,000 entities, pushed once to start. Then, each measured:
//! * `plan` of the same set: reads only (target: 0 writes);
//! * a re-push of the unchanged set (target: 0 writes, wall time within
//!   1.1× of the reads it needs ÷ the read budget);
//! * a re-push with 10% of the entities changed, 100 ad groups' bids
//!   (target: 100 writes, each PATCH holding only the changed field).

use std::sync::Arc;
use std::time::{Duration, Instant};

use adsync::converge::PlanOptions;
use adsync::{CampaignSet, Clock, Pusher, Store, SystemClock};
use adsync_fakes::fixtures::{campaign, Shape};
use adsync_fakes::reddit::FakeEntities;
use adsync_fakes::FakeRedditHandle;

const CAMPAIGNS: usize = 20;
const GROUPS: usize = 7;
const ADS: usize = 6;
const CHANGED: usize = 100;
const WRITES_PER_SECOND: u32 = 200;
const READS_PER_SECOND: u32 = 400;

const SHAPE: Shape = Shape {
    ad_groups: GROUPS,
    ads: ADS,
    keywords: 0,
};

struct Measured {
    case: &'static str,
    wall: Duration,
    reads: usize,
    writes: usize,
    /// PATCHes whose body holds more than one field.
    wide_patches: usize,
    throttled: usize,
    ok: bool,
}

impl Measured {
    fn of(case: &'static str, wall: Duration, fake: &FakeRedditHandle, ok: bool) -> Self {
        let log = fake.requests();
        Measured {
            case,
            wall,
            reads: log.iter().filter(|r| r.method == "GET").count(),
            writes: log.iter().filter(|r| r.method != "GET").count(),
            wide_patches: log
                .iter()
                .filter(|r| r.method == "PATCH")
                .filter(|r| {
                    r.data
                        .as_ref()
                        .and_then(|d| d.as_object())
                        .is_none_or(|d| d.len() > 1)
                })
                .count(),
            throttled: log.iter().filter(|r| r.status == Some(429)).count(),
            ok,
        }
    }
}

async fn round(n: usize) -> (Vec<Measured>, usize, usize) {
    let set = CampaignSet {
        name: "bench".into(),
        campaigns: (0..CAMPAIGNS).map(|i| campaign(i, SHAPE)).collect(),
    };
    let window = Duration::from_secs(1);
    let (fake, adapter) =
        adsync_fakes::bench::scaled_reddit(READS_PER_SECOND, WRITES_PER_SECOND, window, true).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = Store::open(dir.path().join("adsync.db")).expect("store");
    let pusher = Pusher::new(store, adapter.clone(), clock);
    let account = format!("a2_bench{n}");
    let mut out = Vec::new();

    fake.clear_requests();
    let start = Instant::now();
    let first = pusher.push(&set, &account).await.expect("push starts");
    out.push(Measured::of(
        "first push (creates)",
        start.elapsed(),
        &fake,
        first.all_synced(),
    ));
    // The first window's budget is spent: start each case on a fresh one.
    tokio::time::sleep(window).await;

    fake.clear_requests();
    let start = Instant::now();
    let plans = pusher
        .plan(&set, &account, PlanOptions::default())
        .await
        .expect("plan");
    out.push(Measured::of(
        "plan, unchanged set",
        start.elapsed(),
        &fake,
        plans.iter().all(|p| !p.has_changes()),
    ));
    tokio::time::sleep(window).await;

    fake.clear_requests();
    let start = Instant::now();
    let again = pusher.push(&set, &account).await.expect("push starts");
    out.push(Measured::of(
        "re-push, unchanged set",
        start.elapsed(),
        &fake,
        again.all_synced(),
    ));
    tokio::time::sleep(window).await;

    let mut changed = set.clone();
    let groups = changed
        .campaigns
        .iter_mut()
        .flat_map(|c| c.ad_groups.iter_mut())
        .take(CHANGED);
    for (i, group) in groups.enumerate() {
        group.bid_value_micros = Some(1_000_000 + i as u64);
    }
    fake.clear_requests();
    let start = Instant::now();
    let changed_push = pusher.push(&changed, &account).await.expect("push starts");
    out.push(Measured::of(
        "re-push, 10% changed",
        start.elapsed(),
        &fake,
        changed_push.all_synced(),
    ));

    let held = FakeEntities::fetch(fake.addr()).await.expect("admin");
    fake.shutdown().await;
    (out, held.len(), held.duplicates().len())
}

fn main() {
    let rounds = std::env::args()
        .skip_while(|a| a != "--rounds")
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(1usize);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let entities = CAMPAIGNS * (1 + GROUPS * (1 + ADS));
    println!(
        "converging push: {CAMPAIGNS} campaigns, {entities} entities, fake server and client limiter at {WRITES_PER_SECOND} writes/s, {READS_PER_SECOND} reads/s"
    );
    println!("round | case | wall time | reads | writes | PATCHes of >1 field | ideal (the larger of reads ÷ read rate and writes ÷ write rate) | ratio | 429s | ok");
    let mut met = true;
    for n in 1..=rounds {
        let (cases, held, duplicates) = runtime.block_on(round(n));
        for m in &cases {
            // Reads and writes have budgets of their own, spent side by side.
            let ideal = Duration::from_secs_f64(f64::max(
                m.reads as f64 / f64::from(READS_PER_SECOND),
                m.writes as f64 / f64::from(WRITES_PER_SECOND),
            ));
            let ratio = m.wall.as_secs_f64() / ideal.as_secs_f64();
            println!(
                "{n:>5} | {} | {:.3} s | {} | {} | {} | {:.3} s | {ratio:.3} | {} | {}",
                m.case,
                m.wall.as_secs_f64(),
                m.reads,
                m.writes,
                m.wide_patches,
                ideal.as_secs_f64(),
                m.throttled,
                m.ok
            );
            met &= m.ok && m.throttled == 0;
            match m.case {
                "plan, unchanged set" => met &= m.writes == 0,
                "re-push, unchanged set" => met &= m.writes == 0 && ratio <= 1.1,
                "re-push, 10% changed" => met &= m.writes == CHANGED && m.wide_patches == 0,
                _ => {}
            }
        }
        println!("{n:>5} | platform holds {held} entities, {duplicates} duplicates");
        met &= held == entities && duplicates == 0;
    }
    println!(
        "targets (plan and unchanged re-push: 0 writes, re-push within 1.1× of its reads ÷ read rate; 10% changed: one single-field PATCH per changed entity; no 429, no duplicate): {}",
        if met { "met" } else { "NOT met" }
    );
}
