//! What a push must do to make the platform match one campaign of a set:
//! a pure function of the set, what the store knows, and what the platform
//! lists. No I/O here: the caller reads the platform and the store first,
//! and carries the plan out (checkpointed) afterwards.

use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::fields::{fields_of, immutable, Fields};
use crate::adapter::{EntityKind, EntitySpec, KeywordModel};
use crate::model::Campaign;

/// One entity the set asks for, parents before children.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Desired {
    /// Its level.
    pub kind: EntityKind,
    /// Its local id in the set file.
    pub local_id: String,
    /// Its parent's local id (`None` for the campaign).
    pub parent: Option<String>,
    /// The name it is found by on the platform (a keyword's text).
    pub name: String,
    /// The fields the set gives it ([`fields_of`]).
    pub fields: Fields,
}

impl Desired {
    /// The entities of `campaign`, parents first, as a push creates them.
    /// Under [`KeywordModel::AdGroupTargeting`] keywords are a field of their
    /// ad group, not entities.
    pub fn of_campaign(campaign: &Campaign, model: KeywordModel) -> Vec<Desired> {
        let mut out = Vec::new();
        let mut shell = campaign.clone();
        shell.ad_groups.clear();
        out.push(Desired {
            kind: EntityKind::Campaign,
            local_id: campaign.id.clone(),
            parent: None,
            name: campaign.name.clone(),
            fields: fields_of(&EntitySpec::Campaign(shell), model),
        });
        for group in &campaign.ad_groups {
            let mut g = group.clone();
            g.ads.clear();
            out.push(Desired {
                kind: EntityKind::AdGroup,
                local_id: group.id.clone(),
                parent: Some(campaign.id.clone()),
                name: group.name.clone(),
                // Keywords stay on the spec: they are the group's field
                // under targeting (`fields_of` ignores them otherwise).
                fields: fields_of(&EntitySpec::AdGroup(g), model),
            });
            for ad in &group.ads {
                out.push(Desired {
                    kind: EntityKind::Ad,
                    local_id: ad.id.clone(),
                    parent: Some(group.id.clone()),
                    name: ad.name.clone(),
                    fields: fields_of(&EntitySpec::Ad(ad.clone()), model),
                });
            }
            if model == KeywordModel::Entities {
                for keyword in &group.keywords {
                    out.push(Desired {
                        kind: EntityKind::Keyword,
                        local_id: keyword.id.clone(),
                        parent: Some(group.id.clone()),
                        name: keyword.text.clone(),
                        fields: fields_of(&EntitySpec::Keyword(keyword.clone()), model),
                    });
                }
            }
        }
        out
    }
}

/// An entity adsync created or adopted for this campaign, as the store
/// remembers it: its platform id and the fields adsync last wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Known {
    /// Its level.
    pub kind: EntityKind,
    /// Its local id in the set that pushed it.
    pub local_id: String,
    /// Its parent's local id (`None` for the campaign).
    pub parent: Option<String>,
    /// Its platform id.
    pub id: String,
    /// Its name when adsync last wrote it.
    pub name: String,
    /// The fields adsync last wrote (what drift is measured against).
    #[serde(deserialize_with = "super::fields::deserialize")]
    pub written: Fields,
}

/// An entity the platform listed under the account or a managed parent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Observed {
    /// Its level.
    pub kind: EntityKind,
    /// Its platform id.
    pub id: String,
    /// Its parent's platform id (`None` for campaigns).
    pub parent_id: Option<String>,
    /// Its name (a keyword's text).
    pub name: String,
    /// Its fields as the platform holds them, in the set's vocabulary.
    #[serde(deserialize_with = "super::fields::deserialize")]
    pub fields: Fields,
}

impl Observed {
    /// Whether the platform has it archived (or deleted): nothing to prune.
    fn archived(&self) -> bool {
        matches!(
            self.fields.get("status").and_then(Value::as_str),
            Some("ARCHIVED" | "DELETED")
        )
    }
}

/// What the user allows a push to do beyond creating and updating.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanOptions {
    /// Adopt an entity that exists on the platform by exact name under the
    /// right parent but that the store does not know (`--adopt-existing`).
    pub adopt_existing: bool,
    /// Archive entities adsync created or adopted that the set no longer
    /// names, and replace entities that cannot change in place (`--prune`).
    pub prune: bool,
    /// Push a campaign another set pushed last (`--take-over`).
    pub take_over: bool,
}

/// One field the push will change, with what drift tells about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FieldChange {
    /// The set file's name for it.
    pub field: &'static str,
    /// What the platform holds now.
    pub platform: Value,
    /// What adsync last wrote (`None`: never written by adsync, e.g. adopted).
    pub written: Option<Value>,
    /// What the set asks for.
    pub desired: Value,
}

impl FieldChange {
    /// Someone changed it on the platform since adsync last wrote it.
    pub fn drifted(&self) -> bool {
        self.written.as_ref().is_some_and(|w| *w != self.platform)
    }
}

/// Why a plan refuses to touch an entity (the push then writes nothing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Refusal {
    /// The platform has it by name under the right parent, adsync did not
    /// create it, and `--adopt-existing` was not given.
    ExistsUnmanaged {
        /// The existing entity's id.
        id: String,
    },
    /// Several entities of that name under that parent: which to adopt is
    /// not for adsync to guess.
    Ambiguous {
        /// Their ids.
        ids: Vec<String>,
    },
    /// Another set pushed this campaign last (same account and campaign id):
    /// pushing would change that set's live campaign; only with `--take-over`.
    OwnedByAnotherSet {
        /// The set that owns it.
        set: String,
    },
    /// It must be replaced (see [`Action::Replace`]), which archives the old
    /// one: only with `--prune`.
    ReplaceNeedsPrune {
        /// The entity that would be archived.
        old_id: String,
        /// Why it cannot be changed in place.
        why: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::ExistsUnmanaged { id } => write!(
                f,
                "{id} already exists by this name and adsync did not create it; \
                 --adopt-existing adopts it"
            ),
            Refusal::OwnedByAnotherSet { set } => write!(
                f,
                "set `{set}` pushed this campaign last; pushing this set would rename and change \
                 it (--take-over allows it)"
            ),
            Refusal::Ambiguous { ids } => write!(
                f,
                "several entities have this name ({}); rename or remove all but one",
                ids.join(", ")
            ),
            Refusal::ReplaceNeedsPrune { old_id, why } => write!(
                f,
                "{why}: it must be replaced (a new one created, {old_id} archived); --prune allows it"
            ),
        }
    }
}

/// What the push does to one entity.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    /// Create it (no such entity yet).
    Create,
    /// Create it again: adsync created it as `old_id`, which the platform no
    /// longer lists (deleted by hand).
    Recreate {
        /// The id it had.
        old_id: String,
    },
    /// Write only these fields.
    Update {
        /// The differing fields.
        changes: Vec<FieldChange>,
    },
    /// Nothing to write.
    Unchanged,
    /// Record the existing entity's id, then write these fields (none: adopt only).
    Adopt {
        /// Fields that differ from the set.
        changes: Vec<FieldChange>,
    },
    /// Create it anew and archive the old one (`old_id`): an ad moved to
    /// another ad group, or a field that cannot change in place.
    Replace {
        /// The entity archived.
        old_id: String,
        /// Why it cannot be changed in place.
        why: String,
    },
    /// Archive it: adsync created or adopted it, and the set no longer names it.
    Prune,
    /// The set no longer names it; left on the platform (no `--prune`).
    Removed,
    /// The push refuses before writing anything.
    Refuse {
        /// Why.
        #[serde(flatten)]
        refusal: Refusal,
    },
}

/// One line of a plan.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlanEntry {
    /// Its level.
    pub kind: EntityKind,
    /// Its local id (in the set, or in the set that pushed it for
    /// [`Action::Prune`] and [`Action::Removed`]).
    pub local_id: String,
    /// Its name.
    pub name: String,
    /// Its platform id, when it has one before the push.
    pub id: Option<String>,
    /// What the push does.
    #[serde(flatten)]
    pub action: Action,
}

/// What a push of one campaign will do, entity by entity: creates and updates
/// in push order (parents first), then prunes (children first).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    /// The campaign's local id.
    pub campaign: String,
    /// One entry per entity the set names or adsync manages.
    pub entries: Vec<PlanEntry>,
}

/// How many entries of each kind of action a plan has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PlanSummary {
    /// Creates, including recreates.
    pub create: usize,
    /// Updates.
    pub update: usize,
    /// Adoptions.
    pub adopt: usize,
    /// Replacements (a create and an archive each).
    pub replace: usize,
    /// Archives.
    pub prune: usize,
    /// Entities left out of the set and left on the platform.
    pub removed: usize,
    /// Entities with nothing to write.
    pub unchanged: usize,
    /// Refusals.
    pub refused: usize,
    /// Fields changed on the platform since adsync wrote them.
    pub drifted: usize,
    /// Write requests the push will send (a field-by-field PATCH counts one).
    pub writes: usize,
}

impl Plan {
    /// Counts of each action, drifted fields and write requests.
    pub fn summary(&self) -> PlanSummary {
        let mut s = PlanSummary::default();
        for e in &self.entries {
            match &e.action {
                Action::Create | Action::Recreate { .. } => {
                    s.create += 1;
                    s.writes += 1;
                }
                Action::Update { changes } => {
                    s.update += 1;
                    s.writes += 1;
                    s.drifted += changes.iter().filter(|c| c.drifted()).count();
                }
                Action::Adopt { changes } => {
                    s.adopt += 1;
                    s.writes += usize::from(!changes.is_empty());
                }
                Action::Replace { .. } => {
                    s.replace += 1;
                    s.writes += 2;
                }
                Action::Prune => {
                    s.prune += 1;
                    s.writes += 1;
                }
                Action::Removed => s.removed += 1,
                Action::Unchanged => s.unchanged += 1,
                Action::Refuse { .. } => s.refused += 1,
            }
        }
        s
    }

    /// The refused entries: a push with any writes nothing.
    pub fn refusals(&self) -> impl Iterator<Item = &PlanEntry> {
        self.entries
            .iter()
            .filter(|e| matches!(e.action, Action::Refuse { .. }))
    }

    /// Whether the push would change anything: write to the platform, or
    /// adopt an entity (which changes what adsync manages). Refusals aside.
    pub fn has_changes(&self) -> bool {
        let s = self.summary();
        s.writes > 0 || s.adopt > 0
    }
}

/// Plans the push of one campaign.
///
/// - `desired`: [`Desired::of_campaign`] of the set's campaign;
/// - `known`: the entities adsync created or adopted for this campaign
///   (empty on a first push, or from a fresh store);
/// - `observed`: what the platform lists under the account (campaigns) and
///   under every known or adoptable parent.
///
/// Identity is the store's: a known entity is matched by its platform id,
/// never by name. An unknown one is matched by exact name under its parent
/// only to adopt it (with [`PlanOptions::adopt_existing`]) or to refuse, so
/// a push can never create a second entity of the same name silently.
pub fn plan(
    campaign: &str,
    desired: &[Desired],
    known: &[Known],
    observed: &[Observed],
    options: PlanOptions,
) -> Plan {
    let by_local: HashMap<(EntityKind, &str), &Known> = known
        .iter()
        .map(|k| ((k.kind, k.local_id.as_str()), k))
        .collect();
    let listed: HashMap<&str, &Observed> = observed.iter().map(|o| (o.id.as_str(), o)).collect();
    // Ids the store already binds to an entity: never adopted twice.
    let bound: HashSet<&str> = known.iter().map(|k| k.id.as_str()).collect();
    // The platform id each desired entity will have before its children are
    // written: `None` while it is still to be created.
    let mut ids: HashMap<&str, Option<String>> = HashMap::new();
    let mut entries = Vec::new();
    // Entities created again because the platform lost them: their old
    // children went with them (or are orphans), so those are created again too.
    let mut recreated: HashSet<&str> = HashSet::new();

    for d in desired {
        let parent_id: Option<Option<String>> =
            d.parent.as_deref().map(|p| ids.get(p).cloned().flatten());
        // The parent is still to be created: nothing below it can exist.
        let parent_is_new = matches!(parent_id, Some(None));
        let entry = |id: Option<String>, action: Action| PlanEntry {
            kind: d.kind,
            local_id: d.local_id.clone(),
            name: d.name.clone(),
            id,
            action,
        };
        let create = |gone: Option<&Known>| match gone {
            Some(k) => entry(
                Some(k.id.clone()),
                Action::Recreate {
                    old_id: k.id.clone(),
                },
            ),
            None => entry(None, Action::Create),
        };
        let known = by_local.get(&(d.kind, d.local_id.as_str())).copied();
        // Adsync created it, and the platform no longer lists it (deleted
        // by hand, or with its parent): it is created again, under the same
        // name rules as an entity the store does not know.
        let orphaned = d.parent.as_deref().is_some_and(|p| recreated.contains(p));
        let gone = known.filter(|k| orphaned || !listed.contains_key(k.id.as_str()));
        let (next_id, planned) = match known.filter(|_| gone.is_none()) {
            Some(k) => match listed.get(k.id.as_str()).copied() {
                None => (None, entry(Some(k.id.clone()), Action::Create)),
                Some(o) => {
                    let moved = match &parent_id {
                        Some(Some(p)) => o.parent_id.as_deref() != Some(p.as_str()),
                        Some(None) => true,
                        None => false,
                    };
                    let fixed = immutable(d.kind)
                        .iter()
                        .find(|f| d.fields.get(**f) != o.fields.get(**f));
                    let why = if moved {
                        Some(format!(
                            "the set moves it from {} to {}, and an entity cannot change its parent",
                            o.parent_id.as_deref().unwrap_or("none"),
                            match &parent_id {
                                Some(Some(p)) => p.as_str(),
                                _ => "a parent still to be created",
                            }
                        ))
                    } else {
                        fixed.map(|f| format!("its {f} cannot change in place"))
                    };
                    match why {
                        Some(why) if options.prune => (
                            None,
                            entry(
                                Some(k.id.clone()),
                                Action::Replace {
                                    old_id: k.id.clone(),
                                    why,
                                },
                            ),
                        ),
                        Some(why) => (
                            Some(k.id.clone()),
                            entry(
                                Some(k.id.clone()),
                                Action::Refuse {
                                    refusal: Refusal::ReplaceNeedsPrune {
                                        old_id: k.id.clone(),
                                        why,
                                    },
                                },
                            ),
                        ),
                        None => {
                            let changes = diff(&d.fields, &o.fields, Some(&k.written));
                            let action = if changes.is_empty() {
                                Action::Unchanged
                            } else {
                                Action::Update { changes }
                            };
                            (Some(k.id.clone()), entry(Some(k.id.clone()), action))
                        }
                    }
                }
            },
            None if parent_is_new => (None, create(gone)),
            None => {
                let parent = parent_id.clone().flatten();
                let candidates: Vec<&Observed> = observed
                    .iter()
                    .filter(|o| {
                        o.kind == d.kind
                            && o.parent_id == parent
                            && o.name == d.name
                            && !bound.contains(o.id.as_str())
                            && !o.archived()
                    })
                    .collect();
                match candidates.as_slice() {
                    [] => (None, create(gone)),
                    [only] if options.adopt_existing => (
                        Some(only.id.clone()),
                        entry(
                            Some(only.id.clone()),
                            Action::Adopt {
                                changes: diff(&d.fields, &only.fields, None),
                            },
                        ),
                    ),
                    [only] => (
                        Some(only.id.clone()),
                        entry(
                            Some(only.id.clone()),
                            Action::Refuse {
                                refusal: Refusal::ExistsUnmanaged {
                                    id: only.id.clone(),
                                },
                            },
                        ),
                    ),
                    many => (
                        None,
                        entry(
                            None,
                            Action::Refuse {
                                refusal: Refusal::Ambiguous {
                                    ids: many.iter().map(|o| o.id.clone()).collect(),
                                },
                            },
                        ),
                    ),
                }
            }
        };
        if matches!(planned.action, Action::Recreate { .. }) {
            recreated.insert(d.local_id.as_str());
        }
        ids.insert(d.local_id.as_str(), next_id);
        entries.push(planned);
    }

    // Entities adsync manages that the set no longer names, children first
    // (deepest level first), each only while the platform still lists it live.
    let named: HashSet<(EntityKind, &str)> = desired
        .iter()
        .map(|d| (d.kind, d.local_id.as_str()))
        .collect();
    let mut gone: Vec<&Known> = known
        .iter()
        .filter(|k| !named.contains(&(k.kind, k.local_id.as_str())))
        .filter(|k| listed.get(k.id.as_str()).is_some_and(|o| !o.archived()))
        .collect();
    gone.sort_by_key(|k| std::cmp::Reverse(depth(k.kind)));
    for k in gone {
        entries.push(PlanEntry {
            kind: k.kind,
            local_id: k.local_id.clone(),
            name: k.name.clone(),
            id: Some(k.id.clone()),
            action: if options.prune {
                Action::Prune
            } else {
                Action::Removed
            },
        });
    }
    Plan {
        campaign: campaign.to_string(),
        entries,
    }
}

/// The fields whose platform value differs from the set's, with what adsync
/// last wrote (for drift).
fn diff(desired: &Fields, platform: &Fields, written: Option<&Fields>) -> Vec<FieldChange> {
    desired
        .iter()
        .filter_map(|(field, want)| {
            let have = platform.get(field).cloned().unwrap_or(Value::Null);
            (have != *want).then(|| FieldChange {
                field,
                platform: have,
                written: written.map(|w| w.get(field).cloned().unwrap_or(Value::Null)),
                desired: want.clone(),
            })
        })
        .collect()
}

/// How deep a level sits: campaigns 0, ad groups 1, ads and keywords 2.
pub(crate) fn depth(kind: EntityKind) -> u8 {
    match kind {
        EntityKind::Campaign => 0,
        EntityKind::AdGroup => 1,
        EntityKind::Ad | EntityKind::Keyword => 2,
    }
}

impl Plan {
    /// The plan as text ([`Plan`]'s `Display`), leaving out the unchanged
    /// entries unless `unchanged`: what `adsync plan` prints (`--all` keeps
    /// them). The summary line counts them either way.
    pub fn display(&self, unchanged: bool) -> impl fmt::Display + '_ {
        PlanText {
            plan: self,
            unchanged,
        }
    }
}

struct PlanText<'a> {
    plan: &'a Plan,
    unchanged: bool,
}

impl fmt::Display for Plan {
    /// Terraform-like lines (`+ create`, `~ update` with `field: old → new`,
    /// `< adopt`, `± replace`, `- prune`, `! refuse`, `= unchanged`), then a
    /// summary line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.display(true).fmt(f)
    }
}

impl fmt::Display for PlanText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plan = self.plan;
        for e in plan
            .entries
            .iter()
            .filter(|e| self.unchanged || e.action != Action::Unchanged)
        {
            let what = format!(
                "{} {} {:?}{}",
                e.kind,
                e.local_id,
                e.name,
                e.id.as_deref()
                    .map(|id| format!(" ({id})"))
                    .unwrap_or_default()
            );
            match &e.action {
                Action::Create => writeln!(f, "+ create    {what}")?,
                Action::Recreate { .. } => {
                    writeln!(f, "+ recreate  {what}: gone from the platform")?
                }
                Action::Update { changes } => {
                    writeln!(f, "~ update    {what}")?;
                    write_changes(f, changes)?;
                }
                Action::Adopt { changes } => {
                    writeln!(f, "< adopt     {what}")?;
                    write_changes(f, changes)?;
                }
                Action::Replace { why, .. } => writeln!(f, "± replace   {what}: {why}")?,
                Action::Prune => writeln!(f, "- prune     {what}: no longer in the set; archived")?,
                Action::Removed => writeln!(
                    f,
                    "  removed   {what}: no longer in the set; left on the platform (--prune archives it)"
                )?,
                Action::Unchanged => writeln!(f, "= unchanged {what}")?,
                Action::Refuse { refusal } => writeln!(f, "! refuse    {what}: {refusal}")?,
            }
        }
        let s = plan.summary();
        write!(
            f,
            "campaign {}: {} to create, {} to update, {} to adopt, {} to replace, {} to prune, \
             {} unchanged, {} removed and left, {} refused; {} drifted field(s); {} write(s)",
            plan.campaign,
            s.create,
            s.update,
            s.adopt,
            s.replace,
            s.prune,
            s.unchanged,
            s.removed,
            s.refused,
            s.drifted,
            s.writes
        )
    }
}

fn write_changes(f: &mut fmt::Formatter<'_>, changes: &[FieldChange]) -> fmt::Result {
    for c in changes {
        write!(f, "      {}: {} → {}", c.field, c.platform, c.desired)?;
        match &c.written {
            Some(w) if c.drifted() => writeln!(f, "  (drifted: adsync last wrote {w})")?,
            _ => writeln!(f)?,
        }
    }
    Ok(())
}
