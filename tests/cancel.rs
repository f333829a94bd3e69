//! Cancelling a push: it lands at a step boundary, keeps every platform id,
//! never while a create's outcome is unknown, and a later push of the same set
//! updates what the cancelled one created instead of duplicating it. On sled
//! and on PostgreSQL.

mod common;

use std::sync::Arc;

use adsync::memory::MemoryPlatform;
use adsync::{
    CampaignSet, Cancel, EntityResult, ManualClock, PushPhase, Pusher, RunError, Status, Step,
};
use common::{Backend, TestDb, TestStore};

on_both_stores!(
    a_cancelled_push_keeps_its_ids_and_the_next_push_updates_them,
    after_a_restart_a_create_that_may_have_run_is_looked_up_before_the_cancel_lands,
    a_sync_parked_for_an_operator_is_not_cancelled_behind_their_back,
);

fn set() -> CampaignSet {
    CampaignSet::from_json(
        r#"{"name": "s", "campaigns": [
            {"id": "c1", "name": "Spring", "objective": "CLICKS",
             "ad_groups": [{"id": "g1", "name": "Trail", "ads": [
                {"id": "a1", "name": "Trail video", "post_id": "t3_abc"}]}]}]}"#,
        "inline.json",
    )
    .expect("set")
}

fn clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(time::OffsetDateTime::UNIX_EPOCH))
}

async fn a_cancelled_push_keeps_its_ids_and_the_next_push_updates_them(backend: Backend) {
    let clock = clock();
    let platform = Arc::new(MemoryPlatform::new(clock.clone()).without_listing());
    let pusher = Pusher::new(TestStore::temporary(backend).await, platform.clone(), clock);
    let ids = pusher.start(&set(), "a2").await.unwrap();
    assert!(matches!(
        pusher.step(&ids[0]).await.unwrap(),
        Step::Transitioned(_)
    ));

    // Nothing is in flight. On a store of one's own (sled) the cancel lands
    // at once. On a shared store (PostgreSQL) only the holder of a sync's
    // lease writes its states, and this runner holds none: the request is
    // durable and lands at the sync's next step boundary, before any effect.
    let t = match (backend, pusher.runner().cancel(&ids[0]).await.unwrap()) {
        (Backend::Sled, Cancel::Cancelled(t)) => t,
        (Backend::Postgres, Cancel::Requested) => match pusher.step(&ids[0]).await.unwrap() {
            Step::Transitioned(t) => t,
            other => panic!("the requested cancel lands at the next step: {other:?}"),
        },
        (backend, other) => panic!("{backend:?}: {other:?}"),
    };
    assert_eq!(
        (t.from, t.to),
        (PushPhase::CampaignCreated, PushPhase::Cancelled)
    );
    let cancelled = pusher.runner().get(&ids[0]).await.unwrap();
    assert_eq!(cancelled.record.status, Status::Cancelled);
    let campaign = &cancelled.state.entities()[0];
    assert_eq!(*campaign.result(), EntityResult::Created);
    assert!(
        campaign.platform_id().is_some(),
        "the campaign's id is kept"
    );
    assert!(matches!(
        pusher.step(&ids[0]).await.unwrap(),
        Step::Settled(Status::Cancelled)
    ));
    assert_eq!(platform.creations(), 1);

    // A new push of the same set is a new sync that updates the campaign.
    let report = pusher.push(&set(), "a2").await.unwrap();
    assert!(report.all_synced(), "{report:?}");
    assert_eq!(
        platform.creations(),
        3,
        "ad group and ad; the campaign once"
    );
    assert!(platform.duplicates().is_empty());
}

async fn after_a_restart_a_create_that_may_have_run_is_looked_up_before_the_cancel_lands(
    backend: Backend,
) {
    let db = TestDb::new(backend);
    let clock = clock();
    let platform = Arc::new(MemoryPlatform::new(clock.clone()).without_listing());
    let id = {
        let pusher = Pusher::new(db.open().await, platform.clone(), clock.clone());
        let ids = pusher.start(&set(), "a2").await.unwrap();
        pusher.step(&ids[0]).await.unwrap(); // the campaign
        pusher.runner().store().close();
        ids[0].clone()
    };
    // A new process: the ad group's create, named by the last checkpoint,
    // may have been sent before the old one died.
    let pusher = Pusher::new(db.open().await, platform.clone(), clock);
    assert!(
        matches!(
            pusher.runner().cancel(&id).await.unwrap(),
            Cancel::Requested
        ),
        "the cancel waits for the look-up"
    );
    let done = pusher.run(&id).await.unwrap();
    assert_eq!(done.record.status, Status::Cancelled);
    let effects: Vec<String> = pusher
        .runner()
        .history(&id)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|h| h.effect)
        .collect();
    assert!(
        effects
            .last()
            .is_some_and(|e| e.starts_with("find ad_group")),
        "the look-up ran, and no create after it: {effects:?}"
    );
    assert_eq!(platform.creations(), 1);
}

async fn a_sync_parked_for_an_operator_is_not_cancelled_behind_their_back(backend: Backend) {
    use adsync::memory::{Fault, Op};
    use adsync::EntityKind;
    let clock = clock();
    let platform = Arc::new(MemoryPlatform::new(clock.clone()).without_listing());
    let pusher = Pusher::new(TestStore::temporary(backend).await, platform.clone(), clock);
    let ids = pusher.start(&set(), "a2").await.unwrap();
    pusher.step(&ids[0]).await.unwrap(); // the campaign
                                         // The ad group is created, its response lost, and a twin appears: the
                                         // look-up finds two and parks the sync.
    let mut group = set().campaigns[0].ad_groups[0].clone();
    group.ads.clear();
    group.keywords.clear();
    let group = adsync::EntitySpec::AdGroup(group);
    platform.fail_next(Op::Create, Some(EntityKind::AdGroup), Fault::LoseResponse);
    let campaign_id = pusher.runner().get(&ids[0]).await.unwrap().state.entities()[0]
        .platform_id()
        .unwrap()
        .to_string();
    platform.insert(
        &adsync::Parent {
            account_id: "a2".into(),
            parent_id: Some(campaign_id),
        },
        &group,
    );
    let parked = pusher.run(&ids[0]).await.unwrap();
    assert_eq!(parked.record.status, Status::NeedsAttention);

    match pusher.runner().cancel(&ids[0]).await {
        Err(RunError::NotCancellable { phase, .. }) => assert_eq!(phase, "NeedsAttention"),
        other => panic!("expected NotCancellable, got {other:?}"),
    }
    let still = pusher.runner().get(&ids[0]).await.unwrap();
    assert_eq!(
        still.record.status,
        Status::NeedsAttention,
        "nothing written"
    );
}
