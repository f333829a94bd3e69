//! Write-ahead: for every side effect of a run, the checkpoint naming that
//! effect was already durable (committed and flushed) when the effect began.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use adsync::adapter::EntityKind;
use adsync::clock::ManualClock;
use adsync::machine::{Machine, Next, Status};
use adsync::platform::memory::{Fault, MemoryPlatform, Op};
use adsync::push::{AdapterEffects, PushEffect, PushMachine, PushOutcome, Pusher};
use adsync::runner::{decode_checkpoint, Effects, Runner};
use adsync::store::Store;
use async_trait::async_trait;
use common::{example_set, start_time, ACCOUNT};

/// Wraps the real effects and checks the store before letting each one start.
struct CheckDurable {
    inner: AdapterEffects,
    store: Store,
    checked: AtomicUsize,
    violations: std::sync::Mutex<Vec<String>>,
}

#[async_trait]
impl Effects<PushMachine> for CheckDurable {
    async fn perform(&self, sync: &str, effect: &PushEffect) -> PushOutcome {
        let record = self
            .store
            .record(sync)
            .expect("read")
            .expect("the sync has a record");
        let durable = self.store.durable_seq(sync);
        let state = decode_checkpoint::<PushMachine>(record.clone())
            .expect("decodes")
            .state;
        let named = PushMachine::next(&state);
        if durable != Some(record.seq) {
            self.violations.lock().unwrap().push(format!(
                "{sync}: seq {} not flushed (durable: {durable:?})",
                record.seq
            ));
        }
        if named != Next::Effect(effect.clone()) {
            self.violations.lock().unwrap().push(format!(
                "{sync}: effect {effect:?} is not the one the durable state names ({named:?})"
            ));
        }
        self.checked.fetch_add(1, Ordering::SeqCst);
        self.inner.perform(sync, effect).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_effect_starts_only_after_the_state_naming_it_is_durable() {
    let clock = Arc::new(ManualClock::new(start_time()));
    let platform = Arc::new(MemoryPlatform::new(clock.clone()));
    // Exercise every effect kind: creates, a transient retry, a lost response and its look-up.
    platform.fail_next(Op::Create, Some(EntityKind::AdGroup), Fault::Transient);
    platform.fail_next(Op::Create, Some(EntityKind::Ad), Fault::LoseResponse);
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("db")).unwrap();
    let effects = Arc::new(CheckDurable {
        inner: AdapterEffects::new(platform.clone()),
        store: store.clone(),
        checked: AtomicUsize::new(0),
        violations: Default::default(),
    });
    let runner = Arc::new(Runner::<PushMachine>::new(
        store.clone(),
        effects.clone(),
        clock.clone(),
    ));
    let pusher = Pusher::new(runner, platform.as_ref(), clock.clone());

    let report = pusher.push(&example_set(), ACCOUNT).await.unwrap();
    assert!(report.all_synced(), "{report:?}");
    // And a second push of the same set: the update path is checked too.
    let report = pusher.push(&example_set(), ACCOUNT).await.unwrap();
    assert!(report
        .campaigns
        .iter()
        .all(|c| c.status == Status::Succeeded));

    let violations = effects.violations.lock().unwrap().clone();
    assert!(violations.is_empty(), "{violations:#?}");
    let history_effects: usize = store
        .list()
        .into_iter()
        .map(|r| {
            store
                .history(&r.unwrap().id)
                .unwrap()
                .iter()
                .filter(|e| e.effect.is_some())
                .count()
        })
        .sum();
    assert_eq!(
        effects.checked.load(Ordering::SeqCst),
        history_effects,
        "every effect was checked"
    );
    assert!(history_effects > 20);
}
