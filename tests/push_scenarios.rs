//! The push scenarios of the seed document, as traces: each checks the ids the
//! store holds and what the platform holds, and snapshots the full transition trace.

mod common;

use std::sync::Arc;

use adsync::memory::{Fault, MemoryPlatform, Op};
use adsync::ManualClock;
use adsync::Status;
use adsync::Step;
use adsync::Store;
use adsync::{EntityKind, EntitySpec, KeywordModel, Parent, PushAdapter};
use adsync::{EntityResult, PushOutcome, PushPhase};
use common::{small_set, start_time, trace, Harness, ACCOUNT};

async fn push_small(h: &Harness) -> String {
    let report = h
        .pusher
        .push(&small_set(), ACCOUNT)
        .await
        .expect("push runs");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    report.campaigns[0].sync.clone()
}

fn ids(h: &Harness, sync: &str) -> Vec<(String, String)> {
    let record = h.store.record(sync).unwrap().unwrap();
    let checkpoint = adsync::Checkpoint::<adsync::PushMachine>::try_from(record).unwrap();
    checkpoint.state.platform_ids().into_iter().collect()
}

#[tokio::test]
async fn s1_campaign_created_then_ad_group_fails_keeps_the_campaign_id() {
    let h = Harness::temporary();
    h.platform.fail_next(
        Op::Create,
        Some(EntityKind::AdGroup),
        Fault::Permanent("Bad Request: bid_value too low".into()),
    );
    let sync = push_small(&h).await;

    assert_eq!(
        h.store.record(&sync).unwrap().unwrap().status,
        Status::Failed
    );
    assert_eq!(
        ids(&h, &sync),
        vec![("c1".to_string(), "cmp_1".to_string())]
    );
    assert_eq!(h.platform.creations(), 1);
    snap!("s1_campaign_created_ad_group_fails", trace(&h, &sync));
}

#[tokio::test]
async fn s2_ad_fails_keeps_campaign_and_ad_group_ids() {
    let h = Harness::temporary();
    h.platform.fail_next(
        Op::Create,
        Some(EntityKind::Ad),
        Fault::Permanent("Bad Request: post_id not found".into()),
    );
    let sync = push_small(&h).await;

    let ids = ids(&h, &sync);
    assert!(
        ids.contains(&("c1".into(), "cmp_1".into()))
            && ids.contains(&("g1".into(), "adg_2".into())),
        "{ids:?}"
    );
    // Keywords belong to the ad group, not the ad: they still sync.
    assert!(ids.iter().any(|(local, _)| local == "k1"));
    assert_eq!(
        h.store.record(&sync).unwrap().unwrap().status,
        Status::Failed
    );
    snap!("s2_ad_fails", trace(&h, &sync));
}

#[tokio::test]
async fn s3_full_success_records_every_id() {
    let h = Harness::temporary();
    let sync = push_small(&h).await;

    assert_eq!(
        h.store.record(&sync).unwrap().unwrap().status,
        Status::Succeeded
    );
    assert_eq!(ids(&h, &sync).len(), 5);
    assert_eq!(h.platform.creations(), 5);
    snap!("s3_full_success", trace(&h, &sync));
}

#[tokio::test]
async fn s4_campaign_create_fails_and_nothing_is_recorded() {
    let h = Harness::temporary();
    h.platform.fail_next(
        Op::Create,
        Some(EntityKind::Campaign),
        Fault::Permanent("Bad Request: objective not allowed".into()),
    );
    let sync = push_small(&h).await;

    assert!(ids(&h, &sync).is_empty());
    assert_eq!(h.platform.creations(), 0);
    let record = h.store.record(&sync).unwrap().unwrap();
    assert_eq!(record.status, Status::Failed);
    assert!(record.last_error.unwrap().contains("objective not allowed"));
    snap!("s4_campaign_create_fails", trace(&h, &sync));
}

#[tokio::test]
async fn s5_resync_with_ids_updates_and_creates_nothing() {
    let h = Harness::temporary();
    // First push fails half-way: campaign and ad group exist.
    h.platform.fail_next(
        Op::Create,
        Some(EntityKind::Ad),
        Fault::Permanent("Bad Request".into()),
    );
    let first = push_small(&h).await;
    let created_first = h.platform.creations();
    assert_eq!(created_first, 4, "campaign, ad group and two keywords");

    // The retry updates the four and creates only the missing ad.
    let second = push_small(&h).await;
    assert_ne!(first, second);
    assert_eq!(h.platform.creations(), 5);
    assert_eq!(
        h.store.record(&second).unwrap().unwrap().status,
        Status::Succeeded
    );

    // A third push of a fully synced set creates nothing at all.
    let third = push_small(&h).await;
    assert_eq!(h.platform.creations(), 5);
    assert!(h.platform.duplicates().is_empty());
    let creates = h
        .history(&third)
        .iter()
        .filter(|e| e.effect.as_deref().is_some_and(|x| x.starts_with("create")))
        .count();
    assert_eq!(creates, 0);
    snap!(
        "s5_resync_updates",
        format!(
            "{}\n--- third push ---\n{}",
            trace(&h, &second),
            trace(&h, &third)
        )
    );
}

#[tokio::test]
async fn s6_lost_response_then_restart_adopts_the_entity() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("adsync.db");
    let clock = Arc::new(ManualClock::new(start_time()));
    let platform = Arc::new(MemoryPlatform::new(clock.clone()));

    // Process 1: step until the ad group's create is the durable next effect,
    // then the create reaches the platform and the process dies before recording it.
    let sync = {
        let h = Harness::new(Store::open(&db).unwrap(), platform.clone(), clock.clone());
        let ids = h.pusher.start(&small_set(), ACCOUNT).await.unwrap();
        let sync = ids[0].clone();
        let Step::Transitioned(t) = h.pusher.step(&sync).await.unwrap() else {
            panic!("campaign create step")
        };
        assert_eq!(t.to, PushPhase::CampaignCreated);
        clock.advance(std::time::Duration::from_secs(1));
        let parent = Parent {
            account_id: ACCOUNT.into(),
            parent_id: Some("cmp_1".into()),
        };
        let group = small_set().campaigns[0].ad_groups[0].clone();
        platform
            .create(&parent, &EntitySpec::AdGroup(group))
            .await
            .unwrap();
        sync
    };
    assert_eq!(platform.creations(), 2);

    // Process 2: resume from the checkpoint.
    let h = Harness::new(Store::open(&db).unwrap(), platform.clone(), clock.clone());
    let done = h.pusher.run(&sync).await.unwrap();
    assert_eq!(done.record.status, Status::Succeeded);
    let group = &done.state.entities()[1];
    assert_eq!(
        (group.platform_id(), group.result()),
        (Some("adg_2"), &EntityResult::Adopted)
    );
    assert!(
        platform.duplicates().is_empty(),
        "{:?}",
        platform.duplicates()
    );
    assert_eq!(platform.creations(), 5);
    snap!("s6_lost_response_restart_adopts", trace(&h, &sync));
}

#[tokio::test]
async fn lost_response_in_process_is_looked_up_not_resent() {
    let h = Harness::temporary();
    h.platform
        .fail_next(Op::Create, Some(EntityKind::Ad), Fault::LoseResponse);
    let sync = push_small(&h).await;

    assert_eq!(
        h.store.record(&sync).unwrap().unwrap().status,
        Status::Succeeded
    );
    assert!(h.platform.duplicates().is_empty());
    assert_eq!(h.platform.creations(), 5);
    let finds = h
        .platform
        .calls()
        .iter()
        .filter(|c| c.op == Op::Find)
        .count();
    assert_eq!(finds, 1);
    snap!("lost_response_in_process", trace(&h, &sync));
}

#[tokio::test]
async fn timeout_before_the_platform_saw_the_create_finds_nothing_and_creates_once() {
    let h = Harness::temporary();
    h.platform
        .fail_next(Op::Create, Some(EntityKind::Campaign), Fault::Timeout);
    let sync = push_small(&h).await;
    assert_eq!(
        h.store.record(&sync).unwrap().unwrap().status,
        Status::Succeeded
    );
    assert_eq!(h.platform.creations(), 5);
    let phases: Vec<String> = h
        .history(&sync)
        .iter()
        .take(4)
        .map(|e| e.to.clone())
        .collect();
    assert_eq!(
        phases,
        ["Pending", "OutcomeUnknown", "Pending", "CampaignCreated"]
    );
}

#[tokio::test]
async fn transient_errors_back_off_with_checkpointed_attempts_then_succeed() {
    let h = Harness::temporary();
    h.platform.fail_call(1, Fault::Transient);
    h.platform.fail_call(2, Fault::Transient);
    let sync = push_small(&h).await;

    let history = h.history(&sync);
    assert_eq!(history[1].to, "Pending");
    assert_eq!(history[2].to, "Pending");
    assert_eq!(history[3].to, "CampaignCreated");
    // Waits grew: 0.5 s ceiling then 1 s ceiling, with jitter in the upper half.
    let slept = h.clock.total_slept();
    assert!(
        slept >= std::time::Duration::from_millis(750)
            && slept <= std::time::Duration::from_millis(1500),
        "{slept:?}"
    );
    let record = h.store.record(&sync).unwrap().unwrap();
    assert_eq!(
        (record.status, record.failed_effects),
        (Status::Succeeded, 2)
    );
    assert_eq!(h.platform.creations(), 5);
}

#[tokio::test]
async fn transient_errors_are_bounded_then_the_entity_fails_with_the_last_error() {
    let h = Harness::temporary();
    for _ in 0..6 {
        h.platform
            .fail_next(Op::Create, Some(EntityKind::AdGroup), Fault::Transient);
    }
    let sync = push_small(&h).await;
    let record = h.store.record(&sync).unwrap().unwrap();
    assert_eq!(record.status, Status::Failed);
    let error = record.last_error.unwrap();
    assert!(
        error.contains("503") && error.contains("after 6 attempts"),
        "{error}"
    );
    assert_eq!(record.failed_effects, 6);
    assert_eq!(
        ids(&h, &sync),
        vec![("c1".to_string(), "cmp_1".to_string())]
    );
}

#[tokio::test]
async fn an_ambiguous_look_up_parks_the_sync_and_an_operator_resolves_it() {
    let h = Harness::temporary();
    // Someone else created a same-named campaign just now, and our create's response is lost.
    h.platform.insert(
        &Parent {
            account_id: ACCOUNT.into(),
            parent_id: None,
        },
        &EntitySpec::Campaign(small_set().campaigns[0].clone()),
    );
    h.platform
        .fail_next(Op::Create, Some(EntityKind::Campaign), Fault::LoseResponse);
    let sync = push_small(&h).await;

    let record = h.store.record(&sync).unwrap().unwrap();
    assert_eq!(record.status, Status::NeedsAttention);
    let reason = record.last_error.unwrap();
    assert!(
        reason.contains("cmp_1") && reason.contains("cmp_2"),
        "{reason}"
    );

    // A new push of the same campaign is refused until it is resolved.
    let err = h.pusher.push(&small_set(), ACCOUNT).await.unwrap_err();
    assert!(err.to_string().contains("needs attention"), "{err}");

    h.runner()
        .resolve(&sync, PushOutcome::OperatorAdopt { id: "cmp_2".into() })
        .await
        .unwrap();
    let done = h.pusher.run(&sync).await.unwrap();
    assert_eq!(done.record.status, Status::Succeeded);
    assert_eq!(done.state.entities()[0].platform_id(), Some("cmp_2"));
    snap!("ambiguous_lookup_operator_adopts", trace(&h, &sync));
}

#[tokio::test]
async fn reddit_style_keywords_are_set_on_the_ad_group_in_one_idempotent_step() {
    let h = Harness::with_model(KeywordModel::AdGroupTargeting);
    let sync = push_small(&h).await;
    assert_eq!(
        h.store.record(&sync).unwrap().unwrap().status,
        Status::Succeeded
    );
    let group = h
        .platform
        .entities()
        .into_iter()
        .find(|e| e.kind == EntityKind::AdGroup)
        .unwrap();
    assert_eq!(
        group.keywords,
        vec!["shoes".to_string(), "boots".to_string()]
    );
    assert_eq!(h.platform.creations(), 3, "keywords are not entities here");
    snap!("targeting_keywords", trace(&h, &sync));
}

#[tokio::test]
async fn one_campaign_failing_does_not_stop_the_others() {
    let h = Harness::temporary();
    h.platform.fail_next(
        Op::Create,
        Some(EntityKind::Campaign),
        Fault::Permanent("Bad Request".into()),
    );
    let report = h
        .pusher
        .push(&common::example_set(), ACCOUNT)
        .await
        .unwrap();
    let statuses: Vec<(String, Status)> = report
        .campaigns
        .iter()
        .map(|c| (c.campaign.clone(), c.status))
        .collect();
    assert_eq!(statuses.len(), 2);
    assert_eq!(
        statuses
            .iter()
            .filter(|(_, s)| *s == Status::Failed)
            .count(),
        1
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|(_, s)| *s == Status::Succeeded)
            .count(),
        1
    );
    let failed = report
        .campaigns
        .iter()
        .find(|c| c.status == Status::Failed)
        .unwrap();
    assert!(failed
        .entities
        .iter()
        .skip(1)
        .all(|e| matches!(e.result, EntityResult::Skipped { .. })));
}

/// Removing an ad group, pushing, then putting it back updates the ad group
/// the first push created: ids come from every earlier sync, not only the latest.
#[tokio::test]
async fn an_entity_removed_then_put_back_is_not_created_twice() {
    let h = Harness::temporary();
    let full = small_set();
    let mut without = full.clone();
    without.campaigns[0].ad_groups.clear();
    for set in [&full, &without, &full] {
        let report = h.pusher.push(set, ACCOUNT).await.expect("push runs");
        assert!(report.all_synced(), "{report:?}");
    }
    assert!(
        h.platform.duplicates().is_empty(),
        "{:?}",
        h.platform.duplicates()
    );
    // c1, g1, a1, k1, k2: each created once.
    assert_eq!(h.platform.creations(), 5);
    let last = h.store.record("c1-3").unwrap().unwrap();
    let checkpoint = adsync::Checkpoint::<adsync::PushMachine>::try_from(last).unwrap();
    assert!(checkpoint
        .state
        .entities()
        .iter()
        .all(|e| *e.result() == EntityResult::Updated));
}

/// An id marked as gone is not carried over: the entity is created again.
#[tokio::test]
async fn a_forgotten_platform_id_is_created_again() {
    let h = Harness::temporary();
    let set = small_set();
    let report = h.pusher.push(&set, ACCOUNT).await.expect("push runs");
    let group = report.campaigns[0]
        .entities
        .iter()
        .find(|e| e.local_id == "g1")
        .and_then(|e| e.platform_id.clone())
        .unwrap();
    // The first sync's ids reach the map when the next sync starts.
    h.pusher.push(&set, ACCOUNT).await.expect("push runs");
    h.pusher
        .forget_platform_id(ACCOUNT, "c1", "g1", &group)
        .await
        .unwrap();
    let report = h.pusher.push(&set, ACCOUNT).await.expect("push runs");
    let g1 = report.campaigns[0]
        .entities
        .iter()
        .find(|e| e.local_id == "g1")
        .unwrap();
    assert_eq!(g1.result, EntityResult::Created);
    assert_ne!(g1.platform_id.as_deref(), Some(group.as_str()));
}
