//! The converging push's plan, as a specification: given a set, what adsync
//! wrote last time, and what the platform lists now, what a push does to each
//! entity. Pure: no store, no platform, no clock.

mod common;

use adsync::converge::{
    drift, fields_of, plan, Action, Desired, Drift, Known, Observed, Plan, PlanOptions, Refusal,
};
use adsync::{Campaign, EntityKind, EntitySpec, KeywordModel};

const TARGETING: KeywordModel = KeywordModel::AdGroupTargeting;

/// The example set's first campaign.
fn campaign() -> Campaign {
    common::example_set().campaigns[0].clone()
}

/// Ids as a platform would have given them: `<kind>_<local id>`.
fn id_of(kind: EntityKind, local: &str) -> String {
    format!("{kind}_{local}")
}

/// What the store remembers after pushing `c` successfully: every entity,
/// with the fields written.
fn known_after_push(c: &Campaign) -> Vec<Known> {
    Desired::of_campaign(c, TARGETING)
        .into_iter()
        .map(|d| Known {
            kind: d.kind,
            id: id_of(d.kind, &d.local_id),
            local_id: d.local_id,
            parent: d.parent,
            name: d.name,
            written: d.fields,
        })
        .collect()
}

/// What the platform lists when it holds exactly `c`, pushed by adsync.
fn platform_holding(c: &Campaign) -> Vec<Observed> {
    let desired = Desired::of_campaign(c, TARGETING);
    desired
        .iter()
        .map(|d| {
            let parent_kind = match d.kind {
                EntityKind::Campaign => None,
                EntityKind::AdGroup => Some(EntityKind::Campaign),
                EntityKind::Ad | EntityKind::Keyword => Some(EntityKind::AdGroup),
            };
            Observed {
                kind: d.kind,
                id: id_of(d.kind, &d.local_id),
                parent_id: parent_kind
                    .zip(d.parent.as_deref())
                    .map(|(k, p)| id_of(k, p)),
                name: d.name.clone(),
                fields: d.fields.clone(),
            }
        })
        .collect()
}

fn plan_of(c: &Campaign, known: &[Known], observed: &[Observed], options: PlanOptions) -> Plan {
    plan(
        &c.id,
        &Desired::of_campaign(c, TARGETING),
        known,
        observed,
        options,
    )
}

#[test]
fn a_first_push_creates_everything_parents_first() {
    let c = campaign();
    let p = plan_of(&c, &[], &[], PlanOptions::default());
    assert!(p.entries.iter().all(|e| e.action == Action::Create));
    assert_eq!(p.summary().writes, p.entries.len());
    snap!("converge_first_push", p.to_string());
}

#[test]
fn an_unchanged_set_makes_zero_writes() {
    let c = campaign();
    let p = plan_of(
        &c,
        &known_after_push(&c),
        &platform_holding(&c),
        PlanOptions::default(),
    );
    assert!(p.entries.iter().all(|e| e.action == Action::Unchanged));
    assert!(!p.has_changes());
    assert_eq!(p.summary().writes, 0);
}

#[test]
fn one_changed_bid_is_one_update_of_one_field() {
    let c = campaign();
    let (known, observed) = (known_after_push(&c), platform_holding(&c));
    let mut changed = c.clone();
    changed.ad_groups[0].bid_value_micros = Some(2_750_000);
    let p = plan_of(&changed, &known, &observed, PlanOptions::default());
    let updates: Vec<_> = p
        .entries
        .iter()
        .filter_map(|e| match &e.action {
            Action::Update { changes } => Some((e.local_id.as_str(), changes)),
            _ => None,
        })
        .collect();
    assert_eq!(updates.len(), 1);
    let (local, changes) = updates[0];
    assert_eq!(local, c.ad_groups[0].id);
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].field, "bid_value_micros");
    assert!(!changes[0].drifted());
    assert_eq!(p.summary().writes, 1);
}

#[test]
fn a_field_removed_from_the_set_is_cleared_and_keywords_compare_as_a_set() {
    let c = campaign();
    let (known, observed) = (known_after_push(&c), platform_holding(&c));
    let mut changed = c.clone();
    let group = &mut changed.ad_groups[0];
    group.keywords.reverse();
    let kept_same_set = plan_of(&changed, &known, &observed, PlanOptions::default());
    assert!(!kept_same_set.has_changes(), "{kept_same_set}");

    changed.ad_groups[0].keywords.clear();
    changed.ad_groups[0].bid_value_micros = None;
    let p = plan_of(&changed, &known, &observed, PlanOptions::default());
    let Action::Update { changes } = &p.entries[1].action else {
        panic!("the group is updated: {p}")
    };
    let fields: Vec<_> = changes.iter().map(|c| c.field).collect();
    assert_eq!(fields, ["bid_value_micros", "keywords"]);
    assert!(changes
        .iter()
        .all(|c| c.desired.is_null() || c.desired == serde_json::json!([])));
    snap!("converge_cleared_fields", p.to_string());
}

#[test]
fn a_field_changed_on_the_platform_is_drift_restored_by_the_push() {
    let c = campaign();
    let known = known_after_push(&c);
    let mut observed = platform_holding(&c);
    let group = observed
        .iter_mut()
        .find(|o| o.kind == EntityKind::AdGroup)
        .expect("a group");
    group
        .fields
        .insert("bid_value_micros", serde_json::json!(9_990_000));
    let group_id = group.id.clone();
    let p = plan_of(&c, &known, &observed, PlanOptions::default());
    let s = p.summary();
    assert_eq!((s.update, s.drifted, s.writes), (1, 1, 1));
    let drifted = drift(&known, &observed);
    assert_eq!(drifted.len(), 1);
    assert_eq!(drifted[0].id, group_id);
    let Drift::Changed { fields } = &drifted[0].drift else {
        panic!("changed, not gone: {drifted:?}")
    };
    assert_eq!(fields[0].field, "bid_value_micros");
    assert_eq!(fields[0].platform, serde_json::json!(9_990_000));
    // Deleted on the platform: gone, whatever a set says.
    let without: Vec<Observed> = observed.into_iter().filter(|o| o.id != group_id).collect();
    let gone = drift(&known, &without);
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].drift, Drift::Gone);
    assert_eq!(
        gone[0].to_string(),
        format!(
            "- ad_group {} {:?} ({group_id}): gone from the platform",
            gone[0].local_id, gone[0].name
        )
    );
    snap!("converge_drift", p.to_string());
}

#[test]
fn a_hand_made_entity_is_adopted_only_when_asked_and_never_duplicated() {
    let c = campaign();
    // A fresh store: the platform already holds the campaign, made by hand.
    let observed = platform_holding(&c);
    let refused = plan_of(&c, &[], &observed, PlanOptions::default());
    let first = &refused.entries[0];
    assert_eq!(
        first.action,
        Action::Refuse {
            refusal: Refusal::ExistsUnmanaged {
                id: id_of(EntityKind::Campaign, &c.id)
            }
        }
    );
    assert!(refused.refusals().count() >= 1);
    assert!(
        !refused.entries.iter().any(|e| e.action == Action::Create),
        "nothing under a refused campaign is created: {refused}"
    );

    let adopted = plan_of(
        &c,
        &[],
        &observed,
        PlanOptions {
            adopt_existing: true,
            ..PlanOptions::default()
        },
    );
    assert!(adopted
        .entries
        .iter()
        .all(|e| e.action == Action::Adopt { changes: vec![] }));
    assert_eq!(adopted.summary().writes, 0);

    // Two campaigns of that name: adsync does not guess.
    let mut twice = observed.clone();
    let mut copy = twice[0].clone();
    copy.id = "campaign_copy".into();
    twice.push(copy);
    let ambiguous = plan_of(
        &c,
        &[],
        &twice,
        PlanOptions {
            adopt_existing: true,
            ..PlanOptions::default()
        },
    );
    assert!(matches!(
        &ambiguous.entries[0].action,
        Action::Refuse { refusal: Refusal::Ambiguous { ids } } if ids.len() == 2
    ));
    snap!("converge_adopt_refused", refused.to_string());
}

#[test]
fn an_entity_left_out_of_the_set_is_pruned_only_with_prune() {
    let c = campaign();
    let (known, observed) = (known_after_push(&c), platform_holding(&c));
    let mut smaller = c.clone();
    let removed = smaller.ad_groups[0].ads.remove(0);
    let left = plan_of(&smaller, &known, &observed, PlanOptions::default());
    let last = left.entries.last().expect("entries");
    assert_eq!(
        (last.local_id.as_str(), &last.action),
        (removed.id.as_str(), &Action::Removed)
    );
    assert_eq!(left.summary().writes, 0);
    let pruned = plan_of(
        &smaller,
        &known,
        &observed,
        PlanOptions {
            prune: true,
            ..PlanOptions::default()
        },
    );
    let last = pruned.entries.last().expect("entries");
    assert_eq!(last.action, Action::Prune);
    assert_eq!(pruned.summary().writes, 1);
    snap!("converge_prune", pruned.to_string());

    // Never something adsync did not create or adopt, nor one already archived.
    let mut stranger = observed.clone();
    let mut hand_made = stranger[2].clone();
    hand_made.id = "ad_by_hand".into();
    hand_made.name = "Made in the UI".into();
    stranger.push(hand_made);
    let archived: Vec<Observed> = stranger
        .into_iter()
        .map(|mut o| {
            if o.id == id_of(EntityKind::Ad, &removed.id) {
                o.fields.insert("status", serde_json::json!("ARCHIVED"));
            }
            o
        })
        .collect();
    let again = plan_of(
        &smaller,
        &known,
        &archived,
        PlanOptions {
            prune: true,
            ..PlanOptions::default()
        },
    );
    assert!(!again.has_changes(), "{again}");
}

#[test]
fn an_ad_moved_to_another_group_is_a_replacement_never_an_update() {
    let c = campaign();
    assert!(c.ad_groups.len() >= 2, "the example has two groups");
    let (known, observed) = (known_after_push(&c), platform_holding(&c));
    let mut moved = c.clone();
    let ad = moved.ad_groups[0].ads.remove(0);
    moved.ad_groups[1].ads.push(ad.clone());
    let refused = plan_of(&moved, &known, &observed, PlanOptions::default());
    let entry = refused
        .entries
        .iter()
        .find(|e| e.local_id == ad.id)
        .expect("the ad");
    assert!(matches!(
        &entry.action,
        Action::Refuse {
            refusal: Refusal::ReplaceNeedsPrune { .. }
        }
    ));
    let replaced = plan_of(
        &moved,
        &known,
        &observed,
        PlanOptions {
            prune: true,
            ..PlanOptions::default()
        },
    );
    let entry = replaced
        .entries
        .iter()
        .find(|e| e.local_id == ad.id)
        .expect("the ad");
    assert!(
        matches!(&entry.action, Action::Replace { .. }),
        "{replaced}"
    );
    snap!("converge_moved_ad", replaced.to_string());
}

#[test]
fn an_entity_deleted_by_hand_is_created_again() {
    let c = campaign();
    let known = known_after_push(&c);
    let observed: Vec<Observed> = platform_holding(&c)
        .into_iter()
        .filter(|o| o.kind != EntityKind::Ad)
        .collect();
    let p = plan_of(&c, &known, &observed, PlanOptions::default());
    let recreated = p
        .entries
        .iter()
        .filter(|e| matches!(e.action, Action::Recreate { .. }))
        .count();
    assert_eq!(
        recreated,
        c.ad_groups.iter().map(|g| g.ads.len()).sum::<usize>()
    );
}

#[test]
fn fields_are_the_set_files_vocabulary() {
    let c = campaign();
    let fields = fields_of(&EntitySpec::Campaign(c.clone()), TARGETING);
    let names: Vec<_> = fields.keys().copied().collect();
    assert_eq!(names, ["goal", "name", "objective", "status"]);
    assert_eq!(fields["name"], serde_json::json!(c.name));
}
