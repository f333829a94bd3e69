//! A pull is lossless: after pulling from the fake Amazon server, every
//! persisted entity equals what the server listed, compared as JSON values
//! (field names, values, nesting; key order aside), for all three kinds. The
//! fake renders every documented field (`dynamicBidding` included) and one
//! undocumented field (`fakeFutureField`, also inside `budget`), none of which
//! the client's typed fields model except the core ones. On sled and on
//! PostgreSQL.

mod common;

use std::sync::Arc;
use std::time::Duration;

use adsync::amazon::{
    AmazonClient, AmazonConfig, SpAdGroup, SpCampaign, SpKeyword, ThrottleConfig,
};
use adsync::{Backoff, PullMode, PullPolicy, Puller, SystemClock};
use adsync_fakes::amazon::{wire, wire_json};
use adsync_fakes::{FakeAmazon, FakeAmazonConfig, FakeAmazonHandle, Generator, ProfileData};
use common::{Backend, TestDb, TestStore};
use serde_json::Value;

on_both_stores!(
    #[multi_thread]
    persisted_entities_equal_the_servers_listing_as_json
);

const PROFILE: &str = "2718281828";

fn generator() -> Generator {
    Generator {
        campaigns: 24,
        ad_groups_per_campaign: 3,
        keywords_per_ad_group: 20,
        seed: 17,
    }
}

fn puller(h: &FakeAmazonHandle, store: TestStore) -> Puller {
    let config = AmazonConfig::new("fake-client-id", "fake-token")
        .with_host(h.base_url())
        .with_timeout(Duration::from_secs(5))
        .with_throttle(ThrottleConfig {
            initial_rate: 1000.0,
            max_rate: 1000.0,
            burst: 50.0,
            ..ThrottleConfig::default()
        });
    let client = AmazonClient::new(config).expect("client builds");
    Puller::new(store, client, Arc::new(SystemClock)).with_policy(PullPolicy {
        // Several pages per kind, the last one partial.
        page_size: 64,
        backoff: Backoff {
            base: Duration::from_millis(5),
            max: Duration::from_millis(20),
            max_attempts: 3,
        },
    })
}

/// The server's listing of one kind, as raw JSON objects: every page of the
/// real endpoint, read without any of adsync's types.
async fn listing(h: &FakeAmazonHandle, kind: wire::ListKind) -> Vec<Value> {
    let http = reqwest::Client::builder().no_proxy().build().expect("http");
    let mut out = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut body = serde_json::json!({"maxResults": 100});
        if let Some(t) = &token {
            body["nextToken"] = Value::from(t.as_str());
        }
        let resp = http
            .post(format!("{}{}", h.base_url(), wire::path(kind)))
            .header("Authorization", "Bearer fake-token")
            .header("Amazon-Advertising-API-ClientId", "fake-client-id")
            .header("Amazon-Advertising-API-Scope", PROFILE)
            .header("Content-Type", wire::media_type(kind))
            .header("Accept", wire::media_type(kind))
            .json(&body)
            .send()
            .await
            .expect("list call");
        assert_eq!(resp.status(), 200, "{kind}");
        let page: Value = resp.json().await.expect("JSON page");
        out.extend(
            page[wire::items_key(kind)]
                .as_array()
                .expect("items array")
                .iter()
                .cloned(),
        );
        match page.get("nextToken").and_then(Value::as_str) {
            Some(t) => token = Some(t.to_string()),
            None => return out,
        }
    }
}

/// Compares one kind entity by entity, so a failure names the entity and
/// shows both sides.
fn assert_same(kind: &str, persisted: Value, listed: &[Value]) {
    let persisted = persisted.as_array().expect("array").clone();
    assert_eq!(persisted.len(), listed.len(), "{kind}: entity count");
    for (got, want) in persisted.iter().zip(listed) {
        assert_eq!(
            got, want,
            "{kind}: persisted entity differs from the listing"
        );
    }
}

/// The listing is not trivially lossless: it holds fields the client has no
/// typed field for, at the top level and inside `budget`.
fn assert_listing_has_unmodelled_fields(data: &ProfileData) {
    let campaigns = wire_json(&data.campaigns);
    let campaigns = campaigns.as_array().expect("array");
    let has = |v: &[Value], f: &dyn Fn(&Value) -> bool| v.iter().any(f);
    assert!(has(campaigns, &|c| c["dynamicBidding"]["placementBidding"]
        .as_array()
        .is_some_and(|p| !p.is_empty())));
    assert!(has(campaigns, &|c| c["tags"].is_object()));
    assert!(has(campaigns, &|c| c["budget"]["fakeFutureField"].is_u64()));
    assert!(has(campaigns, &|c| c["fakeFutureField"].is_u64()));
    let groups = wire_json(&data.ad_groups);
    assert!(has(groups.as_array().expect("array"), &|g| g
        ["fakeFutureField"]
        .is_u64()));
    let keywords = wire_json(&data.keywords);
    let keywords = keywords.as_array().expect("array");
    assert!(has(keywords, &|k| k["nativeLanguageKeyword"].is_string()));
    assert!(has(keywords, &|k| k["fakeFutureField"].is_u64()));
}

async fn persisted_entities_equal_the_servers_listing_as_json(backend: Backend) {
    let data = generator().generate();
    assert_listing_has_unmodelled_fields(&data);
    let h = FakeAmazon::start(FakeAmazonConfig::default().with_profile(PROFILE, data.clone()))
        .await
        .expect("fake server starts");
    let db = TestDb::new(backend);
    let p = puller(&h, db.open().await);
    let status = p
        .pull(PROFILE, PullMode::ResumeOrStart)
        .await
        .expect("pull completes");
    assert_eq!(
        status
            .counts
            .map(|c| (c.campaigns, c.ad_groups, c.keywords)),
        Some((24, 72, 1440))
    );

    // What the HTTP endpoints list equals the fake's data through its own wire
    // types (so `wire_json` is a fair stand-in for the listing below).
    let listed_campaigns = listing(&h, wire::ListKind::Campaigns).await;
    let listed_groups = listing(&h, wire::ListKind::AdGroups).await;
    let listed_keywords = listing(&h, wire::ListKind::Keywords).await;
    assert_eq!(
        Value::from(listed_campaigns.clone()),
        wire_json(&data.campaigns)
    );
    assert_eq!(
        Value::from(listed_groups.clone()),
        wire_json(&data.ad_groups)
    );
    assert_eq!(
        Value::from(listed_keywords.clone()),
        wire_json(&data.keywords)
    );

    // The whole snapshot, and each kind read on its own.
    let snap = p.snapshot(PROFILE).await.expect("reads").expect("snapshot");
    assert_same("campaigns", wire_json(&snap.campaigns), &listed_campaigns);
    assert_same("ad groups", wire_json(&snap.ad_groups), &listed_groups);
    assert_same("keywords", wire_json(&snap.keywords), &listed_keywords);
    assert_same(
        "campaigns",
        wire_json(&p.campaigns(PROFILE).await.expect("reads")),
        &listed_campaigns,
    );

    // Lookups by id (one chunk decoded) keep the extras too.
    let c = &listed_campaigns[5];
    let found = p
        .find::<SpCampaign>(PROFILE, c["campaignId"].as_str().expect("id"))
        .await
        .expect("reads");
    assert_eq!(wire_json(&found), *c);
    let g = &listed_groups[7];
    let found = p
        .find::<SpAdGroup>(PROFILE, g["adGroupId"].as_str().expect("id"))
        .await
        .expect("reads");
    assert_eq!(wire_json(&found), *g);
    let k = listed_keywords
        .iter()
        .find(|k| k.get("nativeLanguageKeyword").is_some())
        .expect("a translated keyword");
    let found = p
        .find::<SpKeyword>(PROFILE, k["keywordId"].as_str().expect("id"))
        .await
        .expect("reads");
    assert_eq!(wire_json(&found), *k);

    // After a restart (a new process on the same store) nothing is lost either.
    drop(p);
    let p = puller(&h, db.open().await);
    let snap = p.snapshot(PROFILE).await.expect("reads").expect("snapshot");
    assert_same("campaigns", wire_json(&snap.campaigns), &listed_campaigns);
    h.shutdown().await;
}
