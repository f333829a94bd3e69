//! Bad input with `--platform reddit`: rejected before any request reaches the
//! (fake) Reddit server, with a clear error and the documented exit code, and
//! nothing written to the store.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use adsync::Store;

const TOKEN: &str = "bad-input-token-91c2";

type Server = adsync_fakes::blocking::FakeRedditServer;

fn adsync(server: &Server, db: &Path, args: &[&str], token: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_adsync"));
    cmd.arg("--db")
        .arg(db)
        .args(args)
        .env("ADSYNC_REDDIT_BASE_URL", server.fake().base_url())
        .env_remove("ADSYNC_REDDIT_TOKEN")
        .env_remove("ADSYNC_DB")
        .env_remove("ADSYNC_TEST_CRASH_AT");
    if let Some(token) = token {
        cmd.env("ADSYNC_REDDIT_TOKEN", token);
    }
    cmd.output().expect("adsync runs")
}

fn push(server: &Server, dir: &Path, set_json: &str) -> Output {
    let set = dir.join("set.json");
    std::fs::write(&set, set_json).expect("write set");
    adsync(
        server,
        &dir.join("adsync.db"),
        &[
            "-vv",
            "push",
            set.to_str().expect("utf-8"),
            "--platform",
            "reddit",
            "--account",
            "a2_bad",
        ],
        Some(TOKEN),
    )
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn malformed_set_file_names_line_and_column_sends_nothing_and_writes_nothing() {
    let server = Server::start(TOKEN);
    let dir = tempfile::tempdir().expect("tempdir");
    let out = push(
        &server,
        dir.path(),
        "{\n  \"name\": \"x\",\n  \"campaigns\": [\n    {\"id\": \"c1\",, }\n  ]\n}",
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("set.json:4:17:"), "{}", stderr(&out));
    assert!(!dir.path().join("adsync.db").exists(), "nothing written");
    assert_eq!(server.requests(), 0);
    server.stop();
}

#[test]
fn invalid_enum_values_and_short_names_are_rejected_before_any_request() {
    let server = Server::start(TOKEN);
    let cases = [
        (
            r#"{"name": "x", "campaigns": [{"id": "c1", "name": "Spring", "objective": "LOUD"}]}"#,
            "campaigns[0].objective",
        ),
        (
            r#"{"name": "x", "campaigns": [{"id": "c1", "name": "Spring", "objective": "CLICKS",
                "ad_groups": [{"id": "g1", "name": "Group", "bid_type": "CPX"}]}]}"#,
            "campaigns[0].ad_groups[0].bid_type",
        ),
        (
            r#"{"name": "x", "campaigns": [{"id": "c1", "name": "ab", "objective": "CLICKS"}]}"#,
            "campaigns[0].name",
        ),
        (
            r#"{"name": "x", "campaigns": [{"id": "c1", "name": "Spring", "objective": "CLICKS",
                "ad_groups": [{"id": "g1", "name": "Group", "ads": [{"id": "a1", "name": "Ad", "post_id": "t3_1"}]}]}]}"#,
            "campaigns[0].ad_groups[0].ads[0].name",
        ),
    ];
    for (json, path) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = push(&server, dir.path(), json);
        assert_eq!(out.status.code(), Some(2), "{path}: {}", stderr(&out));
        assert!(stderr(&out).contains(path), "{path}: {}", stderr(&out));
        assert!(!dir.path().join("adsync.db").exists(), "{path}: written");
        assert_eq!(server.requests(), 0, "{path}: a request was sent");
    }
    server.stop();
}

#[test]
fn unknown_sync_id_is_a_usage_error_without_requests() {
    let server = Server::start(TOKEN);
    let dir = tempfile::tempdir().expect("tempdir");
    drop(adsync::Store::open(dir.path().join("adsync.db")).expect("store opens"));
    let out = adsync(
        &server,
        &dir.path().join("adsync.db"),
        &["resume", "nope-1", "--platform", "reddit"],
        Some(TOKEN),
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("no sync `nope-1`"),
        "{}",
        stderr(&out)
    );
    assert_eq!(server.requests(), 0);
    server.stop();
}

#[test]
fn a_store_in_use_by_another_process_stops_the_push_before_any_request() {
    let server = Server::start(TOKEN);
    let dir = tempfile::tempdir().expect("tempdir");
    let _held = Store::open(dir.path().join("adsync.db")).expect("store opens");
    let out = push(
        &server,
        dir.path(),
        r#"{"name": "x", "campaigns": [{"id": "c1", "name": "Spring", "objective": "CLICKS"}]}"#,
    );
    assert_eq!(out.status.code(), Some(4), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("in use by another process"),
        "{}",
        stderr(&out)
    );
    assert_eq!(server.requests(), 0);
    server.stop();
}

#[test]
fn a_missing_token_is_a_usage_error_and_a_wrong_one_never_shows() {
    let server = Server::start(TOKEN);
    let dir = tempfile::tempdir().expect("tempdir");
    let set = dir.path().join("set.json");
    std::fs::write(
        &set,
        r#"{"name": "x", "campaigns": [{"id": "c1", "name": "Spring", "objective": "CLICKS"}]}"#,
    )
    .expect("write set");
    let db = dir.path().join("adsync.db");
    let args = [
        "-vv",
        "push",
        set.to_str().expect("utf-8"),
        "--platform",
        "reddit",
        "--account",
        "a2_bad",
    ];
    let out = adsync(&server, &db, &args, None);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("ADSYNC_REDDIT_TOKEN"),
        "{}",
        stderr(&out)
    );
    assert!(!db.exists());
    assert_eq!(server.requests(), 0);

    // A wrong token: 401, one refresh (same static token), 401 again: the
    // campaign fails permanently; the token is in no output and not stored.
    let wrong = "wrong-secret-token-5d1e";
    let out = adsync(&server, &db, &args, Some(wrong));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("401"), "{stdout}");
    assert!(!stdout.contains(wrong) && !stderr(&out).contains(wrong));
    let status = adsync(&server, &db, &["status", "--json"], None);
    assert!(!String::from_utf8_lossy(&status.stdout).contains(wrong));
    let history = adsync(&server, &db, &["history", "c1-1", "--json"], None);
    assert!(history.status.success(), "{}", stderr(&history));
    assert!(!String::from_utf8_lossy(&history.stdout).contains(wrong));
    assert_eq!(server.fake().entities().campaigns.len(), 0);
    server.stop();
}

#[test]
fn a_reddit_sync_is_never_resumed_against_another_platform() {
    let server = Server::start(TOKEN);
    let dir = tempfile::tempdir().expect("tempdir");
    let set = dir.path().join("set.json");
    std::fs::write(
        &set,
        r#"{"name": "x", "campaigns": [{"id": "c1", "name": "Spring", "objective": "CLICKS",
            "ad_groups": [{"id": "g1", "name": "Group one"}]}]}"#,
    )
    .expect("write set");
    let db = dir.path().join("adsync.db");
    // Killed right after the first checkpoint is durable: c1-1 is unfinished.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_adsync"));
    let killed = cmd
        .arg("--db")
        .arg(&db)
        .args([
            "push",
            set.to_str().expect("utf-8"),
            "--platform",
            "reddit",
            "--account",
            "a2_bad",
        ])
        .env("ADSYNC_REDDIT_BASE_URL", server.fake().base_url())
        .env("ADSYNC_REDDIT_TOKEN", TOKEN)
        .env("ADSYNC_TEST_CRASH_AT", "1:after")
        .output()
        .expect("adsync runs");
    assert!(!killed.status.success());
    let before = server.requests();

    // `resume` takes the platform from the checkpoint; one given that
    // disagrees is a usage error naming both, and nothing is sent.
    let named = adsync(
        &server,
        &db,
        &["resume", "c1-1", "--platform", "memory"],
        Some(TOKEN),
    );
    assert_eq!(named.status.code(), Some(2), "{}", stderr(&named));
    assert!(
        stderr(&named).contains("pushed to reddit") && stderr(&named).contains("--platform memory"),
        "{}",
        stderr(&named)
    );
    let all = adsync(
        &server,
        &db,
        &["resume", "--all", "--platform", "memory"],
        Some(TOKEN),
    );
    assert_eq!(all.status.code(), Some(2), "{}", stderr(&all));
    assert!(stderr(&all).contains("c1-1"), "{}", stderr(&all));
    assert_eq!(server.requests(), before, "nothing sent meanwhile");

    // Without flags the platform and its base URL come from the checkpoint.
    let all = adsync(&server, &db, &["resume", "--all"], Some(TOKEN));
    assert!(all.status.success(), "{}", stderr(&all));
    let held = server.fake().entities();
    assert_eq!((held.campaigns.len(), held.ad_groups.len()), (1, 1));
    server.stop();
}
