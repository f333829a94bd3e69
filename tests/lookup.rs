//! Look-ups after an unknown outcome, and ids gone from the platform (issue 12,
//! items 5–8 and 17): the platform's clock, a platform down during the
//! look-up, a 404 on update, adoption verified on the platform, requests that
//! cannot be built, and error texts that say each thing once. The scenarios
//! that keep syncs run on sled and on PostgreSQL.

mod common;

use std::sync::Arc;
use std::time::Duration;

use adsync::memory::{Fault as MemFault, Op};
use adsync::reddit::{RedditAdapter, RedditConfig, TokenSource};
use adsync::Backoff;
use adsync::Campaign;
use adsync::Secret;
use adsync::Status;
use adsync::{verify_adoption, AdoptError, EntityResult, PushPhase, PushPolicy, Pusher};
use adsync::{AdapterError, EntityKind, EntitySpec, Parent, PushAdapter};
use adsync::{Clock, SystemClock};
use adsync_fakes::reddit::{RedditFault, RedditFaultKind};
use adsync_fakes::{FakeReddit, FakeRedditConfig, FakeRedditHandle};
use common::{small_set, Backend, Harness, TestDb, TestStore, ACCOUNT};

on_both_stores!(
    a_platform_clock_30_minutes_off_either_way_causes_no_duplicate,
    a_lookup_the_platform_could_not_answer_is_retried_on_resume,
    an_id_gone_from_the_platform_is_recreated_once_and_then_updated,
    an_id_found_gone_is_not_carried_into_the_next_push,
    an_id_gone_from_the_platform_adopts_one_match_by_name_and_parks_on_several,
    an_adopted_id_is_verified_on_the_platform,
    error_texts_do_not_repeat_themselves,
);

fn fast_backoff(max_attempts: u32) -> Backoff {
    Backoff {
        base: Duration::from_millis(5),
        max: Duration::from_millis(20),
        max_attempts,
    }
}

/// The test account itself, as the parent of a campaign.
fn account() -> Parent {
    Parent {
        account_id: ACCOUNT.into(),
        parent_id: None,
    }
}

fn reddit(fake: &FakeRedditHandle, attempts: u32) -> Arc<RedditAdapter> {
    Arc::new(
        RedditAdapter::new(RedditConfig {
            base_url: fake.base_url(),
            token: Some(Secret::new(fake.config().token.clone())),
            timeout: Duration::from_secs(5),
            backoff: fast_backoff(attempts),
            ..RedditConfig::default()
        })
        .expect("adapter"),
    )
}

fn pusher(store: TestStore, adapter: Arc<dyn PushAdapter>, attempts: u32) -> Pusher {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Pusher::new(store, adapter.clone(), clock)
        .with_runner(|runner| runner.with_seed(3))
        .with_policy(PushPolicy {
            backoff: fast_backoff(attempts),
            ..PushPolicy::default()
        })
}

fn lose_first_ad_group_create(fake: &FakeRedditHandle) {
    fake.inject(
        RedditFault::new(RedditFaultKind::LoseResponse { withhold_ms: None })
            .method("POST")
            .path_contains("/ad_groups")
            .times(1),
    );
}

/// Item 5: a platform clock 30 minutes behind (or ahead of) ours must not hide
/// the entity whose create response was lost, so it is adopted, not re-created.
async fn a_platform_clock_30_minutes_off_either_way_causes_no_duplicate(backend: Backend) {
    for offset in [-1800i64, 1800] {
        let fake = FakeReddit::start(FakeRedditConfig {
            clock_offset_secs: offset,
            ..FakeRedditConfig::default()
        })
        .await
        .expect("fake");
        lose_first_ad_group_create(&fake);
        let adapter = reddit(&fake, 3);
        let p = pusher(TestStore::temporary(backend).await, adapter.clone(), 3);
        let report = p.push(&small_set(), ACCOUNT).await.expect("push");
        assert!(report.all_synced(), "offset {offset}: {report:?}");
        let held = fake.entities();
        assert_eq!(held.ad_groups.len(), 1, "offset {offset}: {held:?}");
        assert!(held.duplicates().is_empty(), "offset {offset}");
        let group = &report.campaigns[0].entities[1];
        assert_eq!(group.result, EntityResult::Adopted, "offset {offset}");
        // The adapter saw the platform's clock in its `Date` header.
        let seen = adapter.clock_offset().expect("a Date header was seen");
        assert!(
            (seen.whole_seconds() - offset).abs() <= 5,
            "offset {offset}, seen {seen}"
        );
        fake.shutdown().await;
    }
}

/// Item 7: the look-up fails (5xx) through every retry: the sync stops, not
/// parked, and a later resume (the platform healthy again) finishes it with
/// exactly one ad group — in this process and in a new one.
async fn a_lookup_the_platform_could_not_answer_is_retried_on_resume(backend: Backend) {
    for new_process in [false, true] {
        let fake = FakeReddit::start(FakeRedditConfig::default())
            .await
            .expect("fake");
        lose_first_ad_group_create(&fake);
        // Adapter: 2 tries per call; machine: 2 calls. 4 GETs spend every retry.
        fake.inject(
            RedditFault::new(RedditFaultKind::Status {
                status: 503,
                after_apply: false,
                retry_after_secs: None,
                reset_secs: None,
            })
            .method("GET")
            .path_contains("/ad_groups")
            .times(4),
        );
        let adapter = reddit(&fake, 2);
        let db = TestDb::new(backend);
        let store = db.open().await;
        let p = pusher(store, adapter.clone(), 2);
        let ids = p.start(&small_set(), ACCOUNT).await.expect("start");
        let report = p.run_all(&ids).await;
        let c = &report.campaigns[0];
        assert_eq!(c.status, Status::Running, "{report:?}");
        let error = c.last_error.clone().unwrap_or_default();
        assert!(
            error.starts_with(
                "platform unavailable during the look-up of ad_group `g1` (Group one): transient: GET /api/v3/ad_accounts/a2_test/ad_groups: 503 Service Unavailable (after 2 attempts)"
            ),
            "{error}"
        );
        let checkpoint = p.runner().get(&ids[0]).await.expect("checkpoint");
        assert_eq!(checkpoint.state.phase(), PushPhase::LookupDeferred);
        // One run made exactly the look-ups its retries allow, then stopped.
        let gets = fake
            .requests()
            .iter()
            .filter(|r| r.method == "GET" && r.path.contains("/ad_groups"))
            .count();
        assert_eq!(gets, 4);
        assert_eq!(fake.entities().ad_groups.len(), 1);

        let p = if new_process {
            drop(p);
            pusher(db.open().await, adapter.clone(), 2)
        } else {
            p
        };
        let done = p.run(&ids[0]).await.expect("resume");
        assert_eq!(done.record.status, Status::Succeeded, "{:?}", done.record);
        let held = fake.entities();
        assert_eq!(held.ad_groups.len(), 1, "{held:?}");
        assert!(held.duplicates().is_empty());
        assert_eq!(
            *done.state.entities()[1].result(),
            EntityResult::Adopted,
            "the lost create was found and adopted"
        );
        fake.shutdown().await;
    }
}

fn group_parent(h: &Harness) -> (Parent, String) {
    let campaign = h
        .platform
        .entities()
        .into_iter()
        .find(|e| e.kind == EntityKind::Campaign)
        .expect("campaign");
    (
        Parent {
            account_id: ACCOUNT.into(),
            parent_id: Some(campaign.id.clone()),
        },
        campaign.id,
    )
}

fn group_ids(h: &Harness) -> Vec<String> {
    h.platform
        .entities()
        .into_iter()
        .filter(|e| e.kind == EntityKind::AdGroup)
        .map(|e| e.id)
        .collect()
}

/// Item 6: an update answered "not found" forgets the gone id and looks the
/// entity up by name: none → created again; later pushes update the new id.
async fn an_id_gone_from_the_platform_is_recreated_once_and_then_updated(backend: Backend) {
    let h = Harness::without_listing(backend).await;
    assert!(h
        .pusher
        .push(&small_set(), ACCOUNT)
        .await
        .expect("push")
        .all_synced());
    let old = group_ids(&h).remove(0);
    h.platform.remove(&old).expect("removed on the platform");

    let report = h.pusher.push(&small_set(), ACCOUNT).await.expect("push 2");
    assert!(report.all_synced(), "{report:?}");
    let groups = group_ids(&h);
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_ne!(groups[0], old);
    let group = &report.campaigns[0].entities[1];
    assert_eq!(group.result, EntityResult::Created);
    assert_eq!(group.platform_id.as_deref(), Some(groups[0].as_str()));
    let history = h
        .pusher
        .runner()
        .history(&report.campaigns[0].sync)
        .await
        .expect("history");
    assert!(
        history.iter().any(|e| e.effect.as_deref()
            == Some(
                "find ad_group \"Group one\" under cmp_1 of any age (its recorded id is gone)"
            )),
        "{history:?}"
    );

    // The next push updates the new id: no failure, no create.
    let creations = h.platform.creations();
    let report = h.pusher.push(&small_set(), ACCOUNT).await.expect("push 3");
    assert!(report.all_synced(), "{report:?}");
    assert_eq!(h.platform.creations(), creations);
    assert_eq!(group_ids(&h), groups);
}

/// Item 4 with item 6: an id a sync found gone (404, nothing by its name) and
/// could not replace (the create failed) is not carried into the next push,
/// which creates the entity at once instead of updating the gone id again.
async fn an_id_found_gone_is_not_carried_into_the_next_push(backend: Backend) {
    let h = Harness::without_listing(backend).await;
    assert!(h
        .pusher
        .push(&small_set(), ACCOUNT)
        .await
        .expect("push")
        .all_synced());
    let old = group_ids(&h).remove(0);
    h.platform.remove(&old).expect("removed on the platform");
    h.platform.fail_next(
        Op::Create,
        Some(EntityKind::AdGroup),
        MemFault::Permanent("ad groups are closed today".into()),
    );
    let report = h.pusher.push(&small_set(), ACCOUNT).await.expect("push 2");
    assert_eq!(report.campaigns[0].status, Status::Failed, "{report:?}");
    assert_eq!(report.campaigns[0].entities[1].platform_id, None);

    let report = h.pusher.push(&small_set(), ACCOUNT).await.expect("push 3");
    assert!(report.all_synced(), "{report:?}");
    let group = &report.campaigns[0].entities[1];
    assert_eq!(group.result, EntityResult::Created);
    let history = h
        .pusher
        .runner()
        .history(&report.campaigns[0].sync)
        .await
        .expect("history");
    assert!(
        !history
            .iter()
            .any(|e| e.effect.as_deref().is_some_and(|d| d.contains(&old))),
        "the gone id {old} was used again: {history:?}"
    );
    assert_eq!(group_ids(&h).len(), 1);
}

/// Item 6: the gone entity was re-made under the same parent by someone else
/// (one match by name): adopted and brought to the spec; several: parked.
async fn an_id_gone_from_the_platform_adopts_one_match_by_name_and_parks_on_several(
    backend: Backend,
) {
    let h = Harness::without_listing(backend).await;
    assert!(h
        .pusher
        .push(&small_set(), ACCOUNT)
        .await
        .expect("push")
        .all_synced());
    let old = group_ids(&h).remove(0);
    let gone = h.platform.remove(&old).expect("removed");
    let (parent, _) = group_parent(&h);
    let remade = h.platform.insert(&parent, &gone.spec);

    let report = h.pusher.push(&small_set(), ACCOUNT).await.expect("push 2");
    assert!(report.all_synced(), "{report:?}");
    assert_eq!(group_ids(&h), vec![remade.clone()]);
    let group = &report.campaigns[0].entities[1];
    assert_eq!(group.platform_id.as_deref(), Some(remade.as_str()));
    assert_eq!(group.result, EntityResult::Updated, "adopted, then updated");
    let stored = h
        .platform
        .entities()
        .into_iter()
        .find(|e| e.id == remade)
        .expect("remade");
    assert_eq!(stored.updates, 1);

    // Gone again, and two candidates by name: an operator must choose.
    h.platform.remove(&remade).expect("removed");
    h.platform.insert(&parent, &gone.spec);
    h.platform.insert(&parent, &gone.spec);
    let report = h.pusher.push(&small_set(), ACCOUNT).await.expect("push 3");
    assert_eq!(report.campaigns[0].status, Status::NeedsAttention);
    let reason = report.campaigns[0].last_error.clone().unwrap_or_default();
    assert!(
        reason.starts_with("cannot tell which of 2 platform entities is ad_group `g1` (Group one)"),
        "{reason}"
    );
}

/// Item 6: an id to adopt is checked on the platform: exists, right kind,
/// right parent, same name.
async fn an_adopted_id_is_verified_on_the_platform(backend: Backend) {
    let h = Harness::without_listing(backend).await;
    h.platform.fail_next(
        Op::Create,
        Some(EntityKind::AdGroup),
        MemFault::LoseResponse,
    );
    h.platform.fail_next(
        Op::Find,
        Some(EntityKind::AdGroup),
        MemFault::Permanent("look-ups are down".into()),
    );
    let report = h.pusher.push(&small_set(), ACCOUNT).await.expect("push");
    let sync = report.campaigns[0].sync.clone();
    assert_eq!(report.campaigns[0].status, Status::NeedsAttention);
    let state = h.pusher.runner().get(&sync).await.expect("get").state;
    let (parent, campaign_id) = group_parent(&h);
    let real = group_ids(&h).remove(0);

    let check = |id: String| {
        let state = state.clone();
        let platform = h.platform.clone();
        async move { verify_adoption(platform.as_ref(), &state, &id).await }
    };
    match check("adg_999".into()).await {
        Err(e @ AdoptError::Missing { .. }) => assert_eq!(
            e.to_string(),
            "the platform has no ad_group adg_999 in account a2_test"
        ),
        other => panic!("{other:?}"),
    }
    // The campaign's id is not an ad group.
    assert!(matches!(
        check(campaign_id.clone()).await,
        Err(AdoptError::Missing { .. })
    ));
    // Another campaign's ad group of the same name.
    let other_campaign = h.platform.insert(
        &account(),
        &EntitySpec::Campaign(Campaign {
            ad_groups: vec![],
            ..small_set().campaigns[0].clone()
        }),
    );
    let elsewhere = h.platform.insert(
        &Parent {
            account_id: ACCOUNT.into(),
            parent_id: Some(other_campaign.clone()),
        },
        &EntitySpec::AdGroup(adsync::AdGroup {
            ads: vec![],
            keywords: vec![],
            ..small_set().campaigns[0].ad_groups[0].clone()
        }),
    );
    match check(elsewhere.clone()).await {
        Err(e @ AdoptError::WrongParent { .. }) => assert_eq!(
            e.to_string(),
            format!("ad_group {elsewhere} belongs to {other_campaign}, not to {campaign_id}")
        ),
        other => panic!("{other:?}"),
    }
    // Right parent, another name.
    let renamed = h.platform.insert(
        &parent,
        &EntitySpec::AdGroup(adsync::AdGroup {
            name: "Group two".into(),
            ads: vec![],
            keywords: vec![],
            ..small_set().campaigns[0].ad_groups[0].clone()
        }),
    );
    match check(renamed.clone()).await {
        Err(e @ AdoptError::WrongName { .. }) => assert_eq!(
            e.to_string(),
            format!("ad_group {renamed} is named \"Group two\", not \"Group one\"")
        ),
        other => panic!("{other:?}"),
    }
    check(real).await.expect("the lost create is the right one");
}

/// Item 8: a request that cannot be built never leaves the machine and is a
/// permanent (configuration) error, not an unknown outcome; so is a bad
/// User-Agent or token given at construction.
#[tokio::test]
async fn a_request_that_cannot_be_built_is_a_configuration_error() {
    #[derive(Debug)]
    struct NewlineToken;
    #[async_trait::async_trait]
    impl TokenSource for NewlineToken {
        async fn token(&self) -> Result<Secret, AdapterError> {
            Ok(Secret::new("tok\nen-7f3a"))
        }
        async fn refresh(&self) -> Result<Secret, AdapterError> {
            self.token().await
        }
    }
    let fake = FakeReddit::start(FakeRedditConfig::default())
        .await
        .expect("fake");
    let config = RedditConfig {
        base_url: fake.base_url(),
        backoff: fast_backoff(3),
        ..RedditConfig::default()
    };
    let adapter =
        RedditAdapter::with_token_source(config.clone(), Arc::new(NewlineToken)).expect("adapter");
    let spec = EntitySpec::Campaign(Campaign {
        ad_groups: vec![],
        ..small_set().campaigns[0].clone()
    });
    let parent = account();
    match adapter.create(&parent, &spec).await {
        Err(AdapterError::Permanent { message, .. }) => {
            assert!(
                message.starts_with("POST /api/v3/ad_accounts/a2_test/campaigns: the request could not be built (nothing was sent)"),
                "{message}"
            );
            assert!(!message.contains("7f3a"), "token leaked: {message}");
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
    assert!(fake.requests().is_empty());

    let bad_ua = RedditAdapter::new(RedditConfig {
        token: Some(Secret::new("t")),
        user_agent: "adsync\r\nX-Evil: 1".into(),
        ..config.clone()
    });
    assert!(matches!(
        bad_ua,
        Err(adsync::reddit::ConfigError::InvalidUserAgent { .. })
    ));
    let bad_token = RedditAdapter::new(RedditConfig {
        token: Some(Secret::new("a\nb-secret")),
        ..config
    });
    match bad_token {
        Err(e @ adsync::reddit::ConfigError::InvalidToken) => {
            assert!(!e.to_string().contains("secret"))
        }
        other => panic!("{other:?}"),
    }
    fake.shutdown().await;
}

/// Item 17: each error text says each thing once.
async fn error_texts_do_not_repeat_themselves(backend: Backend) {
    let fake = FakeReddit::start(FakeRedditConfig::default())
        .await
        .expect("fake");
    let adapter = reddit(&fake, 2);
    let parent = account();
    let mut bad = small_set().campaigns[0].clone();
    bad.ad_groups.clear();
    bad.name = "ab".into();
    // 400: the status line, then the fields; not "400 Bad Request: Bad Request".
    match adapter.create(&parent, &EntitySpec::Campaign(bad)).await {
        Err(AdapterError::Permanent { message, fields }) => {
            assert_eq!(
                message,
                "POST /api/v3/ad_accounts/a2_test/campaigns: 400 Bad Request"
            );
            assert!(!fields.is_empty());
        }
        other => panic!("{other:?}"),
    }
    // 401 with a fixed token: no "even after refreshing".
    fake.inject(RedditFault::new(RedditFaultKind::Unauthorized).times(2));
    let spec = EntitySpec::Campaign(Campaign {
        ad_groups: vec![],
        ..small_set().campaigns[0].clone()
    });
    match adapter.create(&parent, &spec).await {
        Err(AdapterError::Permanent { message, .. }) => assert_eq!(
            message,
            "POST /api/v3/ad_accounts/a2_test/campaigns: 401 Unauthorized: the access token was rejected twice (it is fixed and cannot be refreshed: check ADSYNC_REDDIT_TOKEN)"
        ),
        other => panic!("{other:?}"),
    }
    // Retries spent on an update: the count is said once.
    let p = pusher(TestStore::temporary(backend).await, adapter.clone(), 2);
    assert!(p
        .push(&small_set(), ACCOUNT)
        .await
        .expect("push")
        .all_synced());
    let campaign_id = fake.entities().campaigns[0]["id"]
        .as_str()
        .expect("id")
        .to_string();
    fake.inject(
        RedditFault::new(RedditFaultKind::Status {
            status: 500,
            after_apply: false,
            retry_after_secs: None,
            reset_secs: None,
        })
        .method("PATCH"),
    );
    // A renamed campaign: the converging push has an update to send.
    let mut renamed = small_set();
    renamed.campaigns[0].name = "Campaign one, renamed".into();
    let report = p.push(&renamed, ACCOUNT).await.expect("push 2");
    fake.clear_faults();
    match &report.campaigns[0].entities[0].result {
        EntityResult::Failed { error } => assert_eq!(
            error,
            &format!("transient: PATCH /api/v3/campaigns/{campaign_id}: 500 Internal Server Error (after 2 attempts)")
        ),
        other => panic!("{other:?}"),
    }
    fake.shutdown().await;
}

/// Item 6: the Reddit adapter reads an entity back by id (for verifying an
/// adopted id): its name and parent; `None` when Reddit has no such entity of
/// that kind.
#[tokio::test]
async fn reddit_reads_an_entity_back_by_id() {
    let fake = FakeReddit::start(FakeRedditConfig::default())
        .await
        .expect("fake");
    let adapter = reddit(&fake, 2);
    let account = account();
    let campaign = EntitySpec::Campaign(Campaign {
        ad_groups: vec![],
        ..small_set().campaigns[0].clone()
    });
    let campaign_id = adapter.create(&account, &campaign).await.expect("campaign");
    let under = Parent {
        account_id: ACCOUNT.into(),
        parent_id: Some(campaign_id.clone()),
    };
    let group = EntitySpec::AdGroup(adsync::AdGroup {
        ads: vec![],
        keywords: vec![],
        ..small_set().campaigns[0].ad_groups[0].clone()
    });
    let group_id = adapter.create(&under, &group).await.expect("ad group");

    let read = adapter
        .get(&under, EntityKind::AdGroup, &group_id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read.name, "Group one");
    assert_eq!(read.parent_id.as_deref(), Some(campaign_id.as_str()));
    let read = adapter
        .get(&account, EntityKind::Campaign, &campaign_id)
        .await
        .expect("read")
        .expect("exists");
    assert_eq!(read.account_id.as_deref(), Some(ACCOUNT));
    assert_eq!(read.parent_id, None);
    assert_eq!(
        adapter
            .get(&under, EntityKind::AdGroup, "adg_nope")
            .await
            .expect("read"),
        None
    );
    assert_eq!(
        adapter
            .get(&under, EntityKind::AdGroup, &campaign_id)
            .await
            .expect("read"),
        None,
        "a campaign's id is not an ad group"
    );
    fake.shutdown().await;
}
