//! The push scenarios of the seed document, as traces: each checks the ids the
//! store holds and what the platform holds, and snapshots the full transition
//! trace. Each runs on sled and on PostgreSQL, against the same snapshot.

mod common;

use std::sync::Arc;

use adsync::memory::{Fault, MemoryPlatform, Op};
use adsync::ManualClock;
use adsync::Status;
use adsync::Step;
use adsync::{AdapterError, EntityKind, EntitySpec, KeywordModel, Parent, PushAdapter, Pusher};
use adsync::{EntityResult, PushOutcome, PushPhase};
use common::{small_set, start_time, trace, Backend, Harness, TestDb, ACCOUNT};

on_both_stores!(
    s1_campaign_created_then_ad_group_fails_keeps_the_campaign_id,
    s2_ad_fails_keeps_campaign_and_ad_group_ids,
    s3_full_success_records_every_id,
    s4_campaign_create_fails_and_nothing_is_recorded,
    s5_resync_with_ids_updates_and_creates_nothing,
    s6_lost_response_then_restart_adopts_the_entity,
    a_push_killed_in_the_middle_of_a_create_adopts_the_entity_after_a_restart,
    lost_response_in_process_is_looked_up_not_resent,
    timeout_before_the_platform_saw_the_create_finds_nothing_and_creates_once,
    transient_errors_back_off_with_checkpointed_attempts_then_succeed,
    transient_errors_are_bounded_then_the_entity_fails_with_the_last_error,
    an_ambiguous_look_up_parks_the_sync_and_an_operator_resolves_it,
    reddit_style_keywords_are_set_on_the_ad_group_in_one_idempotent_step,
    one_campaign_failing_does_not_stop_the_others,
    an_entity_removed_then_put_back_is_not_created_twice,
    a_forgotten_platform_id_is_created_again,
);

async fn push_small(h: &Harness) -> String {
    let report = h
        .pusher
        .push(&small_set(), ACCOUNT)
        .await
        .expect("push runs");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    report.campaigns[0].sync.clone()
}

async fn ids(h: &Harness, sync: &str) -> Vec<(String, String)> {
    let record = h.record(sync).await;
    let checkpoint = adsync::Checkpoint::<adsync::PushMachine>::try_from(record).unwrap();
    checkpoint.state.platform_ids().into_iter().collect()
}

async fn s1_campaign_created_then_ad_group_fails_keeps_the_campaign_id(backend: Backend) {
    let h = Harness::temporary(backend).await;
    h.platform.fail_next(
        Op::Create,
        Some(EntityKind::AdGroup),
        Fault::Permanent("Bad Request: bid_value too low".into()),
    );
    let sync = push_small(&h).await;

    assert_eq!(h.record(&sync).await.status, Status::Failed);
    assert_eq!(
        ids(&h, &sync).await,
        vec![("c1".to_string(), "cmp_1".to_string())]
    );
    assert_eq!(h.platform.creations(), 1);
    snap!("s1_campaign_created_ad_group_fails", trace(&h, &sync).await);
}

async fn s2_ad_fails_keeps_campaign_and_ad_group_ids(backend: Backend) {
    let h = Harness::temporary(backend).await;
    h.platform.fail_next(
        Op::Create,
        Some(EntityKind::Ad),
        Fault::Permanent("Bad Request: post_id not found".into()),
    );
    let sync = push_small(&h).await;

    let ids = ids(&h, &sync).await;
    assert!(
        ids.contains(&("c1".into(), "cmp_1".into()))
            && ids.contains(&("g1".into(), "adg_2".into())),
        "{ids:?}"
    );
    // Keywords belong to the ad group, not the ad: they still sync.
    assert!(ids.iter().any(|(local, _)| local == "k1"));
    assert_eq!(h.record(&sync).await.status, Status::Failed);
    snap!("s2_ad_fails", trace(&h, &sync).await);
}

async fn s3_full_success_records_every_id(backend: Backend) {
    let h = Harness::temporary(backend).await;
    let sync = push_small(&h).await;

    assert_eq!(h.record(&sync).await.status, Status::Succeeded);
    assert_eq!(ids(&h, &sync).await.len(), 5);
    assert_eq!(h.platform.creations(), 5);
    snap!("s3_full_success", trace(&h, &sync).await);
}

async fn s4_campaign_create_fails_and_nothing_is_recorded(backend: Backend) {
    let h = Harness::temporary(backend).await;
    h.platform.fail_next(
        Op::Create,
        Some(EntityKind::Campaign),
        Fault::Permanent("Bad Request: objective not allowed".into()),
    );
    let sync = push_small(&h).await;

    assert!(ids(&h, &sync).await.is_empty());
    assert_eq!(h.platform.creations(), 0);
    let record = h.record(&sync).await;
    assert_eq!(record.status, Status::Failed);
    assert!(record.last_error.unwrap().contains("objective not allowed"));
    snap!("s4_campaign_create_fails", trace(&h, &sync).await);
}

async fn s5_resync_with_ids_updates_and_creates_nothing(backend: Backend) {
    let h = Harness::temporary(backend).await;
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
    assert_eq!(h.record(&second).await.status, Status::Succeeded);

    // A third push of a fully synced set creates nothing at all.
    let third = push_small(&h).await;
    assert_eq!(h.platform.creations(), 5);
    assert!(h.platform.duplicates().is_empty());
    let creates = h
        .history(&third)
        .await
        .iter()
        .filter(|e| e.effect.as_deref().is_some_and(|x| x.starts_with("create")))
        .count();
    assert_eq!(creates, 0);
    snap!(
        "s5_resync_updates",
        format!(
            "{}\n--- third push ---\n{}",
            trace(&h, &second).await,
            trace(&h, &third).await
        )
    );
}

async fn s6_lost_response_then_restart_adopts_the_entity(backend: Backend) {
    let db = TestDb::new(backend);
    let clock = Arc::new(ManualClock::new(start_time()));
    let platform = Arc::new(MemoryPlatform::new(clock.clone()).without_listing());

    // Process 1: step until the ad group's create is the durable next effect,
    // then the create reaches the platform and the process dies before recording it.
    let sync = {
        let h = Harness::open(&db, platform.clone(), clock.clone()).await;
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
    let h = Harness::open(&db, platform.clone(), clock.clone()).await;
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
    snap!("s6_lost_response_restart_adopts", trace(&h, &sync).await);
}

/// The platform of a process killed while a create is in flight: the create
/// reaches the platform, and its answer never comes back.
struct DiesDuringCreate {
    platform: Arc<MemoryPlatform>,
    kind: EntityKind,
    /// Told once the create has reached the platform.
    reached: Arc<tokio::sync::Notify>,
}

#[async_trait::async_trait]
impl PushAdapter for DiesDuringCreate {
    fn platform(&self) -> &str {
        self.platform.platform()
    }
    fn keyword_model(&self) -> KeywordModel {
        self.platform.keyword_model()
    }
    async fn create(&self, parent: &Parent, spec: &EntitySpec) -> Result<String, AdapterError> {
        let id = self.platform.create(parent, spec).await?;
        if spec.kind() == self.kind {
            self.reached.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(id)
    }
    async fn update(
        &self,
        parent: &Parent,
        id: &str,
        spec: &EntitySpec,
    ) -> Result<(), AdapterError> {
        self.platform.update(parent, id, spec).await
    }
    async fn find(
        &self,
        parent: &Parent,
        kind: EntityKind,
        name: &str,
        created_after: adsync::Timestamp,
    ) -> Result<Vec<adsync::FoundEntity>, AdapterError> {
        self.platform.find(parent, kind, name, created_after).await
    }
    async fn set_ad_group_keywords(
        &self,
        parent: &Parent,
        ad_group_id: &str,
        keywords: &[adsync::Keyword],
    ) -> Result<(), AdapterError> {
        self.platform
            .set_ad_group_keywords(parent, ad_group_id, keywords)
            .await
    }
}

/// A crash in the middle of an effect, as a library user meets it: the
/// push's future is dropped while the ad group's create is in flight (it
/// reached the platform), the store is closed, and a new process resumes
/// from the last checkpoint: outcome unknown, looked up, adopted.
async fn a_push_killed_in_the_middle_of_a_create_adopts_the_entity_after_a_restart(
    backend: Backend,
) {
    let db = TestDb::new(backend);
    let clock = Arc::new(ManualClock::new(start_time()));
    let platform = Arc::new(MemoryPlatform::new(clock.clone()));

    // Process 1 dies during the ad group's create.
    let sync = {
        let store = db.open().await;
        let reached = Arc::new(tokio::sync::Notify::new());
        let dies = Arc::new(DiesDuringCreate {
            platform: platform.clone(),
            kind: EntityKind::AdGroup,
            reached: reached.clone(),
        });
        let pusher = Pusher::new(store, dies, clock.clone()).with_runner(|r| r.with_seed(7));
        let ids = pusher.start(&small_set(), ACCOUNT).await.unwrap();
        tokio::select! {
            done = pusher.run(&ids[0]) => panic!("the run ended: {done:?}"),
            () = reached.notified() => {}
        }
        ids[0].clone()
    };
    assert_eq!(platform.creations(), 2, "the campaign, and the ad group");

    // Process 2: the ad group's create is the durable next effect.
    let h = Harness::open(&db, platform.clone(), clock.clone()).await;
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
    // The same history as a lost response followed by a restart (s6).
    snap!("s6_lost_response_restart_adopts", trace(&h, &sync).await);
}

async fn lost_response_in_process_is_looked_up_not_resent(backend: Backend) {
    let h = Harness::temporary(backend).await;
    h.platform
        .fail_next(Op::Create, Some(EntityKind::Ad), Fault::LoseResponse);
    let sync = push_small(&h).await;

    assert_eq!(h.record(&sync).await.status, Status::Succeeded);
    assert!(h.platform.duplicates().is_empty());
    assert_eq!(h.platform.creations(), 5);
    let finds = h
        .platform
        .calls()
        .iter()
        .filter(|c| c.op == Op::Find)
        .count();
    assert_eq!(finds, 1);
    snap!("lost_response_in_process", trace(&h, &sync).await);
}

async fn timeout_before_the_platform_saw_the_create_finds_nothing_and_creates_once(
    backend: Backend,
) {
    let h = Harness::without_listing(backend).await;
    h.platform
        .fail_next(Op::Create, Some(EntityKind::Campaign), Fault::Timeout);
    let sync = push_small(&h).await;
    assert_eq!(h.record(&sync).await.status, Status::Succeeded);
    assert_eq!(h.platform.creations(), 5);
    let phases: Vec<String> = h
        .history(&sync)
        .await
        .iter()
        .take(4)
        .map(|e| e.to.clone())
        .collect();
    assert_eq!(
        phases,
        ["Pending", "OutcomeUnknown", "Pending", "CampaignCreated"]
    );
}

async fn transient_errors_back_off_with_checkpointed_attempts_then_succeed(backend: Backend) {
    let h = Harness::without_listing(backend).await;
    h.platform.fail_call(1, Fault::Transient);
    h.platform.fail_call(2, Fault::Transient);
    let sync = push_small(&h).await;

    let history = h.history(&sync).await;
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
    let record = h.record(&sync).await;
    assert_eq!(
        (record.status, record.failed_effects),
        (Status::Succeeded, 2)
    );
    assert_eq!(h.platform.creations(), 5);
}

async fn transient_errors_are_bounded_then_the_entity_fails_with_the_last_error(backend: Backend) {
    let h = Harness::temporary(backend).await;
    for _ in 0..6 {
        h.platform
            .fail_next(Op::Create, Some(EntityKind::AdGroup), Fault::Transient);
    }
    let sync = push_small(&h).await;
    let record = h.record(&sync).await;
    assert_eq!(record.status, Status::Failed);
    let error = record.last_error.unwrap();
    assert!(
        error.contains("503") && error.contains("after 6 attempts"),
        "{error}"
    );
    assert_eq!(record.failed_effects, 6);
    assert_eq!(
        ids(&h, &sync).await,
        vec![("c1".to_string(), "cmp_1".to_string())]
    );
}

async fn an_ambiguous_look_up_parks_the_sync_and_an_operator_resolves_it(backend: Backend) {
    let h = Harness::without_listing(backend).await;
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

    let record = h.record(&sync).await;
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
    snap!("ambiguous_lookup_operator_adopts", trace(&h, &sync).await);
}

async fn reddit_style_keywords_are_set_on_the_ad_group_in_one_idempotent_step(backend: Backend) {
    let h = Harness::with_model(backend, KeywordModel::AdGroupTargeting).await;
    let sync = push_small(&h).await;
    assert_eq!(h.record(&sync).await.status, Status::Succeeded);
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
    snap!("targeting_keywords", trace(&h, &sync).await);
}

async fn one_campaign_failing_does_not_stop_the_others(backend: Backend) {
    let h = Harness::temporary(backend).await;
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
async fn an_entity_removed_then_put_back_is_not_created_twice(backend: Backend) {
    let h = Harness::temporary(backend).await;
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
    // c1, g1, a1, k1, k2: each created once. The removed group was left
    // on the platform (no prune), so putting it back changes nothing.
    assert_eq!(h.platform.creations(), 5);
    let last = h.record("c1-3").await;
    let checkpoint = adsync::Checkpoint::<adsync::PushMachine>::try_from(last).unwrap();
    assert!(checkpoint
        .state
        .entities()
        .iter()
        .all(|e| *e.result() == EntityResult::Unchanged));
}

/// An id marked as gone is not carried over: the entity is created again.
async fn a_forgotten_platform_id_is_created_again(backend: Backend) {
    let h = Harness::without_listing(backend).await;
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
