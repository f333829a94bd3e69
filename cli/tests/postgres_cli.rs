//! The CLI's own commands on a shared store (`--store postgres://…`), beside
//! the daemons that run its syncs: `status` says which daemon holds each
//! running sync and until when, and that a dead daemon's syncs wait for a
//! new owner; `history` reads; `cancel` makes a request the next holder
//! carries out; commands that run syncs refuse and point to a daemon. No
//! output ever shows the password.

mod common;

use std::time::{Duration, Instant};

use adsync_fakes::fixtures::EXAMPLE_SET_JSON;
use adsync_fakes::postgres::TestServer;
use adsync_fakes::reddit::{FakeReddit, FakeRedditConfig};
use common::shared_store::{adsync_cmd, password_of, run_cmd, Daemon, REDDIT_TOKEN};
use serde_json::Value;

/// `adsync --store <url> <args>`: code, stdout, stderr; never the password.
fn on_store(url: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["--store", url];
    all.extend_from_slice(args);
    let (code, out, err) = run_cmd(&mut adsync_cmd(&all));
    let password = password_of(url);
    assert!(
        !out.contains(&password) && !err.contains(&password),
        "the password is never printed: {out}{err}"
    );
    (code, out, err)
}

/// `status --json`'s syncs.
fn syncs(url: &str) -> Vec<Value> {
    let (code, out, err) = on_store(url, &["status", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let value: Value = serde_json::from_str(&out).expect("status --json is JSON");
    value["syncs"].as_array().expect("syncs").clone()
}

fn daemon(url: &str, reddit: &str, dir: &std::path::Path, owner: &str) -> Daemon {
    Daemon::start(
        url,
        reddit,
        dir,
        &[
            "--lease-ttl",
            "2s",
            "--claim-every",
            "100ms",
            "--owner",
            owner,
        ],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_names_each_holder_and_a_dead_daemons_syncs_wait_for_a_new_owner() {
    let server = TestServer::start();
    let url = server.url();
    // Few writes a second: the pushes stay unfinished long enough to look at.
    let reddit = FakeReddit::start(FakeRedditConfig {
        token: REDDIT_TOKEN.into(),
        writes_per_window: 3,
        window: Duration::from_secs(1),
        ..FakeRedditConfig::default()
    })
    .await
    .expect("fake reddit");
    let dir = tempfile::tempdir().expect("dir");
    let mut first = daemon(&url, &reddit.base_url(), dir.path(), "w1");
    let body = format!(
        "{{\"account\": \"a2_status\", \"platform\": \"reddit\", \"set\": {EXAMPLE_SET_JSON}}}"
    );
    let (code, answer) = first
        .json(reqwest::Method::POST, "/v1/pushes", Some(body))
        .await;
    assert_eq!(code, 202, "{answer}");
    let ids: Vec<String> = answer["syncs"]
        .as_array()
        .expect("syncs")
        .iter()
        .map(|s| s.as_str().expect("id").to_string())
        .collect();

    // Read straight from the database: w1 holds the pushes, with a live lease.
    let deadline = Instant::now() + Duration::from_secs(20);
    let held = loop {
        let held: Vec<Value> = syncs(&url)
            .into_iter()
            .filter(|s| s["lease"]["owner"] == "w1" && s["lease"]["expired"] == false)
            .collect();
        if !held.is_empty() {
            break held;
        }
        assert!(Instant::now() < deadline, "w1 never held a push");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for sync in &held {
        let status = sync["status"].as_str().expect("status");
        assert!(
            status.starts_with("running on w1 (lease until "),
            "{sync:#}"
        );
        assert_eq!(sync["recorded_status"], "running");
        assert_eq!(sync["interrupted_at"], Value::Null);
    }
    let (code, table, err) = on_store(&url, &["status"]);
    assert_eq!(code, Some(0), "{err}");
    assert!(table.contains("running on w1 (lease until "), "{table}");

    // w1 dies: once its lease runs out, its syncs wait for a new owner.
    first.kill();
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let after = syncs(&url);
    let orphaned: Vec<&Value> = after
        .iter()
        .filter(|s| s["recorded_status"] == "running")
        .collect();
    assert!(!orphaned.is_empty(), "every push finished before w1 died");
    for sync in &orphaned {
        assert_eq!(sync["status"], "waiting for a new owner", "{sync:#}");
        assert_eq!(sync["lease"]["owner"], "w1");
        assert_eq!(sync["lease"]["expired"], true);
        assert_eq!(sync["interrupted_at"], sync["updated_at"], "{sync:#}");
    }
    let (_, table, _) = on_store(&url, &["status"]);
    assert!(table.contains("waiting for a new owner"), "{table}");
    assert!(!table.contains("running on w1"), "{table}");

    // History reads from the database too.
    let victim = orphaned[0]["id"].as_str().expect("id").to_string();
    let (code, history, err) = on_store(&url, &["history", &victim]);
    assert_eq!(code, Some(0), "{err}");
    assert!(history.contains("#1 "), "{history}");
    let (code, _, err) = on_store(&url, &["history", "no-such-sync"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("no sync `no-such-sync` in postgres://"),
        "{err}"
    );

    // Cancel with no daemon alive: a durable request, carried out by the
    // next daemon to claim the sync.
    let (code, out, err) = on_store(&url, &["cancel", &victim]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("cancel requested"), "{out}");

    // Commands that run syncs point to a daemon instead.
    let (code, _, err) = on_store(&url, &["resume", &victim]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--daemon"), "{err}");

    let _second = daemon(&url, &reddit.base_url(), dir.path(), "w2");
    let deadline = Instant::now() + Duration::from_secs(90);
    let done = loop {
        let now = syncs(&url);
        if now.iter().all(|s| s["recorded_status"] != "running") {
            break now;
        }
        assert!(Instant::now() < deadline, "unfinished: {now:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for sync in &done {
        let id = sync["id"].as_str().expect("id");
        let expected = if id == victim {
            "cancelled"
        } else {
            "succeeded"
        };
        assert_eq!(sync["status"], expected, "{sync:#}");
        assert_eq!(sync["lease"], Value::Null, "{sync:#}");
    }
    assert_eq!(done.len(), ids.len());
    assert!(reddit.entities().duplicates().is_empty());
}

#[test]
fn commands_that_run_syncs_refuse_a_shared_store_and_bad_urls_never_echo() {
    let server = TestServer::start();
    let url = server.url();
    for args in [
        &["push", "set.json", "--account", "a2_x"][..],
        &["pull", "--platform", "amazon", "--profile", "1"],
        &["resume"],
    ] {
        let (code, _, err) = on_store(&url, args);
        assert_eq!(code, Some(2), "{args:?}: {err}");
        assert!(
            err.contains("does not run syncs on a shared store") && err.contains("--daemon"),
            "{err}"
        );
    }
    // An empty database: status lists nothing, history knows no sync.
    let (code, out, err) = on_store(&url, &["status", "--json"]);
    assert_eq!(code, Some(0), "{err}");
    let value: Value = serde_json::from_str(&out).expect("JSON");
    assert_eq!(value["syncs"], serde_json::json!([]));
    // A wrong password: exit 4, the store named without the password.
    let wrong = url.replacen(&password_of(&url), "not-the-password", 1);
    let (code, out, err) = run_cmd(&mut adsync_cmd(&["--store", &wrong, "status"]));
    assert_eq!(code, Some(4), "{out}{err}");
    assert!(!err.contains("not-the-password"), "{err}");
    assert!(err.contains("***"), "{err}");
}
