//! Converging pushes against the fake Reddit server: a push reads what the
//! platform holds first, then writes only what differs. Each scenario counts
//! the requests the server received and snapshots the writes (method, path,
//! body) and the push's report.

mod common;

use std::sync::Arc;
use std::time::Duration;

use adsync::converge::{Action, PlanOptions};
use adsync::reddit::{RedditAdapter, RedditConfig};
use adsync::{CampaignSet, EntitySpec, Parent, PushAdapter, PushPhase, SetReport};
use adsync::{Pusher, Secret, Store};
use adsync_fakes::{FakeReddit, FakeRedditConfig, FakeRedditHandle};
use common::ACCOUNT;

macro_rules! snapshot {
    ($name:expr, $value:expr) => {{
        let value = $value;
        insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!($name, value);
        });
    }};
}

const SET: &str = r#"{"name": "shoes", "campaigns": [
  {"id": "c1", "name": "Spring sale", "objective": "CLICKS", "status": "ACTIVE",
   "goal": {"type": "DAILY_SPEND", "value_micros": 5000000},
   "ad_groups": [
    {"id": "g1", "name": "Trail runners", "status": "ACTIVE", "bid_value_micros": 1500000,
     "ads": [{"id": "a1", "name": "Trail ad", "post_id": "t3_trail"},
             {"id": "a2", "name": "Mud ad", "post_id": "t3_mud"}],
     "keywords": [{"id": "k1", "text": "trail shoes"}, {"id": "k2", "text": "running"}]},
    {"id": "g2", "name": "Road runners", "status": "ACTIVE",
     "ads": [{"id": "a3", "name": "Road ad", "post_id": "t3_road"}],
     "keywords": [{"id": "k3", "text": "road shoes"}]}]}]}"#;

fn set() -> CampaignSet {
    CampaignSet::from_json(SET, "set.json").expect("the set parses")
}

struct Scene {
    fake: FakeRedditHandle,
    adapter: Arc<RedditAdapter>,
    store: Store,
}

/// Retries that do not make a test wait.
fn quick() -> adsync::Backoff {
    adsync::Backoff {
        base: Duration::from_millis(1),
        max: Duration::from_millis(2),
        max_attempts: 2,
    }
}

impl Scene {
    async fn start() -> Scene {
        Scene::start_with(adsync::Backoff::default()).await
    }

    async fn start_with(backoff: adsync::Backoff) -> Scene {
        let fake = FakeReddit::start(FakeRedditConfig::default())
            .await
            .expect("fake reddit");
        let adapter = Arc::new(
            RedditAdapter::new(RedditConfig {
                base_url: fake.base_url(),
                token: Some(Secret::new(fake.config().token.clone())),
                timeout: Duration::from_secs(5),
                backoff,
                ..RedditConfig::default()
            })
            .expect("adapter"),
        );
        Scene {
            fake,
            adapter,
            store: Store::temporary().expect("store"),
        }
    }

    fn pusher(&self) -> Pusher {
        Pusher::new(
            self.store.clone(),
            self.adapter.clone(),
            Arc::new(adsync::SystemClock),
        )
    }

    /// Pushes `set` (first clearing the request log) and returns the report
    /// with the writes the server received.
    async fn push(&self, pusher: Pusher, set: &CampaignSet) -> (SetReport, Vec<String>) {
        self.fake.clear_requests();
        let report = pusher.push(set, ACCOUNT).await.expect("push");
        (report, self.writes())
    }

    /// Every POST and PATCH received since the log was cleared:
    /// `METHOD path {data}`.
    fn writes(&self) -> Vec<String> {
        self.fake
            .requests()
            .into_iter()
            .filter(|r| r.method != "GET")
            .map(|r| {
                format!(
                    "{} {} {}",
                    r.method,
                    r.path,
                    r.data.map(|d| d.to_string()).unwrap_or_default()
                )
            })
            .collect()
    }

    /// The platform id of `local` from `report`.
    fn id_of(report: &SetReport, local: &str) -> String {
        report.campaigns[0]
            .entities
            .iter()
            .find(|e| e.local_id == local)
            .and_then(|e| e.platform_id.clone())
            .unwrap_or_else(|| panic!("{local} has an id"))
    }

    /// An edit made by hand in Reddit's UI: a whole-entity PATCH.
    async fn edit_in_ui(&self, id: &str, spec: EntitySpec) {
        self.adapter
            .update(
                &Parent {
                    account_id: ACCOUNT.into(),
                    parent_id: None,
                },
                id,
                &spec,
            )
            .await
            .expect("an edit in the UI");
    }
}

/// What a snapshot shows: the writes, then each entity's result.
fn shown(report: &SetReport, writes: &[String]) -> String {
    let mut out = format!("{} write(s)\n", writes.len());
    for w in writes {
        out.push_str(&format!("  {w}\n"));
    }
    for c in &report.campaigns {
        out.push_str(&format!(
            "campaign {}: {:?}{}\n",
            c.campaign,
            c.status,
            c.last_error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
        for e in &c.entities {
            let result = serde_json::to_value(&e.result).expect("result encodes");
            out.push_str(&format!(
                "  {} {} {} {}\n",
                e.kind,
                e.local_id,
                e.platform_id.as_deref().unwrap_or("-"),
                result
            ));
            for o in &e.overwritten {
                out.push_str(&format!(
                    "    drift overwritten: {} platform {} written {} → {}\n",
                    o.field, o.platform, o.written, o.desired
                ));
            }
        }
    }
    out
}

#[tokio::test]
async fn an_unchanged_re_push_makes_no_write_request() {
    let scene = Scene::start().await;
    let (first, _) = scene.push(scene.pusher(), &set()).await;
    assert!(first.all_synced());
    let (report, writes) = scene.push(scene.pusher(), &set()).await;
    assert!(report.all_synced());
    assert!(writes.is_empty(), "{writes:?}");
    // Reads only: the account's campaigns, the campaign's groups, each
    // group's ads.
    assert_eq!(scene.fake.requests().len(), 1 + 1 + 2);
    snapshot!("converge_push_unchanged", shown(&report, &writes));
}

#[tokio::test]
async fn one_changed_bid_is_one_patch_holding_that_field() {
    let scene = Scene::start().await;
    scene.push(scene.pusher(), &set()).await;
    let mut changed = set();
    changed.campaigns[0].ad_groups[0].bid_value_micros = Some(2_500_000);
    let (report, writes) = scene.push(scene.pusher(), &changed).await;
    assert!(report.all_synced());
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert!(
        writes[0].ends_with(r#"{"bid_value":2500000}"#),
        "{writes:?}"
    );
    snapshot!("converge_push_one_bid", shown(&report, &writes));
}

#[tokio::test]
async fn a_field_left_out_of_the_set_is_cleared_and_keywords_converge_as_a_set() {
    let scene = Scene::start().await;
    scene.push(scene.pusher(), &set()).await;
    let mut changed = set();
    changed.campaigns[0].goal = None;
    changed.campaigns[0].ad_groups[0].bid_value_micros = None;
    // The same keywords in another order: unchanged. The second group's
    // keywords removed: its targeting is cleared.
    changed.campaigns[0].ad_groups[0].keywords.reverse();
    changed.campaigns[0].ad_groups[1].keywords.clear();
    let (report, writes) = scene.push(scene.pusher(), &changed).await;
    assert!(report.all_synced());
    assert_eq!(writes.len(), 3, "{writes:?}");
    let entities = scene.fake.entities();
    let campaign = entities
        .campaigns
        .iter()
        .find(|c| c["name"] == "Spring sale")
        .expect("the campaign");
    assert!(campaign["goal_type"].is_null(), "{campaign}");
    snapshot!("converge_push_cleared_fields", shown(&report, &writes));
}

#[tokio::test]
async fn a_removed_ad_is_left_without_prune_and_archived_with_it() {
    let scene = Scene::start().await;
    let (first, _) = scene.push(scene.pusher(), &set()).await;
    let a2 = Scene::id_of(&first, "a2");
    let mut smaller = set();
    smaller.campaigns[0].ad_groups[0]
        .ads
        .retain(|a| a.id != "a2");

    let plans = scene
        .pusher()
        .plan(&smaller, ACCOUNT, PlanOptions::default())
        .await
        .expect("plan");
    assert!(plans[0]
        .entries
        .iter()
        .any(|e| e.local_id == "a2" && e.action == Action::Removed));
    let (left, writes) = scene.push(scene.pusher(), &smaller).await;
    assert!(left.all_synced());
    assert!(writes.is_empty(), "{writes:?}");
    snapshot!("converge_push_removed_left", shown(&left, &writes));

    let (pruned, writes) = scene.push(scene.pusher().with_prune(true), &smaller).await;
    assert!(pruned.all_synced());
    assert_eq!(
        writes,
        vec![format!(
            r#"PATCH /api/v3/ads/{a2} {{"configured_status":"ARCHIVED"}}"#
        )]
    );
    snapshot!("converge_push_removed_pruned", shown(&pruned, &writes));

    // Archived stays archived: nothing more to prune.
    let (again, writes) = scene.push(scene.pusher().with_prune(true), &smaller).await;
    assert!(again.all_synced());
    assert!(writes.is_empty(), "{writes:?}");
}

#[tokio::test]
async fn a_hand_made_entity_is_refused_before_any_write_or_adopted_with_the_flag() {
    let scene = Scene::start().await;
    // Pushed from another store (another directory): this one knows nothing.
    let elsewhere = Pusher::new(
        Store::temporary().expect("store"),
        scene.adapter.clone(),
        Arc::new(adsync::SystemClock),
    );
    let (made, _) = scene.push(elsewhere, &set()).await;
    assert!(made.all_synced());
    let before = scene.fake.entities();

    let (refused, writes) = scene.push(scene.pusher(), &set()).await;
    assert!(writes.is_empty(), "{writes:?}");
    assert_eq!(refused.campaigns[0].status, adsync::Status::Failed);
    let error = refused.campaigns[0].last_error.clone().unwrap_or_default();
    assert!(
        error.starts_with("refused before any write") && error.contains("--adopt-existing"),
        "{error}"
    );
    snapshot!("converge_push_unmanaged_refused", shown(&refused, &writes));

    let (adopted, writes) = scene
        .push(scene.pusher().with_adopt_existing(true), &set())
        .await;
    assert!(adopted.all_synced());
    assert!(writes.is_empty(), "{writes:?}");
    assert_eq!(scene.fake.entities(), before, "nothing created");
    snapshot!("converge_push_unmanaged_adopted", shown(&adopted, &writes));

    // Adopted: the next push knows them.
    let (next, writes) = scene.push(scene.pusher(), &set()).await;
    assert!(next.all_synced());
    assert!(writes.is_empty(), "{writes:?}");
}

#[tokio::test]
async fn drift_is_reported_by_plan_and_drift_and_restored_by_the_push() {
    let scene = Scene::start().await;
    let (first, _) = scene.push(scene.pusher(), &set()).await;
    let g1 = Scene::id_of(&first, "g1");
    let mut edited = set().campaigns[0].ad_groups[0].clone();
    edited.bid_value_micros = Some(9_900_000);
    edited.keywords.clear();
    scene.edit_in_ui(&g1, EntitySpec::AdGroup(edited)).await;

    let drift = scene.pusher().drift(ACCOUNT).await.expect("drift");
    assert_eq!(drift[0].entities.len(), 1, "{drift:?}");
    let plans = scene
        .pusher()
        .plan(&set(), ACCOUNT, PlanOptions::default())
        .await
        .expect("plan");
    assert_eq!(plans[0].summary().drifted, 1, "{}", plans[0]);

    let (report, writes) = scene.push(scene.pusher(), &set()).await;
    assert!(report.all_synced());
    assert_eq!(
        writes,
        vec![format!(
            r#"PATCH /api/v3/ad_groups/{g1} {{"bid_value":1500000}}"#
        )]
    );
    let g1_report = report.campaigns[0]
        .entities
        .iter()
        .find(|e| e.local_id == "g1")
        .expect("g1");
    assert_eq!(g1_report.overwritten.len(), 1);
    snapshot!("converge_push_drift_restored", shown(&report, &writes));
    let drift = scene.pusher().drift(ACCOUNT).await.expect("drift");
    assert!(drift[0].entities.is_empty(), "{drift:?}");
}

#[tokio::test]
async fn changed_keywords_are_one_targeting_patch() {
    let scene = Scene::start().await;
    scene.push(scene.pusher(), &set()).await;
    let mut changed = set();
    changed.campaigns[0].ad_groups[1].keywords[0].text = "asphalt shoes".into();
    let (report, writes) = scene.push(scene.pusher(), &changed).await;
    assert!(report.all_synced());
    assert_eq!(writes.len(), 1, "{writes:?}");
    assert!(writes[0].contains("asphalt shoes"), "{writes:?}");
    snapshot!("converge_push_keywords_changed", shown(&report, &writes));
}

#[tokio::test]
async fn an_ad_moved_to_another_group_is_replaced_with_prune_and_refused_without() {
    let scene = Scene::start().await;
    let (first, _) = scene.push(scene.pusher(), &set()).await;
    let old = Scene::id_of(&first, "a2");
    let mut moved = set();
    let ad = moved.campaigns[0].ad_groups[0].ads.remove(1);
    moved.campaigns[0].ad_groups[1].ads.push(ad);

    let (refused, writes) = scene.push(scene.pusher(), &moved).await;
    assert!(writes.is_empty(), "{writes:?}");
    assert_eq!(refused.campaigns[0].status, adsync::Status::Failed);

    let (replaced, writes) = scene.push(scene.pusher().with_prune(true), &moved).await;
    assert!(replaced.all_synced(), "{replaced:?}");
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert!(
        writes[0].starts_with("POST /api/v3/ad_accounts/a2_test/ads "),
        "{writes:?}"
    );
    assert_eq!(
        writes[1],
        format!(r#"PATCH /api/v3/ads/{old} {{"configured_status":"ARCHIVED"}}"#)
    );
    snapshot!("converge_push_moved_ad_replaced", shown(&replaced, &writes));
}

#[tokio::test]
async fn an_unreadable_listing_fails_the_push_before_any_write() {
    let scene = Scene::start_with(quick()).await;
    scene.push(scene.pusher(), &set()).await;
    let mut changed = set();
    changed.campaigns[0].name = "Summer sale".into();
    scene.fake.inject(
        adsync_fakes::reddit::RedditFault::new(adsync_fakes::reddit::RedditFaultKind::Status {
            status: 503,
            after_apply: false,
            retry_after_secs: None,
            reset_secs: None,
        })
        .method("GET")
        .path_contains("/ad_groups")
        .times(1000),
    );
    let pusher = scene.pusher().with_policy(adsync::PushPolicy {
        backoff: quick(),
        ..adsync::PushPolicy::default()
    });
    let (report, writes) = scene.push(pusher, &changed).await;
    assert!(writes.is_empty(), "{writes:?}");
    let c = &report.campaigns[0];
    assert_eq!(c.status, adsync::Status::Failed);
    let error = c.last_error.clone().unwrap_or_default();
    assert!(
        error.starts_with("could not read what the platform holds, so nothing was written"),
        "{error}"
    );
    let checkpoint = scene
        .pusher()
        .runner()
        .get(&c.sync)
        .await
        .expect("the sync");
    assert_eq!(checkpoint.state.phase(), PushPhase::Failed);
}

#[tokio::test]
async fn garbled_listings_beyond_the_retries_fail_the_push_before_any_write_and_a_plan_says_what() {
    let scene = Scene::start_with(quick()).await;
    scene.push(scene.pusher(), &set()).await;
    let mut changed = set();
    changed.campaigns[0].ad_groups[0].bid_value_micros = Some(2_000_000);
    scene.fake.inject(
        adsync_fakes::reddit::RedditFault::new(adsync_fakes::reddit::RedditFaultKind::Garble)
            .method("GET")
            .path_contains("/ads")
            .times(1000),
    );
    let err = scene
        .pusher()
        .plan(&changed, ACCOUNT, PlanOptions::default())
        .await
        .expect_err("the listing stays garbled");
    assert!(
        err.to_string().starts_with("listing the ads under adg_"),
        "{err}"
    );
    let pusher = scene.pusher().with_policy(adsync::PushPolicy {
        backoff: quick(),
        ..adsync::PushPolicy::default()
    });
    let (report, writes) = scene.push(pusher, &changed).await;
    assert!(writes.is_empty(), "{writes:?}");
    let error = report.campaigns[0].last_error.clone().unwrap_or_default();
    assert!(
        error.starts_with("could not read what the platform holds") && error.contains("unreadable"),
        "{error}"
    );

    // A single garbled page is read again: the push goes through.
    scene.fake.clear_faults();
    scene.fake.inject(
        adsync_fakes::reddit::RedditFault::new(adsync_fakes::reddit::RedditFaultKind::Garble)
            .method("GET")
            .path_contains("/ads")
            .times(1),
    );
    let (report, writes) = scene.push(scene.pusher(), &changed).await;
    assert!(report.all_synced(), "{report:?}");
    assert_eq!(writes.len(), 1, "{writes:?}");
}

#[tokio::test]
async fn an_unknown_account_is_a_clear_error_with_nothing_written() {
    let scene = Scene::start_with(quick()).await;
    let err = scene
        .pusher()
        .plan(&set(), "not-an-account", PlanOptions::default())
        .await
        .expect_err("Reddit does not know the account");
    assert!(
        matches!(
            &err,
            adsync::PushError::Platform {
                source: adsync::AdapterError::NotFound { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(
        err.to_string()
            .starts_with("listing the campaigns under not-an-account"),
        "{err}"
    );
    let report = scene
        .pusher()
        .push(&set(), "not-an-account")
        .await
        .expect("the push starts");
    let c = &report.campaigns[0];
    assert_eq!(c.status, adsync::Status::Failed);
    assert!(
        c.last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("could not read what the platform holds")),
        "{:?}",
        c.last_error
    );
    assert!(scene.writes().is_empty());
    assert!(scene.fake.entities().is_empty());
}

#[tokio::test]
async fn a_replacement_whose_create_failed_is_replaced_again_by_the_next_push() {
    let scene = Scene::start().await;
    let (first, _) = scene.push(scene.pusher(), &set()).await;
    let old = Scene::id_of(&first, "a2");
    let mut moved = set();
    let ad = moved.campaigns[0].ad_groups[0].ads.remove(1);
    moved.campaigns[0].ad_groups[1].ads.push(ad);

    // The new ad's create is rejected: the old one is not archived.
    scene.fake.inject(
        adsync_fakes::reddit::RedditFault::new(adsync_fakes::reddit::RedditFaultKind::Status {
            status: 400,
            after_apply: false,
            retry_after_secs: None,
            reset_secs: None,
        })
        .method("POST")
        .path_contains("/ads")
        .times(1),
    );
    let (failed, writes) = scene.push(scene.pusher().with_prune(true), &moved).await;
    assert_eq!(failed.campaigns[0].status, adsync::Status::Failed);
    assert_eq!(writes.len(), 1, "only the rejected create: {writes:?}");

    // The old ad is still adsync's: the next push replaces it again.
    let (replaced, writes) = scene.push(scene.pusher().with_prune(true), &moved).await;
    assert!(replaced.all_synced(), "{replaced:?}");
    assert_eq!(writes.len(), 2, "{writes:?}");
    assert_eq!(
        writes[1],
        format!(r#"PATCH /api/v3/ads/{old} {{"configured_status":"ARCHIVED"}}"#)
    );
}
