//! Bad input gets a clear error that says what and where, and loses nothing:
//! malformed set files, unknown enum values, store already in use, corrupt or
//! foreign records, unknown syncs.

mod common;

use common::adsync;

use adsync::{CampaignSet, InputError};
use adsync::{Store, StoreError};

fn parse(json: &str) -> InputError {
    CampaignSet::from_json(json, "set.json").unwrap_err()
}

#[test]
fn malformed_json_names_line_and_column() {
    let err = parse("{\n  \"name\": \"x\",\n  \"campaigns\": [\n    {\"id\": \"c1\",, }\n  ]\n}");
    match &err {
        InputError::Syntax { line, column, .. } => {
            assert_eq!((*line, *column), (4, 17), "the second comma")
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().starts_with("set.json:4:17:"), "{err}");
}

#[test]
fn unknown_enum_value_names_the_path_and_the_allowed_values() {
    let err = parse(
        r#"{"name": "x", "campaigns": [{"id": "c1", "name": "Spring", "objective": "SHOUTING"}]}"#,
    );
    let text = err.to_string();
    assert!(text.contains("campaigns[0].objective"), "{text}");
    assert!(
        text.contains("unknown variant `SHOUTING`") && text.contains("CLICKS"),
        "{text}"
    );
}

#[test]
fn missing_and_unknown_fields_are_errors() {
    let missing =
        parse(r#"{"name": "x", "campaigns": [{"id": "c1", "name": "Spring"}]}"#).to_string();
    assert!(
        missing.contains("missing field `objective`") && missing.contains("campaigns[0]"),
        "{missing}"
    );
    let unknown = parse(r#"{"name": "x", "campaigns": [{"id": "c1", "name": "Spring", "objective": "CLICKS", "budgett": 1}]}"#)
        .to_string();
    assert!(unknown.contains("unknown field `budgett`"), "{unknown}");
}

#[test]
fn model_rules_are_checked_before_anything_runs() {
    let short =
        parse(r#"{"name": "x", "campaigns": [{"id": "c1", "name": "ab", "objective": "CLICKS"}]}"#)
            .to_string();
    assert!(
        short.contains("campaigns[0].name") && short.contains("shorter than 3"),
        "{short}"
    );
    let twice = parse(
        r#"{"name": "x", "campaigns": [{"id": "c1", "name": "Spring", "objective": "CLICKS"},
                                       {"id": "c1", "name": "Summer", "objective": "CLICKS"}]}"#,
    )
    .to_string();
    assert!(
        twice.contains("campaigns[1].id") && twice.contains("used twice"),
        "{twice}"
    );
    let same_name = parse(
        r#"{"name": "x", "campaigns": [{"id": "c1", "name": "Spring", "objective": "CLICKS", "ad_groups": [
            {"id": "g1", "name": "Group"}, {"id": "g2", "name": "Group"}]}]}"#,
    )
    .to_string();
    assert!(
        same_name.contains("campaigns[0].ad_groups[1].name"),
        "{same_name}"
    );
}

#[test]
fn cli_rejects_a_bad_file_with_exit_code_2_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let set = dir.path().join("bad.json");
    std::fs::write(
        &set,
        r#"{"name": "x", "campaigns": [{"id": "c1", "name": "Spring", "objective": "LOUD"}]}"#,
    )
    .unwrap();
    let db = dir.path().join("adsync.db");
    let out = adsync(&db, &["push", set.to_str().unwrap(), "--account", "a2_x"]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.json:1:") && stderr.contains("campaigns[0].objective"),
        "{stderr}"
    );
    assert!(!db.exists(), "the store must not even be created");
}

#[test]
fn a_store_in_use_by_another_process_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("adsync.db");
    let _held = Store::open(&db).unwrap();
    let out = adsync(&db, &["status"]);
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("in use by another process") && stderr.contains("adsync.db"),
        "{stderr}"
    );
}

#[test]
fn a_garbled_write_ahead_log_is_named_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("adsync.db");
    Store::open(&db).unwrap().close();
    let wal = db.join("adsync.wal");
    let garbage = vec![b'?'; 8192];
    std::fs::write(&wal, &garbage).unwrap();

    let out = adsync(&db, &["status"]);
    assert_eq!(out.status.code(), Some(4));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("adsync.wal") && stderr.contains("not an adsync log"),
        "{stderr}"
    );
    assert_eq!(
        std::fs::read(&wal).unwrap(),
        garbage,
        "nothing was overwritten"
    );
}

#[test]
fn unknown_sync_id_is_a_usage_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("adsync.db");
    // `resume` never creates a store: with none there, it says so.
    let out = adsync(&db, &["resume", "nope-1"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!db.exists(), "resume created a store");
    drop(adsync::Store::open(&db).unwrap());
    let out = adsync(&db, &["resume", "nope-1", "--platform", "memory"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no sync `nope-1`"));
    let out = adsync(&db, &["history", "nope-1"]);
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test]
async fn corrupt_and_future_records_are_reported_by_name_and_other_syncs_keep_working() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("adsync.db");
    {
        // A good sync, pushed and finished.
        let store = Store::open(&db).unwrap();
        let clock = std::sync::Arc::new(adsync::ManualClock::new(common::start_time()));
        let platform = std::sync::Arc::new(adsync::memory::MemoryPlatform::new(clock.clone()));
        let h = common::Harness::new(store, platform, clock);
        assert!(h
            .pusher
            .push(&common::small_set(), common::ACCOUNT)
            .await
            .unwrap()
            .all_synced());
    }
    {
        // Damage from outside: garbage, and a record from a future adsync.
        let raw = common::open_raw_sled(&db);
        let tree = raw.open_tree("checkpoints").unwrap();
        tree.insert("r/garbage-1", &b"{not json"[..]).unwrap();
        tree.insert("r/future-1", &br#"{"format": 99, "id": "future-1"}"#[..])
            .unwrap();
        raw.flush().unwrap();
    }
    let store = Store::open(&db).unwrap();
    let listed = store.list();
    assert_eq!(listed.len(), 3);
    let errors: Vec<String> = listed
        .iter()
        .filter_map(|r| r.as_ref().err().map(|e| e.to_string()))
        .collect();
    assert!(
        errors
            .iter()
            .any(|e| e.contains("future-1") && e.contains("format 99")),
        "{errors:?}"
    );
    assert!(
        errors
            .iter()
            .any(|e| e.contains("garbage-1") && e.contains("corrupt")),
        "{errors:?}"
    );
    assert!(matches!(
        store.record("future-1"),
        Err(StoreError::UnsupportedFormat { found: 99, .. })
    ));
    // The good sync is intact and readable.
    let good = store.record("c1-1").unwrap().unwrap();
    assert_eq!(good.status, adsync::Status::Succeeded);
    drop(store);

    let out = adsync(&db, &["status"]);
    assert_eq!(
        out.status.code(),
        Some(4),
        "status reports unreadable records"
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("c1-1")
            && stdout.contains("succeeded")
            && stdout.contains("unreadable: sync `garbage-1`"),
        "{stdout}"
    );
}

/// A push checkpoint holds only progress; the entity specs live in the sync's
/// plan, written once. A damaged or missing plan is named, with its sync, and
/// nothing else is touched.
#[tokio::test]
async fn a_damaged_or_missing_plan_is_reported_by_sync_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("adsync.db");
    let mut set = common::small_set();
    let mut second = set.campaigns[0].clone();
    second.id = "c2".into();
    second.name = "Second".into();
    set.campaigns.push(second);
    {
        let store = Store::open(&db).unwrap();
        let clock = std::sync::Arc::new(adsync::ManualClock::new(common::start_time()));
        let platform = std::sync::Arc::new(adsync::memory::MemoryPlatform::new(clock.clone()));
        let h = common::Harness::new(store, platform, clock);
        let ids = h.pusher.start(&set, common::ACCOUNT).await.unwrap();
        assert_eq!(ids, ["c1-1", "c2-1"]);
    }
    {
        let raw = common::open_raw_sled(&db);
        let tree = raw.open_tree("checkpoints").unwrap();
        tree.insert("p/c1-1", &br#"{"target": 7}"#[..]).unwrap();
        raw.flush().unwrap();
    }
    let store = Store::open(&db).unwrap();
    let clock = std::sync::Arc::new(adsync::ManualClock::new(common::start_time()));
    let platform = std::sync::Arc::new(adsync::memory::MemoryPlatform::new(clock.clone()));
    let h = common::Harness::new(store.clone(), platform.clone(), clock);
    let before = store.record("c1-1").unwrap().unwrap();
    let Err(error) = h.pusher.step("c1-1").await else {
        panic!("a damaged plan must be refused")
    };
    let error = error.to_string();
    assert!(
        error.contains("c1-1") && error.contains("corrupt push state") && error.contains("plan"),
        "{error}"
    );
    assert_eq!(
        store.record("c1-1").unwrap().unwrap(),
        before,
        "nothing written"
    );
    assert_eq!(platform.creations(), 0, "no effect ran");

    // The other sync runs to the end.
    let done = h.pusher.run("c2-1").await.unwrap();
    assert_eq!(done.record.status, adsync::Status::Succeeded);

    // A missing plan is named as missing.
    let mut orphan = before.clone();
    orphan.id = "orphan-1".into();
    orphan.plan = None;
    store
        .commit(adsync::Commit::new().record(&orphan).unwrap())
        .await
        .unwrap();
    let Err(error) = h.runner().get("orphan-1").await else {
        panic!("a missing plan must be refused")
    };
    let error = error.to_string();
    assert!(
        error.contains("orphan-1") && error.contains("plan") && error.contains("missing"),
        "{error}"
    );
}
