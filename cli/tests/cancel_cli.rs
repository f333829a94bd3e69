//! `adsync cancel`: a push killed mid-way is cancelled without a blind
//! create (the create that may have been in flight is looked up first), keeps
//! its ids, and a later push of the set updates them without duplicates.

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

/// Pushes to the fake Reddit and is killed after the 2nd checkpoint.
fn interrupted_push(dir: &Path, server: &FakeRedditServer) {
    std::fs::write(dir.join("set.json"), SET).unwrap();
    let set = dir.join("set.json");
    let url = server.fake().base_url();
    let out = adsync(
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
        &[
            ("ADSYNC_REDDIT_TOKEN", &server.token),
            ("ADSYNC_TEST_CRASH_AT", "2:after"),
        ],
    );
    assert!(out.status.code().is_none(), "killed: {}", text(&out));
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
    let set = dir.join("set.json");
    let url = server.fake().base_url();
    let out = adsync(
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
        &token,
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let held = server.held();
    assert_eq!(held.len(), 6, "{held:#?}");
    assert!(held.duplicates().is_empty(), "{held:#?}");
    server.stop();
}
