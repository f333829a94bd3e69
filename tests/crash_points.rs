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
//! The CLI's crash tests (`cli/tests/crash.rs`, `pull_crash.rs`) SIGKILL an
//! `adsync push` or `pull`, which run on sled only. Here "the process dies" is the runner's test
//! hook unwinding the task that runs the sync, at the chosen boundary;
//! every other sync of the set dies at its own next boundary, and every
//! handle on the store is dropped before the next process opens it. One ad
//! group create also loses its response on top of the crashes.

mod common;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use adsync::amazon::{AmazonClient, AmazonConfig, ThrottleConfig};
use adsync::memory::{Fault, MemoryPlatform, Op};
use adsync::testing::{self as snapshot, AMAZON};
use adsync::{CampaignSet, EntityKind, Hook, HookPoint, HookWhen, ManualClock, PushMachine};
use adsync::{PullMode, PullPolicy, Puller, Pusher, Runner, Status, SystemClock};
use adsync_fakes::amazon::{wire_json, RequestRecord};
use adsync_fakes::{FakeAmazon, FakeAmazonConfig, FakeAmazonHandle, Generator, ProfileData};
use common::{start_time, Backend, TestDb, TestStore, ACCOUNT, TWO_CAMPAIGNS};

on_both_stores!(
    a_push_dying_at_every_checkpoint_boundary_then_resumed_leaves_no_duplicates_and_every_id,
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
