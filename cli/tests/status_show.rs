//! `status` after a killed process, and `show` of things that are not there
//! (issue #17): the real binary, a store on disk, and `adsync fake-server
//! amazon` in a child process where a pull is needed.
//!
//! - A pull or push left unfinished by a SIGKILL is `interrupted` (with its
//!   last checkpoint's time) in `status`, text and `--json`, not `running`.
//! - `show` of a never-pulled profile, of a profile whose pull never
//!   completed, of an unknown id (with or without `--kind`): a message on
//!   stderr, `{"found": false, …}` with `--json`, and exit 6, never `[]`.

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::fake_amazon::{pull_args, FakeAmazonProcess};

const PROFILE: &str = "77";
const NOT_FOUND: i32 = 6;

fn start_server() -> FakeAmazonProcess {
    FakeAmazonProcess::generated(PROFILE, [2, 2, 3], &[])
}

/// `adsync pull` of `PROFILE` at page size 2, with the fake's credentials,
/// killed by SIGKILL at checkpoint write `crash_at` when given.
fn pull(db: &Path, url: &str, crash_at: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_adsync"));
    cmd.arg("--db")
        .arg(db)
        .args(pull_args(PROFILE, url, &["--page-size", "2", "--json"]))
        .args(["--rate", "1000", "--max-rate", "1000"])
        .env("ADSYNC_AMAZON_TOKEN", "fake-token")
        .env("ADSYNC_AMAZON_CLIENT_ID", "fake-client-id")
        .env_remove("ADSYNC_AMAZON_HOST")
        .env_remove("ADSYNC_DB")
        .env_remove("ADSYNC_TEST_CRASH_AT");
    if let Some(at) = crash_at {
        cmd.env("ADSYNC_TEST_CRASH_AT", at);
    }
    cmd.output().expect("adsync runs")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).to_string()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

/// Asserts `show args` ends as not found: exit 6, a message on stderr that
/// contains `says`, and with `--json` the `found: false` object (never `[]`).
fn assert_not_found(db: &Path, args: &[&str], says: &str) {
    let mut all = vec!["show", "--profile", PROFILE];
    all.extend_from_slice(args);
    let out = common::adsync(db, &all);
    assert_eq!(out.status.code(), Some(NOT_FOUND), "{args:?}: {out:?}");
    assert!(stderr(&out).contains(says), "{args:?}: {}", stderr(&out));
    assert!(stdout(&out).is_empty(), "{args:?}: {}", stdout(&out));

    all.push("--json");
    let out = common::adsync(db, &all);
    assert_eq!(out.status.code(), Some(NOT_FOUND), "{all:?}: {out:?}");
    let value = json(&out);
    assert_eq!(value["found"], false, "{all:?}: {value}");
    assert!(
        value["error"].as_str().is_some_and(|e| e.contains(says)),
        "{all:?}: {value}"
    );
    assert_eq!(value["profile"], PROFILE, "{value}");
    let id = args.iter().position(|a| *a == "--id").map(|i| args[i + 1]);
    assert_eq!(value["id"], serde_json::json!(id), "{value}");
}

#[test]
fn a_killed_pull_is_interrupted_in_status_and_show_finds_no_completed_pull() {
    let server = start_server();
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("adsync.db");

    // Killed after a few pages are durable: the record still says running.
    let out = pull(&db, &server.url, Some("4:after"));
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(libc::SIGKILL),
        "{out:?}"
    );

    let out = common::adsync(&db, &["status", "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let status = json(&out);
    let pulls = status["pulls"].as_array().expect("pulls");
    assert_eq!(pulls.len(), 1, "{status:#}");
    let p = &pulls[0];
    assert_eq!(p["sync"], "pull-amazon-77");
    assert_eq!(p["state"], "interrupted", "{p:#}");
    assert_eq!(p["recorded_state"], "syncing", "{p:#}");
    let at = p["interrupted_at"].as_str().expect("interrupted_at");
    // The pull's sync is listed among the syncs the same way.
    let sync = status["syncs"]
        .as_array()
        .expect("syncs")
        .iter()
        .find(|s| s["id"] == "pull-amazon-77")
        .expect("the pull's sync");
    assert_eq!(sync["status"], "interrupted", "{sync}");
    assert_eq!(sync["interrupted_at"], at, "{sync}");
    assert_eq!(sync["updated_at"], at, "the last checkpoint's time");

    let out = common::adsync(&db, &["status"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let text = stdout(&out);
    assert!(!text.contains("running"), "{text}");
    assert!(!text.contains("syncing"), "{text}");
    assert!(
        text.contains("pull-amazon-77 (amazon profile 77): interrupted"),
        "{text}"
    );
    assert!(text.contains(&format!("last checkpoint {at}")), "{text}");
    assert!(text.contains("`adsync resume pull-amazon-77`"), "{text}");

    // `show`'s summary says the same; the entities are not there yet.
    let out = common::adsync(&db, &["show", "--profile", PROFILE, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let summary = json(&out);
    assert_eq!(summary[0]["state"], "interrupted", "{summary:#}");
    assert_eq!(summary[0]["interrupted_at"], at, "{summary:#}");
    assert_eq!(summary[0]["counts"], serde_json::Value::Null);
    let out = common::adsync(&db, &["show", "--profile", PROFILE]);
    assert!(stdout(&out).contains(": interrupted"), "{out:?}");
    for args in [
        &["--kind", "keywords"][..],
        &["--kind", "campaigns"],
        &["--kind", "ad-groups", "--limit", "1"],
        &["--kind", "keywords", "--id", "999"],
        &["--id", "999"],
    ] {
        assert_not_found(
            &db,
            args,
            "profile 77 has no completed pull (its pull `pull-amazon-77` is interrupted;",
        );
    }

    // Resumed to its end: completed, nothing interrupted any more.
    let out = pull(&db, &server.url, None);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let status = json(&common::adsync(&db, &["status", "--json"]));
    let p = &status["pulls"][0];
    assert_eq!(p["state"], "completed", "{p:#}");
    assert_eq!(p["interrupted_at"], serde_json::Value::Null, "{p:#}");
    assert_eq!(status["syncs"][0]["status"], "succeeded", "{status:#}");
    assert_eq!(
        status["syncs"][0]["interrupted_at"],
        serde_json::Value::Null
    );
    let text = stdout(&common::adsync(&db, &["status"]));
    assert!(!text.contains("interrupted"), "{text}");
}

#[test]
fn show_says_not_found_the_same_way_for_every_missing_thing() {
    let server = start_server();
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("adsync.db");
    let out = pull(&db, &server.url, None);
    assert_eq!(out.status.code(), Some(0), "{out:?}");

    // A profile never pulled, in a store that exists: every form of `show`.
    let other = |args: &[&str]| {
        let mut all = vec!["show", "--profile", "404"];
        all.extend_from_slice(args);
        common::adsync(&db, &all)
    };
    for args in [
        &[][..],
        &["--kind", "summary"],
        &["--kind", "campaigns"],
        &["--kind", "ad-groups"],
        &["--kind", "keywords"],
        &["--kind", "keywords", "--id", "1"],
        &["--id", "1"],
    ] {
        for json_flag in [false, true] {
            let mut args = args.to_vec();
            if json_flag {
                args.push("--json");
            }
            let out = other(&args);
            assert_eq!(out.status.code(), Some(NOT_FOUND), "{args:?}: {out:?}");
            assert!(
                stderr(&out).contains("profile 404 was never pulled"),
                "{args:?}: {out:?}"
            );
            if json_flag {
                let value = json(&out);
                assert_eq!(value["found"], false, "{value}");
                assert_eq!(value["profile"], "404", "{value}");
            } else {
                assert!(stdout(&out).is_empty(), "{args:?}: {out:?}");
            }
        }
    }
    // The JSON names the kind asked for (`null` when none was).
    let value = json(&other(&["--kind", "ad-groups", "--json"]));
    assert_eq!(value["kind"], "ad-groups", "{value}");
    assert_eq!(value["id"], serde_json::Value::Null, "{value}");
    let value = json(&other(&["--json"]));
    assert_eq!(value["kind"], serde_json::Value::Null, "{value}");

    // Unknown ids in a completed pull: with --kind, and without (all kinds).
    assert_not_found(
        &db,
        &["--kind", "keywords", "--id", "999"],
        "no keyword with id 999",
    );
    assert_not_found(
        &db,
        &["--kind", "campaigns", "--id", "999"],
        "no campaign with id 999",
    );
    assert_not_found(
        &db,
        &["--id", "999"],
        "no campaign, ad group or keyword with id 999",
    );
    assert_not_found(
        &db,
        &["--kind", "summary", "--id", "999"],
        "no campaign, ad group or keyword with id 999",
    );

    // `--id` without `--kind` is not ignored: it finds the entity of any kind.
    let keywords = json(&common::adsync(
        &db,
        &["show", "--profile", PROFILE, "--kind", "keywords", "--json"],
    ));
    let keyword = keywords[0].clone();
    let id = keyword["keywordId"]
        .as_str()
        .expect("keywordId")
        .to_string();
    let out = common::adsync(&db, &["show", "--profile", PROFILE, "--id", &id, "--json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(json(&out), serde_json::json!([keyword]));
    let ad_groups = json(&common::adsync(
        &db,
        &[
            "show",
            "--profile",
            PROFILE,
            "--kind",
            "ad-groups",
            "--json",
        ],
    ));
    let group = ad_groups[1]["adGroupId"]
        .as_str()
        .expect("adGroupId")
        .to_string();
    let out = common::adsync(&db, &["show", "--profile", PROFILE, "--id", &group]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(stdout(&out).starts_with(&group), "{out:?}");

    // A completed pull's lists are printed as they are, exit 0.
    let out = common::adsync(
        &db,
        &["show", "--profile", PROFILE, "--kind", "keywords", "--json"],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(json(&out).as_array().map(Vec::len), Some(12));
}

#[test]
fn a_killed_push_is_interrupted_in_status() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("adsync.db");
    let set = dir.path().join("set.json");
    let campaign = serde_json::json!({
        "id": "c1", "name": "Campaign 1", "objective": "CLICKS",
        "ad_groups": [{"id": "g1", "name": "Group 1",
            "ads": [{"id": "a1", "name": "Ad 1", "post_id": "t3_x"}],
            "keywords": [{"id": "k1", "text": "shoes"}]}]
    });
    std::fs::write(
        &set,
        serde_json::to_vec(&serde_json::json!({"name": "one", "campaigns": [campaign]}))
            .expect("JSON"),
    )
    .expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_adsync"))
        .arg("--db")
        .arg(&db)
        .args(["push", set.to_str().expect("utf-8"), "--account", "a2_x"])
        .env("ADSYNC_TEST_CRASH_AT", "2:after")
        .env_remove("ADSYNC_DB")
        .output()
        .expect("adsync runs");
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&out.status),
        Some(libc::SIGKILL),
        "{out:?}"
    );

    let status = json(&common::adsync(&db, &["status", "--json"]));
    let sync = &status["syncs"][0];
    assert_eq!(sync["kind"], "push", "{sync}");
    assert_eq!(sync["status"], "interrupted", "{sync}");
    assert_eq!(sync["recorded_status"], "running", "{sync}");
    assert_eq!(sync["interrupted_at"], sync["updated_at"], "{sync}");
    assert_eq!(status["sets"][0]["syncs"][0]["status"], "interrupted");

    let out = common::adsync(&db, &["status"]);
    let text = stdout(&out);
    assert!(text.contains("interrupted"), "{text}");
    assert!(!text.contains("running"), "{text}");

    // Resumed: succeeded, and no longer interrupted.
    let out = common::adsync(&db, &["resume", "--all"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let status = json(&common::adsync(&db, &["status", "--json"]));
    assert_eq!(status["syncs"][0]["status"], "succeeded", "{status:#}");
    assert_eq!(
        status["syncs"][0]["interrupted_at"],
        serde_json::Value::Null
    );
}
