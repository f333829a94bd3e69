//! `adsync daemon` as a child process against in-process fakes of Reddit and
//! Amazon on 127.0.0.1: pushes and a pull submitted over HTTP and run to
//! their end with no duplicate, the snapshot equal to the server's data,
//! `/metrics` parsed as Prometheus text, bad input refused with nothing
//! written, the token on a non-loopback bind, a locked store and a taken
//! address, and SIGTERM during a busy push.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use adsync_fakes::amazon::{wire_json, FakeAmazon, FakeAmazonConfig, FakeAmazonHandle};
use adsync_fakes::reddit::{
    FakeReddit, FakeRedditConfig, FakeRedditHandle, RedditFault, RedditFaultKind,
};
use adsync_fakes::{fixtures::EXAMPLE_SET_JSON, Generator};
use serde_json::{json, Value};

const REDDIT_TOKEN: &str = "reddit-daemon-test-token";
const AMAZON_TOKEN: &str = "amazon-daemon-test-token";
const PROFILE: &str = "4242";

/// A running `adsync daemon`; killed (by its own pid) when dropped.
struct Daemon {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    url: String,
    http: reqwest::Client,
    token: Option<String>,
}

#[derive(Default, Clone)]
struct Env {
    reddit: Option<String>,
    amazon: Option<String>,
    token: Option<String>,
}

fn command(db: &Path, args: &[&str], env: &Env) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_adsync"));
    command.arg("--db").arg(db).arg("daemon").args(args);
    for var in [
        "ADSYNC_DB",
        "ADSYNC_TEST_CRASH_AT",
        "ADSYNC_REDDIT_TOKEN",
        "ADSYNC_REDDIT_USER_AGENT",
        "ADSYNC_REDDIT_BASE_URL",
        "ADSYNC_AMAZON_TOKEN",
        "ADSYNC_AMAZON_CLIENT_ID",
        "ADSYNC_AMAZON_HOST",
        "ADSYNC_DAEMON_TOKEN",
    ] {
        command.env_remove(var);
    }
    if let Some(url) = &env.reddit {
        command
            .env("ADSYNC_REDDIT_BASE_URL", url)
            .env("ADSYNC_REDDIT_TOKEN", REDDIT_TOKEN);
    }
    if let Some(host) = &env.amazon {
        command
            .env("ADSYNC_AMAZON_HOST", host)
            .env("ADSYNC_AMAZON_TOKEN", AMAZON_TOKEN)
            .env("ADSYNC_AMAZON_CLIENT_ID", "fake-client-id");
    }
    if let Some(token) = &env.token {
        command.env("ADSYNC_DAEMON_TOKEN", token);
    }
    command
}

impl Daemon {
    /// Starts the daemon and waits for the address it prints.
    fn start(db: &Path, args: &[&str], env: &Env) -> Daemon {
        let mut child = command(db, args, env)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("adsync daemon starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the daemon prints its address");
        let addr = line
            .split("listening on http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"));
        // A wildcard bind is reached through loopback.
        let port = addr.rsplit(':').next().expect("port");
        Daemon {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
            token: env.token.clone(),
        }
    }

    async fn call(&self, method: &str, path: &str, body: Option<String>) -> (u16, String) {
        self.call_with(method, path, body, self.token.as_deref())
            .await
    }

    async fn call_with(
        &self,
        method: &str,
        path: &str,
        body: Option<String>,
        token: Option<&str>,
    ) -> (u16, String) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.expect("the daemon answers");
        let status = response.status().as_u16();
        (status, response.text().await.expect("body"))
    }

    async fn json(&self, method: &str, path: &str, body: Option<String>) -> (u16, Value) {
        let (status, text) = self.call(method, path, body).await;
        let value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{method} {path}: not JSON ({e}): {text}"));
        (status, value)
    }

    async fn syncs(&self) -> Vec<Value> {
        let (status, body) = self.json("GET", "/v1/syncs", None).await;
        assert_eq!(status, 200, "{body}");
        body["syncs"].as_array().expect("syncs").clone()
    }

    /// Polls until no sync is running (or `limit` passes).
    async fn settle(&self, limit: Duration) -> Vec<Value> {
        let deadline = Instant::now() + limit;
        loop {
            let syncs = self.syncs().await;
            if !syncs.is_empty() && syncs.iter().all(|s| s["status"] != "running") {
                return syncs;
            }
            assert!(
                Instant::now() < deadline,
                "syncs still running after {limit:?}: {syncs:#?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn metrics(&self) -> prometheus_parse::Scrape {
        let response = self
            .http
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("metrics");
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(
            response.headers()["content-type"].to_str().expect("ascii"),
            "text/plain; version=0.0.4"
        );
        let text = response.text().await.expect("text");
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
            .unwrap_or_else(|e| panic!("not Prometheus text ({e}): {text}"))
    }

    fn signal(&self, signal: i32) {
        let pid = i32::try_from(self.child.id()).expect("pid");
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Waits for the exit; `None` if it outlasts `limit` (then it is killed).
    fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The value of the sample of `name` whose labels include `labels` (0 if none).
fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => 0.0,
        })
        .sum()
}

async fn fake_reddit() -> FakeRedditHandle {
    FakeReddit::start(FakeRedditConfig {
        token: REDDIT_TOKEN.into(),
        // Room for every test's requests: throttling is not under test here.
        reads_per_window: 100_000,
        writes_per_window: 100_000,
        ..FakeRedditConfig::default()
    })
    .await
    .expect("fake reddit")
}

fn generator() -> Generator {
    Generator {
        campaigns: 3,
        ad_groups_per_campaign: 2,
        keywords_per_ad_group: 4,
        seed: 11,
    }
}

async fn fake_amazon() -> FakeAmazonHandle {
    FakeAmazon::start(
        FakeAmazonConfig {
            token: AMAZON_TOKEN.into(),
            ..FakeAmazonConfig::default()
        }
        .with_profile(PROFILE, generator().generate()),
    )
    .await
    .expect("fake amazon")
}

fn push_body(account: &str, set: &str) -> String {
    format!("{{\"account\": \"{account}\", \"platform\": \"reddit\", \"set\": {set}}}")
}

/// Campaigns, ad groups and ads of the example set: what the fake holds per account.
fn example_entities() -> usize {
    let set = adsync_fakes::fixtures::example_set();
    set.campaigns
        .iter()
        .map(|c| 1 + c.ad_groups.iter().map(|g| 1 + g.ads.len()).sum::<usize>())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn pushes_and_a_pull_over_http_run_once_each_and_metrics_move() {
    let reddit = fake_reddit().await;
    let amazon = fake_amazon().await;
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("adsync.db");
    let env = Env {
        reddit: Some(reddit.base_url()),
        amazon: Some(amazon.base_url()),
        token: None,
    };
    let daemon = Daemon::start(
        &db,
        &["--listen", "127.0.0.1:0", "--body-limit", "65536"],
        &env,
    );

    let (status, health) = daemon.json("GET", "/healthz", None).await;
    assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
    let before = daemon.metrics().await;
    assert_eq!(sample(&before, "adsync_submissions_total", &[]), 0.0);

    // Bad input first: each refused with its status, nothing written.
    let bad: Vec<(String, u16, &str)> = vec![
        ("{\"set\": ".to_string(), 400, "EOF while parsing"),
        (
            push_body("a2_one", EXAMPLE_SET_JSON).replacen('{', "{\"color\": \"red\", ", 1),
            400,
            "unknown field `color`",
        ),
        (
            push_body(
                "a2_one",
                &EXAMPLE_SET_JSON.replacen("\"CLICKS\"", "\"SHOUTING\"", 1),
            ),
            400,
            "at `set.campaigns[0].objective`: unknown variant `SHOUTING`",
        ),
        (
            push_body(
                "a2_one",
                &format!(
                    "{{\"name\": \"{}\", \"campaigns\": []}}",
                    "x".repeat(70_000)
                ),
            ),
            413,
            "limit",
        ),
        (
            push_body("a2_one", EXAMPLE_SET_JSON).replace("\"reddit\"", "\"myspace\""),
            400,
            "myspace",
        ),
    ];
    for (body, want_status, want) in bad {
        let (status, text) = daemon.call("POST", "/v1/pushes", Some(body)).await;
        assert_eq!(status, want_status, "{text}");
        let error: Value = serde_json::from_str(&text).expect("a JSON error");
        let message = error["error"].as_str().expect("error");
        assert!(message.contains(want), "{message}");
    }
    let (status, text) = daemon
        .call("POST", "/v1/pulls", Some("{\"profile\": \"4242\"}".into()))
        .await;
    assert_eq!(status, 400, "{text}");
    for path in ["/v1/syncs/no-such-sync", "/v1/syncs/no-such-sync/history"] {
        let (status, body) = daemon.json("GET", path, None).await;
        assert_eq!(status, 404);
        assert!(body["error"]
            .as_str()
            .expect("error")
            .contains("no-such-sync"));
    }
    let (status, _) = daemon
        .json("POST", "/v1/syncs/no-such-sync/cancel", None)
        .await;
    assert_eq!(status, 404);
    assert!(daemon.syncs().await.is_empty(), "bad input wrote a sync");
    assert!(reddit.entities().is_empty());
    assert!(
        reddit.requests().is_empty(),
        "bad input reached the platform"
    );

    // Three accounts, the example set each, and a pull.
    let mut push_ids = Vec::new();
    for account in ["a2_one", "a2_two", "a2_three"] {
        let (status, body) = daemon
            .json(
                "POST",
                "/v1/pushes",
                Some(push_body(account, EXAMPLE_SET_JSON)),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        push_ids.extend(body["syncs"].as_array().expect("ids").iter().cloned());
    }
    let pull = json!({"profile": PROFILE, "platform": "amazon"}).to_string();
    let (status, body) = daemon.json("POST", "/v1/pulls", Some(pull)).await;
    assert_eq!(status, 202, "{body}");
    let pull_id = body["sync"].as_str().expect("id").to_string();

    let syncs = daemon.settle(Duration::from_secs(60)).await;
    assert_eq!(syncs.len(), push_ids.len() + 1);
    for sync in &syncs {
        assert_eq!(sync["status"], "succeeded", "{sync:#}");
    }
    let held = reddit.entities();
    assert!(held.duplicates().is_empty(), "{:?}", held.duplicates());
    assert_eq!(held.len(), 3 * example_entities());

    // The snapshot, read through the daemon that holds the store, equals
    // the server's data field for field.
    let (status, snapshot) = daemon
        .json("GET", &format!("/v1/snapshots/amazon/{PROFILE}"), None)
        .await;
    assert_eq!(status, 200, "{snapshot}");
    let data = generator().generate();
    assert_eq!(snapshot["campaigns"], wire_json(&data.campaigns));
    assert_eq!(snapshot["ad_groups"], wire_json(&data.ad_groups));
    assert_eq!(snapshot["keywords"], wire_json(&data.keywords));

    // The sync list filters, one sync, its history.
    let (_, listed) = daemon
        .json("GET", "/v1/syncs?kind=push&account=a2_two", None)
        .await;
    assert_eq!(listed["syncs"].as_array().expect("syncs").len(), 2);
    let (_, listed) = daemon
        .json(
            "GET",
            &format!("/v1/syncs?kind=pull&profile={PROFILE}"),
            None,
        )
        .await;
    assert_eq!(listed["syncs"][0]["id"], pull_id.as_str());
    let first = push_ids[0].as_str().expect("id");
    let (status, history) = daemon
        .json("GET", &format!("/v1/syncs/{first}/history"), None)
        .await;
    assert_eq!(status, 200);
    assert!(history["history"].as_array().expect("entries").len() > 3);
    let (status, body) = daemon
        .json("POST", &format!("/v1/syncs/{first}/cancel"), None)
        .await;
    assert_eq!((status, body["status"].as_str()), (409, Some("succeeded")));

    let after = daemon.metrics().await;
    let pushes = push_ids.len() as f64;
    assert_eq!(
        sample(&after, "adsync_submissions_total", &[("machine", "push")]),
        pushes
    );
    assert_eq!(
        sample(&after, "adsync_submissions_total", &[("machine", "pull")]),
        1.0
    );
    assert_eq!(
        sample(
            &after,
            "adsync_syncs_settled_total",
            &[("machine", "push"), ("status", "succeeded")]
        ),
        pushes
    );
    assert_eq!(
        sample(
            &after,
            "adsync_syncs",
            &[("machine", "push"), ("status", "succeeded")]
        ),
        pushes
    );
    let transitions = sample(
        &after,
        "adsync_transitions_total",
        &[("platform", "reddit")],
    );
    let creates = reddit
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count() as f64;
    assert!(
        transitions >= creates,
        "{transitions} transitions, {creates} creates"
    );
    assert!(sample(&after, "adsync_transitions_total", &[("machine", "pull")]) > 0.0);
    assert!(sample(&after, "adsync_store_durable_writes_total", &[]) > 0.0);
    assert!(
        sample(&after, "adsync_store_commits_total", &[])
            >= sample(&after, "adsync_store_durable_writes_total", &[])
    );
    assert_eq!(sample(&after, "adsync_queue", &[("place", "running")]), 0.0);

    // Pushing the same set again updates instead of creating.
    let (status, _) = daemon
        .json(
            "POST",
            "/v1/pushes",
            Some(push_body("a2_one", EXAMPLE_SET_JSON)),
        )
        .await;
    assert_eq!(status, 202);
    daemon.settle(Duration::from_secs(60)).await;
    let held = reddit.entities();
    assert!(held.duplicates().is_empty());
    assert_eq!(held.len(), 3 * example_entities());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_public_bind_needs_a_token_and_checks_it_on_every_request() {
    const TOKEN: &str = "daemon-token-9c2e71";
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("adsync.db");
    let memory = dir.path().join("memory.json");
    let memory = memory.to_str().expect("utf-8");

    let out = command(
        &db,
        &["--listen", "0.0.0.0:0", "--memory-file", memory],
        &Env::default(),
    )
    .output()
    .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ADSYNC_DAEMON_TOKEN"), "{stderr}");
    assert!(!db.exists(), "refused before the store was created");

    let env = Env {
        token: Some(TOKEN.into()),
        ..Env::default()
    };
    let daemon = Daemon::start(
        &db,
        &["--listen", "0.0.0.0:0", "--memory-file", memory],
        &env,
    );
    let set = push_body("a2_x", EXAMPLE_SET_JSON).replace("\"reddit\"", "\"memory\"");
    for token in [
        None,
        Some("wrong"),
        Some("daemon-token-9c2e7"),
        Some("daemon-token-9c2e711"),
    ] {
        for (method, path, body) in [
            ("GET", "/healthz", None),
            ("GET", "/metrics", None),
            ("GET", "/v1/syncs", None),
            ("POST", "/v1/pushes", Some(set.clone())),
        ] {
            let (status, text) = daemon.call_with(method, path, body, token).await;
            assert_eq!(status, 401, "{method} {path} with {token:?}: {text}");
            assert!(!text.contains(TOKEN));
            let error: Value = serde_json::from_str(&text).expect("JSON");
            assert!(error["error"]
                .as_str()
                .expect("error")
                .contains("bearer token"));
        }
    }
    assert!(
        daemon.syncs().await.is_empty(),
        "an unauthenticated push was written"
    );
    let (status, body) = daemon.json("POST", "/v1/pushes", Some(set)).await;
    assert_eq!(status, 202, "{body}");
    let syncs = daemon.settle(Duration::from_secs(30)).await;
    assert!(
        syncs.iter().all(|s| s["status"] == "succeeded"),
        "{syncs:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_store_and_a_taken_address_are_named_with_their_exit_codes() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("adsync.db");
    let memory = dir.path().join("memory.json");
    let memory = memory.to_str().expect("utf-8");
    let first = Daemon::start(
        &db,
        &["--listen", "127.0.0.1:0", "--memory-file", memory],
        &Env::default(),
    );

    // Same store, another port: the store is held.
    let out = command(&db, &["--listen", "127.0.0.1:0"], &Env::default())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("in use by another process"), "{stderr}");
    assert!(stderr.contains(&db.display().to_string()), "{stderr}");

    // Another store, the same address: the address is taken.
    let addr = first.url.trim_start_matches("http://").to_string();
    let other = dir.path().join("other.db");
    let out = command(&other, &["--listen", &addr], &Env::default())
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr}")),
        "{stderr}"
    );
    assert!(
        !other.exists(),
        "the address is checked before the store is created"
    );

    // The first one still serves.
    let (status, _) = first.json("GET", "/healthz", None).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigterm_during_a_busy_push_stops_cleanly_and_a_restart_finishes_without_duplicates() {
    let reddit = fake_reddit().await;
    // Every request takes a while: the push is busy when the signal comes.
    reddit.inject(RedditFault::new(RedditFaultKind::Latency { ms: 150 }));
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("adsync.db");
    let env = Env {
        reddit: Some(reddit.base_url()),
        ..Env::default()
    };
    let args = ["--listen", "127.0.0.1:0", "--shutdown-timeout", "10s"];
    let mut daemon = Daemon::start(&db, &args, &env);
    let accounts = ["a2_one", "a2_two", "a2_three"];
    for account in accounts {
        let (status, body) = daemon
            .json(
                "POST",
                "/v1/pushes",
                Some(push_body(account, EXAMPLE_SET_JSON)),
            )
            .await;
        assert_eq!(status, 202, "{body}");
    }
    // Let it get going, then signal.
    let deadline = Instant::now() + Duration::from_secs(30);
    while reddit.requests().len() < 4 {
        assert!(Instant::now() < deadline, "the push did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (_, health) = daemon.json("GET", "/healthz", None).await;
    let running = health["queue"]["running"].as_u64().expect("running") as usize;
    let signalled = time::OffsetDateTime::now_utc();
    let sent = Instant::now();
    daemon.signal(libc::SIGTERM);
    let status = daemon
        .wait(Duration::from_secs(15))
        .expect("exits within the timeout");
    assert_eq!(status.code(), Some(0), "{status:?}");
    assert!(
        sent.elapsed() < Duration::from_secs(10),
        "{:?}",
        sent.elapsed()
    );

    // No request started after the signal beyond those already in flight
    // (one per running sync at most).
    let log = reddit.requests();
    let after = log
        .iter()
        .filter(|r| {
            time::OffsetDateTime::parse(&r.at, &time::format_description::well_known::Rfc3339)
                .expect("rfc3339")
                > signalled
        })
        .count();
    assert!(
        after <= running.max(1),
        "{after} requests started after SIGTERM with {running} syncs running"
    );
    let total = 3 * example_entities();
    assert!(
        reddit.entities().len() < total,
        "the push was not cut short"
    );

    // A restart finishes the work, with no duplicates.
    reddit.clear_faults();
    let daemon = Daemon::start(&db, &args, &env);
    let syncs = daemon.settle(Duration::from_secs(60)).await;
    assert_eq!(syncs.len(), 2 * accounts.len());
    assert!(
        syncs.iter().all(|s| s["status"] == "succeeded"),
        "{syncs:#?}"
    );
    let held = reddit.entities();
    assert!(held.duplicates().is_empty(), "{:?}", held.duplicates());
    assert_eq!(held.len(), total);
}

/// The soak of issue #14: 30 pushes (one account each) and 5 scheduled pulls
/// submitted through the API while the daemon is SIGKILLed at random moments,
/// 24 times, and restarted. Afterwards every campaign entity exists on the
/// fake exactly once, every acknowledged submission completed, and every
/// profile's snapshot equals the server's data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_soak_loses_and_duplicates_nothing() {
    use rand::{Rng as _, SeedableRng as _};
    const PUSHES: usize = 30;
    const KILLS: usize = 24;
    let profiles: Vec<String> = (1..=5).map(|i| format!("50{i}")).collect();
    let seed: u64 = std::env::var("ADSYNC_SOAK_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("soak seed {seed} (ADSYNC_SOAK_SEED reproduces it)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let reddit = fake_reddit().await;
    // A little latency, so that kills land while creates are in flight.
    reddit.inject(RedditFault::new(RedditFaultKind::Latency { ms: 15 }));
    let mut amazon_config = FakeAmazonConfig {
        token: AMAZON_TOKEN.into(),
        default_page_size: 5,
        ..FakeAmazonConfig::default()
    };
    let data_of = |i: u64| {
        Generator {
            campaigns: 2,
            ad_groups_per_campaign: 2,
            keywords_per_ad_group: 3,
            seed: 100 + i,
        }
        .generate()
    };
    for (i, profile) in profiles.iter().enumerate() {
        amazon_config = amazon_config.with_profile(profile.clone(), data_of(i as u64));
    }
    let amazon = FakeAmazon::start(amazon_config).await.expect("fake amazon");
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("adsync.db");
    let env = Env {
        reddit: Some(reddit.base_url()),
        amazon: Some(amazon.base_url()),
        token: None,
    };
    let args = ["--listen", "127.0.0.1:0", "--max-running", "8"];

    let accounts: Vec<String> = (0..PUSHES).map(|i| format!("a2_soak{i}")).collect();
    // Account → the sync ids its acknowledged submission returned.
    let mut acknowledged: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    let mut scheduled = false;
    let mut kills = 0;
    // Syncs a kill left unfinished, summed over the kills: the soak means
    // something only if kills land while work is under way.
    let mut cut_short = 0;
    while kills < KILLS {
        let mut daemon = Daemon::start(&db, &args, &env);
        if !scheduled {
            for profile in &profiles {
                let body = json!({"platform": "amazon", "profile": profile,
                    "cadence": {"every": {"seconds": 1}}});
                let (status, text) = daemon
                    .call("POST", "/v1/schedules", Some(body.to_string()))
                    .await;
                assert_eq!(status, 201, "{text}");
            }
            scheduled = true;
        }
        // Submit a few more pushes (and re-submit any whose answer a kill
        // took: the same content continues, it never starts a second sync).
        let pending: Vec<String> = accounts
            .iter()
            .filter(|a| !acknowledged.contains_key(*a))
            .take(rng.random_range(1..=3))
            .cloned()
            .collect();
        let kill_at =
            tokio::time::Instant::now() + Duration::from_millis(rng.random_range(20..600));
        let acked = parking_lot::Mutex::new(Vec::new());
        let submit = async {
            for account in &pending {
                let (status, text) = daemon
                    .call(
                        "POST",
                        "/v1/pushes",
                        Some(push_body(account, EXAMPLE_SET_JSON)),
                    )
                    .await;
                assert_eq!(status, 202, "{text}");
                let body: Value = serde_json::from_str(&text).expect("JSON");
                let ids = body["syncs"]
                    .as_array()
                    .expect("ids")
                    .iter()
                    .map(|v| v.as_str().expect("id").to_string())
                    .collect::<Vec<_>>();
                acked.lock().push((account.clone(), ids));
            }
        };
        // Whatever was acknowledged before the kill counts; a request the
        // kill interrupts is simply not acknowledged.
        let _ = tokio::time::timeout_at(kill_at, submit).await;
        tokio::time::sleep_until(kill_at).await;
        daemon.child.kill().expect("SIGKILL");
        let _ = daemon.wait(Duration::from_secs(5));
        for (account, ids) in acked.into_inner() {
            acknowledged.insert(account, ids);
        }
        cut_short += unfinished(&db).await;
        kills += 1;
    }

    // The last start: everything left is submitted, and the work finishes.
    let daemon = Daemon::start(&db, &args, &env);
    for account in &accounts {
        let (status, text) = daemon
            .call(
                "POST",
                "/v1/pushes",
                Some(push_body(account, EXAMPLE_SET_JSON)),
            )
            .await;
        assert_eq!(status, 202, "{text}");
        let body: Value = serde_json::from_str(&text).expect("JSON");
        let ids: Vec<String> = body["syncs"]
            .as_array()
            .expect("ids")
            .iter()
            .map(|v| v.as_str().expect("id").to_string())
            .collect();
        if let Some(before) = acknowledged.get(account) {
            // Acknowledged earlier: either still the same syncs (unfinished),
            // or finished already, in which case a new push is an update.
            let same = before == &ids;
            if !same {
                for id in before {
                    let (_, sync) = daemon.json("GET", &format!("/v1/syncs/{id}"), None).await;
                    assert_eq!(sync["status"], "succeeded", "{sync:#}");
                }
            }
        }
    }
    // Stop the schedules, then let every pull and push finish.
    for profile in &profiles {
        let (status, text) = daemon
            .call("DELETE", &format!("/v1/schedules/amazon/{profile}"), None)
            .await;
        assert_eq!(status, 200, "{text}");
    }
    let syncs = daemon.settle(Duration::from_secs(180)).await;
    for sync in &syncs {
        assert_eq!(sync["status"], "succeeded", "{sync:#}");
    }
    for ids in acknowledged.values() {
        for id in ids {
            let (status, sync) = daemon.json("GET", &format!("/v1/syncs/{id}"), None).await;
            assert_eq!(status, 200, "acknowledged sync {id} lost");
            assert_eq!(sync["status"], "succeeded", "{sync:#}");
        }
    }
    let held = reddit.entities();
    assert!(held.duplicates().is_empty(), "{:?}", held.duplicates());
    assert_eq!(held.len(), PUSHES * example_entities());
    for (i, profile) in profiles.iter().enumerate() {
        let (status, snapshot) = daemon
            .json("GET", &format!("/v1/snapshots/amazon/{profile}"), None)
            .await;
        assert_eq!(status, 200, "profile {profile} never pulled: {snapshot}");
        let data = data_of(i as u64);
        assert_eq!(snapshot["campaigns"], wire_json(&data.campaigns));
        assert_eq!(snapshot["ad_groups"], wire_json(&data.ad_groups));
        assert_eq!(snapshot["keywords"], wire_json(&data.keywords));
    }
    assert!(cut_short > 0, "no kill landed while a sync was running");
    eprintln!(
        "soak: {kills} kills, {} pushes acknowledged before a kill, {cut_short} syncs cut short",
        acknowledged.len()
    );
}

/// Unfinished syncs in the store at `db` (no daemon holds it).
async fn unfinished(db: &Path) -> usize {
    let store = adsync::Store::open_from_async(db)
        .await
        .expect("store opens after a kill");
    let records = store
        .blocking(|s| Ok::<_, adsync::StoreError>(s.list()))
        .await
        .expect("join")
        .expect("list");
    let running = records
        .into_iter()
        .filter(|r| {
            r.as_ref()
                .is_ok_and(|r| r.status == adsync::Status::Running)
        })
        .count();
    tokio::task::spawn_blocking(move || store.close())
        .await
        .expect("closed");
    running
}

/// Runs the `adsync` CLI (not the daemon) with `args`; returns exit code,
/// stdout and stderr.
fn cli(db: &Path, args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_adsync"));
    command.arg("--db").arg(db).args(args);
    for var in ["ADSYNC_DB", "ADSYNC_DAEMON_URL", "ADSYNC_DAEMON_TOKEN"] {
        command.env_remove(var);
    }
    command.envs(env.iter().copied());
    let out = command.output().expect("adsync runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_talks_to_the_daemon_and_a_locked_store_says_where_it_is() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("adsync.db");
    let memory = dir.path().join("memory.json");
    let daemon = Daemon::start(
        &db,
        &[
            "--listen",
            "127.0.0.1:0",
            "--memory-file",
            memory.to_str().expect("utf-8"),
        ],
        &Env::default(),
    );
    let url = daemon.url.clone();

    // Without --daemon the store is locked: the message says who holds it.
    let (code, _, stderr) = cli(&db, &["status"], &[]);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(
        stderr.contains("in use by another process, `adsync daemon` (pid")
            && stderr.contains(&format!("--daemon {url}")),
        "{stderr}"
    );

    // A push through the daemon runs to its end and reports like a push.
    let set = dir.path().join("set.json");
    std::fs::write(&set, EXAMPLE_SET_JSON).expect("set file");
    let set = set.to_str().expect("utf-8");
    let (code, stdout, stderr) = cli(
        &db,
        &["--daemon", &url, "push", set, "--account", "t2_cli"],
        &[],
    );
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stderr.contains(&format!("submitted to the daemon at {url}")),
        "{stderr}"
    );
    let ids: Vec<String> = daemon
        .syncs()
        .await
        .iter()
        .map(|s| s["id"].as_str().expect("id").to_string())
        .collect();
    assert!(!ids.is_empty());
    for id in &ids {
        assert!(
            stdout.contains(id.as_str()) && stdout.contains("succeeded"),
            "{stdout}"
        );
    }

    // The same through the environment variable: status, history.
    let env = [("ADSYNC_DAEMON_URL", url.as_str())];
    let (code, stdout, stderr) = cli(&db, &["status"], &env);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        ids.iter().all(|id| stdout.contains(id.as_str())),
        "{stdout}"
    );
    let (code, stdout, stderr) = cli(&db, &["history", &ids[0]], &env);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stdout.starts_with("#0"), "{stdout}");

    // Refusals keep the CLI's exit codes and write nothing.
    let (code, _, stderr) = cli(&db, &["cancel", &ids[0]], &env);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("already finished"), "{stderr}");
    let (code, _, stderr) = cli(&db, &["history", "no-such-sync"], &env);
    assert_eq!(code, Some(2), "{stderr}");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"name": "bad", "campaigns": [{"id": "c"}]}"#).expect("write");
    let (code, _, stderr) = cli(
        &db,
        &["push", bad.to_str().expect("utf-8"), "--account", "t2_cli"],
        &env,
    );
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("bad.json"),
        "named like the local command: {stderr}"
    );
    assert_eq!(
        daemon.syncs().await.len(),
        ids.len(),
        "nothing was submitted"
    );
    let (code, _, stderr) = cli(&db, &["resume", "--all"], &env);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("resumes unfinished syncs itself"),
        "{stderr}"
    );

    // Commands that never open the store ignore the daemon.
    let (code, _, stderr) = cli(&db, &["validate", set], &env);
    assert_eq!(code, Some(0), "{stderr}");

    // An unreachable daemon is named.
    let (code, _, stderr) = cli(&db, &["--daemon", "http://127.0.0.1:9", "status"], &[]);
    assert_eq!(code, Some(4), "{stderr}");
    assert!(
        stderr.contains("cannot reach the adsync daemon at http://127.0.0.1:9"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_and_show_go_through_the_daemon_with_the_local_exit_codes() {
    let amazon = fake_amazon().await;
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("adsync.db");
    let daemon = Daemon::start(
        &db,
        &["--listen", "127.0.0.1:0"],
        &Env {
            amazon: Some(amazon.base_url()),
            ..Env::default()
        },
    );
    let env = [("ADSYNC_DAEMON_URL", daemon.url.as_str())];

    // Never pulled: the not-found exit, as locally.
    let (code, _, stderr) = cli(&db, &["show", "--profile", PROFILE], &env);
    assert_eq!(code, Some(6), "{stderr}");
    assert!(stderr.contains("never pulled"), "{stderr}");

    // The daemon has the credentials: no --client-id, no token here.
    let (code, stdout, stderr) = cli(&db, &["pull", "--profile", PROFILE], &env);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("succeeded"), "{stdout}");

    let (code, stdout, _) = cli(&db, &["show", "--profile", PROFILE], &env);
    assert_eq!(code, Some(0));
    assert!(
        stdout.contains(&format!("pull-amazon-{PROFILE}")),
        "{stdout}"
    );
    let (code, stdout, stderr) = cli(
        &db,
        &[
            "show",
            "--profile",
            PROFILE,
            "--kind",
            "keywords",
            "--limit",
            "3",
        ],
        &env,
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert_eq!(stdout.lines().count(), 3, "{stdout}");
    let (code, stdout, _) = cli(
        &db,
        &[
            "show",
            "--profile",
            PROFILE,
            "--kind",
            "campaigns",
            "--json",
        ],
        &env,
    );
    assert_eq!(code, Some(0));
    let campaigns: Value = serde_json::from_str(&stdout).expect("JSON");
    assert_eq!(
        campaigns.as_array().map(Vec::len),
        Some(generator().campaigns)
    );
    let (code, stdout, stderr) = cli(
        &db,
        &[
            "show",
            "--profile",
            PROFILE,
            "--kind",
            "keywords",
            "--id",
            "nope",
            "--json",
        ],
        &env,
    );
    assert_eq!(code, Some(6), "{stderr}");
    assert!(stdout.contains("\"found\": false"), "{stdout}");

    let (code, _, stderr) = cli(&db, &["pull", "--profile", PROFILE, "--restart"], &env);
    assert_eq!(code, Some(2), "{stderr}");
    let (code, _, stderr) = cli(&db, &["pull", "--profile", "bad/id"], &env);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("invalid profile id"), "{stderr}");
}
