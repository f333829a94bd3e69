//! Crashes inside the library, on both stores: a push of a set dies at each
//! checkpoint boundary in turn — just before a checkpoint is written (the
//! effect ran, its outcome is lost) and just after (the state is durable,
//! its effect has not started) — then a new process opens the store again
//! and resumes. After every variant the platform holds exactly one entity
//! per local entity and the store holds all of their ids.
//!
//! The CLI's crash tests (`cli/tests/crash.rs`) SIGKILL an `adsync push`,
//! which runs on sled only. Here "the process dies" is the runner's test
//! hook unwinding the task that runs the sync, at the chosen boundary;
//! every other sync of the set dies at its own next boundary, and every
//! handle on the store is dropped before the next process opens it. One ad
//! group create also loses its response on top of the crashes.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use adsync::memory::{Fault, MemoryPlatform, Op};
use adsync::{CampaignSet, EntityKind, Hook, HookPoint, HookWhen, ManualClock, PushMachine};
use adsync::{Pusher, Status};
use common::{start_time, Backend, TestDb, TestStore, ACCOUNT, TWO_CAMPAIGNS};

on_both_stores!(every_checkpoint_boundary_then_resume_leaves_no_duplicates_and_every_id);

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

/// One process: a pusher on the store of `db` (with `hook`), running `work`.
/// Everything it holds is dropped when it returns.
async fn process<F, Fut>(
    db: &TestDb,
    platform: &Arc<MemoryPlatform>,
    clock: &Arc<ManualClock>,
    hook: Option<Hook>,
    work: F,
) where
    F: FnOnce(Pusher) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let pusher =
        Pusher::new(db.open().await, platform.clone(), clock.clone()).with_runner(|runner| {
            match hook {
                Some(hook) => runner.with_seed(7).with_hook(hook),
                None => runner.with_seed(7),
            }
        });
    // A task of its own, as a process: a death unwinds it and nothing more.
    if let Err(e) = tokio::spawn(work(pusher)).await {
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
    let (hook, died) = match crash.map(crash_hook) {
        Some((hook, died)) => (Some(hook), died),
        None => (None, Arc::default()),
    };
    process(&db, &platform, &clock, hook, |pusher| async move {
        // The sync tasks that die are reported as failed: the process is
        // gone all the same.
        let _ = pusher.push(&set(), ACCOUNT).await;
    })
    .await;
    assert_eq!(
        died.load(Ordering::SeqCst),
        crash.is_some(),
        "{variant}: died"
    );
    process(&db, &platform, &clock, None, |pusher| async move {
        let report = pusher.resume_all().await.expect("resumes");
        assert!(report.errors.is_empty(), "{:?}", report.errors);
    })
    .await;
    check(&db.open().await, &platform, &variant).await
}

async fn every_checkpoint_boundary_then_resume_leaves_no_duplicates_and_every_id(backend: Backend) {
    // A clean run tells how many checkpoint boundaries there are.
    let boundaries = push_crash_resume(backend, None).await;
    assert!(boundaries >= LOCAL_ENTITIES as u64, "{boundaries}");
    for n in 1..=boundaries {
        for when in [HookWhen::BeforeCommit, HookWhen::AfterCommit] {
            push_crash_resume(backend, Some(CrashAt { n, when })).await;
        }
    }
}
