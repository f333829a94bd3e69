//! `Pusher::plan` against live platforms (the in-memory one and the fake
//! Reddit server): what the store knows and what the platform lists, read
//! without writing anything, planned against the set.

mod common;

use std::sync::Arc;
use std::time::Duration;

use adsync::converge::{Action, Plan, PlanOptions, Refusal};
use adsync::memory::{MemoryPlatform, Op};
use adsync::reddit::{RedditAdapter, RedditConfig};
use adsync::{CampaignSet, EntityKind, EntitySpec, ManualClock, Parent, PushAdapter};
use adsync::{KeywordModel, Pusher, Secret, Store};
use adsync_fakes::{FakeReddit, FakeRedditConfig};
use common::{example_set, start_time, ACCOUNT};

fn all_unchanged(plans: &[Plan]) -> bool {
    plans
        .iter()
        .flat_map(|p| &p.entries)
        .all(|e| e.action == Action::Unchanged)
}

fn memory() -> (Arc<MemoryPlatform>, Arc<ManualClock>) {
    let clock = Arc::new(ManualClock::new(start_time()));
    let platform = Arc::new(MemoryPlatform::new(clock.clone()));
    (platform, clock)
}

fn pusher(platform: &Arc<MemoryPlatform>, clock: &Arc<ManualClock>) -> Pusher {
    Pusher::new(
        Store::temporary().expect("store"),
        platform.clone(),
        clock.clone(),
    )
}

#[tokio::test]
async fn after_a_push_the_plan_of_the_same_set_is_all_unchanged_and_reads_only() {
    let (platform, clock) = memory();
    let pusher = pusher(&platform, &clock);
    let set = example_set();
    let report = pusher.push(&set, ACCOUNT).await.expect("push");
    assert!(report.all_synced());
    let before = platform.calls().len();
    let plans = pusher
        .plan(&set, ACCOUNT, PlanOptions::default())
        .await
        .expect("plan");
    assert_eq!(plans.len(), set.campaigns.len());
    assert!(all_unchanged(&plans), "{}", plans[0]);
    let calls = platform.calls();
    assert!(
        calls[before..].iter().all(|c| c.op == Op::List),
        "a plan only lists: {:?}",
        &calls[before..]
    );
}

#[tokio::test]
async fn a_changed_bid_is_one_update_and_a_fresh_store_never_duplicates() {
    let (platform, clock) = memory();
    let first = pusher(&platform, &clock);
    let set = example_set();
    first.push(&set, ACCOUNT).await.expect("push");

    let mut changed = set.clone();
    changed.campaigns[0].ad_groups[0].bid_value_micros = Some(4_200_000);
    let plans = first
        .plan(&changed, ACCOUNT, PlanOptions::default())
        .await
        .expect("plan");
    let summary = plans[0].summary();
    assert_eq!((summary.update, summary.writes), (1, 1), "{}", plans[0]);

    // Another store (another directory): every entity exists by name, and
    // adsync did not create it as far as this store knows.
    let fresh = pusher(&platform, &clock);
    let plans = fresh
        .plan(&set, ACCOUNT, PlanOptions::default())
        .await
        .expect("plan");
    for plan in &plans {
        assert!(
            plan.entries.iter().all(|e| matches!(
                e.action,
                Action::Refuse {
                    refusal: Refusal::ExistsUnmanaged { .. }
                }
            )),
            "{plan}"
        );
    }
    let adopted = fresh
        .plan(
            &set,
            ACCOUNT,
            PlanOptions {
                adopt_existing: true,
                ..PlanOptions::default()
            },
        )
        .await
        .expect("plan");
    assert!(adopted
        .iter()
        .flat_map(|p| &p.entries)
        .all(|e| e.action == Action::Adopt { changes: vec![] }));
}

#[tokio::test]
async fn an_unreadable_listing_is_an_error_naming_what_was_read() {
    let (platform, clock) = memory();
    let pusher = pusher(&platform, &clock);
    platform.fail_next(
        Op::List,
        Some(EntityKind::Campaign),
        adsync::memory::Fault::Transient,
    );
    let err = pusher
        .plan(&example_set(), ACCOUNT, PlanOptions::default())
        .await
        .expect_err("the listing failed");
    assert!(
        err.to_string()
            .starts_with("listing the campaigns under a2_test"),
        "{err}"
    );
    assert!(pusher.unfinished().await.expect("read").is_empty());
}

#[tokio::test]
async fn on_reddit_a_plan_reads_one_listing_per_parent_and_reports_drift() {
    let fake = FakeReddit::start(FakeRedditConfig::default())
        .await
        .expect("fake reddit");
    let adapter = Arc::new(
        RedditAdapter::new(RedditConfig {
            base_url: fake.base_url(),
            token: Some(Secret::new(fake.config().token.clone())),
            timeout: Duration::from_secs(5),
            ..RedditConfig::default()
        })
        .expect("adapter"),
    );
    assert_eq!(adapter.keyword_model(), KeywordModel::AdGroupTargeting);
    let pusher = Pusher::new(
        Store::temporary().expect("store"),
        adapter.clone(),
        Arc::new(adsync::SystemClock),
    );
    let set: CampaignSet = example_set();
    let report = pusher.push(&set, ACCOUNT).await.expect("push");
    assert!(report.all_synced());

    fake.clear_requests();
    let plans = pusher
        .plan(&set, ACCOUNT, PlanOptions::default())
        .await
        .expect("plan");
    assert!(all_unchanged(&plans), "{}", plans[0]);
    let requests = fake.requests();
    assert!(requests.iter().all(|r| r.method == "GET"), "{requests:?}");
    let groups: usize = set.campaigns.iter().map(|c| c.ad_groups.len()).sum();
    // The account's campaigns once, then each campaign's groups, each group's ads.
    assert_eq!(requests.len(), 1 + set.campaigns.len() + groups);

    // Someone raises a bid in Reddit's UI: the plan restores the set's value
    // and says it drifted from what adsync wrote.
    let campaign = &set.campaigns[0];
    let group = &campaign.ad_groups[0];
    let group_id = report.campaigns[0]
        .entities
        .iter()
        .find(|e| e.local_id == group.id)
        .and_then(|e| e.platform_id.clone())
        .expect("the group's id");
    let mut edited = group.clone();
    edited.bid_value_micros = Some(group.bid_value_micros.unwrap_or(0) + 1_000_000);
    edited.keywords.clear();
    adapter
        .update(
            &Parent {
                account_id: ACCOUNT.into(),
                parent_id: None,
            },
            &group_id,
            &EntitySpec::AdGroup(edited),
        )
        .await
        .expect("an edit in the UI");
    let plans = pusher
        .plan(&set, ACCOUNT, PlanOptions::default())
        .await
        .expect("plan");
    let entry = plans[0]
        .entries
        .iter()
        .find(|e| e.local_id == group.id)
        .expect("the group");
    let Action::Update { changes } = &entry.action else {
        panic!("the group is updated: {}", plans[0])
    };
    assert_eq!(changes.len(), 1, "{}", plans[0]);
    assert_eq!(changes[0].field, "bid_value_micros");
    assert!(changes[0].drifted());
    assert_eq!(plans[0].summary().drifted, 1);

    // Without a set: the drift of every campaign adsync manages on the account.
    fake.clear_requests();
    let drifts = pusher.drift(ACCOUNT).await.expect("drift");
    assert_eq!(drifts.len(), set.campaigns.len());
    let drifted: Vec<_> = drifts.iter().flat_map(|d| &d.entities).collect();
    assert_eq!(drifted.len(), 1, "{drifts:?}");
    assert_eq!(drifted[0].id, group_id);
    assert!(drifted[0]
        .to_string()
        .contains("bid_value_micros: adsync wrote"));
    assert!(fake.requests().iter().all(|r| r.method == "GET"));
}

#[tokio::test]
async fn a_set_reusing_another_sets_campaign_ids_is_refused_unless_it_takes_over() {
    let (platform, clock) = memory();
    let pusher = pusher(&platform, &clock);
    let set = example_set();
    pusher.push(&set, ACCOUNT).await.expect("push");
    let entities = platform.entities().len();

    // Another file, another set name, the same campaign ids: it would rename
    // the first set's live campaigns.
    let mut other = set.clone();
    other.name = "another set".into();
    other.campaigns[0].name = "Renamed by another set".into();
    let plans = pusher
        .plan(&other, ACCOUNT, PlanOptions::default())
        .await
        .expect("plan");
    assert_eq!(
        plans[0].entries[0].action,
        Action::Refuse {
            refusal: Refusal::OwnedByAnotherSet {
                set: set.name.clone()
            }
        },
        "{}",
        plans[0]
    );
    let before = pusher.unfinished().await.expect("read");
    let err = pusher
        .start(&other, ACCOUNT)
        .await
        .expect_err("refused before anything is written");
    assert!(
        matches!(err, adsync::PushError::OwnedByAnotherSet { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("--take-over"), "{err}");
    assert_eq!(pusher.unfinished().await.expect("read"), before);
    assert_eq!(platform.entities().len(), entities);

    // Taking over is a choice: then the campaign is renamed, nothing duplicated.
    let taking = Pusher::new(
        pusher.runner().store().clone(),
        platform.clone(),
        clock.clone(),
    )
    .with_take_over(true);
    let plans = taking
        .plan(
            &other,
            ACCOUNT,
            PlanOptions {
                take_over: true,
                ..PlanOptions::default()
            },
        )
        .await
        .expect("plan");
    assert_eq!(plans[0].summary().update, 1, "{}", plans[0]);
    let report = taking.push(&other, ACCOUNT).await.expect("push");
    assert!(report.all_synced());
    assert_eq!(platform.entities().len(), entities);
    assert!(platform.duplicates().is_empty());
}
