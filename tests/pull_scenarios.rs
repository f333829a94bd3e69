//! Pull scenarios against the fake Amazon Ads server, in process, over loopback.
//! Each test starts its own server on 127.0.0.1:0 and shuts it down. Traces of
//! the machine's transitions are insta snapshots in `snapshots/`. Each runs on
//! sled and on PostgreSQL, against the same snapshots.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use adsync::amazon::{
    AmazonClient, AmazonConfig, SpAdGroup, SpCampaign, SpKeyword, State, ThrottleConfig,
};
use adsync::testing::{self as snapshot, AMAZON};
use adsync::Backoff;
use adsync::Status;
use adsync::Step;
use adsync::SystemClock;
use adsync::{PullMode, PullPhase, PullPolicy, Puller, SyncState};
use adsync_fakes::amazon::{wire, wire_json, AmazonFault, Mutation, RequestRecord};
use adsync_fakes::{FakeAmazon, FakeAmazonConfig, FakeAmazonHandle, Generator};

use common::{Backend, TestDb, TestStore};

on_both_stores!(
    full_pull_persists_exactly_the_servers_data,
    a_pull_killed_while_a_page_is_in_flight_resumes_at_that_page_after_a_restart,
    second_pull_upserts_and_drops_entities_gone_from_the_platform,
    bad_responses_fail_clearly_and_persist_nothing,
    a_429_storm_is_ridden_out,
    exhausted_retries_fail_the_pull_and_keep_staged_pages_for_a_resume,
    restart_mode_discards_a_failed_pulls_staging,
    two_profiles_share_one_limiter_that_never_exceeds_the_rate,
    invalid_profile_ids_are_refused_before_anything_is_written,
    a_profile_without_ad_groups_or_keywords_pulls_empty_lists,
    a_garbled_page_mid_pull_is_fetched_again_and_the_pull_completes_in_one_run,
    a_storm_of_garbled_pages_fails_the_pull_naming_the_page_and_keeps_staging,
    #[multi_thread]
    readers_during_a_pull_see_the_old_snapshot_or_the_new_one_never_a_mix,
    statuses_name_an_unreadable_record_and_still_list_the_others,
);

const PROFILE: &str = "3141592653589793";

fn generator() -> Generator {
    Generator {
        campaigns: 3,
        ad_groups_per_campaign: 2,
        keywords_per_ad_group: 4,
        seed: 11,
    }
}

async fn server() -> FakeAmazonHandle {
    let config = FakeAmazonConfig::default().with_profile(PROFILE, generator().generate());
    FakeAmazon::start(config).await.expect("fake server starts")
}

fn throttle(rate: f64, burst: f64) -> ThrottleConfig {
    ThrottleConfig {
        initial_rate: rate,
        min_rate: 1.0,
        max_rate: rate,
        burst,
        ..ThrottleConfig::default()
    }
}

fn client(h: &FakeAmazonHandle, client_attempts: u32, throttle: ThrottleConfig) -> AmazonClient {
    let config = AmazonConfig::new("fake-client-id", "fake-token")
        .with_host(h.base_url())
        .with_timeout(Duration::from_secs(5))
        .with_backoff(Backoff {
            base: Duration::from_millis(5),
            max: Duration::from_millis(40),
            max_attempts: client_attempts,
        })
        .with_throttle(throttle);
    AmazonClient::new(config).expect("client builds")
}

fn policy(page_size: u32, machine_attempts: u32) -> PullPolicy {
    PullPolicy {
        page_size,
        backoff: Backoff {
            base: Duration::from_millis(5),
            max: Duration::from_millis(20),
            max_attempts: machine_attempts,
        },
    }
}

struct Setup {
    store: TestStore,
    puller: Puller,
}

fn puller_with(store: TestStore, client: AmazonClient, policy: PullPolicy) -> Setup {
    let clock = Arc::new(SystemClock);
    let puller = Puller::new(store.clone(), client, clock)
        .with_runner(|runner| runner.with_seed(3))
        .with_policy(policy);
    Setup { store, puller }
}

async fn setup(h: &FakeAmazonHandle, backend: Backend) -> Setup {
    puller_with(
        TestStore::temporary(backend).await,
        client(h, 3, throttle(1000.0, 10.0)),
        policy(4, 2),
    )
}

/// The transitions of the profile's sync (no timestamps) and its status.
async fn trace(s: &Setup) -> String {
    let id = s.puller.sync_id(PROFILE);
    let mut out = String::new();
    for e in s.store.history(&id).await {
        let _ = writeln!(
            out,
            "{:>2}. {:<17} | {}\n    {:<17} | => {} → {}",
            e.seq,
            e.from,
            e.effect.as_deref().unwrap_or("(no effect run)"),
            "",
            e.outcome,
            e.to
        );
    }
    let record = s.store.record(&id).await;
    let _ = writeln!(
        out,
        "\nstatus: {} (last error: {})",
        record.status,
        record.last_error.as_deref().unwrap_or("none")
    );
    out
}

fn requests_by_page(log: &[RequestRecord]) -> HashMap<(String, Option<String>), usize> {
    let mut out = HashMap::new();
    for r in log.iter().filter(|r| r.status == 200) {
        *out.entry((r.path.clone(), r.next_token.clone()))
            .or_insert(0) += 1;
    }
    out
}

async fn assert_persisted_equals_server(s: &Setup, h: &FakeAmazonHandle) {
    let data = h.profile(PROFILE).expect("profile");
    let snap = s
        .puller
        .snapshot(PROFILE)
        .await
        .expect("reads")
        .expect("a snapshot exists");
    assert_eq!(wire_json(&snap.campaigns), wire_json(&data.campaigns));
    assert_eq!(wire_json(&snap.ad_groups), wire_json(&data.ad_groups));
    assert_eq!(wire_json(&snap.keywords), wire_json(&data.keywords));
    assert_eq!(
        wire_json(&s.puller.keywords(PROFILE).await.expect("keywords")),
        wire_json(&data.keywords)
    );
}

/// Data keys under the profile: (staged pages, generations present).
async fn stored_keys(store: &TestStore) -> (usize, Vec<u64>) {
    store
        .read(|store| {
            let staged = store
                .scan_data(&snapshot::stage_prefix(AMAZON, PROFILE))
                .count();
            let mut gens: Vec<u64> = store
                .scan_data(&snapshot::generations_prefix(AMAZON, PROFILE))
                .filter_map(|item| item.ok())
                .filter_map(|(k, _)| snapshot::generation_of(AMAZON, PROFILE, &k))
                .collect();
            gens.dedup();
            (staged, gens)
        })
        .await
        .expect("the store serves reads")
}

async fn full_pull_persists_exactly_the_servers_data(backend: Backend) {
    let h = server().await;
    let s = setup(&h, backend).await;
    let status = s
        .puller
        .pull(PROFILE, PullMode::ResumeOrStart)
        .await
        .expect("pull runs");
    assert_eq!(status.state, SyncState::Completed, "{status:?}");
    assert_persisted_equals_server(&s, &h).await;
    let counts = status.counts.expect("counts");
    assert_eq!(
        (counts.campaigns, counts.ad_groups, counts.keywords),
        (3, 6, 24)
    );
    assert!(status.last_success_at.is_some() && status.finished_at.is_some());
    assert_eq!(
        stored_keys(&s.store).await,
        (0, vec![1]),
        "staging is gone, one generation"
    );

    // Every page was fetched exactly once.
    let log = h.requests();
    assert!(requests_by_page(&log).values().all(|&n| n == 1), "{log:#?}");
    assert_eq!(
        log.len(),
        1 + 2 + 6,
        "campaigns 3/4, ad groups 6/4, keywords 24/4"
    );

    // Look-ups by id go through the chunk directory.
    let data = h.profile(PROFILE).expect("profile");
    let k = &data.keywords[17];
    assert_eq!(
        wire_json(
            &s.puller
                .find::<SpKeyword>(PROFILE, &k.keyword_id)
                .await
                .expect("find")
        ),
        wire_json(&Some(k))
    );
    assert_eq!(
        s.puller
            .find::<SpCampaign>(PROFILE, "0")
            .await
            .expect("find"),
        None
    );
    common_snap("pull_s1_full_pull", trace(&s).await);
    h.shutdown().await;
}

async fn statuses_name_an_unreadable_record_and_still_list_the_others(backend: Backend) {
    let h = server().await;
    let s = setup(&h, backend).await;
    s.puller
        .pull(PROFILE, PullMode::ResumeOrStart)
        .await
        .expect("pull runs");
    s.store.raw_put("r/pull-amazon-999", b"{not json").await;
    let statuses = s.puller.statuses().await.expect("the store serves reads");
    assert_eq!(statuses.len(), 2, "{statuses:?}");
    let (good, bad): (Vec<_>, Vec<_>) = statuses.into_iter().partition(Result::is_ok);
    assert_eq!(good[0].as_ref().expect("ok").profile_id, PROFILE);
    let err = bad[0].as_ref().expect_err("unreadable").to_string();
    assert!(err.contains("pull-amazon-999"), "{err}");
    h.shutdown().await;
}

fn common_snap(name: &str, value: String) {
    snap!(name, value);
}

async fn second_pull_upserts_and_drops_entities_gone_from_the_platform(backend: Backend) {
    let h = server().await;
    let s = setup(&h, backend).await;
    s.puller
        .pull(PROFILE, PullMode::ResumeOrStart)
        .await
        .expect("first pull");
    let before = h.profile(PROFILE).expect("profile");

    // Change the platform between pulls: rename, pause, remove, add.
    let removed_campaign = before.campaigns[2].campaign_id.clone();
    let renamed_keyword = before.keywords[0].keyword_id.clone();
    let removed_keyword = before.keywords[1].keyword_id.clone();
    let mut added = before.keywords[2].clone();
    added.keyword_id = "399999999999999".into();
    added.keyword_text = "new keyword".into();
    for m in [
        Mutation::Rename {
            profile_id: PROFILE.into(),
            kind: wire::ListKind::Keywords,
            id: renamed_keyword.clone(),
            name: "renamed".into(),
        },
        Mutation::SetState {
            profile_id: PROFILE.into(),
            kind: wire::ListKind::AdGroups,
            id: before.ad_groups[0].ad_group_id.clone(),
            state: wire::State::Paused,
        },
        Mutation::Remove {
            profile_id: PROFILE.into(),
            kind: wire::ListKind::Keywords,
            id: removed_keyword.clone(),
        },
        Mutation::Remove {
            profile_id: PROFILE.into(),
            kind: wire::ListKind::Campaigns,
            id: removed_campaign.clone(),
        },
        Mutation::PutKeyword {
            profile_id: PROFILE.into(),
            keyword: added.clone(),
        },
    ] {
        h.mutate(m).expect("mutation applies");
    }
    // The persisted snapshot is still the old one until the next pull completes.
    assert_eq!(
        wire_json(&s.puller.campaigns(PROFILE).await.expect("read")),
        wire_json(&before.campaigns)
    );

    let status = s
        .puller
        .pull(PROFILE, PullMode::ResumeOrStart)
        .await
        .expect("second pull");
    assert_eq!(status.state, SyncState::Completed);
    assert_eq!(status.run, 2);
    assert_persisted_equals_server(&s, &h).await;
    let find_kw = |id: String| {
        let p = &s.puller;
        async move { p.find::<SpKeyword>(PROFILE, &id).await.expect("find") }
    };
    assert_eq!(
        find_kw(renamed_keyword).await.map(|k| k.keyword_text),
        Some("renamed".to_string())
    );
    assert_eq!(
        find_kw(removed_keyword).await,
        None,
        "removed keyword left the snapshot"
    );
    assert_eq!(
        wire_json(&find_kw(added.keyword_id.clone()).await),
        wire_json(&Some(added))
    );
    assert_eq!(
        s.puller
            .find::<SpCampaign>(PROFILE, &removed_campaign)
            .await
            .expect("find"),
        None
    );
    let groups: Vec<SpAdGroup> = s.puller.ad_groups(PROFILE).await.expect("ad groups");
    assert_eq!(groups[0].state, State::Paused);
    // The old generation and the staging are gone.
    assert_eq!(stored_keys(&s.store).await, (0, vec![2]));
    common_snap("pull_s2_second_pull_after_changes", trace(&s).await);
    h.shutdown().await;
}

/// Steps the pull until `stop` holds for its state.
async fn step_until(s: &Setup, stop: impl Fn(&adsync::PullState) -> bool) {
    let id = s.puller.sync_id(PROFILE);
    loop {
        let checkpoint = s.puller.runner().get(&id).await.expect("checkpoint");
        if stop(&checkpoint.state) {
            return;
        }
        match s.puller.step(&id).await.expect("step") {
            Step::Settled(status) => panic!("settled ({status}) before the stop condition"),
            Step::Transitioned(_) => {}
        }
    }
}

/// A crash in the middle of a page fetch: the pull's future is dropped while
/// the keyword page's request is in flight, the store is closed, and a new
/// process resumes from the last checkpoint: the page is asked for again,
/// the staged pages are not.
async fn a_pull_killed_while_a_page_is_in_flight_resumes_at_that_page_after_a_restart(
    backend: Backend,
) {
    let h = server().await;
    let db = TestDb::new(backend);
    let process = |store| puller_with(store, client(&h, 3, throttle(1000.0, 10.0)), policy(4, 2));

    // Process 1 dies while the second keyword page is being answered.
    {
        let s = process(db.open().await);
        s.puller
            .begin(PROFILE, PullMode::ResumeOrStart)
            .await
            .expect("begin");
        step_until(&s, |st| {
            st.phase == PullPhase::FetchingKeywords && st.pages.keywords == 1
        })
        .await;
        h.inject(AmazonFault::Delay { ms: 5_000 }, 1);
        let id = s.puller.sync_id(PROFILE);
        tokio::select! {
            done = s.puller.run(&id) => panic!("the run ended: {done:?}"),
            () = async {
                while h.pending_faults() > 0 {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            } => {}
        }
    }
    let before = h.requests().len();
    assert_eq!(before, 1 + 2 + 1, "the page in flight is not logged");

    // Process 2 resumes.
    let s = process(db.open().await);
    let status = s
        .puller
        .pull(PROFILE, PullMode::ResumeOrStart)
        .await
        .expect("resume");
    assert_eq!(status.state, SyncState::Completed, "{status:?}");
    assert_persisted_equals_server(&s, &h).await;
    let log = h.requests();
    assert!(requests_by_page(&log).values().all(|&n| n == 1), "{log:#?}");
    assert_eq!(log.len(), 9, "every page once, the one in flight included");
    assert_eq!(stored_keys(&s.store).await, (0, vec![1]));
    // The crash left no trace: the history is a clean full pull's.
    common_snap("pull_s1_full_pull", trace(&s).await);
    h.shutdown().await;
}

async fn bad_responses_fail_clearly_and_persist_nothing(backend: Backend) {
    // A body that is not JSON at all is retried instead: see
    // `a_storm_of_garbled_pages_fails_the_pull_naming_the_page_and_keeps_staging`.
    for (fault, name, expected) in [
        (
            AmazonFault::MissingField,
            "missing_field",
            "missing field `state`",
        ),
        (AmazonFault::UnknownEnum, "unknown_enum", "SUSPENDED"),
    ] {
        let h = server().await;
        let s = setup(&h, backend).await;
        s.puller
            .begin(PROFILE, PullMode::ResumeOrStart)
            .await
            .expect("begin");
        // Fail on the second keyword page.
        step_until(&s, |st| {
            st.phase == PullPhase::FetchingKeywords && st.pages.keywords == 1
        })
        .await;
        h.inject(fault, 1);
        let id = s.puller.sync_id(PROFILE);
        let checkpoint = s.puller.run(&id).await.expect("runs");
        assert_eq!(checkpoint.record.status, Status::Failed, "{name}");
        let error = checkpoint.record.last_error.clone().unwrap_or_default();
        assert!(error.contains(expected), "{name}: {error}");
        assert!(
            error.contains("/sp/keywords/list"),
            "{name}: names the endpoint: {error}"
        );
        assert_eq!(
            s.puller.snapshot(PROFILE).await.expect("reads"),
            None,
            "{name}: nothing persisted"
        );
        let status = s
            .puller
            .status(PROFILE)
            .await
            .expect("status")
            .expect("exists");
        assert_eq!(status.state, SyncState::Failed);
        assert_eq!(status.counts, None);
        common_snap(&format!("pull_s3_bad_response_{name}"), trace(&s).await);

        // The staged pages are kept; pulling again resumes at the failed page.
        assert!(stored_keys(&s.store).await.0 > 0, "{name}: staging kept");
        h.clear_requests();
        let status = s
            .puller
            .pull(PROFILE, PullMode::ResumeOrStart)
            .await
            .expect("resume");
        assert_eq!(status.state, SyncState::Completed, "{name}");
        assert_persisted_equals_server(&s, &h).await;
        let log = h.requests();
        assert_eq!(
            log.len(),
            6 - 1,
            "{name}: only the keyword pages not staged yet"
        );
        assert!(log.iter().all(|r| r.path == "/sp/keywords/list"), "{name}");
        h.shutdown().await;
    }
}

async fn a_429_storm_is_ridden_out(backend: Backend) {
    let h = server().await;
    let s = setup(&h, backend).await;
    s.puller
        .begin(PROFILE, PullMode::ResumeOrStart)
        .await
        .expect("begin");
    step_until(&s, |st| st.phase == PullPhase::FetchingAdGroups).await;
    // 2 with Retry-After (1 s would be slow: 0 s), then 3 without: more than the
    // client's 3 attempts, so the machine's own retry is needed too.
    h.inject(
        AmazonFault::Throttle {
            retry_after_secs: Some(0),
        },
        2,
    );
    h.inject(
        AmazonFault::Throttle {
            retry_after_secs: None,
        },
        2,
    );
    let checkpoint = s
        .puller
        .run(&s.puller.sync_id(PROFILE))
        .await
        .expect("runs");
    assert_eq!(checkpoint.record.status, Status::Succeeded);
    assert_persisted_equals_server(&s, &h).await;
    let throttled = h.requests().iter().filter(|r| r.status == 429).count();
    assert_eq!(throttled, 4);
    assert!(
        checkpoint.record.failed_effects >= 1,
        "the machine retried the page"
    );
    common_snap("pull_s4_429_storm", trace(&s).await);
    h.shutdown().await;
}

async fn exhausted_retries_fail_the_pull_and_keep_staged_pages_for_a_resume(backend: Backend) {
    let h = server().await;
    let s = setup(&h, backend).await;
    s.puller
        .begin(PROFILE, PullMode::ResumeOrStart)
        .await
        .expect("begin");
    step_until(&s, |st| {
        st.phase == PullPhase::FetchingKeywords && st.pages.keywords == 3
    })
    .await;
    // Client: 3 attempts per call; machine: 2 calls → 6 failures fail the pull.
    h.inject(AmazonFault::ServerError { status: 503 }, 6);
    let id = s.puller.sync_id(PROFILE);
    let checkpoint = s.puller.run(&id).await.expect("runs");
    assert_eq!(checkpoint.record.status, Status::Failed);
    let error = checkpoint.record.last_error.clone().unwrap_or_default();
    assert!(error.contains("gave up after 2 attempt(s)"), "{error}");
    assert!(error.contains("staged pages are kept"), "{error}");
    let staged_before = stored_keys(&s.store).await.0;
    assert_eq!(staged_before, 1 + 2 + 3);
    assert_eq!(s.puller.snapshot(PROFILE).await.expect("read"), None);
    common_snap("pull_s5_retries_exhausted", trace(&s).await);

    h.clear_requests();
    let status = s
        .puller
        .pull(PROFILE, PullMode::ResumeOrStart)
        .await
        .expect("resume");
    assert_eq!(status.state, SyncState::Completed);
    assert_eq!(h.requests().len(), 3, "keyword pages 4..6 only");
    assert_persisted_equals_server(&s, &h).await;
    h.shutdown().await;
}

async fn restart_mode_discards_a_failed_pulls_staging(backend: Backend) {
    let h = server().await;
    let s = setup(&h, backend).await;
    s.puller
        .begin(PROFILE, PullMode::ResumeOrStart)
        .await
        .expect("begin");
    step_until(&s, |st| st.phase == PullPhase::FetchingAdGroups).await;
    h.inject(AmazonFault::UnknownEnum, 1);
    let id = s.puller.sync_id(PROFILE);
    s.puller.run(&id).await.expect("runs");
    h.clear_requests();
    let status = s
        .puller
        .pull(PROFILE, PullMode::Restart)
        .await
        .expect("restart");
    assert_eq!(status.state, SyncState::Completed);
    assert_eq!(status.run, 2);
    assert_eq!(h.requests().len(), 9, "everything fetched again");
    assert_persisted_equals_server(&s, &h).await;
    h.shutdown().await;
}

/// Most requests that arrived at the server within any window of `window`.
fn max_per_window(log: &[RequestRecord], window: Duration) -> usize {
    (0..log.len())
        .map(|i| {
            log[i..]
                .iter()
                .take_while(|r| r.at - log[i].at < window)
                .count()
        })
        .max()
        .unwrap_or(0)
}

async fn two_profiles_share_one_limiter_that_never_exceeds_the_rate(backend: Backend) {
    // Two profiles pulled concurrently through one client: every request of
    // both passes the same limiter, counted at the server per window.
    let data = Generator {
        campaigns: 10,
        ad_groups_per_campaign: 2,
        keywords_per_ad_group: 2,
        seed: 5,
    };
    let config = FakeAmazonConfig::default()
        .with_profile("111", data.generate())
        .with_profile("222", data.generate());
    let h = FakeAmazon::start(config).await.expect("server");
    let (rate, burst) = (20.0, 1.0);
    let limited = ThrottleConfig {
        initial_rate: rate,
        min_rate: rate,
        max_rate: rate,
        burst,
        ..ThrottleConfig::default()
    };
    let s = puller_with(
        TestStore::temporary(backend).await,
        client(&h, 3, limited),
        policy(2, 2),
    );
    let puller = Arc::new(s.puller);
    let tasks: Vec<_> = ["111", "222"]
        .into_iter()
        .map(|p| {
            let puller = puller.clone();
            tokio::spawn(async move { puller.pull(p, PullMode::ResumeOrStart).await })
        })
        .collect();
    for t in tasks {
        let status = t.await.expect("task").expect("pull");
        assert_eq!(status.state, SyncState::Completed);
    }
    let log = h.requests();
    // Per profile: 5 campaign pages, 10 ad group pages, 20 keyword pages.
    assert_eq!(log.len(), 70);
    let peak = max_per_window(&log, Duration::from_secs(1));
    assert!(
        peak <= (rate + burst) as usize,
        "{peak} requests within one second at the server"
    );
    let half = max_per_window(&log, Duration::from_millis(500));
    assert!(
        half <= (rate / 2.0 + burst) as usize,
        "{half} requests within half a second at the server"
    );
    let by_profile: BTreeMap<_, usize> = log.iter().fold(BTreeMap::new(), |mut m, r| {
        *m.entry(r.profile_id.clone().unwrap_or_default())
            .or_insert(0) += 1;
        m
    });
    assert_eq!(
        by_profile.values().copied().collect::<Vec<_>>(),
        vec![35, 35]
    );
    h.shutdown().await;
}

async fn invalid_profile_ids_are_refused_before_anything_is_written(backend: Backend) {
    let h = server().await;
    let s = setup(&h, backend).await;
    for bad in ["", "a/b", "x y", &"9".repeat(65)] {
        let err = s
            .puller
            .pull(bad, PullMode::ResumeOrStart)
            .await
            .expect_err("refused");
        assert!(err.to_string().contains("invalid profile id"), "{err}");
    }
    assert!(s.store.list().await.is_empty());
    assert!(h.requests().is_empty());
    h.shutdown().await;
}

async fn readers_during_a_pull_see_the_old_snapshot_or_the_new_one_never_a_mix(backend: Backend) {
    let big = Generator {
        campaigns: 20,
        ad_groups_per_campaign: 10,
        keywords_per_ad_group: 25,
        seed: 3,
    };
    let config = FakeAmazonConfig::default().with_profile(PROFILE, big.generate());
    let h = FakeAmazon::start(config).await.expect("server");
    let s = puller_with(
        TestStore::temporary(backend).await,
        client(&h, 3, throttle(1000.0, 10.0)),
        policy(1000, 2),
    );
    s.puller
        .pull(PROFILE, PullMode::ResumeOrStart)
        .await
        .expect("first pull");
    let old = h.profile(PROFILE).expect("profile");
    // Change every keyword's text, so a mixed read would show it.
    for k in &old.keywords {
        h.mutate(Mutation::Rename {
            profile_id: PROFILE.into(),
            kind: wire::ListKind::Keywords,
            id: k.keyword_id.clone(),
            name: format!("{} v2", k.keyword_text),
        })
        .expect("rename");
    }
    let new = h.profile(PROFILE).expect("profile");

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (store, stop) = (s.store.clone(), stop.clone());
        let whole =
            |d: &adsync_fakes::ProfileData| wire_json(&(&d.campaigns, &d.ad_groups, &d.keywords));
        let (old, new) = (whole(&old), whole(&new));
        tokio::spawn(async move {
            let mut seen = std::collections::BTreeSet::new();
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) || reads == 0 {
                let snap = store
                    .read(|r| snapshot::read_snapshot(r, AMAZON, PROFILE))
                    .await
                    .expect("the store serves reads")
                    .expect("reads")
                    .expect("exists");
                let got = wire_json(&(&snap.campaigns, &snap.ad_groups, &snap.keywords));
                assert!(
                    got == old || got == new,
                    "generation {} is neither the old nor the new data",
                    snap.info.generation
                );
                seen.insert(snap.info.generation);
                reads += 1;
            }
            (seen, reads)
        })
    };
    s.puller
        .pull(PROFILE, PullMode::ResumeOrStart)
        .await
        .expect("second pull");
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let (seen, reads) = reader.await.expect("reader");
    assert!(reads > 0 && !seen.is_empty());
    assert_persisted_equals_server(&s, &h).await;
    h.shutdown().await;
}

async fn a_profile_without_ad_groups_or_keywords_pulls_empty_lists(backend: Backend) {
    let empty = Generator {
        campaigns: 2,
        ad_groups_per_campaign: 0,
        keywords_per_ad_group: 0,
        seed: 1,
    };
    let config = FakeAmazonConfig::default()
        .with_profile(PROFILE, empty.generate())
        .with_profile("999", adsync_fakes::ProfileData::default());
    let h = FakeAmazon::start(config).await.expect("server");
    let s = setup(&h, backend).await;
    let status = s
        .puller
        .pull(PROFILE, PullMode::ResumeOrStart)
        .await
        .expect("pull");
    assert_eq!(status.state, SyncState::Completed, "{status:?}");
    let counts = status.counts.expect("counts");
    assert_eq!(
        (counts.campaigns, counts.ad_groups, counts.keywords),
        (2, 0, 0)
    );
    assert_persisted_equals_server(&s, &h).await;
    let status = s
        .puller
        .pull("999", PullMode::ResumeOrStart)
        .await
        .expect("pull");
    assert_eq!(status.state, SyncState::Completed, "{status:?}");
    assert_eq!(status.counts.map(|c| c.total()), Some(0));
    h.shutdown().await;
}

async fn a_garbled_page_mid_pull_is_fetched_again_and_the_pull_completes_in_one_run(
    backend: Backend,
) {
    let h = server().await;
    let s = setup(&h, backend).await;
    // 1 campaign page, 2 ad group pages and 2 keyword pages answer normally;
    // the first answer to the third keyword page is cut in half.
    h.inject(AmazonFault::Pass, 1 + 2 + 2);
    h.inject(AmazonFault::InvalidJson, 1);
    let status = s
        .puller
        .pull(PROFILE, PullMode::ResumeOrStart)
        .await
        .expect("pull runs");
    assert_eq!(status.state, SyncState::Completed, "{status:?}");
    assert_eq!(h.pending_faults(), 0);
    assert_persisted_equals_server(&s, &h).await;
    let log = h.requests();
    assert_eq!(log.len(), 9 + 1, "one page more than a clean pull");
    let keyword_pages: Vec<&RequestRecord> = log
        .iter()
        .filter(|r| r.path == "/sp/keywords/list")
        .collect();
    assert_eq!(
        keyword_pages[2].next_token, keyword_pages[3].next_token,
        "the garbled page, asked for again"
    );
    let by_page = requests_by_page(&log);
    assert_eq!(by_page.values().filter(|&&n| n == 2).count(), 1, "{log:#?}");
    assert_eq!(
        by_page[&(
            "/sp/keywords/list".to_string(),
            keyword_pages[2].next_token.clone()
        )],
        2
    );
    // The client absorbed it: the machine saw no failure.
    let record = s.store.record(&s.puller.sync_id(PROFILE)).await;
    assert_eq!(record.failed_effects, 0);
    h.shutdown().await;
}

async fn a_storm_of_garbled_pages_fails_the_pull_naming_the_page_and_keeps_staging(
    backend: Backend,
) {
    let h = server().await;
    let s = setup(&h, backend).await;
    s.puller
        .begin(PROFILE, PullMode::ResumeOrStart)
        .await
        .expect("begin");
    step_until(&s, |st| {
        st.phase == PullPhase::FetchingKeywords && st.pages.keywords == 1
    })
    .await;
    // Client: 3 attempts per call; machine: 2 calls → 6 garbled answers spend
    // the budget, exactly as 6 answers of 503 would.
    h.inject(AmazonFault::InvalidJson, 6);
    let id = s.puller.sync_id(PROFILE);
    let checkpoint = s.puller.run(&id).await.expect("runs");
    assert_eq!(checkpoint.record.status, Status::Failed);
    assert_eq!(h.pending_faults(), 0);
    let error = checkpoint.record.last_error.clone().unwrap_or_default();
    for expected in [
        "/sp/keywords/list page 1",
        "page at nextToken",
        "unparseable response body after 3 attempt(s)",
        "at `keywords[",
        "EOF while parsing",
        "column",
        "gave up after 2 attempt(s)",
        "staged pages are kept",
    ] {
        assert!(error.contains(expected), "{expected:?} missing: {error}");
    }
    assert_eq!(stored_keys(&s.store).await.0, 1 + 2 + 1, "staging kept");
    assert_eq!(s.puller.snapshot(PROFILE).await.expect("reads"), None);
    common_snap("pull_s3_bad_response_invalid_json", trace(&s).await);

    h.clear_requests();
    let status = s
        .puller
        .pull(PROFILE, PullMode::ResumeOrStart)
        .await
        .expect("resume");
    assert_eq!(status.state, SyncState::Completed);
    assert_eq!(
        h.requests().len(),
        6 - 1,
        "the keyword pages not staged yet"
    );
    assert_persisted_equals_server(&s, &h).await;
    h.shutdown().await;
}
