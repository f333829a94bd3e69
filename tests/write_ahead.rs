//! Write-ahead: for every side effect of a run, the checkpoint naming that
//! effect was already durable (committed and flushed) when the effect began,
//! on sled and on PostgreSQL.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use adsync::memory::{Fault, MemoryPlatform, Op};
use adsync::CampaignSet;
use adsync::Commit;
use adsync::EntityKind;
use adsync::ManualClock;
use adsync::{AdapterEffects, PushEffect, PushMachine, PushOutcome, Pusher};
use adsync::{Checkpoint, Effects};
use adsync::{Machine, Next, Status};
use async_trait::async_trait;
use common::{example_set, start_time, Backend, TestStore, ACCOUNT};

on_both_stores!(
    #[multi_thread]
    every_effect_starts_only_after_the_state_naming_it_is_durable
);

/// Wraps the real effects and checks the store before letting each one start.
struct CheckDurable {
    inner: AdapterEffects,
    store: TestStore,
    checked: AtomicUsize,
    violations: std::sync::Mutex<Vec<String>>,
}

#[async_trait]
impl Effects<PushMachine> for CheckDurable {
    async fn perform(&self, sync: &str, effect: &PushEffect) -> (PushOutcome, Commit) {
        let record = self.store.record(sync).await;
        let durable = self.store.durable_seq(sync).await;
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

async fn every_effect_starts_only_after_the_state_naming_it_is_durable(backend: Backend) {
    let clock = Arc::new(ManualClock::new(start_time()));
    let platform = Arc::new(MemoryPlatform::new(clock.clone()).without_listing());
    // Exercise every effect kind: creates, a transient retry, a lost response and its look-up.
    platform.fail_next(Op::Create, Some(EntityKind::AdGroup), Fault::Transient);
    platform.fail_next(Op::Create, Some(EntityKind::Ad), Fault::LoseResponse);
    let store = TestStore::temporary(backend).await;
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
    let mut history_effects = 0;
    for record in store.list().await {
        let history = store.history(&record.unwrap().id).await;
        history_effects += history.iter().filter(|e| e.effect.is_some()).count();
    }
    assert_eq!(
        effects.checked.load(Ordering::SeqCst),
        history_effects,
        "every effect was checked"
    );
    assert!(history_effects > 20);
}
