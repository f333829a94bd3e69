//! `adsync store copy`: the example set pushed to the fake Reddit server
//! into a sled store, once to the end and once killed mid-push (SIGKILL at a
//! checkpoint, the effect's outcome lost), is copied to a throwaway
//! PostgreSQL database; `adsync daemon --store …` on it then finishes the
//! interrupted push with every entity once on the server and lists the
//! finished syncs. A second copy is refused (exit 2); a missing or busy sled
//! directory is refused before anything is written; the password appears in
//! no output.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use adsync_fakes::fixtures::{example_set, EXAMPLE_SET_JSON};
use adsync_fakes::postgres::TestServer;
use adsync_fakes::reddit::{FakeReddit, FakeRedditConfig};
use serde_json::Value;

mod common;

use common::shared_store::{adsync_cmd as adsync, password_of, run_cmd, Daemon, REDDIT_TOKEN};

/// Exit code, stdout, stderr; `password` in neither.
fn run(command: &mut Command, password: &str) -> (Option<i32>, String, String) {
    let (code, stdout, stderr) = run_cmd(command);
    assert!(
        !stdout.contains(password) && !stderr.contains(password),
        "the password was printed: {stdout}{stderr}"
    );
    (code, stdout, stderr)
}

fn push(
    db: &Path,
    set: &Path,
    reddit: &str,
    account: &str,
    crash_at: Option<&str>,
) -> std::process::ExitStatus {
    let mut command = adsync(&[
        "--db",
        db.to_str().expect("utf-8"),
        "push",
        set.to_str().expect("utf-8"),
        "--platform",
        "reddit",
        "--account",
        account,
    ]);
    command
        .env("ADSYNC_REDDIT_BASE_URL", reddit)
        .env("ADSYNC_REDDIT_TOKEN", REDDIT_TOKEN)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(at) = crash_at {
        command.env("ADSYNC_TEST_CRASH_AT", at);
    }
    command.status().expect("adsync runs")
}

/// Every sync of the sled store at `db`: `(id, status)`.
fn sled_syncs(db: &Path) -> Vec<(String, String)> {
    let store = open_sled(db);
    let syncs = store
        .list()
        .into_iter()
        .map(|r| {
            let r = r.expect("decodes");
            (r.id, r.status.to_string())
        })
        .collect();
    store.close();
    syncs
}

/// sled lets go of its lock a moment after the process holding it exits.
fn open_sled(db: &Path) -> adsync::Store {
    for _ in 0..100 {
        if let Ok(store) = adsync::Store::open_existing(db) {
            return store;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("{} does not open", db.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_store_is_finished_by_a_daemon_with_every_entity_once() {
    let reddit = FakeReddit::start(FakeRedditConfig {
        token: REDDIT_TOKEN.into(),
        reads_per_window: 100_000,
        writes_per_window: 100_000,
        ..FakeRedditConfig::default()
    })
    .await
    .expect("fake reddit");
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("adsync.db");
    let set = dir.path().join("set.json");
    std::fs::write(&set, EXAMPLE_SET_JSON).expect("writes the set");

    // One push to the end; one killed just before its fifth checkpoint is
    // durable: that create reached the server, its id was never recorded.
    assert!(push(&db, &set, &reddit.base_url(), "a2_done", None).success());
    let killed = push(&db, &set, &reddit.base_url(), "a2_killed", Some("5:before"));
    assert_eq!(killed.signal(), Some(libc::SIGKILL), "{killed:?}");

    let server = TestServer::start();
    let url = server.url();
    let password = password_of(&url);
    let db_arg = db.to_str().expect("utf-8");

    // Refused before anything is written: no store there, or one in use.
    let missing = dir.path().join("nothing-here");
    let (code, _, err) = run(
        &mut adsync(&[
            "store",
            "copy",
            "--from",
            missing.to_str().unwrap(),
            "--to",
            &url,
        ]),
        &password,
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("no adsync store") && err.contains("nothing-here"),
        "{err}"
    );
    let busy = dir.path().join("busy.db");
    let held = adsync::Store::open(&busy).expect("a store held by this process");
    let (code, _, err) = run(
        &mut adsync(&[
            "store",
            "copy",
            "--from",
            busy.to_str().unwrap(),
            "--to",
            &url,
        ]),
        &password,
    );
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("in use by another process"), "{err}");
    drop(held);

    // The copy: the first to open the killed push's store since the kill,
    // so it replays the write-ahead log itself. The database is still
    // empty: the refusals wrote nothing.
    let (code, out, err) = run(
        &mut adsync(&["store", "copy", "--from", db_arg, "--to", &url, "--json"]),
        &password,
    );
    assert_eq!(code, Some(0), "{err}");
    let copied: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    let before = sled_syncs(&db);
    let campaigns = example_set().campaigns.len();
    assert_eq!(before.len(), 2 * campaigns, "{before:?}");
    assert!(
        before.iter().any(|(_, status)| status == "running"),
        "a push was interrupted: {before:?}"
    );
    assert_eq!(copied["sync_count"], 2 * campaigns, "{copied:#}");
    let running = before.iter().filter(|(_, s)| s == "running").count();
    assert_eq!(copied["syncs"]["running"], running, "{copied:#}");
    assert!(copied["to"].as_str().unwrap().contains("***"), "{copied:#}");
    assert!(copied["keys"].as_u64().unwrap() > 0);

    // A second copy into it is refused (the URL from ADSYNC_STORE_URL).
    let (code, _, err) = run(
        adsync(&["store", "copy", "--from", db_arg]).env("ADSYNC_STORE_URL", &url),
        &password,
    );
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("not empty") && err.contains("nothing was written"),
        "{err}"
    );

    // A daemon on the copy finishes the interrupted push.
    let log = dir.path().join("daemon.log");
    let daemon = Daemon::start_logged(&url, &reddit.base_url(), &log, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    let syncs = loop {
        let syncs = daemon.syncs().await;
        if syncs.len() == before.len() && syncs.iter().all(|s| s["status"] != "running") {
            break syncs;
        }
        assert!(Instant::now() < deadline, "still running: {syncs:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for sync in &syncs {
        assert_eq!(sync["status"], "succeeded", "{sync:#}");
    }
    // The finished ones are listed, as they were.
    let listed: Vec<&str> = syncs.iter().filter_map(|s| s["id"].as_str()).collect();
    for (id, _) in before.iter().filter(|(_, s)| s == "succeeded") {
        assert!(
            listed.contains(&id.as_str()),
            "{id} is not listed: {listed:?}"
        );
    }
    let (code, out, err) = run(&mut adsync(&["--daemon", &daemon.url, "status"]), &password);
    assert_eq!(code, Some(0), "{err}");
    for (id, _) in &before {
        assert!(out.contains(id.as_str()), "{id} missing from status: {out}");
    }

    let held = reddit.entities();
    assert!(held.duplicates().is_empty(), "{:?}", held.duplicates());
    let per_account: usize = example_set()
        .campaigns
        .iter()
        .map(|c| 1 + c.ad_groups.iter().map(|g| 1 + g.ads.len()).sum::<usize>())
        .sum();
    assert_eq!(held.len(), 2 * per_account, "every entity once");
    drop(daemon);
    let logged = std::fs::read_to_string(&log).expect("the daemon's log");
    assert!(
        !logged.contains(&password),
        "the daemon logged the password"
    );
}

#[test]
fn an_empty_store_is_copied_with_a_summary_and_the_target_is_required() {
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("adsync.db");
    adsync::Store::open(&db).expect("creates").close();
    let db_arg = db.to_str().expect("utf-8");
    let server = TestServer::start();
    let url = server.url();
    let password = password_of(&url);

    let (code, _, err) = run(&mut adsync(&["store", "copy", "--from", db_arg]), &password);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--to postgres://"), "{err}");

    let (code, out, err) = run(
        &mut adsync(&["--store", &url, "store", "copy", "--from", db_arg]),
        &password,
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("schema version 0 → 1"), "{out}");
    assert!(out.contains("0 syncs"), "{out}");
    assert!(out.contains("read back identical"), "{out}");
    assert!(
        out.contains(":***@"),
        "the store is named, its password hidden: {out}"
    );
}
