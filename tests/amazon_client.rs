//! The Amazon client against the fake Amazon Ads server, over real loopback sockets.
//! Every test starts its own server on 127.0.0.1:0 and shuts it down.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use adsync::amazon::{
    AmazonClient, AmazonConfig, AmazonError, Items, ListKind, ListRequest, SpAdGroup, SpCampaign,
    SpKeyword, State, ThrottleConfig,
};
use adsync::amazon::{IdFilter, StateFilter};
use adsync::Backoff;
use adsync_fakes::amazon::{
    request_gaps, request_statuses, wire, wire_json, AmazonFault, Mutation, RequestRecord,
    ServerRateLimit,
};
use adsync_fakes::fixtures::{small_profile, AMAZON_PROFILE as PROFILE};
use adsync_fakes::{FakeAmazon, FakeAmazonConfig, FakeAmazonHandle, Generator};

async fn server_with(
    gen: Generator,
    tweak: impl FnOnce(&mut FakeAmazonConfig),
) -> FakeAmazonHandle {
    let mut config = FakeAmazonConfig::default().with_profile(PROFILE, gen.generate());
    tweak(&mut config);
    FakeAmazon::start(config).await.expect("fake server starts")
}

async fn server(gen: Generator) -> FakeAmazonHandle {
    server_with(gen, |_| {}).await
}

fn fast_backoff(max_attempts: u32) -> Backoff {
    Backoff {
        base: Duration::from_millis(20),
        max: Duration::from_millis(200),
        max_attempts,
    }
}

fn fast_throttle() -> ThrottleConfig {
    ThrottleConfig {
        initial_rate: 500.0,
        min_rate: 1.0,
        max_rate: 1000.0,
        burst: 10.0,
        ..ThrottleConfig::default()
    }
}

fn config(h: &FakeAmazonHandle) -> AmazonConfig {
    AmazonConfig::new("fake-client-id", "fake-token")
        .with_host(h.base_url())
        .with_timeout(Duration::from_secs(5))
        .with_backoff(fast_backoff(4))
        .with_throttle(fast_throttle())
}

fn client(h: &FakeAmazonHandle) -> AmazonClient {
    AmazonClient::new(config(h)).expect("client builds")
}

fn raw() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("raw client")
}

async fn pull_all(
    c: &AmazonClient,
    sizes: [u32; 3],
) -> (Vec<SpCampaign>, Vec<SpAdGroup>, Vec<SpKeyword>) {
    let mut campaigns = Vec::new();
    let mut ad_groups = Vec::new();
    let mut keywords = Vec::new();
    for (kind, size) in ListKind::ALL.into_iter().zip(sizes) {
        for page in c.list_all(PROFILE, kind, size).await.expect("pull") {
            match page.items {
                Items::Campaigns(v) => campaigns.extend(v),
                Items::AdGroups(v) => ad_groups.extend(v),
                Items::Keywords(v) => keywords.extend(v),
            }
        }
    }
    (campaigns, ad_groups, keywords)
}

#[tokio::test]
async fn pages_through_a_generated_profile_and_gets_exactly_the_servers_data() {
    let h = server(small_profile()).await;
    let c = client(&h);
    let (campaigns, ad_groups, keywords) = pull_all(&c, [7, 50, 100]).await;
    let data = h.profile(PROFILE).expect("profile");
    assert_eq!(wire_json(&campaigns), wire_json(&data.campaigns));
    assert_eq!(wire_json(&ad_groups), wire_json(&data.ad_groups));
    assert_eq!(wire_json(&keywords), wire_json(&data.keywords));
    assert_eq!(keywords.len(), 1280);

    let log = h.requests();
    let count = |path: &str| log.iter().filter(|r| r.path == path).count();
    assert_eq!(count("/sp/campaigns/list"), 6); // ceil(40 / 7)
    assert_eq!(count("/sp/adGroups/list"), 4); // 160 / 50 → 4 pages
    assert_eq!(count("/sp/keywords/list"), 13); // ceil(1280 / 100)
    for r in &log {
        assert_eq!(r.status, 200);
        assert_eq!(r.profile_id.as_deref(), Some(PROFILE));
        let kind = ListKind::from_path(&r.path).expect("known path");
        // The client sends the vendor media type on both headers.
        assert_eq!(r.content_type.as_deref(), Some(kind.media_type()));
        assert_eq!(r.accept.as_deref(), Some(kind.media_type()));
    }
    // totalResults, and tokens chain page to page.
    let pages = c
        .list_all(PROFILE, ListKind::Keywords, 500)
        .await
        .expect("pull");
    assert_eq!(pages.len(), 3);
    assert!(pages.iter().all(|p| p.total_results == Some(1280)));
    assert!(pages[2].next_token.is_none() && pages[0].next_token.is_some());
    // Typed helper.
    let (first, token, total) = c
        .list_page_of::<SpAdGroup>(PROFILE, None, 3)
        .await
        .expect("typed page");
    assert_eq!(wire_json(&first), wire_json(&data.ad_groups[..3]));
    assert!(token.is_some());
    assert_eq!(total, Some(160));
    h.shutdown().await;
}

#[tokio::test]
async fn filters_and_foreign_tokens() {
    let h = server(small_profile()).await;
    let c = client(&h);
    let data = h.profile(PROFILE).expect("profile");
    let campaign = data.campaigns[3].campaign_id.clone();
    let mut request = ListRequest {
        max_results: Some(3),
        campaign_id_filter: Some(IdFilter {
            include: vec![campaign.clone()],
        }),
        state_filter: Some(StateFilter {
            include: vec![State::Enabled, State::Paused],
        }),
        ..ListRequest::default()
    };
    let expected: Vec<wire::Keyword> = data
        .keywords
        .iter()
        .filter(|k| {
            k.campaign_id == campaign
                && matches!(k.state, wire::State::Enabled | wire::State::Paused)
        })
        .cloned()
        .collect();
    assert!(expected.len() > 3, "several pages");
    let mut got = Vec::new();
    let mut first_token = None;
    loop {
        let page = c
            .list_page_with(PROFILE, ListKind::Keywords, &request)
            .await
            .expect("filtered page");
        assert_eq!(page.total_results, Some(expected.len() as u64));
        if let Items::Keywords(v) = page.items {
            got.extend(v);
        }
        first_token = first_token.or(page.next_token.clone());
        request.next_token = page.next_token;
        if request.next_token.is_none() {
            break;
        }
    }
    assert_eq!(wire_json(&got), wire_json(&expected));
    // A token is bound to its endpoint and filters: replaying it elsewhere is a 400.
    let err = c
        .list_page(PROFILE, ListKind::Keywords, first_token.as_deref(), 3)
        .await
        .expect_err("token from a filtered pull");
    assert!(matches!(err, AmazonError::BadRequest { .. }), "{err}");
    let err = c
        .list_page(PROFILE, ListKind::AdGroups, Some("not-a-token"), 3)
        .await
        .expect_err("garbage token");
    assert!(err.to_string().contains("Invalid nextToken"), "{err}");
    match &err {
        AmazonError::BadRequest { message, .. } => {
            assert!(message.code_is("400"));
            assert!(message.request_id.is_some());
        }
        other => panic!("expected BadRequest, got {other}"),
    }
    h.shutdown().await;
}

#[tokio::test]
async fn data_changed_between_and_during_pulls() {
    let h = server(small_profile()).await;
    let c = client(&h);
    let data = h.profile(PROFILE).expect("profile");
    let renamed = data.campaigns[0].campaign_id.clone();
    let removed_ag = data.ad_groups[5].ad_group_id.clone();
    // Through the admin HTTP endpoint…
    let resp = raw()
        .post(format!("{}/_admin/mutations", h.base_url()))
        .json(&vec![
            Mutation::Rename {
                profile_id: PROFILE.into(),
                kind: wire::ListKind::Campaigns,
                id: renamed.clone(),
                name: "Renamed".into(),
            },
            Mutation::Remove {
                profile_id: PROFILE.into(),
                kind: wire::ListKind::AdGroups,
                id: removed_ag.clone(),
            },
        ])
        .send()
        .await
        .expect("admin");
    assert_eq!(resp.status(), 204);
    // …and the Rust API.
    let mut new_kw = data.keywords[0].clone();
    new_kw.keyword_id = "399999999999999".into();
    new_kw.keyword_text = "brand new".into();
    h.mutate(Mutation::PutKeyword {
        profile_id: PROFILE.into(),
        keyword: new_kw.clone(),
    })
    .expect("put keyword");
    h.mutate(Mutation::SetState {
        profile_id: PROFILE.into(),
        kind: wire::ListKind::Keywords,
        id: data.keywords[1].keyword_id.clone(),
        state: wire::State::Archived,
    })
    .expect("set state");
    assert!(h
        .mutate(Mutation::Remove {
            profile_id: PROFILE.into(),
            kind: wire::ListKind::Campaigns,
            id: "nope".into()
        })
        .is_err());

    let (campaigns, ad_groups, keywords) = pull_all(&c, [100, 100, 100]).await;
    let now = h.profile(PROFILE).expect("profile");
    assert_eq!(
        wire_json(&(&campaigns, &ad_groups, &keywords)),
        wire_json(&(now.campaigns, now.ad_groups, now.keywords))
    );
    assert_eq!(campaigns[0].name, "Renamed");
    assert!(ad_groups.iter().all(|g| g.ad_group_id != removed_ag));
    assert!(
        keywords.iter().all(|k| k.ad_group_id != removed_ag),
        "cascade"
    );
    assert_eq!(keywords.len(), 1280 - 8 + 1);
    assert_eq!(wire_json(&keywords.last()), wire_json(&Some(&new_kw)));
    assert_eq!(keywords[1].state, State::Archived);

    // During a pull: ids already served are never served again, and unchanged
    // entities are never skipped, whatever changes between two pages.
    let first = c
        .list_page(PROFILE, ListKind::Keywords, None, 100)
        .await
        .expect("page 1");
    let Items::Keywords(page1) = &first.items else {
        panic!("keywords")
    };
    h.mutate(Mutation::Remove {
        profile_id: PROFILE.into(),
        kind: wire::ListKind::Keywords,
        id: page1[10].keyword_id.clone(),
    })
    .expect("remove served keyword");
    let removed_later = keywords[500].keyword_id.clone();
    h.mutate(Mutation::Remove {
        profile_id: PROFILE.into(),
        kind: wire::ListKind::Keywords,
        id: removed_later.clone(),
    })
    .expect("remove unserved keyword");
    let mut seen: Vec<String> = page1.iter().map(|k| k.keyword_id.clone()).collect();
    let mut token = first.next_token.clone();
    while let Some(t) = token {
        let page = c
            .list_page(PROFILE, ListKind::Keywords, Some(&t), 100)
            .await
            .expect("next page");
        if let Items::Keywords(v) = page.items {
            seen.extend(v.into_iter().map(|k| k.keyword_id));
        }
        token = page.next_token;
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no duplicates");
    let expected: HashSet<&String> = keywords
        .iter()
        .map(|k| &k.keyword_id)
        .filter(|id| **id != removed_later)
        .collect();
    assert_eq!(unique, expected);
    h.shutdown().await;
}

#[tokio::test]
async fn the_client_sends_the_media_type_and_maps_415() {
    let h = server(small_profile()).await;
    let kind = ListKind::AdGroups;
    // The client sends the right type (the fake refuses anything else, see
    // fakes/tests/amazon_fake.rs)…
    let c = client(&h);
    c.list_page(PROFILE, kind, None, 10)
        .await
        .expect("accepted");
    // …and maps a 415 (say, after an API version bump) to its own variant, unretried.
    h.clear_requests();
    h.inject(
        AmazonFault::Reject {
            status: 415,
            code: "UNSUPPORTED_MEDIA_TYPE".into(),
            message: "v3 is retired".into(),
        },
        1,
    );
    let err = c.list_page(PROFILE, kind, None, 10).await.expect_err("415");
    match &err {
        AmazonError::UnsupportedMediaType { page, message } => {
            assert_eq!(page.endpoint, "/sp/adGroups/list");
            assert_eq!(message.message, "v3 is retired");
        }
        other => panic!("expected UnsupportedMediaType, got {other}"),
    }
    assert_eq!(h.requests().len(), 1, "not retried");
    h.shutdown().await;
}

#[tokio::test]
async fn missing_or_wrong_credentials_are_unauthorized_and_forbidden() {
    let h = server(small_profile()).await;
    let kind = ListKind::Campaigns;
    h.clear_requests();
    let bad_token = AmazonClient::new(AmazonConfig {
        token: adsync::Secret::new("expired"),
        ..config(&h)
    })
    .expect("client");
    let err = bad_token
        .list_page(PROFILE, kind, None, 10)
        .await
        .expect_err("401");
    assert!(matches!(err, AmazonError::Unauthorized { .. }), "{err}");
    assert!(!err.to_string().contains("expired"), "no token in errors");
    let bad_client = AmazonClient::new(AmazonConfig {
        client_id: "someone-else".into(),
        ..config(&h)
    })
    .expect("client");
    let err = bad_client
        .list_page(PROFILE, kind, None, 10)
        .await
        .expect_err("403");
    assert!(matches!(err, AmazonError::Forbidden { .. }), "{err}");
    let err = client(&h)
        .list_page("999", kind, None, 10)
        .await
        .expect_err("403");
    match &err {
        AmazonError::Forbidden { message, .. } => assert!(message.message.contains("999")),
        other => panic!("expected Forbidden, got {other}"),
    }
    assert_eq!(
        request_statuses(&h.requests()),
        [401, 403, 403],
        "never retried"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let h = server(small_profile()).await;
    let c = client(&h);
    h.inject(
        AmazonFault::Throttle {
            retry_after_secs: Some(1),
        },
        1,
    );
    let page = c
        .list_page(PROFILE, ListKind::Campaigns, None, 10)
        .await
        .expect("ridden out");
    assert_eq!(page.items.len(), 10);
    let log = h.requests();
    assert_eq!(request_statuses(&log), [429, 200]);
    let gap = request_gaps(&log)[0];
    assert!(gap >= Duration::from_secs(1), "waited only {gap:?}");
    assert!(
        gap < Duration::from_millis(1500),
        "waited too long: {gap:?}"
    );
    assert!(
        c.current_rate() < fast_throttle().initial_rate,
        "rate lowered"
    );

    // A Retry-After longer than the client is willing to sleep comes back at once.
    h.inject(
        AmazonFault::Throttle {
            retry_after_secs: Some(3600),
        },
        1,
    );
    // (Were it slept out, this test would hang for an hour.)
    let err = c
        .list_page(PROFILE, ListKind::Campaigns, None, 10)
        .await
        .expect_err("too long");
    match err {
        AmazonError::Throttled {
            attempts,
            retry_after,
            ..
        } => {
            assert_eq!(attempts, 1);
            assert_eq!(retry_after, Some(Duration::from_secs(3600)));
        }
        other => panic!("expected Throttled, got {other}"),
    }
    h.shutdown().await;
}

#[tokio::test]
async fn throttled_without_retry_after_backs_off_exponentially_then_succeeds() {
    let h = server(small_profile()).await;
    let backoff = Backoff {
        base: Duration::from_millis(100),
        max: Duration::from_secs(1),
        max_attempts: 4,
    };
    let c = AmazonClient::new(config(&h).with_backoff(backoff)).expect("client");
    h.inject(
        AmazonFault::Throttle {
            retry_after_secs: None,
        },
        2,
    );
    c.list_page(PROFILE, ListKind::Keywords, None, 10)
        .await
        .expect("ridden out");
    let log = h.requests();
    assert_eq!(request_statuses(&log), [429, 429, 200]);
    let g = request_gaps(&log);
    // Equal jitter: the n-th wait is in [ceiling/2, ceiling], ceiling = 100 ms · 2ⁿ⁻¹.
    assert!(g[0] >= Duration::from_millis(50), "{g:?}");
    assert!(g[1] >= Duration::from_millis(100), "{g:?}");
    assert!(g[0] + g[1] < Duration::from_millis(600), "{g:?}");
    h.shutdown().await;
}

#[tokio::test]
async fn a_429_storm_is_ridden_out_with_the_rate_lowered_then_recovering() {
    let h = server(small_profile()).await;
    let throttle = ThrottleConfig {
        initial_rate: 80.0,
        min_rate: 10.0,
        max_rate: 200.0,
        burst: 1.0,
        decrease_factor: 0.5,
        increase_step: 10.0,
        increase_after: 2,
        ..ThrottleConfig::default()
    };
    let backoff = Backoff {
        base: Duration::from_millis(10),
        max: Duration::from_millis(50),
        max_attempts: 6,
    };
    let c = AmazonClient::new(config(&h).with_throttle(throttle).with_backoff(backoff))
        .expect("client");
    h.inject(
        AmazonFault::Throttle {
            retry_after_secs: None,
        },
        4,
    );
    let page = c
        .list_page(PROFILE, ListKind::AdGroups, None, 20)
        .await
        .expect("storm ridden out");
    assert_eq!(page.items.len(), 20);
    // 80 → 40 → 20 → 10 → 10 (min_rate).
    assert_eq!(c.current_rate(), 10.0);
    assert_eq!(request_statuses(&h.requests()), [429, 429, 429, 429, 200]);

    let mut token = page.next_token;
    let mut pages = 0;
    while let Some(t) = token {
        let page = c
            .list_page(PROFILE, ListKind::AdGroups, Some(&t), 20)
            .await
            .expect("page");
        token = page.next_token;
        pages += 1;
    }
    assert_eq!(pages, 7);
    // 8 successes, one increase per 2: 10 + 4 · 10.
    assert_eq!(c.current_rate(), 50.0);
    h.shutdown().await;
}

#[tokio::test]
async fn retries_are_bounded_then_throttled() {
    let h = server(small_profile()).await;
    let c = AmazonClient::new(config(&h).with_backoff(fast_backoff(3))).expect("client");
    h.inject(
        AmazonFault::Throttle {
            retry_after_secs: None,
        },
        10,
    );
    let err = c
        .list_page(PROFILE, ListKind::Keywords, None, 10)
        .await
        .expect_err("throttled");
    match &err {
        AmazonError::Throttled {
            attempts,
            page,
            message,
            ..
        } => {
            assert_eq!(*attempts, 3);
            assert_eq!(page.endpoint, "/sp/keywords/list");
            assert!(message.code_is("throttled"));
        }
        other => panic!("expected Throttled, got {other}"),
    }
    assert!(err.is_transient());
    assert_eq!(request_statuses(&h.requests()), [429, 429, 429]);
    assert_eq!(h.pending_faults(), 7);
    h.shutdown().await;
}

/// The most requests any 1-second window starting at a request holds.
fn max_per_second(log: &[RequestRecord]) -> usize {
    (0..log.len())
        .map(|i| {
            log[i..]
                .iter()
                .take_while(|r| r.at - log[i].at < Duration::from_secs(1))
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test]
async fn the_limiter_never_exceeds_the_configured_rate() {
    let h = server(small_profile()).await;
    let (rate, burst) = (25.0, 2.0);
    let throttle = ThrottleConfig {
        initial_rate: rate,
        min_rate: rate,
        max_rate: rate,
        burst,
        ..ThrottleConfig::default()
    };
    let c = AmazonClient::new(config(&h).with_throttle(throttle)).expect("client");
    let started = Instant::now();
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move {
                for _ in 0..10 {
                    c.list_page(PROFILE, ListKind::Campaigns, None, 5)
                        .await
                        .expect("page");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("task");
    }
    let elapsed = started.elapsed();
    let log = h.requests();
    assert_eq!(log.len(), 40);
    let peak = max_per_second(&log);
    assert!(
        peak <= (rate + burst) as usize,
        "{peak} requests in one second"
    );
    assert!(
        elapsed >= Duration::from_secs_f64((40.0 - burst) / rate - 0.05),
        "{elapsed:?}"
    );
    h.shutdown().await;
}

#[tokio::test]
async fn the_servers_dynamic_throttling_is_absorbed() {
    // Server allows 10/s; the client starts at 40/s and must adapt. The keywords
    // endpoint answers 429 without Retry-After, ad groups with it.
    let h = server_with(small_profile(), |c| {
        c.rate_limit = Some(ServerRateLimit {
            rate: 10.0,
            burst: 2.0,
        })
    })
    .await;
    let throttle = ThrottleConfig {
        initial_rate: 40.0,
        min_rate: 2.0,
        max_rate: 40.0,
        burst: 1.0,
        increase_after: 5,
        increase_step: 1.0,
        ..ThrottleConfig::default()
    };
    let backoff = Backoff {
        base: Duration::from_millis(50),
        max: Duration::from_millis(400),
        max_attempts: 8,
    };
    let c = AmazonClient::new(config(&h).with_throttle(throttle).with_backoff(backoff))
        .expect("client");
    let pages = c
        .list_all(PROFILE, ListKind::Keywords, 100)
        .await
        .expect("pull");
    let got: Vec<SpKeyword> = pages
        .into_iter()
        .flat_map(|p| match p.items {
            Items::Keywords(v) => v,
            _ => Vec::new(),
        })
        .collect();
    assert_eq!(
        wire_json(&got),
        wire_json(&h.profile(PROFILE).expect("profile").keywords)
    );
    let log = h.requests();
    let throttled = log.iter().filter(|r| r.status == 429).count();
    assert!(throttled >= 1, "the server did push back");
    assert!(
        c.current_rate() < 40.0,
        "rate adapted: {}",
        c.current_rate()
    );
    assert_eq!(log.iter().filter(|r| r.status == 200).count(), 13);
    h.shutdown().await;
}

#[tokio::test]
async fn server_errors_and_timeouts_are_retried_then_transient() {
    let h = server(small_profile()).await;
    let c = client(&h);
    h.inject(AmazonFault::ServerError { status: 503 }, 2);
    c.list_page(PROFILE, ListKind::Campaigns, None, 10)
        .await
        .expect("retried");
    assert_eq!(request_statuses(&h.requests()), [503, 503, 200]);

    h.clear_requests();
    h.inject(AmazonFault::ServerError { status: 500 }, 10);
    let err = c
        .list_page(PROFILE, ListKind::Campaigns, None, 10)
        .await
        .expect_err("transient");
    match &err {
        AmazonError::Transient { attempts, last, .. } => {
            assert_eq!(*attempts, 4);
            assert!(last.contains("500"), "{last}");
        }
        other => panic!("expected Transient, got {other}"),
    }
    assert_eq!(h.requests().len(), 4);
    h.clear_faults();

    // A response slower than the timeout is retried.
    let c = AmazonClient::new(config(&h).with_timeout(Duration::from_millis(300))).expect("client");
    h.inject(AmazonFault::Delay { ms: 1000 }, 1);
    let started = Instant::now();
    c.list_page(PROFILE, ListKind::Campaigns, None, 10)
        .await
        .expect("retried after timeout");
    assert!(started.elapsed() >= Duration::from_millis(300));
    h.shutdown().await;

    // Nothing listening: connection errors, bounded.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let c = AmazonClient::new(
        AmazonConfig::new("id", "token")
            .with_host(format!("http://{addr}"))
            .with_backoff(fast_backoff(2))
            .with_throttle(fast_throttle()),
    )
    .expect("client");
    let err = c
        .list_page(PROFILE, ListKind::Campaigns, None, 10)
        .await
        .expect_err("refused");
    assert!(
        matches!(err, AmazonError::Transient { attempts: 2, .. }),
        "{err}"
    );
}

#[tokio::test]
async fn page_sizes_outside_amazons_range_are_refused_before_any_request() {
    let h = server(small_profile()).await;
    let c = client(&h);
    for size in [0, 1001, 5000] {
        let err = c
            .list_page(PROFILE, ListKind::Campaigns, None, size)
            .await
            .expect_err("refused");
        assert!(matches!(err, AmazonError::Config(_)), "{err}");
        let text = err.to_string();
        assert!(
            text.contains(&size.to_string()) && text.contains("1..=1000"),
            "{text}"
        );
    }
    assert!(h.requests().is_empty(), "nothing was sent");
    for size in [1, 1000] {
        c.list_page(PROFILE, ListKind::Campaigns, None, size)
            .await
            .expect("in range");
    }
    h.shutdown().await;
}

#[tokio::test]
async fn a_truncated_body_is_retried_like_a_5xx() {
    let h = server(small_profile()).await;
    let c = client(&h);
    let first = c
        .list_page(PROFILE, ListKind::Keywords, None, 50)
        .await
        .expect("page 1");
    let token = first.next_token.expect("more pages");
    h.clear_requests();
    h.inject(AmazonFault::InvalidJson, 1);
    let page = c
        .list_page(PROFILE, ListKind::Keywords, Some(&token), 50)
        .await
        .expect("the second answer is whole");
    assert_eq!(page.items.len(), 50);
    let log = h.requests();
    assert_eq!(
        request_statuses(&log),
        [200, 200],
        "the page, fetched twice"
    );
    assert!(log
        .iter()
        .all(|r| r.next_token.as_deref() == Some(token.as_str())));
    // The wait between is the client's 5xx backoff (equal jitter: ≥ base / 2).
    assert!(request_gaps(&log)[0] >= fast_backoff(4).base / 2);

    // A storm longer than the client's budget: a transient error naming the
    // endpoint, the page, the JSON path and the position in the body.
    h.clear_requests();
    h.inject(AmazonFault::InvalidJson, 10);
    let err = c
        .list_page(PROFILE, ListKind::Keywords, Some(&token), 50)
        .await
        .expect_err("budget spent");
    match &err {
        AmazonError::Garbled {
            page,
            attempts,
            path,
            message,
            body,
        } => {
            assert_eq!(*attempts, 4, "the same budget as a 5xx");
            assert_eq!(page.endpoint, "/sp/keywords/list");
            assert_eq!(page.next_token.as_deref(), Some(token.as_str()));
            assert!(path.starts_with("keywords["), "{path}");
            assert!(
                message.contains("EOF") && message.contains("column"),
                "{message}"
            );
            assert!(body.starts_with("{\"totalResults\""), "{body}");
        }
        other => panic!("expected Garbled, got {other}"),
    }
    assert!(err.is_transient(), "a pull retries the page later");
    assert!(err.to_string().contains(&token), "{err}");
    assert_eq!(h.requests().len(), 4);
    assert_eq!(h.pending_faults(), 6);
    h.shutdown().await;
}

#[tokio::test]
async fn garbled_bodies_are_clear_errors_naming_endpoint_page_and_field() {
    let h = server(small_profile()).await;
    let c = client(&h);

    let first = c
        .list_page(PROFILE, ListKind::Keywords, None, 5)
        .await
        .expect("page 1");
    let token = first.next_token.expect("more pages");
    h.inject(AmazonFault::MissingField, 1);
    let err = c
        .list_page(PROFILE, ListKind::Keywords, Some(&token), 5)
        .await
        .expect_err("missing field");
    match &err {
        AmazonError::Decode {
            page,
            path,
            message,
            ..
        } => {
            assert_eq!(page.endpoint, "/sp/keywords/list");
            assert_eq!(page.next_token.as_deref(), Some(token.as_str()));
            assert_eq!(path, "keywords[0]");
            assert!(message.contains("missing field `state`"), "{message}");
        }
        other => panic!("expected Decode, got {other}"),
    }
    assert!(err.to_string().contains(&token), "the page is named: {err}");

    h.inject(AmazonFault::UnknownEnum, 1);
    let err = c
        .list_page(PROFILE, ListKind::AdGroups, None, 5)
        .await
        .expect_err("unknown enum");
    match &err {
        AmazonError::Decode { path, message, .. } => {
            assert_eq!(path, "adGroups[0].state");
            assert!(message.contains("SUSPENDED"), "{message}");
        }
        other => panic!("expected Decode, got {other}"),
    }
    // Well-formed bodies of the wrong shape are not retried: the same bytes
    // would come back.
    assert_eq!(h.requests().len(), 3);
    // And the page is fine again afterwards.
    c.list_page(PROFILE, ListKind::AdGroups, None, 5)
        .await
        .expect("clean page");
    h.shutdown().await;
}

/// A `MakeWriter` collecting log output in memory.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn logs_name_path_status_latency_and_page_but_never_the_token() {
    const TOKEN: &str = "Atza|SECRET-TOKEN-0123456789";
    let captured = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(captured.clone())
        .finish();
    // Current-thread runtime: the default subscriber covers the whole test.
    let _guard = tracing::subscriber::set_default(subscriber);
    let h = server_with(small_profile(), |c| c.token = TOKEN.to_owned()).await;
    let c = AmazonClient::new(AmazonConfig {
        token: adsync::Secret::new(TOKEN),
        ..config(&h)
    })
    .expect("client");
    h.inject(AmazonFault::ServerError { status: 500 }, 1);
    let first = c
        .list_page(PROFILE, ListKind::Campaigns, None, 10)
        .await
        .expect("page");
    let token = first.next_token.expect("more");
    c.list_page(PROFILE, ListKind::Campaigns, Some(&token), 10)
        .await
        .expect("page 2");
    let bad = AmazonClient::new(AmazonConfig {
        token: adsync::Secret::new(format!("{TOKEN}-wrong")),
        ..config(&h)
    })
    .expect("client");
    let err = bad
        .list_page(PROFILE, ListKind::Campaigns, None, 10)
        .await
        .expect_err("401");
    tracing::error!(%err, ?err, "reported");
    h.shutdown().await;

    let logs =
        String::from_utf8_lossy(&captured.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
    assert!(
        !logs.contains("SECRET-TOKEN"),
        "token leaked into logs:\n{logs}"
    );
    let line = logs
        .lines()
        .find(|l| l.contains("amazon request") && l.contains(&token))
        .unwrap_or_else(|| panic!("no per-request line for page 2:\n{logs}"));
    for field in ["/sp/campaigns/list", "status=200", "latency=", "attempts=1"] {
        assert!(line.contains(field), "{field} missing in {line}");
    }
    assert!(logs
        .lines()
        .any(|l| l.contains("amazon request") && l.contains("status=500")));
}
