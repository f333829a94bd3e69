//! The Reddit adapter against the local fake Reddit Ads server (127.0.0.1 only).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use adsync::reddit::{RatePolicy, RedditAdapter, RedditConfig, TokenSource};
use adsync::Backoff;
use adsync::Secret;
use adsync::{
    Ad, AdGroup, BidStrategy, BidType, Campaign, ConfiguredStatus, GoalType, Keyword, Objective,
    SpendGoal,
};
use adsync::{AdapterError, EntityKind, EntitySpec, KeywordModel, Parent, PushAdapter};
use adsync_fakes::reddit::{LoggedRequest, RedditFault, RedditFaultKind};
use adsync_fakes::{FakeReddit, FakeRedditConfig, FakeRedditHandle};
use async_trait::async_trait;
use serde_json::{json, Value};
use time::OffsetDateTime;

const ACCOUNT: &str = "a2_test";

fn adapter_config(fake: &FakeRedditHandle) -> RedditConfig {
    RedditConfig {
        base_url: fake.base_url(),
        token: Some(Secret::new(fake.config().token.clone())),
        user_agent: "adsync-tests/1.0".into(),
        timeout: Duration::from_secs(3),
        connect_timeout: Duration::from_secs(1),
        // Generous by default, so that tests of the server's own 429s get them.
        rate: RatePolicy {
            reads: 10_000,
            writes: 10_000,
            window: Duration::from_secs(1),
        },
        backoff: Backoff {
            base: Duration::from_millis(20),
            max: Duration::from_secs(2),
            max_attempts: 4,
        },
        page_size: None,
    }
}

async fn setup_with(config: FakeRedditConfig) -> (FakeRedditHandle, RedditAdapter) {
    let fake = FakeReddit::start(config).await.expect("fake server starts");
    let adapter = RedditAdapter::new(adapter_config(&fake)).expect("adapter builds");
    (fake, adapter)
}

async fn setup() -> (FakeRedditHandle, RedditAdapter) {
    setup_with(FakeRedditConfig::default()).await
}

fn account() -> Parent {
    Parent {
        account_id: ACCOUNT.into(),
        parent_id: None,
    }
}

fn under(id: &str) -> Parent {
    Parent {
        account_id: ACCOUNT.into(),
        parent_id: Some(id.into()),
    }
}

fn campaign(name: &str) -> EntitySpec {
    EntitySpec::Campaign(Campaign {
        id: format!("local-{name}"),
        name: name.into(),
        objective: Objective::Clicks,
        status: ConfiguredStatus::Paused,
        goal: Some(SpendGoal {
            goal_type: GoalType::DailySpend,
            value_micros: 25_000_000,
        }),
        ad_groups: vec![],
    })
}

fn ad_group(name: &str) -> AdGroup {
    AdGroup {
        id: format!("local-{name}"),
        name: name.into(),
        status: ConfiguredStatus::Active,
        bid_strategy: Some(BidStrategy::ManualBidding),
        bid_type: Some(BidType::Cpc),
        bid_value_micros: Some(1_500_000),
        start_time: Some("2026-12-01T00:00:00Z".into()),
        end_time: None,
        ads: vec![],
        keywords: vec![],
    }
}

fn ad(name: &str) -> Ad {
    Ad {
        id: format!("local-{name}"),
        name: name.into(),
        post_id: "t3_abc123".into(),
        click_url: Some("https://example.com/landing".into()),
        status: ConfiguredStatus::Paused,
    }
}

fn keywords(texts: &[&str]) -> Vec<Keyword> {
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| Keyword {
            id: format!("k{i}"),
            text: (*t).into(),
        })
        .collect()
}

fn long_ago() -> OffsetDateTime {
    OffsetDateTime::now_utc() - time::Duration::hours(1)
}

fn count(log: &[LoggedRequest], method: &str, path_part: &str, status: Option<u16>) -> usize {
    log.iter()
        .filter(|r| r.method == method && r.path.contains(path_part))
        .filter(|r| status.is_none() || r.status == status)
        .count()
}

fn field<'a>(entity: &'a Value, name: &str) -> &'a Value {
    entity.get(name).unwrap_or(&Value::Null)
}

#[tokio::test]
async fn create_update_find_round_trip_for_campaign_ad_group_and_ad() {
    let (fake, adapter) = setup().await;
    assert_eq!(adapter.platform(), "reddit");
    assert_eq!(adapter.keyword_model(), KeywordModel::AdGroupTargeting);
    let before = OffsetDateTime::now_utc() - time::Duration::seconds(1);

    let cid = adapter
        .create(&account(), &campaign("Spring Sale"))
        .await
        .expect("campaign created");
    let gid = adapter
        .create(&under(&cid), &EntitySpec::AdGroup(ad_group("Group One")))
        .await
        .expect("ad group created");
    let aid = adapter
        .create(&under(&gid), &EntitySpec::Ad(ad("First Ad")))
        .await
        .expect("ad created");

    let held = fake.entities();
    assert_eq!(
        (held.campaigns.len(), held.ad_groups.len(), held.ads.len()),
        (1, 1, 1)
    );
    let c = &held.campaigns[0];
    assert_eq!(field(c, "id"), &json!(cid));
    assert_eq!(field(c, "ad_account_id"), &json!(ACCOUNT));
    assert_eq!(field(c, "objective"), &json!("CLICKS"));
    assert_eq!(field(c, "goal_type"), &json!("DAILY_SPEND"));
    assert_eq!(field(c, "goal_value"), &json!(25_000_000));
    let g = &held.ad_groups[0];
    assert_eq!(field(g, "campaign_id"), &json!(cid));
    assert_eq!(field(g, "bid_value"), &json!(1_500_000));
    assert_eq!(field(g, "bid_strategy"), &json!("MANUAL_BIDDING"));
    let a = &held.ads[0];
    assert_eq!(field(a, "ad_group_id"), &json!(gid));
    assert_eq!(field(a, "campaign_id"), &json!(cid));
    assert_eq!(field(a, "post_id"), &json!("t3_abc123"));

    // Updates.
    let mut c2 = campaign("Spring Sale");
    if let EntitySpec::Campaign(c) = &mut c2 {
        c.status = ConfiguredStatus::Active;
    }
    adapter
        .update(&account(), &cid, &c2)
        .await
        .expect("campaign updated");
    let mut g2 = ad_group("Group One Renamed");
    g2.bid_value_micros = Some(2_000_000);
    adapter
        .update(&under(&cid), &gid, &EntitySpec::AdGroup(g2))
        .await
        .expect("ad group updated");
    let mut a2 = ad("First Ad");
    a2.click_url = Some("https://example.com/other".into());
    adapter
        .update(&under(&gid), &aid, &EntitySpec::Ad(a2))
        .await
        .expect("ad updated");
    let held = fake.entities();
    assert_eq!(
        field(&held.campaigns[0], "configured_status"),
        &json!("ACTIVE")
    );
    assert_eq!(
        field(&held.ad_groups[0], "name"),
        &json!("Group One Renamed")
    );
    assert_eq!(field(&held.ad_groups[0], "bid_value"), &json!(2_000_000));
    assert_eq!(
        field(&held.ads[0], "click_url"),
        &json!("https://example.com/other")
    );

    // Finds: exact name, under the right parent, created at or after the bound.
    let found = adapter
        .find(&account(), EntityKind::Campaign, "Spring Sale", before)
        .await
        .expect("find campaign");
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].id, cid);
    assert!(found[0].created_at >= before);
    let found = adapter
        .find(
            &under(&cid),
            EntityKind::AdGroup,
            "Group One Renamed",
            before,
        )
        .await
        .expect("find ad group");
    assert_eq!(found.iter().map(|f| &f.id).collect::<Vec<_>>(), vec![&gid]);
    let found = adapter
        .find(&under(&gid), EntityKind::Ad, "First Ad", before)
        .await
        .expect("find ad");
    assert_eq!(found.iter().map(|f| &f.id).collect::<Vec<_>>(), vec![&aid]);
    // Not a prefix match, and not before `created_after`.
    assert!(adapter
        .find(&account(), EntityKind::Campaign, "Spring", before)
        .await
        .expect("find")
        .is_empty());
    let later = OffsetDateTime::now_utc() + time::Duration::minutes(5);
    assert!(adapter
        .find(&account(), EntityKind::Campaign, "Spring Sale", later)
        .await
        .expect("find")
        .is_empty());
    // Another campaign's ad groups are not listed.
    assert!(adapter
        .find(
            &under("cmp_other"),
            EntityKind::AdGroup,
            "Group One Renamed",
            before
        )
        .await
        .expect("find")
        .is_empty());
    fake.shutdown().await;
}

#[tokio::test]
async fn keywords_live_in_ad_group_targeting_and_other_targeting_is_kept() {
    let (fake, adapter) = setup().await;
    let cid = adapter
        .create(&account(), &campaign("Kw Campaign"))
        .await
        .expect("c");
    let gid = adapter
        .create(&under(&cid), &EntitySpec::AdGroup(ad_group("Kw Group")))
        .await
        .expect("g");
    // Someone set communities and excluded keywords through the API.
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let resp = http
        .patch(format!("{}/ad_groups/{gid}", fake.base_url()))
        .bearer_auth(&fake.config().token)
        .header("User-Agent", "t")
        .json(&json!({"data": {"targeting": {
            "communities": ["r/rust"], "keywords": ["old"], "excluded_keywords": ["free"]}}}))
        .send()
        .await
        .expect("patch");
    assert_eq!(resp.status(), 200);

    let kws = keywords(&["rust jobs", "async"]);
    adapter
        .set_ad_group_keywords(&under(&cid), &gid, &kws)
        .await
        .expect("keywords set");
    fake.clear_requests();
    adapter
        .set_ad_group_keywords(&under(&cid), &gid, &kws)
        .await
        .expect("idempotent");
    // Already in place: read, no write.
    let log = fake.requests();
    assert_eq!(
        count(&log, "GET", &format!("/ad_groups/{gid}"), Some(200)),
        1
    );
    assert_eq!(count(&log, "PATCH", "", None), 0);
    let held = fake.entities();
    assert_eq!(
        field(&held.ad_groups[0], "targeting"),
        &json!({"communities": ["r/rust"], "keywords": ["rust jobs", "async"], "excluded_keywords": ["free"]})
    );
    // The ad group's other fields are untouched.
    assert_eq!(field(&held.ad_groups[0], "bid_value"), &json!(1_500_000));

    // An ad group update never wipes keywords.
    adapter
        .update(
            &under(&cid),
            &gid,
            &EntitySpec::AdGroup(ad_group("Kw Group")),
        )
        .await
        .expect("update");
    assert_eq!(
        field(&fake.entities().ad_groups[0], "targeting")["keywords"],
        json!(["rust jobs", "async"])
    );

    // Keywords are not entities on Reddit.
    let kw = EntitySpec::Keyword(kws[0].clone());
    for err in [
        adapter
            .create(&under(&gid), &kw)
            .await
            .expect_err("no keyword create"),
        adapter
            .update(&under(&gid), "x", &kw)
            .await
            .expect_err("no keyword update"),
    ] {
        match err {
            AdapterError::Permanent { message, .. } => assert!(message.contains("targeting")),
            other => panic!("expected Permanent, got {other:?}"),
        }
    }
    assert!(matches!(
        adapter
            .find(&under(&gid), EntityKind::Keyword, "async", long_ago())
            .await,
        Err(AdapterError::Permanent { .. })
    ));

    // More than 1000 keywords: the platform's field message comes back.
    let many: Vec<String> = (0..1001).map(|i| format!("kw{i}")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    match adapter
        .set_ad_group_keywords(&under(&cid), &gid, &keywords(&many))
        .await
    {
        Err(AdapterError::Permanent { fields, .. }) => {
            assert_eq!(fields[0].field, "targeting.keywords");
            assert!(fields[0].message.contains("1000"));
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
    fake.shutdown().await;
}

#[tokio::test]
async fn find_follows_absolute_next_url_across_pages() {
    let (fake, adapter) = setup_with(FakeRedditConfig {
        default_page_size: 2,
        ..FakeRedditConfig::default()
    })
    .await;
    let mut ids = vec![];
    for i in 0..7 {
        let name = if i % 3 == 0 {
            "Twin Name".to_string()
        } else {
            format!("Campaign {i}")
        };
        ids.push(
            adapter
                .create(&account(), &campaign(&name))
                .await
                .expect("created"),
        );
    }
    fake.clear_requests();
    let found = adapter
        .find(&account(), EntityKind::Campaign, "Twin Name", long_ago())
        .await
        .expect("find");
    let found_ids: Vec<&str> = found.iter().map(|f| f.id.as_str()).collect();
    assert_eq!(
        found_ids,
        vec![ids[0].as_str(), ids[3].as_str(), ids[6].as_str()]
    );
    let log = fake.requests();
    // 7 entities at 2 per page: 4 pages, the last three through page tokens.
    assert_eq!(
        count(&log, "GET", "/ad_accounts/a2_test/campaigns", Some(200)),
        4
    );
    assert_eq!(count(&log, "GET", "page.token=", Some(200)), 3);
    fake.shutdown().await;
}

#[tokio::test]
async fn validation_error_is_permanent_with_field_messages() {
    let (fake, adapter) = setup().await;
    match adapter.create(&account(), &campaign("ab")).await {
        Err(AdapterError::Permanent { message, fields }) => {
            assert!(message.contains("400"), "{message}");
            assert_eq!(fields.len(), 1);
            assert_eq!(fields[0].field, "name");
            assert!(fields[0].message.contains("3 characters"));
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
    // Unknown parent: the platform names the field.
    match adapter
        .create(
            &under("cmp_missing"),
            &EntitySpec::AdGroup(ad_group("Orphan")),
        )
        .await
    {
        Err(AdapterError::Permanent { fields, .. }) => {
            assert_eq!(fields[0].field, "campaign_id");
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
    // PATCH of an entity that is gone.
    match adapter
        .update(&account(), "cmp_gone", &campaign("Gone Campaign"))
        .await
    {
        Err(AdapterError::NotFound { message }) => {
            assert!(message.contains("cmp_gone no longer exists"), "{message}")
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert!(fake.entities().campaigns.is_empty());
    // Each rejected request was sent exactly once.
    assert_eq!(fake.requests().len(), 3);
    fake.shutdown().await;
}

#[derive(Debug)]
struct RotatingToken {
    current: Mutex<String>,
    fresh: String,
    refreshes: AtomicU32,
}

#[async_trait]
impl TokenSource for RotatingToken {
    async fn token(&self) -> Result<Secret, AdapterError> {
        Ok(Secret::new(
            self.current.lock().map(|t| t.clone()).unwrap_or_default(),
        ))
    }
    async fn refresh(&self) -> Result<Secret, AdapterError> {
        self.refreshes.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut t) = self.current.lock() {
            *t = self.fresh.clone();
        }
        Ok(Secret::new(self.fresh.clone()))
    }
}

#[tokio::test]
async fn unauthorized_refreshes_once_then_succeeds() {
    let fake = FakeReddit::start(FakeRedditConfig {
        token: "fresh-token".into(),
        ..FakeRedditConfig::default()
    })
    .await
    .expect("fake");
    let tokens = Arc::new(RotatingToken {
        current: Mutex::new("stale-token".into()),
        fresh: "fresh-token".into(),
        refreshes: AtomicU32::new(0),
    });
    let adapter =
        RedditAdapter::with_token_source(adapter_config(&fake), tokens.clone()).expect("adapter");
    let id = adapter
        .create(&account(), &campaign("Auth Campaign"))
        .await
        .expect("created");
    assert_eq!(tokens.refreshes.load(Ordering::SeqCst), 1);
    let log = fake.requests();
    let statuses: Vec<Option<u16>> = log.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![Some(401), Some(201)]);
    assert_eq!(fake.entities().campaigns.len(), 1);

    // The token "expires" once more: again one refresh and a retry.
    fake.expire_token_once();
    adapter
        .update(&account(), &id, &campaign("Auth Campaign"))
        .await
        .expect("updated after refresh");
    assert_eq!(tokens.refreshes.load(Ordering::SeqCst), 2);
    fake.shutdown().await;
}

#[tokio::test]
async fn unauthorized_twice_is_permanent_without_leaking_the_token() {
    let (fake, adapter) = setup().await;
    fake.inject(RedditFault::new(RedditFaultKind::Unauthorized).times(2));
    match adapter.create(&account(), &campaign("Never Made")).await {
        Err(e @ AdapterError::Permanent { .. }) => {
            let text = format!("{e} {e:?}");
            assert!(text.contains("401"), "{text}");
            assert!(!text.contains(&fake.config().token), "token leaked: {text}");
        }
        other => panic!("expected Permanent, got {other:?}"),
    }
    assert_eq!(count(&fake.requests(), "POST", "/campaigns", Some(401)), 2);
    assert!(fake.entities().campaigns.is_empty());
    fake.shutdown().await;
}

#[tokio::test]
async fn throttled_with_retry_after_waits_then_succeeds() {
    let (fake, adapter) = setup().await;
    fake.inject(
        RedditFault::new(RedditFaultKind::Status {
            status: 429,
            after_apply: false,
            retry_after_secs: Some(1),
            reset_secs: None,
        })
        .method("POST")
        .times(1),
    );
    let started = Instant::now();
    adapter
        .create(&account(), &campaign("Throttled One"))
        .await
        .expect("created");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    let log = fake.requests();
    assert_eq!(count(&log, "POST", "/campaigns", Some(429)), 1);
    assert_eq!(count(&log, "POST", "/campaigns", Some(201)), 1);
    assert_eq!(fake.entities().campaigns.len(), 1);
    fake.shutdown().await;
}

#[tokio::test]
async fn throttled_with_only_ratelimit_reset_waits_then_succeeds() {
    let (fake, adapter) = setup().await;
    fake.inject(
        RedditFault::new(RedditFaultKind::Status {
            status: 429,
            after_apply: false,
            retry_after_secs: None,
            reset_secs: Some(1),
        })
        .times(1),
    );
    let started = Instant::now();
    adapter
        .create(&account(), &campaign("Throttled Two"))
        .await
        .expect("created");
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(count(&fake.requests(), "POST", "/campaigns", Some(429)), 1);
    assert_eq!(fake.entities().campaigns.len(), 1);
    fake.shutdown().await;
}

#[tokio::test]
async fn throttled_without_headers_backs_off_then_succeeds_or_gives_up_transient() {
    let (fake, adapter) = setup().await;
    let throttle = || {
        RedditFault::new(RedditFaultKind::Status {
            status: 429,
            after_apply: false,
            retry_after_secs: None,
            reset_secs: None,
        })
    };
    fake.inject(throttle().times(2));
    adapter
        .create(&account(), &campaign("Throttled Three"))
        .await
        .expect("created");
    let log = fake.requests();
    assert_eq!(count(&log, "POST", "/campaigns", Some(429)), 2);
    assert_eq!(count(&log, "POST", "/campaigns", Some(201)), 1);

    // Throttled for good: bounded attempts, then Transient with a wait hint.
    fake.clear_requests();
    fake.inject(throttle());
    match adapter
        .create(&account(), &campaign("Throttled Four"))
        .await
    {
        Err(AdapterError::Transient { retry_after, .. }) => assert!(retry_after.is_some()),
        other => panic!("expected Transient, got {other:?}"),
    }
    assert_eq!(count(&fake.requests(), "POST", "/campaigns", Some(429)), 4);
    fake.clear_faults();
    assert_eq!(fake.entities().campaigns.len(), 1);
    fake.shutdown().await;
}

#[tokio::test]
async fn real_server_rate_limit_429s_are_waited_out_without_duplicates() {
    // The client limiter is generous here, so the server's own window trips.
    let (fake, adapter) = setup_with(FakeRedditConfig {
        writes_per_window: 3,
        window: Duration::from_secs(1),
        ..FakeRedditConfig::default()
    })
    .await;
    let adapter = Arc::new(adapter);
    let mut tasks = vec![];
    for i in 0..6 {
        let adapter = adapter.clone();
        tasks.push(tokio::spawn(async move {
            adapter
                .create(&account(), &campaign(&format!("Burst {i}")))
                .await
        }));
    }
    for t in tasks {
        t.await
            .expect("joined")
            .expect("created despite throttling");
    }
    let log = fake.requests();
    assert!(count(&log, "POST", "/campaigns", Some(429)) >= 1);
    assert_eq!(count(&log, "POST", "/campaigns", Some(201)), 6);
    assert_eq!(fake.entities().campaigns.len(), 6);
    fake.shutdown().await;
}

#[tokio::test]
async fn client_limiter_keeps_a_burst_free_of_429s() {
    let fake = FakeReddit::start(FakeRedditConfig {
        writes_per_window: 5,
        window: Duration::from_secs(1),
        ..FakeRedditConfig::default()
    })
    .await
    .expect("fake");
    let adapter = Arc::new(
        RedditAdapter::new(RedditConfig {
            rate: RatePolicy {
                reads: 100,
                writes: 5,
                window: Duration::from_secs(1),
            },
            ..adapter_config(&fake)
        })
        .expect("adapter"),
    );
    let mut tasks = vec![];
    for i in 0..12 {
        let adapter = adapter.clone();
        tasks.push(tokio::spawn(async move {
            adapter
                .create(&account(), &campaign(&format!("Calm {i}")))
                .await
        }));
    }
    for t in tasks {
        t.await.expect("joined").expect("created");
    }
    let log = fake.requests();
    assert_eq!(count(&log, "POST", "", Some(429)), 0, "{log:?}");
    assert_eq!(count(&log, "POST", "/campaigns", Some(201)), 12);
    assert_eq!(fake.entities().campaigns.len(), 12);
    fake.shutdown().await;
}

#[tokio::test]
async fn server_errors_and_dropped_connections_on_reads_and_updates_are_retried() {
    let (fake, adapter) = setup().await;
    let cid = adapter
        .create(&account(), &campaign("Flaky Reads"))
        .await
        .expect("c");
    fake.inject(
        RedditFault::new(RedditFaultKind::Status {
            status: 503,
            after_apply: false,
            retry_after_secs: None,
            reset_secs: None,
        })
        .method("GET")
        .times(2),
    );
    let found = adapter
        .find(&account(), EntityKind::Campaign, "Flaky Reads", long_ago())
        .await
        .expect("found after retries");
    assert_eq!(found.len(), 1);
    assert_eq!(count(&fake.requests(), "GET", "/campaigns", Some(503)), 2);

    fake.inject(
        RedditFault::new(RedditFaultKind::Drop)
            .method("GET")
            .times(1),
    );
    let found = adapter
        .find(&account(), EntityKind::Campaign, "Flaky Reads", long_ago())
        .await
        .expect("found after a dropped connection");
    assert_eq!(found[0].id, cid);

    fake.inject(
        RedditFault::new(RedditFaultKind::Status {
            status: 500,
            after_apply: false,
            retry_after_secs: None,
            reset_secs: None,
        })
        .method("PATCH")
        .times(1),
    );
    let mut active = campaign("Flaky Reads");
    if let EntitySpec::Campaign(c) = &mut active {
        c.status = ConfiguredStatus::Active;
    }
    adapter
        .update(&account(), &cid, &active)
        .await
        .expect("updated after retry");
    assert_eq!(
        field(&fake.entities().campaigns[0], "configured_status"),
        &json!("ACTIVE")
    );

    // Persistent 5xx on reads: bounded, then Transient.
    fake.inject(RedditFault::new(RedditFaultKind::Status {
        status: 502,
        after_apply: false,
        retry_after_secs: None,
        reset_secs: None,
    }));
    fake.clear_requests();
    assert!(matches!(
        adapter
            .find(&account(), EntityKind::Campaign, "Flaky Reads", long_ago())
            .await,
        Err(AdapterError::Transient { .. })
    ));
    assert_eq!(fake.requests().len(), 4);
    fake.shutdown().await;
}

#[tokio::test]
async fn server_error_on_create_is_unknown_and_never_resent() {
    let (fake, adapter) = setup().await;
    fake.inject(
        RedditFault::new(RedditFaultKind::Status {
            status: 500,
            after_apply: true,
            retry_after_secs: None,
            reset_secs: None,
        })
        .method("POST")
        .times(1),
    );
    let before = OffsetDateTime::now_utc() - time::Duration::seconds(1);
    match adapter.create(&account(), &campaign("Maybe Made")).await {
        Err(AdapterError::Unknown { message }) => assert!(message.contains("500"), "{message}"),
        other => panic!("expected Unknown, got {other:?}"),
    }
    assert_eq!(
        count(&fake.requests(), "POST", "", None),
        1,
        "the POST was re-sent"
    );
    assert_eq!(fake.entities().campaigns.len(), 1);
    let found = adapter
        .find(&account(), EntityKind::Campaign, "Maybe Made", before)
        .await
        .expect("find");
    assert_eq!(found.len(), 1);
    fake.shutdown().await;
}

#[tokio::test]
async fn lost_create_response_is_unknown_and_find_settles_it() {
    let (fake, adapter) = setup().await;
    let cid = adapter
        .create(&account(), &campaign("Parent Campaign"))
        .await
        .expect("c");
    let before = OffsetDateTime::now_utc() - time::Duration::seconds(1);
    fake.inject(
        RedditFault::new(RedditFaultKind::LoseResponse { withhold_ms: None })
            .method("POST")
            .path_contains("/ad_groups")
            .times(1),
    );
    match adapter
        .create(&under(&cid), &EntitySpec::AdGroup(ad_group("Lost Group")))
        .await
    {
        Err(AdapterError::Unknown { message }) => {
            assert!(
                message.contains("POST /api/v3/ad_accounts/a2_test/ad_groups"),
                "{message}"
            )
        }
        other => panic!("expected Unknown, got {other:?}"),
    }
    let log = fake.requests();
    assert_eq!(
        count(&log, "POST", "/ad_groups", None),
        1,
        "the POST was re-sent"
    );
    assert_eq!(log.last().map(|r| r.status), Some(None));
    let held = fake.entities();
    assert_eq!(held.ad_groups.len(), 1);
    let found = adapter
        .find(&under(&cid), EntityKind::AdGroup, "Lost Group", before)
        .await
        .expect("find");
    assert_eq!(found.len(), 1);
    assert_eq!(json!(found[0].id), held.ad_groups[0]["id"]);
    fake.shutdown().await;
}

#[tokio::test]
async fn create_response_withheld_past_the_timeout_is_unknown() {
    let fake = FakeReddit::start(FakeRedditConfig::default())
        .await
        .expect("fake");
    let adapter = RedditAdapter::new(RedditConfig {
        timeout: Duration::from_millis(300),
        ..adapter_config(&fake)
    })
    .expect("adapter");
    fake.inject(
        RedditFault::new(RedditFaultKind::LoseResponse {
            withhold_ms: Some(1_000),
        })
        .method("POST")
        .times(1),
    );
    match adapter.create(&account(), &campaign("Slow Campaign")).await {
        Err(AdapterError::Unknown { message }) => {
            assert!(message.contains("timed out"), "{message}")
        }
        other => panic!("expected Unknown, got {other:?}"),
    }
    assert_eq!(count(&fake.requests(), "POST", "", None), 1);
    assert_eq!(fake.entities().campaigns.len(), 1);
    // A slow read times out too, but reads are simply retried.
    fake.inject(
        RedditFault::new(RedditFaultKind::Latency { ms: 600 })
            .method("GET")
            .times(1),
    );
    let found = adapter
        .find(
            &account(),
            EntityKind::Campaign,
            "Slow Campaign",
            long_ago(),
        )
        .await
        .expect("find");
    assert_eq!(found.len(), 1);
    let log = fake.requests();
    assert_eq!(count(&log, "GET", "/campaigns", None), 2);
    assert_eq!(count(&log, "GET", "/campaigns", Some(200)), 1);
    fake.shutdown().await;
}

#[tokio::test]
async fn garbled_or_incomplete_success_bodies_give_clear_errors() {
    let (fake, adapter) = setup().await;
    fake.inject(
        RedditFault::new(RedditFaultKind::Garble)
            .method("POST")
            .times(1),
    );
    match adapter.create(&account(), &campaign("Garbled One")).await {
        Err(AdapterError::Unknown { message }) => {
            assert!(
                message.contains("POST /api/v3/ad_accounts/a2_test/campaigns"),
                "{message}"
            );
            assert!(message.contains("unreadable"), "{message}");
        }
        other => panic!("expected Unknown, got {other:?}"),
    }
    fake.inject(
        RedditFault::new(RedditFaultKind::RawBody {
            body: r#"{"data": {}}"#.into(),
        })
        .method("POST")
        .times(1),
    );
    assert!(matches!(
        adapter.create(&account(), &campaign("Garbled Two")).await,
        Err(AdapterError::Unknown { .. })
    ));
    // Both creates happened exactly once.
    assert_eq!(fake.entities().campaigns.len(), 2);
    assert_eq!(count(&fake.requests(), "POST", "", None), 2);

    // A read is read again when its body is garbled once...
    fake.clear_requests();
    fake.inject(
        RedditFault::new(RedditFaultKind::Garble)
            .method("GET")
            .times(1),
    );
    let found = adapter
        .find(&account(), EntityKind::Campaign, "Garbled One", long_ago())
        .await
        .expect("the second read is whole");
    assert_eq!(found.len(), 1);
    assert_eq!(count(&fake.requests(), "GET", "/campaigns", None), 2);
    // ...and fails, naming the endpoint, when every try is garbled.
    fake.inject(RedditFault::new(RedditFaultKind::Garble).method("GET"));
    match adapter
        .find(&account(), EntityKind::Campaign, "Garbled One", long_ago())
        .await
    {
        Err(AdapterError::Transient { message, .. }) => {
            assert!(
                message.contains("GET /api/v3/ad_accounts/a2_test/campaigns"),
                "{message}"
            )
        }
        other => panic!("expected Transient, got {other:?}"),
    }
    fake.shutdown().await;
}

#[tokio::test]
async fn connect_failure_is_transient_even_for_creates() {
    // Grab a free port and close it again: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let adapter = RedditAdapter::new(RedditConfig {
        base_url: format!("http://127.0.0.1:{port}/api/v3"),
        token: Some(Secret::new("t")),
        backoff: Backoff {
            base: Duration::from_millis(5),
            max: Duration::from_millis(20),
            max_attempts: 3,
        },
        ..RedditConfig::default()
    })
    .expect("adapter");
    match adapter.create(&account(), &campaign("Unreachable")).await {
        Err(AdapterError::Transient { message, .. }) => {
            assert!(message.contains("cannot connect"), "{message}")
        }
        other => panic!("expected Transient, got {other:?}"),
    }
}

#[tokio::test]
async fn sequential_requests_follow_ratelimit_headers_and_get_no_429() {
    // The client's own budget is far above the server's: only the
    // X-Ratelimit-Remaining / -Reset headers can keep it out of 429s.
    let (fake, adapter) = setup_with(FakeRedditConfig {
        writes_per_window: 4,
        window: Duration::from_secs(1),
        retry_after_header: false,
        ..FakeRedditConfig::default()
    })
    .await;
    let started = Instant::now();
    for i in 0..9 {
        adapter
            .create(&account(), &campaign(&format!("Paced {i}")))
            .await
            .expect("created");
    }
    let log = fake.requests();
    assert_eq!(count(&log, "POST", "", Some(429)), 0, "{log:?}");
    assert_eq!(count(&log, "POST", "/campaigns", Some(201)), 9);
    // 9 writes at 4 per window need at least two window resets.
    assert!(
        started.elapsed() >= Duration::from_millis(1900),
        "{:?}",
        started.elapsed()
    );
    fake.shutdown().await;
}

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if let Ok(mut b) = self.0.lock() {
            b.extend_from_slice(buf);
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_show_requests_but_never_the_token() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // A current-thread test: everything below runs on this thread.
    let _guard = tracing::subscriber::set_default(subscriber);

    let (fake, adapter) = setup().await;
    fake.expire_token_once();
    fake.inject(
        RedditFault::new(RedditFaultKind::Status {
            status: 500,
            after_apply: true,
            retry_after_secs: None,
            reset_secs: None,
        })
        .method("POST")
        .times(1),
    );
    let err = adapter
        .create(&account(), &campaign("Logged Campaign"))
        .await
        .expect_err("500 on create");
    let text = String::from_utf8_lossy(&captured.0.lock().map(|b| b.clone()).unwrap_or_default())
        .to_string();
    assert!(text.contains("reddit request"), "{text}");
    assert!(
        text.contains("/api/v3/ad_accounts/a2_test/campaigns"),
        "{text}"
    );
    assert!(
        text.contains("status=401") && text.contains("status=500"),
        "{text}"
    );
    let token = &fake.config().token;
    assert!(!text.contains(token.as_str()), "token in logs: {text}");
    assert!(!format!("{err} {err:?} {adapter:?}").contains(token.as_str()));
    fake.shutdown().await;
}
