//! Crashes inside the library, on both stores: a push of a set, and a pull
//! of a profile, die at each checkpoint boundary in turn — just before a
//! checkpoint is written (the effect ran, its outcome is lost) and just
//! after (the state is durable, its effect has not started) — then a new
//! process opens the store again and resumes. After every push variant the
//! platform holds exactly one entity per local entity and the store holds
//! all of their ids; after every pull variant the snapshot equals the
//! server's data and no page was fetched twice but the one whose checkpoint
//! the crash prevented.
//!
//! Over HTTP, a push to the fake Reddit server dies at random moments (a
//! random boundary, or its future dropped after a random delay, whatever is
//! in flight) while the server loses responses and answers 5xx and 429;
//! afterwards the server holds each entity once and the store no token.
//!
//! The CLI's crash tests (`cli/tests/crash.rs`, `pull_crash.rs`,
//! `reddit_crash.rs`) SIGKILL an `adsync push` or `pull`, which run on sled
//! only. Here "the process dies" is the runner's test
//! hook unwinding the task that runs the sync, at the chosen boundary;
//! every other sync of the set dies at its own next boundary, and every
//! handle on the store is dropped before the next process opens it. One ad
//! group create also loses its response on top of the crashes.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use adsync::amazon::{AmazonClient, AmazonConfig, ThrottleConfig};
use adsync::memory::{Fault, MemoryPlatform, Op};
use adsync::reddit::{RedditAdapter, RedditConfig};
use adsync::testing::{self as snapshot, AMAZON};
use adsync::{CampaignSet, EntityKind, Hook, HookPoint, HookWhen, ManualClock, PushMachine};
use adsync::{PullMode, PullPolicy, Puller, Pusher, Runner, Status, SystemClock};
use adsync::{PushPolicy, Secret};
use adsync_fakes::amazon::{wire_json, RequestRecord};
use adsync_fakes::reddit::{RedditFault, RedditFaultKind};
use adsync_fakes::{FakeAmazon, FakeAmazonConfig, FakeAmazonHandle, Generator, ProfileData};
use adsync_fakes::{FakeReddit, FakeRedditConfig, FakeRedditHandle};
use common::{start_time, Backend, TestDb, TestStore, ACCOUNT, TWO_CAMPAIGNS};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

on_both_stores!(
    a_push_dying_at_every_checkpoint_boundary_then_resumed_leaves_no_duplicates_and_every_id,
    #[multi_thread]
    a_push_over_http_dying_at_random_moments_then_resumed_leaves_one_entity_each_and_no_token,
    #[multi_thread]
    a_pull_dying_at_every_checkpoint_boundary_then_resumed_fetches_no_page_twice,
);

const LOCAL_ENTITIES: usize = 9;

fn set() -> CampaignSet {
    CampaignSet::from_json(TWO_CAMPAIGNS, "two.json").expect("fixture parses")
}

/// Where the process dies: at the `n`-th checkpoint boundary of the run
/// (1-based, over all syncs), before or after that checkpoint is durable.
#[derive(Clone, Copy, Debug)]
struct CrashAt {
    n: u64,
    when: HookWhen,
}

/// What unwinds a dying task (not a panic: nothing is printed).
struct Died;

/// The runner's hook for `at`, and the flag it raises when the process
/// dies. Concurrent syncs interleave their boundaries, so the n-th "before"
/// is remembered by (sync, seq) and its own "after" is the one that kills.
/// Once dead, every sync dies at its next boundary.
fn crash_hook(at: CrashAt) -> (Hook, Arc<AtomicBool>) {
    let seen = AtomicU64::new(0);
    let marked = parking_lot::Mutex::new(None::<(String, u64)>);
    let dead = Arc::new(AtomicBool::new(false));
    let died = dead.clone();
    let hook: Hook = Arc::new(move |point: &HookPoint| {
        if dead.load(Ordering::SeqCst) {
            std::panic::resume_unwind(Box::new(Died));
        }
        let dies = match point.when {
            HookWhen::BeforeCommit => {
                let n = seen.fetch_add(1, Ordering::SeqCst) + 1;
                if n == at.n {
                    *marked.lock() = Some((point.sync.clone(), point.seq));
                }
                n == at.n && at.when == HookWhen::BeforeCommit
            }
            HookWhen::AfterCommit => {
                at.when == HookWhen::AfterCommit
                    && marked.lock().as_ref() == Some(&(point.sync.clone(), point.seq))
            }
        };
        if dies {
            dead.store(true, Ordering::SeqCst);
            std::panic::resume_unwind(Box::new(Died));
        }
    });
    (hook, died)
}

/// The runner's hook for `crash` (none for `None`), and the flag raised
/// when the process dies.
fn hook_for(crash: Option<CrashAt>) -> (Option<Hook>, Arc<AtomicBool>) {
    match crash.map(crash_hook) {
        Some((hook, died)) => (Some(hook), died),
        None => (None, Arc::default()),
    }
}

/// Installs `hook`, if any, on a runner.
fn hooked<M: adsync::CheckpointCodec>(hook: Option<Hook>) -> impl FnOnce(Runner<M>) -> Runner<M> {
    move |runner| match hook {
        Some(hook) => runner.with_seed(7).with_hook(hook),
        None => runner.with_seed(7),
    }
}

/// One process running `work` in a task of its own: a death unwinds it and
/// nothing more. Everything the work holds is dropped when it returns.
async fn process<Fut>(work: Fut)
where
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    if let Err(e) = tokio::spawn(work).await {
        let cause = e.into_panic();
        if !cause.is::<Died>() {
            std::panic::resume_unwind(cause);
        }
    }
}

/// Checks the invariant after a run: one platform entity per local entity,
/// and every id in the store is one the platform holds, for the right
/// entity. Returns the number of transitions (checkpoint boundaries).
async fn check(store: &TestStore, platform: &MemoryPlatform, variant: &str) -> u64 {
    let held = platform.entities();
    assert!(
        platform.duplicates().is_empty(),
        "{variant}: duplicates {:?}",
        platform.duplicates()
    );
    assert_eq!(
        held.len(),
        LOCAL_ENTITIES,
        "{variant}: platform holds {held:#?}"
    );
    let mut ids = 0;
    let mut transitions = 0;
    for record in store.list().await {
        let record = record.expect("readable");
        assert_eq!(record.status, Status::Succeeded, "{variant}: {record:?}");
        transitions += store.history(&record.id).await.len() as u64 - 1;
        let checkpoint = adsync::Checkpoint::<PushMachine>::try_from(record).expect("decodes");
        for e in checkpoint.state.entities().iter() {
            let id = e
                .platform_id()
                .unwrap_or_else(|| panic!("{variant}: {} has no id", e.local_id()));
            let on_platform = held
                .iter()
                .find(|h| h.id == id)
                .unwrap_or_else(|| panic!("{variant}: {id} not on platform"));
            assert_eq!(
                (on_platform.kind, on_platform.name.as_str()),
                (e.kind(), e.spec().lookup_name()),
                "{variant}"
            );
            ids += 1;
        }
    }
    assert_eq!(ids, LOCAL_ENTITIES, "{variant}");
    transitions
}

/// A push of the set that dies at `crash` (never, for `None`), then a new
/// process that resumes everything unfinished; checked as [`check`] does.
async fn push_crash_resume(backend: Backend, crash: Option<CrashAt>) -> u64 {
    let variant = format!("{crash:?}");
    let db = TestDb::new(backend);
    let clock = Arc::new(ManualClock::new(start_time()));
    let platform = Arc::new(MemoryPlatform::new(clock.clone()));
    platform.fail_next(Op::Create, Some(EntityKind::AdGroup), Fault::LoseResponse);
    let pusher = |store: TestStore, hook: Option<Hook>| {
        Pusher::new(store, platform.clone(), clock.clone()).with_runner(hooked(hook))
    };
    let (hook, died) = hook_for(crash);
    let dying = pusher(db.open().await, hook);
    process(async move {
        // The sync tasks that die are reported as failed: the process is
        // gone all the same.
        let _ = dying.push(&set(), ACCOUNT).await;
    })
    .await;
    assert_eq!(
        died.load(Ordering::SeqCst),
        crash.is_some(),
        "{variant}: died"
    );
    let resuming = pusher(db.open().await, None);
    process(async move {
        let report = resuming.resume_all().await.expect("resumes");
        assert!(report.errors.is_empty(), "{:?}", report.errors);
    })
    .await;
    check(&db.open().await, &platform, &variant).await
}

async fn a_push_dying_at_every_checkpoint_boundary_then_resumed_leaves_no_duplicates_and_every_id(
    backend: Backend,
) {
    // A clean run tells how many checkpoint boundaries there are.
    let boundaries = push_crash_resume(backend, None).await;
    assert!(boundaries >= LOCAL_ENTITIES as u64, "{boundaries}");
    for n in 1..=boundaries {
        for when in [HookWhen::BeforeCommit, HookWhen::AfterCommit] {
            push_crash_resume(backend, Some(CrashAt { n, when })).await;
        }
    }
}

const PROFILE: &str = "271828";
const PAGE: usize = 4;

fn profile() -> ProfileData {
    Generator {
        campaigns: 3,
        ad_groups_per_campaign: 2,
        keywords_per_ad_group: 4,
        seed: 9,
    }
    .generate()
}

fn pages_of(d: &ProfileData) -> usize {
    [d.campaigns.len(), d.ad_groups.len(), d.keywords.len()]
        .iter()
        .map(|n| n.div_ceil(PAGE).max(1))
        .sum()
}

/// The pages served (200) since the last call, as (endpoint, nextToken).
fn take_pages(server: &FakeAmazonHandle) -> Vec<(String, Option<String>)> {
    let log: Vec<RequestRecord> = server.requests();
    server.clear_requests();
    log.into_iter()
        .filter(|r| r.status == 200)
        .map(|r| (r.path, r.next_token))
        .collect()
}

fn puller(store: TestStore, server: &FakeAmazonHandle, hook: Option<Hook>) -> Puller {
    let client = AmazonClient::new(
        AmazonConfig::new("fake-client-id", "fake-token")
            .with_host(server.base_url())
            .with_throttle(ThrottleConfig {
                initial_rate: 1000.0,
                max_rate: 1000.0,
                burst: 100.0,
                ..ThrottleConfig::default()
            }),
    )
    .expect("client");
    Puller::new(store, client, Arc::new(SystemClock))
        .with_runner(hooked(hook))
        .with_policy(PullPolicy {
            page_size: PAGE as u32,
            ..PullPolicy::default()
        })
}

/// The pull's checkpoints after the start (each one a hook point).
async fn checkpoints(store: &TestStore) -> u64 {
    store
        .record(&adsync::testing::pull_sync_id(AMAZON, PROFILE))
        .await
        .seq
}

async fn assert_persisted_equals(store: &TestStore, expected: &ProfileData, variant: &str) {
    let snap = store
        .read(|r| snapshot::read_snapshot(r, AMAZON, PROFILE))
        .await
        .expect("the store serves reads")
        .expect("the snapshot reads")
        .unwrap_or_else(|| panic!("{variant}: nothing persisted"));
    assert_eq!(
        wire_json(&snap.campaigns),
        wire_json(&expected.campaigns),
        "{variant}"
    );
    assert_eq!(
        wire_json(&snap.ad_groups),
        wire_json(&expected.ad_groups),
        "{variant}"
    );
    assert_eq!(
        wire_json(&snap.keywords),
        wire_json(&expected.keywords),
        "{variant}"
    );
}

async fn a_pull_dying_at_every_checkpoint_boundary_then_resumed_fetches_no_page_twice(
    backend: Backend,
) {
    let expected = profile();
    let server =
        FakeAmazon::start(FakeAmazonConfig::default().with_profile(PROFILE, expected.clone()))
            .await
            .expect("fake server starts");
    let all_pages = pages_of(&expected);

    // A clean run tells how many checkpoint boundaries there are.
    let clean = TestDb::new(backend).open().await;
    let status = puller(clean.clone(), &server, None)
        .pull(PROFILE, PullMode::ResumeOrStart)
        .await
        .expect("pulls");
    assert_eq!(status.state, adsync::SyncState::Completed);
    let boundaries = checkpoints(&clean).await;
    assert_eq!(
        boundaries as usize,
        1 + all_pages + 1,
        "cleanup, pages, persist"
    );
    assert_eq!(take_pages(&server).len(), all_pages);
    assert_persisted_equals(&clean, &expected, "clean").await;

    for n in 1..=boundaries {
        for when in [HookWhen::BeforeCommit, HookWhen::AfterCommit] {
            let variant = format!("dies at checkpoint {n} ({when:?})");
            let db = TestDb::new(backend);
            let (hook, died) = hook_for(Some(CrashAt { n, when }));
            let dying = puller(db.open().await, &server, hook);
            process(async move {
                let _ = dying.pull(PROFILE, PullMode::ResumeOrStart).await;
            })
            .await;
            assert!(died.load(Ordering::SeqCst), "{variant}: did not die");
            let before = take_pages(&server);
            if n == boundaries && when == HookWhen::AfterCommit {
                // Completed was durable: the pull is done (pulling again
                // would be a new pull, not a resume).
                assert_eq!(before.len(), all_pages, "{variant}");
                assert_persisted_equals(&db.open().await, &expected, &variant).await;
                continue;
            }
            let store = db.open().await;
            let status = puller(store.clone(), &server, None)
                .pull(PROFILE, PullMode::ResumeOrStart)
                .await
                .expect("resumes");
            assert_eq!(status.state, adsync::SyncState::Completed, "{variant}");
            let after = take_pages(&server);
            assert_persisted_equals(&store, &expected, &variant).await;

            // Every page was fetched; none twice, except the one page whose
            // checkpoint the crash prevented ("before": fetched, not staged).
            let first: HashSet<_> = before.iter().cloned().collect();
            let second: HashSet<_> = after.iter().cloned().collect();
            assert_eq!(first.len(), before.len(), "{variant}: {before:?}");
            assert_eq!(second.len(), after.len(), "{variant}: {after:?}");
            let twice: Vec<_> = first.intersection(&second).collect();
            match when {
                HookWhen::AfterCommit => {
                    assert!(twice.is_empty(), "{variant}: refetched {twice:?}")
                }
                HookWhen::BeforeCommit => {
                    assert!(twice.len() <= 1, "{variant}: refetched {twice:?}");
                    if let Some(page) = twice.first() {
                        assert_eq!(Some(*page), before.last(), "{variant}");
                    }
                }
            }
            assert_eq!(first.union(&second).count(), all_pages, "{variant}");
        }
    }
    server.shutdown().await;
}

/// Local entities of [`TWO_CAMPAIGNS`] the Reddit server holds (keywords are
/// ad group targeting there): (local id, kind, name).
const ON_REDDIT: [(&str, &str, &str); 7] = [
    ("c1", "campaign", "Campaign one"),
    ("c2", "campaign", "Campaign two"),
    ("g1", "ad_group", "Group one"),
    ("g2", "ad_group", "Group two"),
    ("g3", "ad_group", "Group three"),
    ("a1", "ad", "Ad one"),
    ("a2", "ad", "Ad two"),
];

/// A lost create response, and maybe 500s, a 429 and a dropped connection.
fn random_faults(rng: &mut StdRng) -> Vec<RedditFault> {
    let paths = ["/campaigns", "/ad_groups", "/ads"];
    let mut faults = vec![
        RedditFault::new(RedditFaultKind::LoseResponse { withhold_ms: None })
            .method("POST")
            .path_contains(paths[rng.random_range(0..paths.len())])
            .times(1),
    ];
    if rng.random_bool(0.6) {
        let method = ["POST", "GET", "PATCH"][rng.random_range(0..3)];
        faults.push(
            RedditFault::new(RedditFaultKind::Status {
                status: 500,
                after_apply: method != "GET" && rng.random_bool(0.5),
                retry_after_secs: None,
                reset_secs: None,
            })
            .method(method)
            .times(rng.random_range(1..=2)),
        );
    }
    if rng.random_bool(0.6) {
        let method = ["POST", "GET", "PATCH"][rng.random_range(0..3)];
        faults.push(
            RedditFault::new(RedditFaultKind::Status {
                status: 429,
                after_apply: false,
                retry_after_secs: None,
                reset_secs: None,
            })
            .method(method)
            .times(1),
        );
    }
    if rng.random_bool(0.4) {
        faults.push(
            RedditFault::new(RedditFaultKind::Drop)
                .method("GET")
                .times(1),
        );
    }
    faults
}

fn reddit_pusher(store: TestStore, fake: &FakeRedditHandle, hook: Option<Hook>) -> Pusher {
    let backoff = adsync::Backoff {
        base: Duration::from_millis(5),
        max: Duration::from_millis(20),
        max_attempts: 3,
    };
    let adapter = RedditAdapter::new(RedditConfig {
        base_url: fake.base_url(),
        token: Some(Secret::new(fake.config().token.clone())),
        timeout: Duration::from_secs(5),
        backoff,
        ..RedditConfig::default()
    })
    .expect("adapter");
    Pusher::new(store, Arc::new(adapter), Arc::new(SystemClock))
        .with_runner(hooked(hook))
        .with_policy(PushPolicy {
            backoff,
            ..PushPolicy::default()
        })
}

async fn a_push_over_http_dying_at_random_moments_then_resumed_leaves_one_entity_each_and_no_token(
    backend: Backend,
) {
    let seed = std::env::var("ADSYNC_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    println!("ADSYNC_CRASH_SEED={seed}");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut died = 0;
    for round in 0..6 {
        let fake = FakeReddit::start(FakeRedditConfig::default())
            .await
            .expect("fake Reddit starts");
        let token = fake.config().token.clone();
        let db = TestDb::new(backend);
        let faults = random_faults(&mut rng);
        let variant = format!("round {round}: {faults:?}");
        for fault in faults {
            fake.inject(fault);
        }

        // Dies at a checkpoint boundary, or wherever it is after a delay.
        let (hook, dead) = if rng.random_bool(0.5) {
            let at = CrashAt {
                n: rng.random_range(1..=16),
                when: [HookWhen::BeforeCommit, HookWhen::AfterCommit][rng.random_range(0..2)],
            };
            hook_for(Some(at))
        } else {
            hook_for(None)
        };
        let delay = Duration::from_millis(rng.random_range(5..80));
        let dying = reddit_pusher(db.open().await, &fake, hook);
        let cut_off = Arc::new(AtomicBool::new(false));
        let cut = cut_off.clone();
        process(async move {
            let set = set();
            if tokio::time::timeout(delay, dying.push(&set, ACCOUNT))
                .await
                .is_err()
            {
                cut.store(true, Ordering::SeqCst);
            }
        })
        .await;
        if dead.load(Ordering::SeqCst) || cut_off.load(Ordering::SeqCst) {
            died += 1;
        }

        // A new process resumes what was started, then pushes the set again
        // (the dead one may not have started every sync): ids are reused.
        let store = db.open().await;
        let resuming = reddit_pusher(store.clone(), &fake, None);
        let report = resuming.resume_all().await.expect("resumes");
        assert!(report.errors.is_empty(), "{variant}: {:?}", report.errors);
        let report = resuming.push(&set(), ACCOUNT).await.expect("pushes");
        assert!(report.all_synced(), "{variant}: {report:#?}");
        drop((resuming, store));

        let held = fake.entities();
        assert!(
            held.duplicates().is_empty(),
            "{variant}: duplicates {:?}",
            held.duplicates()
        );
        assert_eq!(
            (held.campaigns.len(), held.ad_groups.len(), held.ads.len()),
            (2, 3, 2),
            "{variant}: the server holds {held:#?}"
        );
        let on_server: Vec<(String, String, String)> = [
            ("campaign", &held.campaigns),
            ("ad_group", &held.ad_groups),
            ("ad", &held.ads),
        ]
        .into_iter()
        .flat_map(|(kind, list)| {
            list.iter().map(move |v| {
                let text = |k: &str| v[k].as_str().unwrap_or_default().to_string();
                (text("id"), kind.to_string(), text("name"))
            })
        })
        .collect();
        for (local, kind, name) in ON_REDDIT {
            let id = report
                .campaigns
                .iter()
                .flat_map(|c| &c.entities)
                .find(|e| e.local_id == local)
                .and_then(|e| e.platform_id.clone())
                .unwrap_or_else(|| panic!("{variant}: {local} has no id"));
            assert!(
                on_server.contains(&(id.clone(), kind.to_string(), name.to_string())),
                "{variant}: {local} → {id} is not on the server: {on_server:?}"
            );
        }
        let leaked = db.places_holding(&token).await;
        assert!(
            leaked.is_empty(),
            "{variant}: the token is stored in {leaked:?}"
        );
        fake.shutdown().await;
    }
    assert!(died > 0, "no process died");
}
