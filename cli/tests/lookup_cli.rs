//! The binary's side of issue 12, items 6, 7, 8, 17 and 18: `resolve` verifies
//! an adopted id and says when there is nothing to resolve, a stopped look-up
//! is resumed, unsendable configuration is refused before any request, and a
//! missing Amazon token names its variable.

mod common;

use common::adsync;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use adsync::memory::{Fault, MemoryPlatform, Op};
use adsync::Backoff;
use adsync::EntityKind;
use adsync::Status;
use adsync::Store;
use adsync::{Clock, SystemClock};
use adsync::{PushPhase, PushPolicy, Pusher};
use common::{small_set, ACCOUNT};

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Pushes the small set to a memory platform kept in `file`, with `script`
/// applied to the platform first; returns the sync id and its status.
async fn push_in_library(
    db: &Path,
    file: &Path,
    script: impl FnOnce(&MemoryPlatform),
) -> (String, Status, PushPhase) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let platform = Arc::new(MemoryPlatform::open_file(file, clock.clone()).expect("platform file"));
    script(&platform);
    let store = Store::open_from_async(db).await.expect("store");
    let pusher = Pusher::new(store, platform.clone(), clock).with_policy(PushPolicy {
        backoff: Backoff {
            base: Duration::from_millis(5),
            max: Duration::from_millis(20),
            max_attempts: 2,
        },
        ..PushPolicy::default()
    });
    let report = pusher.push(&small_set(), ACCOUNT).await.expect("push");
    let c = &report.campaigns[0];
    let phase = pusher
        .runner()
        .get(&c.sync)
        .await
        .expect("checkpoint")
        .state
        .phase();
    (c.sync.clone(), c.status, phase)
}

fn ad_groups(file: &Path) -> Vec<String> {
    let platform =
        MemoryPlatform::open_file(file, Arc::new(SystemClock)).expect("platform file reads");
    platform
        .entities()
        .into_iter()
        .filter(|e| e.kind == EntityKind::AdGroup)
        .map(|e| e.id)
        .collect()
}

/// Item 6: `resolve --adopt` checks the id on the platform and records nothing
/// when it is wrong; the right id is adopted and the push finishes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolve_adopt_verifies_the_id_before_recording_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("adsync.db");
    let file = dir.path().join("platform.json");
    let (sync, status, _) = push_in_library(&db, &file, |p| {
        p.fail_next(Op::Create, Some(EntityKind::AdGroup), Fault::LoseResponse);
        p.fail_next(
            Op::Find,
            Some(EntityKind::AdGroup),
            Fault::Permanent("look-ups are down".into()),
        );
    })
    .await;
    assert_eq!(status, Status::NeedsAttention);
    let real = ad_groups(&file).remove(0);
    let file_arg = file.to_str().expect("utf-8");

    let out = adsync(
        &db,
        &[
            "resolve",
            &sync,
            "--adopt",
            "adg_bogus",
            "--memory-file",
            file_arg,
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim(),
        format!("error: sync `{sync}`: not adopting adg_bogus: the platform has no ad_group adg_bogus in account a2_test; nothing was recorded")
    );
    // Without the platform's file there is nothing to verify against: refused too.
    let out = adsync(&db, &["resolve", &sync, "--adopt", &real]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("nothing was recorded"),
        "{}",
        stderr(&out)
    );
    let status = adsync(&db, &["status", "--json"]);
    assert!(
        stdout(&status).contains("needs_attention"),
        "{}",
        stdout(&status)
    );

    let out = adsync(
        &db,
        &[
            "resolve",
            &sync,
            "--adopt",
            &real,
            "--memory-file",
            file_arg,
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        format!(
            "{sync}: NeedsAttention → AdGroupsCreated; run `adsync --db {} resume {sync}` to continue",
            db.display()
        )
    );
    let out = adsync(&db, &["resume", &sync, "--memory-file", file_arg]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(ad_groups(&file), vec![real]);

    // Item 17: a finished sync has nothing to resolve.
    let out = adsync(&db, &["resolve", &sync, "--absent"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim(),
        format!("error: sync `{sync}` has finished (succeeded); nothing to resolve")
    );
}

/// Item 7: a look-up the platform could not answer stops the sync unfinished
/// (not parked); `resolve` says it needs no attention, and `resume` finishes
/// it with exactly one ad group.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_lookup_needs_no_attention_and_resume_finishes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("adsync.db");
    let file = dir.path().join("platform.json");
    let (sync, status, phase) = push_in_library(&db, &file, |p| {
        p.fail_next(Op::Create, Some(EntityKind::AdGroup), Fault::LoseResponse);
        for _ in 0..2 {
            p.fail_next(Op::Find, Some(EntityKind::AdGroup), Fault::Transient);
        }
    })
    .await;
    assert_eq!(
        (status, phase),
        (Status::Running, PushPhase::LookupDeferred)
    );

    let out = adsync(&db, &["resolve", &sync, "--absent"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim(),
        format!(
            "error: sync `{sync}` does not need attention: it is unfinished, and `adsync --db {} resume {sync}` continues it",
            db.display()
        )
    );
    let out = adsync(
        &db,
        &[
            "resume",
            &sync,
            "--memory-file",
            file.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(ad_groups(&file).len(), 1);
}

/// Item 8: a User-Agent or token that cannot be an HTTP header is refused
/// before any request, naming where it came from (never the token itself).
#[test]
fn unsendable_user_agent_or_token_is_a_usage_error_before_any_request() {
    let server = adsync_fakes::blocking::FakeRedditServer::start("cli-token-3b9e");
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("adsync.db");
    let set = dir.path().join("set.json");
    std::fs::write(
        &set,
        serde_json::to_string(&small_set()).expect("set encodes"),
    )
    .expect("write set");
    let run = |ua: &str, token: &str| {
        let started = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_adsync"))
            .arg("--db")
            .arg(&db)
            .args(["push", set.to_str().expect("utf-8")])
            .args(["--platform", "reddit", "--account", "a2_cli"])
            .env_remove("ADSYNC_DB")
            .env("ADSYNC_REDDIT_BASE_URL", server.fake().base_url())
            .env("ADSYNC_REDDIT_USER_AGENT", ua)
            .env("ADSYNC_REDDIT_TOKEN", token)
            .output()
            .expect("adsync runs");
        assert!(started.elapsed() < Duration::from_secs(10));
        out
    };
    let out = run("a\nb", &server.token);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).starts_with(
            "error: --reddit-user-agent / ADSYNC_REDDIT_USER_AGENT: the User-Agent cannot be sent as an HTTP header"
        ),
        "{}",
        stderr(&out)
    );
    let out = run("adsync-test/1", "tok\nsecret-77");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim(),
        "error: ADSYNC_REDDIT_TOKEN / --reddit-token: the token contains a newline or another character not allowed in an HTTP header (its value is not shown)"
    );
    assert_eq!(server.requests(), 0);
    assert!(!db.exists(), "nothing written");
    server.stop();
}

/// Item 18: a missing Amazon token names the variable first.
#[test]
fn a_missing_amazon_token_names_the_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("adsync.db");
    let out = adsync(
        &db,
        &[
            "pull",
            "--profile",
            "42",
            "--client-id",
            "cid",
            "--host",
            "http://127.0.0.1:9",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(
        stderr(&out).trim(),
        "error: no Amazon Ads access token: set ADSYNC_AMAZON_TOKEN (or pass --token, which shows in the process list)"
    );
    assert!(!db.exists());
}

/// Item 5: `adsync fake-server reddit --clock-offset-secs` runs the fake's
/// clock off ours, in `created_at` and in the `Date` header.
#[tokio::test]
async fn the_fake_server_clock_can_run_behind() {
    use std::io::BufRead as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_adsync"))
        .args(["fake-server", "reddit", "--port", "0"])
        .args(["--clock-offset-secs", "-1800"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("fake server starts");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("address line");
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://127.0.0.1:"))
        .expect("url")
        .to_string();
    let resp = reqwest::Client::new()
        .post(format!("{url}/ad_accounts/a2_clock/campaigns"))
        .bearer_auth("fake-reddit-token")
        .header("user-agent", "adsync-test/1")
        .json(&serde_json::json!({"data": {
            "name": "Clock check", "objective": "CLICKS", "configured_status": "PAUSED"
        }}))
        .send()
        .await
        .expect("create");
    let _ = child.kill();
    let _ = child.wait();
    assert!(resp.status().is_success(), "{}", resp.status());
    let date = resp
        .headers()
        .get("date")
        .and_then(|v| v.to_str().ok())
        .expect("Date header")
        .to_string();
    let body: serde_json::Value = resp.json().await.expect("json");
    let created = time::OffsetDateTime::parse(
        body["data"]["created_at"].as_str().expect("created_at"),
        &time::format_description::well_known::Rfc3339,
    )
    .expect("rfc3339");
    let behind = time::OffsetDateTime::now_utc() - created;
    assert!(
        (behind.whole_seconds() - 1800).abs() <= 60,
        "created_at {created} is not 30 minutes behind (Date: {date})"
    );
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let date_time = time::PrimitiveDateTime::parse(&date, format)
        .expect("IMF-fixdate")
        .assume_utc();
    assert!(((time::OffsetDateTime::now_utc() - date_time).whole_seconds() - 1800).abs() <= 60);
}
