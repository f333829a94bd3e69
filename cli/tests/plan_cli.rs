//! `adsync plan` against the fake Reddit server: what a push would do, read
//! from the platform and the store, with nothing written to either; its
//! exit code says "nothing to do" (0), "changes pending" (7) or "a flag must
//! be chosen first" (3).

mod common;

use std::path::Path;

use adsync_fakes::reddit::{FakeReddit, FakeRedditConfig, FakeRedditHandle};
use adsync_fakes::reddit::{RedditFault, RedditFaultKind};
use common::shared_store::{adsync_cmd, run_cmd, REDDIT_TOKEN};
use serde_json::Value;

const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/campaign_set.json");

/// `adsync --db <db> <args> --platform reddit --account a2_plan`, against `fake`.
fn run(fake: &FakeRedditHandle, db: &Path, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["--db", db.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--platform", "reddit", "--account", "a2_plan"]);
    run_cmd(
        adsync_cmd(&all)
            .env("ADSYNC_REDDIT_BASE_URL", fake.base_url())
            .env("ADSYNC_REDDIT_TOKEN", REDDIT_TOKEN),
    )
}

async fn fake() -> FakeRedditHandle {
    FakeReddit::start(FakeRedditConfig {
        token: REDDIT_TOKEN.into(),
        ..FakeRedditConfig::default()
    })
    .await
    .expect("fake reddit")
}

fn writes(fake: &FakeRedditHandle) -> usize {
    fake.requests().iter().filter(|r| r.method != "GET").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_reads_only_and_its_exit_code_says_whether_a_push_would_write() {
    let fake = fake().await;
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("adsync.db");

    // Before any push: everything to create; the store is not even created.
    let (code, out, err) = run(&fake, &db, &["plan", EXAMPLE]);
    assert_eq!(code, Some(7), "{out}{err}");
    assert!(out.contains("+ create    campaign"), "{out}");
    assert!(!db.exists(), "a plan creates no store");
    assert_eq!(writes(&fake), 0);

    let (code, _, err) = run(&fake, &db, &["push", EXAMPLE]);
    assert_eq!(code, Some(0), "{err}");
    fake.clear_requests();

    // Pushed: nothing to do, and a plan sends only GETs.
    let (code, out, err) = run(&fake, &db, &["plan", EXAMPLE]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains(" 0 write(s)"), "{out}");
    assert!(
        !out.contains("= unchanged"),
        "unchanged entities only with --all: {out}"
    );
    let (_, all, _) = run(&fake, &db, &["plan", EXAMPLE, "--all"]);
    assert!(all.contains("= unchanged campaign"), "{all}");
    assert_eq!(writes(&fake), 0, "{:?}", fake.requests());

    // One bid changed in the file: one update of one field.
    let mut set: Value =
        serde_json::from_str(&std::fs::read_to_string(EXAMPLE).expect("example")).expect("json");
    let group = &mut set["campaigns"][0]["ad_groups"][0];
    let old = group["bid_value_micros"].as_u64().expect("a bid");
    group["bid_value_micros"] = Value::from(old + 250_000);
    let edited = dir.path().join("edited.json");
    std::fs::write(&edited, set.to_string()).expect("write");
    let edited = edited.to_str().expect("utf-8");
    let (code, out, err) = run(&fake, &db, &["plan", edited]);
    assert_eq!(code, Some(7), "{out}{err}");
    assert!(
        out.contains(&format!("bid_value_micros: {old} → {}", old + 250_000)),
        "{out}"
    );
    let (code, out, _) = run(&fake, &db, &["plan", edited, "--json"]);
    assert_eq!(code, Some(7));
    let plans: Value = serde_json::from_str(&out).expect("--json is JSON");
    assert_eq!(plans[0]["summary"]["writes"], 1, "{plans:#}");
    assert_eq!(plans[0]["summary"]["update"], 1);
    assert_eq!(writes(&fake), 0);

    // Drift: nothing yet; then someone edits the group on the platform.
    let drift = |fake: &FakeRedditHandle| {
        let mut all = vec!["--db", db.to_str().expect("utf-8"), "drift"];
        all.extend_from_slice(&["--platform", "reddit", "--account", "a2_plan"]);
        run_cmd(
            adsync_cmd(&all)
                .env("ADSYNC_REDDIT_BASE_URL", fake.base_url())
                .env("ADSYNC_REDDIT_TOKEN", REDDIT_TOKEN),
        )
    };
    let (code, out, err) = drift(&fake);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("0 entities drifted"), "{out}");
    let group_id = fake
        .entities()
        .ad_groups
        .iter()
        .find(|g| g["name"] == set["campaigns"][0]["ad_groups"][0]["name"])
        .and_then(|g| g["id"].as_str().map(str::to_string))
        .expect("the pushed group");
    // An edit in Reddit's UI, as an API call of its own.
    let edited_by_hand = reqwest::Client::new()
        .patch(format!("{}/ad_groups/{group_id}", fake.base_url()))
        .bearer_auth(REDDIT_TOKEN)
        .header("user-agent", "the-platforms-ui")
        .json(&serde_json::json!({"data": {"bid_value": old + 1}}))
        .send()
        .await
        .expect("the fake answers");
    assert!(edited_by_hand.status().is_success());
    fake.clear_requests();
    let (code, out, err) = drift(&fake);
    assert_eq!(code, Some(7), "{out}{err}");
    assert!(
        out.contains(&format!(
            "bid_value_micros: adsync wrote {old}, the platform has {}",
            old + 1
        )),
        "{out}"
    );
    assert_eq!(writes(&fake), 0);

    // Another store: the entities exist by name, adsync did not create them
    // as far as it knows. Refused (3) unless adopting, which writes nothing
    // to the platform but changes what adsync manages (7).
    let other = dir.path().join("other.db");
    let (code, out, err) = run(&fake, &other, &["plan", EXAMPLE]);
    assert_eq!(code, Some(3), "{out}{err}");
    assert!(
        out.contains("! refuse") && out.contains("--adopt-existing"),
        "{out}"
    );
    let (code, out, err) = run(&fake, &other, &["plan", EXAMPLE, "--adopt-existing"]);
    assert_eq!(code, Some(7), "{out}{err}");
    assert!(out.contains("< adopt"), "{out}");
    assert_eq!(writes(&fake), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_that_stays_unreadable_is_a_clear_error_and_nothing_is_written() {
    let fake = fake().await;
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("adsync.db");
    fake.inject(RedditFault {
        method: Some("GET".into()),
        path_contains: Some("/campaigns".into()),
        times: None,
        kind: RedditFaultKind::Garble,
    });
    let (code, out, err) = run(&fake, &db, &["plan", EXAMPLE]);
    assert_eq!(code, Some(5), "{out}{err}");
    assert!(err.contains("listing the campaigns under a2_plan"), "{err}");
    assert!(!db.exists());
    assert_eq!(writes(&fake), 0);

    // A bad file: a usage error before any request.
    fake.clear_requests();
    let (code, _, err) = run(&fake, &db, &["plan", "/no/such/set.json"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(fake.requests().is_empty());
}
