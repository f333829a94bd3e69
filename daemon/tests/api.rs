//! The control API in process (tower `oneshot`, no socket): routes against
//! `docs/openapi.yaml`, bad input answered like `adsync validate` with
//! nothing written, the token, the body limit, the status codes of cancel
//! and of a conflicting push. The worker is not run, so submitted syncs stay
//! unfinished: what a test sees is what the submission alone wrote.

use std::collections::BTreeSet;
use std::sync::Arc;

use adsync::amazon::{AmazonClient, AmazonConfig};
use adsync::memory::MemoryPlatform;
use adsync::{Puller, Pusher, Secret, Store, SystemClock, Worker};
use adsync_daemon::{router, Config, DaemonError, ROUTES};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde_json::Value;
use tower::ServiceExt as _;

const EXAMPLE: &str = include_str!("../../examples/campaign_set.json");

struct Api {
    worker: Worker,
    memory: Arc<MemoryPlatform>,
    app: axum::Router,
    _dir: tempfile::TempDir,
}

fn api(config: Config) -> Api {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(dir.path().join("db")).expect("store");
    let clock = Arc::new(SystemClock);
    let memory = Arc::new(MemoryPlatform::new(clock.clone()));
    // Nothing listens there: the worker is not run, so no request is sent.
    let client = AmazonClient::new(
        AmazonConfig::new("client", "amazon-token").with_host("http://127.0.0.1:9"),
    )
    .expect("client");
    let worker = Worker::builder(store.clone())
        .pusher(Pusher::new(store.clone(), memory.clone(), clock.clone()))
        .puller(Puller::new(store, client, clock))
        .build();
    let app = router(worker.clone(), config.verifier(memory.clone()));
    Api {
        worker,
        memory,
        app,
        _dir: dir,
    }
}

struct Answer {
    status: StatusCode,
    content_type: String,
    text: String,
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }

    fn error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no `error` in {}", self.text))
            .to_string()
    }
}

impl Api {
    async fn call(&self, method: &str, path: &str, body: &str, token: Option<&str>) -> Answer {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("content-type", "application/json");
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let response = self
            .app
            .clone()
            .oneshot(request.body(Body::from(body.to_string())).expect("request"))
            .await
            .expect("infallible");
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        Answer {
            status,
            content_type,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    async fn syncs(&self) -> usize {
        self.worker
            .store()
            .read(|s| Ok::<_, adsync::StoreError>(s.list().len()))
            .await
            .expect("join")
            .expect("list")
    }
}

/// `(method, path)` of every operation in `docs/openapi.yaml`: paths are the
/// keys indented by two under `paths:`, operations the keys under them.
fn openapi_routes() -> BTreeSet<(String, String)> {
    let text = include_str!("../../docs/openapi.yaml");
    let mut routes = BTreeSet::new();
    let mut in_paths = false;
    let mut path = None;
    for line in text.lines() {
        if !line.starts_with(' ') && !line.is_empty() {
            in_paths = line == "paths:";
            continue;
        }
        if !in_paths {
            continue;
        }
        if let Some(key) = line.strip_prefix("  ").filter(|l| !l.starts_with(' ')) {
            path = Some(key.trim_end_matches(':').to_string());
        } else if let Some(key) = line.strip_prefix("    ").filter(|l| !l.starts_with(' ')) {
            let key = key.trim_end_matches(':');
            if ["get", "post", "put", "patch", "delete"].contains(&key) {
                let path = path.clone().expect("an operation under a path");
                routes.insert((key.to_uppercase(), path));
            }
        }
    }
    routes
}

/// `(method, path)` of every `.route(...)` in the router's source.
fn router_source_routes() -> BTreeSet<(String, String)> {
    let source = include_str!("../src/api.rs");
    let body = source
        .split("let routes = Router::new()")
        .nth(1)
        .and_then(|rest| rest.split(".fallback(").next())
        .expect("the router's definition");
    let mut routes = BTreeSet::new();
    for route in body.split(".route(").skip(1) {
        let path = route.split('"').nth(1).expect("a path literal").to_string();
        for method in ["get", "post", "put", "patch", "delete"] {
            let called = route
                .match_indices(&format!("{method}("))
                .any(|(i, _)| i == 0 || !route.as_bytes()[i - 1].is_ascii_alphanumeric());
            if called {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

#[tokio::test]
async fn every_route_served_is_in_the_openapi_file_and_vice_versa() {
    let declared: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    assert_eq!(openapi_routes(), declared, "docs/openapi.yaml vs ROUTES");
    assert_eq!(router_source_routes(), declared, "the router vs ROUTES");
    // And each is served: not the fallback's 404, not 405.
    let api = api(Config::new());
    for (method, path) in &declared {
        let concrete = path
            .replace("{id}", "no-such-sync")
            .replace("{platform}", "amazon")
            .replace("{profile}", "p1");
        let answer = api.call(method, &concrete, "{}", None).await;
        assert_ne!(
            answer.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}"
        );
        assert!(
            !answer.text.contains("no such route"),
            "{method} {path}: {}",
            answer.text
        );
    }
    let answer = api.call("GET", "/v1/nothing-here", "", None).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
    assert!(answer.error().contains("no such route"));
    let answer = api.call("DELETE", "/v1/pushes", "", None).await;
    assert_eq!(answer.status, StatusCode::METHOD_NOT_ALLOWED);
    answer.error();
}

/// What `adsync validate` says of `set_text` (it calls `CampaignSet::from_file`,
/// which is `from_json` with the file name as origin).
fn validate_message(set_text: &str) -> String {
    adsync::CampaignSet::from_json(set_text, "set.json")
        .expect_err("the set is invalid")
        .to_string()
}

#[tokio::test]
async fn a_bad_push_is_answered_like_validate_and_writes_nothing() {
    let api = api(Config::new());
    // The set starts on line 2, column 1 of the body: the same line and
    // column as in a file, one line down.
    let body_of = |set: &str| {
        format!("{{\"account\": \"a2_x\", \"platform\": \"memory\", \"set\":\n{set}\n}}")
    };
    let invalid = [
        // An unknown enum value (syntax, with a position).
        EXAMPLE.replacen("\"CLICKS\"", "\"SHOUTING\"", 1),
        // An unknown field inside the set.
        EXAMPLE.replacen("\"name\"", "\"nmae\"", 1),
        // Malformed JSON inside the set.
        EXAMPLE.replacen("\"campaigns\": [", "\"campaigns\": [,", 1),
        // Well-formed, breaks a rule of the model (no position).
        EXAMPLE.replacen("\"Spring launch\"", "\"Sp\"", 1),
    ];
    for set in &invalid {
        let want = validate_message(set);
        let answer = api.call("POST", "/v1/pushes", &body_of(set), None).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{}", answer.text);
        let got = answer.error();
        let body = answer.json();
        // Same message; the origin is the body, positions one line down, the
        // path under `set`.
        let want = match (body["line"].as_u64(), want.split_once(": at `")) {
            (Some(line), Some((position, rest))) => {
                let mut parts = position.rsplitn(3, ':');
                let column = parts.next().expect("column");
                let file_line: u64 = parts.next().expect("line").parse().expect("number");
                assert_eq!(line, file_line + 1, "{got}");
                format!("<request body>:{line}:{column}: at `set.{rest}")
            }
            (None, Some((_, rest))) => format!("<request body>: at `set.{rest}"),
            _ => panic!("unexpected validate message {want}"),
        };
        assert_eq!(got, want);
        assert!(body["path"].as_str().expect("path").starts_with("set"));
    }
    let envelope_errors = [
        ("{\"set\": ", "EOF while parsing"),
        (
            "{\"set\": {}, \"account\": \"a\", \"platform\": \"memory\", \"extra\": 1}",
            "unknown field `extra`",
        ),
        (
            "{\"account\": \"a\", \"platform\": \"memory\"}",
            "missing field `set`",
        ),
        ("[1, 2]", "invalid type"),
        ("not json", "expected"),
    ];
    for (body, want) in envelope_errors {
        let answer = api.call("POST", "/v1/pushes", body, None).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        let error = answer.error();
        assert!(error.starts_with("<request body>:1:"), "{error}");
        assert!(error.contains(want), "{error}");
    }
    let empty_account = body_of(EXAMPLE).replace("\"a2_x\"", "\" \"");
    let answer = api.call("POST", "/v1/pushes", &empty_account, None).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.error().contains("account"));
    let unknown_platform = body_of(EXAMPLE).replace("\"memory\"", "\"myspace\"");
    let answer = api
        .call("POST", "/v1/pushes", &unknown_platform, None)
        .await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.error().contains("myspace"), "{}", answer.text);
    assert_eq!(api.syncs().await, 0, "bad input wrote a sync");

    let answer = api
        .call("POST", "/v1/pushes", &body_of(EXAMPLE), None)
        .await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    assert_eq!(answer.json()["syncs"].as_array().expect("ids").len(), 2);
    assert_eq!(api.syncs().await, 2);
}

#[tokio::test]
async fn other_content_for_an_unfinished_campaign_is_a_conflict() {
    let api = api(Config::new());
    let body =
        |set: &str| format!("{{\"account\": \"a2_x\", \"platform\": \"memory\", \"set\": {set}}}");
    let first = api.call("POST", "/v1/pushes", &body(EXAMPLE), None).await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    // The same content again continues the same syncs.
    let again = api.call("POST", "/v1/pushes", &body(EXAMPLE), None).await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(again.json()["syncs"], first.json()["syncs"]);
    let changed = EXAMPLE.replacen("\"CLICKS\"", "\"IMPRESSIONS\"", 1);
    let answer = api.call("POST", "/v1/pushes", &body(&changed), None).await;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.text);
    assert!(answer.error().contains("differ"), "{}", answer.text);
    assert_eq!(api.syncs().await, 2);
}

#[tokio::test]
async fn syncs_are_listed_read_cancelled_and_unknown_ids_are_404() {
    let api = api(Config::new());
    let body = format!("{{\"account\": \"a2_x\", \"platform\": \"memory\", \"set\": {EXAMPLE}}}");
    let ids = api.call("POST", "/v1/pushes", &body, None).await.json()["syncs"].clone();
    let id = ids[0].as_str().expect("id").to_string();

    let listed = api
        .call(
            "GET",
            "/v1/syncs?kind=push&account=a2_x&status=running",
            "",
            None,
        )
        .await;
    assert_eq!(listed.status, StatusCode::OK);
    assert_eq!(listed.json()["syncs"].as_array().expect("syncs").len(), 2);
    let none = api.call("GET", "/v1/syncs?account=other", "", None).await;
    assert_eq!(none.json()["syncs"].as_array().expect("syncs").len(), 0);
    let bad = api.call("GET", "/v1/syncs?status=sleeping", "", None).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    bad.error();

    let one = api.call("GET", &format!("/v1/syncs/{id}"), "", None).await;
    assert_eq!(one.status, StatusCode::OK);
    assert_eq!(one.json()["status"], "running");
    let history = api
        .call("GET", &format!("/v1/syncs/{id}/history"), "", None)
        .await;
    assert_eq!(history.status, StatusCode::OK);
    assert_eq!(history.json()["history"][0]["outcome"], "started");

    let cancelled = api
        .call("POST", &format!("/v1/syncs/{id}/cancel"), "", None)
        .await;
    assert_eq!(cancelled.status, StatusCode::OK, "{}", cancelled.text);
    assert_eq!(cancelled.json()["status"], "cancelled");
    let again = api
        .call("POST", &format!("/v1/syncs/{id}/cancel"), "", None)
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.json()["status"], "cancelled");

    let resolve = api
        .call(
            "POST",
            &format!("/v1/syncs/{id}/resolve"),
            "{\"absent\": true}",
            None,
        )
        .await;
    assert_eq!(resolve.status, StatusCode::CONFLICT, "{}", resolve.text);

    for (method, path) in [
        ("GET", "/v1/syncs/nope"),
        ("GET", "/v1/syncs/nope/history"),
        ("POST", "/v1/syncs/nope/cancel"),
    ] {
        let answer = api.call(method, path, "", None).await;
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{method} {path}");
        assert!(answer.error().contains("nope"));
    }
    let answer = api
        .call("POST", "/v1/syncs/nope/resolve", "{\"absent\": true}", None)
        .await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn schedules_are_checked_before_they_are_stored() {
    let api = api(Config::new());
    for (body, want) in [
        (
            r#"{"platform": "amazon", "profile": "p1", "cadence": {"every": {"seconds": 0}}}"#,
            "at least one second",
        ),
        (
            r#"{"platform": "amazon", "profile": "p1", "cadence": {"cron": {"expr": "61 * * * *"}}}"#,
            "invalid cron",
        ),
        (
            r#"{"platform": "ebay", "profile": "p1", "cadence": {"every": {"seconds": 60}}}"#,
            "ebay",
        ),
        (
            r#"{"platform": "amazon", "profile": "no/slash", "cadence": {"every": {"seconds": 60}}}"#,
            "invalid profile",
        ),
        (
            r#"{"platform": "amazon", "profile": "p1", "cadence": {"hourly": {}}}"#,
            "unknown variant",
        ),
    ] {
        let answer = api.call("POST", "/v1/schedules", body, None).await;
        assert_eq!(
            answer.status,
            StatusCode::BAD_REQUEST,
            "{body}: {}",
            answer.text
        );
        assert!(answer.error().contains(want), "{}", answer.text);
    }
    let listed = api.call("GET", "/v1/schedules", "", None).await;
    assert_eq!(listed.json()["schedules"], serde_json::json!([]));

    let created = api
        .call(
            "POST",
            "/v1/schedules",
            r#"{"platform": "amazon", "profile": "p1", "cadence": {"cron": {"expr": "0 * * * *"}}}"#,
            None,
        )
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.json()["cadence"]["cron"]["expr"], "0 * * * *");
    let listed = api.call("GET", "/v1/schedules", "", None).await;
    assert_eq!(listed.json()["schedules"][0]["profile"], "p1");
    let deleted = api
        .call("DELETE", "/v1/schedules/amazon/p1", "", None)
        .await;
    assert_eq!(deleted.status, StatusCode::OK);
    let again = api
        .call("DELETE", "/v1/schedules/amazon/p1", "", None)
        .await;
    assert_eq!(again.status, StatusCode::NOT_FOUND);
    again.error();
}

#[tokio::test]
async fn a_token_guards_every_route_and_is_never_echoed() {
    const TOKEN: &str = "daemon-secret-7f3a";
    let api = api(Config::new().token(Some(Secret::new(TOKEN))));
    for (method, path) in ROUTES {
        let path = path
            .replace("{id}", "x")
            .replace("{platform}", "amazon")
            .replace("{profile}", "p1");
        for token in [
            None,
            Some("wrong"),
            Some("daemon-secret-7f3"),
            Some("daemon-secret-7f3ab"),
        ] {
            let answer = api.call(method, &path, "{}", token).await;
            assert_eq!(
                answer.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} {token:?}"
            );
            assert!(!answer.text.contains(TOKEN));
            assert!(answer.error().contains("bearer token"));
        }
    }
    let answer = api.call("GET", "/healthz", "", Some(TOKEN)).await;
    assert_eq!(answer.status, StatusCode::OK);
    let body = format!("{{\"account\": \"a2_x\", \"platform\": \"memory\", \"set\": {EXAMPLE}}}");
    let answer = api.call("POST", "/v1/pushes", &body, None).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED);
    assert_eq!(api.syncs().await, 0);
    let answer = api.call("POST", "/v1/pushes", &body, Some(TOKEN)).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_and_writes_nothing() {
    let api = api(Config::new().body_limit(512));
    let body = format!("{{\"account\": \"a2_x\", \"platform\": \"memory\", \"set\": {EXAMPLE}}}");
    assert!(body.len() > 512);
    let answer = api.call("POST", "/v1/pushes", &body, None).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(answer.error().contains("limit"));
    assert_eq!(api.syncs().await, 0);
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let api = api(Config::new());
    let answer = api.call("GET", "/metrics", "", None).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.content_type, "text/plain; version=0.0.4");
    assert!(answer.text.contains("# TYPE"), "{}", answer.text);
}

#[tokio::test]
async fn a_public_address_needs_a_token_and_a_taken_port_is_named() {
    let public = Config::new().listen("0.0.0.0:0".parse().expect("addr"));
    let err = public.check().expect_err("no token");
    assert!(matches!(err, DaemonError::TokenRequired { .. }));
    assert!(err.to_string().contains("ADSYNC_DAEMON_TOKEN"), "{err}");
    assert!(public.token(Some(Secret::new("t"))).check().is_ok());

    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr");
    let err = adsync_daemon::bind(Config::new().listen(addr))
        .await
        .expect_err("in use");
    assert!(matches!(err, DaemonError::Bind { .. }));
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

const SMALL: &str = r#"{"name": "small", "campaigns": [{"id": "c1", "name": "Campaign one", "objective": "CLICKS",
    "ad_groups": [{"id": "g1", "name": "Group one",
        "ads": [{"id": "a1", "name": "Ad one", "post_id": "t3_one"}]}]}]}"#;

#[tokio::test]
async fn a_parked_sync_is_resolved_by_adopting_a_verified_id() {
    use adsync::memory::{Fault, Op};
    use adsync::EntityKind;
    let api = api(Config::new());
    // Our create's answer is lost (the campaign exists as cmp_1) and the
    // look-up is rejected: whether it exists cannot be told, so the sync parks.
    api.memory
        .fail_next(Op::Create, Some(EntityKind::Campaign), Fault::LoseResponse);
    api.memory.fail_next(
        Op::Find,
        Some(EntityKind::Campaign),
        Fault::Permanent("look-ups are down".into()),
    );
    let body = format!("{{\"account\": \"a2_x\", \"platform\": \"memory\", \"set\": {SMALL}}}");
    let answer = api.call("POST", "/v1/pushes", &body, None).await;
    assert_eq!(answer.status, StatusCode::ACCEPTED, "{}", answer.text);
    let id = answer.json()["syncs"][0].as_str().expect("id").to_string();
    api.worker.run_due().await.expect("runs");
    let sync = api.call("GET", &format!("/v1/syncs/{id}"), "", None).await;
    assert_eq!(sync.json()["status"], "needs_attention", "{}", sync.text);

    let resolve = format!("/v1/syncs/{id}/resolve");
    for (body, status, want) in [
        ("{}", StatusCode::BAD_REQUEST, "exactly one"),
        (
            r#"{"adopt": "cmp_1", "absent": true}"#,
            StatusCode::BAD_REQUEST,
            "exactly one",
        ),
        (
            r#"{"adopt": "cmp_1", "why": 1}"#,
            StatusCode::BAD_REQUEST,
            "unknown field `why`",
        ),
        (
            r#"{"adopt": "cmp_999"}"#,
            StatusCode::BAD_REQUEST,
            "not adopting cmp_999",
        ),
    ] {
        let answer = api.call("POST", &resolve, body, None).await;
        assert_eq!(answer.status, status, "{body}: {}", answer.text);
        assert!(answer.error().contains(want), "{}", answer.text);
    }
    let sync = api.call("GET", &format!("/v1/syncs/{id}"), "", None).await;
    assert_eq!(
        sync.json()["status"],
        "needs_attention",
        "a refused id was recorded"
    );

    let answer = api
        .call("POST", &resolve, r#"{"adopt": "cmp_1"}"#, None)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.json()["status"], "running");
    api.worker.run_due().await.expect("runs");
    let sync = api.call("GET", &format!("/v1/syncs/{id}"), "", None).await;
    assert_eq!(sync.json()["status"], "succeeded", "{}", sync.text);
    let again = api
        .call("POST", &resolve, r#"{"absent": true}"#, None)
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
}
