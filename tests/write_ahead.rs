//! Write-ahead: for every side effect of a run, the checkpoint naming that
//! effect was already durable (committed and flushed) when the effect began.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use adsync::memory::{Fault, MemoryPlatform, Op};
use adsync::CampaignSet;
use adsync::Commit;
use adsync::EntityKind;
use adsync::ManualClock;
use adsync::Store;
use adsync::{AdapterEffects, PushEffect, PushMachine, PushOutcome, Pusher};
use adsync::{Checkpoint, Effects};
use adsync::{Machine, Next, Status};
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
    async fn perform(&self, sync: &str, effect: &PushEffect) -> (PushOutcome, Commit) {
        let record = self
            .store
            .record(sync)
            .expect("read")
            .expect("the sync has a record");
        let durable = self.store.durable_seq(sync);
        let state = Checkpoint::<PushMachine>::try_from(record.clone())
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
    let pusher = Pusher::new(store.clone(), platform.clone(), clock.clone());
    // The pusher starts the syncs; its runner runs them through the checking effects.
    let push = |set: CampaignSet| {
        let (pusher, effects) = (&pusher, effects.clone());
        async move {
            let ids = pusher.start(&set, ACCOUNT).await.unwrap();
            let mut done = Vec::new();
            for id in &ids {
                done.push(pusher.runner().run(id, effects.as_ref()).await);
            }
            done
        }
    };

    for done in push(example_set()).await {
        assert_eq!(done.unwrap().record.status, Status::Succeeded);
    }
    // And a second push of the same set: the update path is checked too.
    for done in push(example_set()).await {
        assert_eq!(done.unwrap().record.status, Status::Succeeded);
    }

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
