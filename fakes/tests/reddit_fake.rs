//! The fake Reddit Ads server on its own terms: what `docs/platforms/reddit.md`
//! says the API does, and the admin endpoints tests drive it with. The adapter
//! against this fake is tested in the root package's `tests/reddit_adapter.rs`.

use adsync_fakes::reddit::LoggedRequest;
use adsync_fakes::{FakeReddit, FakeRedditConfig};
use serde_json::{json, Value};

const ACCOUNT: &str = "a2_test";

#[tokio::test]
async fn fake_server_follows_the_platform_notes_and_admin_api_works() {
    let fake = FakeReddit::start(FakeRedditConfig::default())
        .await
        .expect("fake");
    let base = fake.base_url();
    let token = fake.config().token.clone();
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let send = |req: reqwest::RequestBuilder| async move { req.send().await.expect("sent") };

    // Missing required fields and unknown enum values: 400 with field messages.
    let resp = send(
        http.post(format!("{base}/ad_accounts/{ACCOUNT}/campaigns"))
            .bearer_auth(&token)
            .header("User-Agent", "t")
            .json(&json!({"data": {"name": "Okay Name", "objective": "SHOUTING"}})),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.expect("json");
    let fields: Vec<&str> = body["error"]["fields"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f["field"].as_str()).collect())
        .unwrap_or_default();
    assert_eq!(fields, vec!["objective", "configured_status"]);
    assert_eq!(body["error"]["code"], json!(400));

    // A valid create, then the bare-path rules.
    let resp = send(
        http.post(format!("{base}/ad_accounts/{ACCOUNT}/campaigns"))
            .bearer_auth(&token)
            .header("User-Agent", "t")
            .json(&json!({"data": {"name": "Okay Name", "objective": "CLICKS", "configured_status": "PAUSED"}})),
    )
    .await;
    assert_eq!(resp.status(), 201);
    let created: Value = resp.json().await.expect("json");
    let id = created["data"]["id"].as_str().expect("id").to_string();
    assert!(created["data"]["created_at"].as_str().is_some());
    for (method, url) in [
        (reqwest::Method::PUT, format!("{base}/campaigns/{id}")),
        (
            reqwest::Method::GET,
            format!("{base}/ad_accounts/{ACCOUNT}/campaigns/{id}"),
        ),
        (
            reqwest::Method::GET,
            format!("{base}/ad_accounts/{ACCOUNT}/ads/{id}"),
        ),
        (reqwest::Method::DELETE, format!("{base}/campaigns/{id}")),
    ] {
        let resp = send(
            http.request(method.clone(), &url)
                .bearer_auth(&token)
                .header("User-Agent", "t"),
        )
        .await;
        assert_eq!(resp.status(), 404, "{method} {url}");
    }
    let resp = send(
        http.get(format!("{base}/campaigns/{id}"))
            .bearer_auth(&token)
            .header("User-Agent", "t"),
    )
    .await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().contains_key("x-ratelimit-remaining"));
    // Auth and User-Agent are required.
    assert_eq!(
        send(
            http.get(format!("{base}/campaigns/{id}"))
                .header("User-Agent", "t")
        )
        .await
        .status(),
        401
    );
    assert_eq!(
        send(
            http.get(format!("{base}/campaigns/{id}"))
                .bearer_auth(&token)
        )
        .await
        .status(),
        400
    );

    // Admin HTTP API: inject a fault, see it hit, read entities and the log.
    let admin = format!("http://{}/__admin", fake.addr());
    let resp = send(http.post(format!("{admin}/faults")).json(&json!({
        "method": "GET", "times": 1, "kind": {"type": "status", "status": 503}
    })))
    .await;
    assert_eq!(resp.status(), 204);
    let resp = send(
        http.get(format!("{base}/campaigns/{id}"))
            .bearer_auth(&token)
            .header("User-Agent", "t"),
    )
    .await;
    assert_eq!(resp.status(), 503);
    let entities: Value = send(http.get(format!("{admin}/entities")))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(entities["campaigns"].as_array().map(Vec::len), Some(1));
    let log: Vec<LoggedRequest> = send(http.get(format!("{admin}/requests")))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(
        log.last().and_then(|r| r.fault.clone()),
        Some("status_503".to_string())
    );
    assert_eq!(log.len(), fake.requests().len());

    // Only loopback.
    assert!(FakeReddit::start(FakeRedditConfig {
        bind: "0.0.0.0:0".parse().expect("addr"),
        ..FakeRedditConfig::default()
    })
    .await
    .is_err());
    fake.shutdown().await;
}

/// Page tokens are the fake's own: one it did not hand out is a 400, so an
/// adapter that builds page URLs itself instead of following `next_url` fails
/// against it.
#[tokio::test]
async fn an_unknown_page_token_is_400() {
    let fake = FakeReddit::start(FakeRedditConfig::default())
        .await
        .expect("fake");
    let http = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let resp = http
        .get(format!(
            "{}/ad_accounts/{ACCOUNT}/campaigns?page.token=made-up",
            fake.base_url()
        ))
        .bearer_auth(&fake.config().token)
        .header("User-Agent", "t")
        .send()
        .await
        .expect("get");
    assert_eq!(resp.status(), 400);
    fake.shutdown().await;
}
