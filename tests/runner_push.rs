//! The push runner end to end on the memory platform: what a runner keeps in
//! memory, what it writes where, and how old records still read. On sled and
//! on PostgreSQL (both keep the same key layout, which the tests look at).

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use adsync::memory::MemoryPlatform;
use adsync::CampaignSet;
use adsync::ManualClock;
use adsync::Status;
use adsync::{AdapterEffects, PushMachine, Pusher};
use adsync::{Commit, RECORD_FORMAT};
use adsync::{Runner, Step};
use common::{Backend, TestStore};

on_both_stores!(
    a_settled_sync_leaves_nothing_in_the_fresh_cache,
    a_record_head_is_written_once_and_format_1_records_still_read_and_step,
    progress_segments_written_with_checkpoints_read_back_at_every_step,
    started_syncs_wait_their_turn_and_run_fresh_a_few_at_a_time,
    resume_all_names_a_record_it_cannot_read_and_resumes_the_others,
);

/// The first state of a push of `campaign` to account `a2` on the memory platform.
fn memory_state(campaign: &adsync::Campaign) -> adsync::PushState {
    adsync::PushState::new(
        adsync::Target {
            platform: "memory".into(),
            account_id: "a2".into(),
            keyword_model: adsync::KeywordModel::Entities,
        },
        campaign,
        &BTreeMap::new(),
        adsync::PushPolicy::default(),
        time::OffsetDateTime::UNIX_EPOCH,
    )
}

/// A pusher (and its runner) over a temporary store and an in-memory
/// platform, on a paused clock.
async fn memory_push(backend: Backend) -> (Arc<MemoryPlatform>, Pusher) {
    let store = TestStore::temporary(backend).await;
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::UNIX_EPOCH));
    let platform = Arc::new(MemoryPlatform::new(clock.clone()));
    let pusher = Pusher::new(store, platform.clone(), clock);
    (platform, pusher)
}

/// A finished sync's state (its plan and every entity) must not stay in
/// the runner: a large set's runner held all of them until it was dropped.
async fn a_settled_sync_leaves_nothing_in_the_fresh_cache(backend: Backend) {
    let set = CampaignSet::from_json(
        r#"{"name": "s", "campaigns": [
            {"id": "c1", "name": "Spring", "objective": "CLICKS",
             "ad_groups": [{"id": "g1", "name": "Trail", "ads": [
                {"id": "a1", "name": "Trail video", "post_id": "t3_abc"}]}]},
            {"id": "c2", "name": "Summer", "objective": "CLICKS"}]}"#,
        "inline.json",
    )
    .expect("set");
    let (platform, pusher) = memory_push(backend).await;
    let runner = pusher.runner();
    let report = pusher.push(&set, "a2").await.expect("push");
    assert!(report.all_synced(), "{report:?}");
    assert_eq!(platform.creations(), 4);
    let held: Vec<String> = runner.fresh_syncs().into_iter().map(|(id, _)| id).collect();
    assert!(held.is_empty(), "still held: {held:?}");
    let started = runner
        .start(
            "c3-1",
            memory_state(&set.campaigns[0]),
            BTreeMap::new(),
            &[],
        )
        .await
        .expect("start");
    assert!(
        started.record.plan.is_none(),
        "the plan text is kept in memory"
    );
    let stored = runner.get("c3-1").await.expect("stored");
    assert!(
        stored.record.plan.is_some(),
        "the store gives the plan back"
    );
    assert_eq!(stored.state, started.state);
    // Read back from the store, the final checkpoints are what the run returned.
    for c in &report.campaigns {
        let stored = runner.get(&c.sync).await.expect("stored");
        assert_eq!(stored.record.status, Status::Succeeded);
    }
}

/// A format-2 record carries its head (kind, start time, labels) once,
/// under its own key; a format-1 record (every field in `r/`, as the
/// previous version wrote it) still reads, and its sync keeps format 1.
async fn a_record_head_is_written_once_and_format_1_records_still_read_and_step(backend: Backend) {
    let set = CampaignSet::from_json(
        r#"{"name": "s", "campaigns": [
            {"id": "c1", "name": "Spring", "objective": "CLICKS",
             "ad_groups": [{"id": "g1", "name": "Trail", "ads": [
                {"id": "a1", "name": "Trail video", "post_id": "t3_abc"}]}]}]}"#,
        "inline.json",
    )
    .expect("set");
    let store = TestStore::temporary(backend).await;
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::UNIX_EPOCH));
    let platform = Arc::new(MemoryPlatform::new(clock.clone()));
    let effects = AdapterEffects::new(platform.clone());
    let runner = || Runner::<PushMachine>::new(store.clone(), clock.clone());
    let state = memory_state(&set.campaigns[0]);
    let labels = BTreeMap::from([("set_file".to_string(), "/srv/sets/spring.json".to_string())]);
    let raw = |key: &'static str| {
        let store = store.clone();
        async move {
            let value = store.raw_get(key).await;
            value.map(|v| String::from_utf8_lossy(&v).into_owned())
        }
    };
    let writer = runner();
    writer
        .start("c1-1", state, labels.clone(), &[])
        .await
        .expect("start");
    let Step::Transitioned(first) = writer.step("c1-1", &effects).await.expect("step") else {
        panic!("a step")
    };
    let body = raw("r/c1-1").await.expect("record");
    assert!(body.contains(r#""format":2"#), "{body}");
    for static_field in ["spring.json", "created_at", "\"kind\""] {
        assert!(!body.contains(static_field), "{static_field} in {body}");
    }
    let head = raw("m/c1-1").await.expect("head");
    assert!(head.contains("/srv/sets/spring.json"), "{head}");
    let stored = runner().get("c1-1").await.expect("reads");
    assert_eq!(stored.record.labels, labels);
    assert_eq!(stored.record.kind, "push");
    assert_eq!(stored.state, first.state);

    // The same sync as the previous version stored it: format 1, no head.
    let mut old = stored.record.clone();
    old.format = 1;
    store
        .commit(Commit::new().record(&old).expect("encodes"))
        .await
        .expect("commit");
    store.raw_remove("m/c1-1").await;
    assert!(raw("r/c1-1").await.expect("record").contains("spring.json"));
    let resumed = runner();
    assert_eq!(resumed.get("c1-1").await.expect("reads").record, old);
    let Step::Transitioned(second) = resumed.step("c1-1", &effects).await.expect("step") else {
        panic!("a step")
    };
    let body = raw("r/c1-1").await.expect("record");
    assert!(
        body.contains(r#""format":1"#) && body.contains("spring.json"),
        "{body}"
    );
    let stored = runner().get("c1-1").await.expect("reads");
    assert_eq!((stored.record.seq, &stored.state), (2, &second.state));
    assert_eq!(stored.record.labels, labels);

    // A format-2 record whose head is gone is named, not misread.
    let mut new = stored.record.clone();
    new.format = RECORD_FORMAT;
    store
        .commit(Commit::new().record(&new).expect("encodes"))
        .await
        .expect("commit");
    let Err(error) = runner().get("c1-1").await else {
        panic!("a record without its head must be refused")
    };
    let error = error.to_string();
    assert!(
        error.contains("c1-1") && error.contains("head") && error.contains("missing"),
        "{error}"
    );
}

/// A sync whose progress is partly in segments reads back, from a runner
/// that did not write it, as the state its writer held, at every step.
async fn progress_segments_written_with_checkpoints_read_back_at_every_step(backend: Backend) {
    let ads: Vec<serde_json::Value> = (0..150)
        .map(|a| serde_json::json!({"id": format!("a{a}"), "name": format!("Ad {a}"), "post_id": "t3_x"}))
        .collect();
    let set = serde_json::json!({"name": "s", "campaigns": [
        {"id": "c1", "name": "Spring", "objective": "CLICKS",
         "ad_groups": [{"id": "g1", "name": "Trail", "ads": ads}]}]});
    let set = CampaignSet::from_json(&set.to_string(), "inline.json").expect("set");
    let store = TestStore::temporary(backend).await;
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::UNIX_EPOCH));
    let platform = Arc::new(MemoryPlatform::new(clock.clone()));
    let effects = AdapterEffects::new(platform);
    let runner = Runner::<PushMachine>::new(store.clone(), clock.clone());
    let reader = Runner::<PushMachine>::new(store, clock);
    let state = memory_state(&set.campaigns[0]);
    runner
        .start("c1-1", state, BTreeMap::new(), &[])
        .await
        .expect("start");
    let mut steps = 0;
    let mut longest = 0;
    while let Step::Transitioned(t) = runner.step("c1-1", &effects).await.expect("step") {
        steps += 1;
        let stored = reader.get("c1-1").await.expect("stored");
        assert_eq!(stored.state, t.state, "step {steps}");
        let progress: serde_json::Value =
            serde_json::from_str(stored.record.state.get()).expect("json");
        let rows = progress["entities"].as_array().map_or(0, Vec::len);
        longest = longest.max(rows);
    }
    assert_eq!(steps, 152);
    let stored = reader.get("c1-1").await.expect("stored");
    assert_eq!(stored.record.status, Status::Succeeded);
    // The full chunks of the 152 entities, in order.
    let chunks: Vec<u32> = stored.record.segments.iter().map(|(n, _)| *n).collect();
    assert!(!chunks.is_empty() && chunks.len() < 152, "{chunks:?}");
    assert!(
        chunks.iter().enumerate().all(|(i, n)| *n as usize == i),
        "{chunks:?}"
    );
    // No checkpoint listed more rows than a chunk holds (a few dozen at
    // most), however far the push.
    assert!(longest <= 64, "a checkpoint of {longest} rows");
}

/// A set's started syncs wait their turn, and a sync this runner started
/// is still fresh when it runs: created, never looked up as if it had
/// been restarted.
async fn started_syncs_wait_their_turn_and_run_fresh_a_few_at_a_time(backend: Backend) {
    let set = CampaignSet::from_json(
        r#"{"name": "s", "campaigns": [
            {"id": "c1", "name": "Spring", "objective": "CLICKS"},
            {"id": "c2", "name": "Summer", "objective": "CLICKS"},
            {"id": "c3", "name": "Autumn", "objective": "CLICKS"}]}"#,
        "inline.json",
    )
    .expect("set");
    let (platform, pusher) = memory_push(backend).await;
    let pusher = pusher.with_max_running(1);
    let runner = pusher.runner();
    let ids = pusher.start(&set, "a2").await.expect("start");
    {
        let fresh = runner.fresh_syncs();
        assert_eq!(fresh.len(), 3);
        assert!(fresh.iter().all(|(_, seq)| *seq == 0));
    }
    let report = pusher.run_all(&ids).await;
    assert!(report.all_synced(), "{report:?}");
    assert_eq!(platform.creations(), 3);
    let calls = platform.calls();
    // Each sync's listing, then its create.
    assert!(
        calls
            .iter()
            .filter(|c| c.op != adsync::memory::Op::List)
            .all(|c| c.op == adsync::memory::Op::Create),
        "{calls:?}"
    );
}

async fn resume_all_names_a_record_it_cannot_read_and_resumes_the_others(backend: Backend) {
    let store = TestStore::temporary(backend).await;
    let clock = Arc::new(ManualClock::new(time::OffsetDateTime::UNIX_EPOCH));
    let platform = Arc::new(MemoryPlatform::new(clock.clone()));
    let pusher = Pusher::new(store.clone(), platform, clock);
    let set =
        CampaignSet::from_json(adsync_fakes::fixtures::TWO_CAMPAIGNS, "two.json").expect("set");
    let ids = pusher.start(&set, "acct").await.expect("started");
    // The first sync's record is damaged on disk.
    store.raw_put(&format!("r/{}", ids[0]), b"{not json").await;
    let report = pusher.resume_all().await.expect("lists");
    assert_eq!(
        report.campaigns.len(),
        1,
        "the readable sync ran: {report:?}"
    );
    assert_eq!(report.campaigns[0].sync, ids[1]);
    assert_eq!(report.errors.len(), 1, "{:?}", report.errors);
    assert!(
        report.errors[0].contains(&ids[0]) && report.errors[0].contains("could not be read"),
        "{}",
        report.errors[0]
    );
}
