//! `resume` takes platform, account and API base URL from the checkpoint
//! (credentials from the environment only), flags that are given must agree,
//! and an unfinished sync without credentials is named; `cancel` of an
//! interrupted push waits for the look-up its restart needs.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

use adsync_fakes::blocking::FakeRedditServer;

const SET: &str = r#"{"name": "two", "campaigns": [
  {"id": "c1", "name": "Campaign one", "objective": "CLICKS", "ad_groups": [
    {"id": "g1", "name": "Group one", "ads": [{"id": "a1", "name": "Ad one", "post_id": "t3_1"}]}]},
  {"id": "c2", "name": "Campaign two", "objective": "CLICKS", "ad_groups": [
    {"id": "g2", "name": "Group two", "ads": [{"id": "a2", "name": "Ad two", "post_id": "t3_2"}]}]}]}"#;

/// The binary with a clean environment: no Reddit variables unless given.
fn adsync(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_adsync"));
    cmd.arg("--db").arg(dir.join("adsync.db")).args(args);
    for var in [
        "ADSYNC_DB",
        "ADSYNC_TEST_CRASH_AT",
        "ADSYNC_REDDIT_BASE_URL",
        "ADSYNC_REDDIT_TOKEN",
        "ADSYNC_AMAZON_TOKEN",
        "ADSYNC_AMAZON_CLIENT_ID",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .expect("adsync runs")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Pushes the set to the fake Reddit with `env`.
fn push(dir: &Path, server: &FakeRedditServer, env: &[(&str, &str)]) -> Output {
    std::fs::write(dir.join("set.json"), SET).unwrap();
    let set = dir.join("set.json");
    let url = server.fake().base_url();
    adsync(
        dir,
        &[
            "push",
            set.to_str().unwrap(),
            "--account",
            "a2_resume",
            "--platform",
            "reddit",
            "--reddit-base-url",
            &url,
        ],
        env,
    )
}

/// Pushes to the fake Reddit and is killed after the 2nd checkpoint.
fn interrupted_push(dir: &Path, server: &FakeRedditServer) {
    let out = push(
        dir,
        server,
        &[
            ("ADSYNC_REDDIT_TOKEN", &server.token),
            ("ADSYNC_TEST_CRASH_AT", "2:after"),
        ],
    );
    assert!(out.status.code().is_none(), "killed: {}", text(&out));
}

#[test]
fn resume_all_without_flags_takes_platform_and_base_url_from_the_checkpoint() {
    let server = FakeRedditServer::start("resume-token");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    interrupted_push(dir, &server);

    // No credentials: the unfinished syncs are named and the exit code says so.
    let out = adsync(dir, &["resume", "--all"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr.contains("cannot resume") && stderr.contains("c1-1") && stderr.contains("c2-1"),
        "{stderr}"
    );

    // A base URL that disagrees with the checkpoint is a usage error naming both.
    let wrong = "http://127.0.0.1:9/api/v3";
    let out = adsync(
        dir,
        &["resume", "--all", "--reddit-base-url", wrong],
        &[("ADSYNC_REDDIT_TOKEN", &server.token)],
    );
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr.contains(wrong) && stderr.contains(&server.fake().base_url()),
        "{stderr}"
    );
    // So is another platform.
    let out = adsync(
        dir,
        &["resume", "c1-1", "--platform", "memory"],
        &[("ADSYNC_REDDIT_TOKEN", &server.token)],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // The token alone is enough.
    let out = adsync(
        dir,
        &["resume", "--all"],
        &[("ADSYNC_REDDIT_TOKEN", &server.token)],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let held = server.held();
    assert_eq!(held.len(), 6, "{held:#?}");
    assert!(held.duplicates().is_empty(), "{held:#?}");
    server.stop();
}

#[test]
fn resume_all_also_resumes_an_interrupted_pull_from_its_checkpoint() {
    let server = common::fake_amazon::FakeAmazonProcess::start(&[
        "--profile",
        "77",
        "--token",
        "amazon-token",
    ]);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let creds = [
        ("ADSYNC_AMAZON_TOKEN", "amazon-token"),
        ("ADSYNC_AMAZON_CLIENT_ID", "fake-client-id"),
    ];
    let mut env = creds.to_vec();
    env.push(("ADSYNC_TEST_CRASH_AT", "2:after"));
    let out = adsync(
        dir,
        &["pull", "--profile", "77", "--host", &server.url],
        &env,
    );
    assert!(out.status.code().is_none(), "killed: {}", text(&out));

    // Without credentials the pull is named, and the exit code says so.
    let out = adsync(dir, &["resume", "--all"], &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        stderr.contains("pull-amazon-77") && stderr.contains("ADSYNC_AMAZON_TOKEN"),
        "{stderr}"
    );

    // The host comes from the checkpoint: no --host, no ADSYNC_AMAZON_HOST.
    let out = adsync(dir, &["resume", "--all"], &creds);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = adsync(dir, &["show", "--profile", "77", "--json"], &[]);
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(shown[0]["state"], "completed", "{shown}");
}

#[test]
fn a_killed_push_is_cancelled_after_its_look_up_and_a_new_push_updates_it() {
    let server = FakeRedditServer::start("cancel-token");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    interrupted_push(dir, &server);
    let token = [("ADSYNC_REDDIT_TOKEN", server.token.as_str())];

    // The process that ran c1-1 died after a checkpoint naming a create: the
    // cancel waits for the look-up that settles it.
    let out = adsync(dir, &["cancel", "c1-1"], &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        stdout.contains("cancel requested") && stdout.contains("resume"),
        "{stdout}"
    );

    let out = adsync(dir, &["resume", "--all", "--json"], &token);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = adsync(dir, &["status", "--json"], &[]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let of = |id: &str| {
        status["syncs"]
            .as_array()
            .and_then(|s| s.iter().find(|x| x["id"] == id))
            .map(|x| x["status"].as_str().unwrap_or_default().to_string())
    };
    assert_eq!(of("c1-1").as_deref(), Some("cancelled"), "{status:#}");
    assert_eq!(of("c2-1").as_deref(), Some("succeeded"), "{status:#}");
    // Cancelling a finished sync is refused and writes nothing.
    let out = adsync(dir, &["cancel", "c1-1"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nothing to cancel"));
    let out = adsync(dir, &["cancel", "nope"], &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));

    // A new push of the set: c1 continues from what the cancelled sync created.
    let out = push(dir, &server, &token);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let held = server.held();
    assert_eq!(held.len(), 6, "{held:#?}");
    assert!(held.duplicates().is_empty(), "{held:#?}");
    server.stop();
}
