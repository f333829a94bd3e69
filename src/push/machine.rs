//! The push machine: one campaign tree pushed to one platform account.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use strum::{Display, EnumIter};

use super::checkpoint::EncodedRow;
use crate::adapter::{AdapterError, EntityKind, EntitySpec, FoundEntity, KeywordModel, Parent};
use crate::converge::depth;
use crate::converge::{Known, Observed, PlanOptions};
use crate::model::{Campaign, Keyword};
use adsync_engine::Backoff;
use adsync_engine::Timestamp;
use adsync_engine::{
    reject, CheckpointCodec, Context, Machine, MachineDocs, Next, Status, TransitionError,
};

/// The push machine definition (see [`Pusher`](crate::Pusher)).
#[derive(Debug, Clone, Copy)]
pub struct PushMachine;

/// The typed phases of a push sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Display, EnumIter)]
pub enum PushPhase {
    /// A converging push reads what the platform holds under the campaign
    /// before its first write; the plan it decides is checkpointed with the
    /// outcome.
    Reading,
    /// Nothing is on the platform yet (or the campaign has an id and gets updated).
    Pending,
    /// The campaign exists and its id is durable; ad groups are being synced.
    CampaignCreated,
    /// Every ad group is settled; ads are being synced.
    AdGroupsCreated,
    /// Every ad is settled; keywords are being synced.
    AdsCreated,
    /// Everything the set names is settled; entities it no longer names (or
    /// that were replaced) are being archived (`--prune`).
    Pruning,
    /// A create may or may not have happened; the entity is being looked up.
    OutcomeUnknown,
    /// Stopped: the look-up could not be made (the platform failed or timed
    /// out through every retry). The next run looks the entity up again.
    LookupDeferred,
    /// Parked: an operator must say whether an entity exists.
    NeedsAttention,
    /// Every entity exists on the platform with its id recorded.
    Synced,
    /// Finished; at least one entity failed (the others are synced).
    Failed,
    /// Stopped for good on request, at a step boundary; every id is kept.
    Cancelled,
}

/// The kinds of [`PushOutcome`], for tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Display, EnumIter)]
#[allow(missing_docs)]
pub enum PushOutcomeKind {
    Observed,
    Created,
    Updated,
    KeywordsSet,
    Archived,
    FoundNone,
    FoundOne,
    FoundMany,
    Transient,
    Permanent,
    Unknown,
    NotFound,
    Interrupted,
    Resumed,
    OperatorAdopt,
    OperatorAbsent,
    Cancelled,
}

/// Settings that shape a push.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PushPolicy {
    /// Retries of transient failures.
    pub backoff: Backoff,
    /// How far before the recorded intent a look-up still accepts an entity's
    /// `created_at`. Adapters compare on the platform's clock (see
    /// [`crate::adapter::PushAdapter::find`]); the slack absorbs what that
    /// comparison cannot see: whole-second `Date` headers, latency, drift.
    pub lookup_slack_secs: u64,
}

impl Default for PushPolicy {
    fn default() -> Self {
        PushPolicy {
            backoff: Backoff::default(),
            lookup_slack_secs: 120,
        }
    }
}

/// Where the campaign is pushed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    /// Platform name (`reddit`, `memory`).
    pub platform: String,
    /// The ad account.
    pub account_id: String,
    /// How that platform stores keywords.
    pub keyword_model: KeywordModel,
}

/// What became of one entity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum EntityResult {
    /// Not settled yet.
    Pending,
    /// Created by this sync.
    Created,
    /// Had a platform id already; updated.
    Updated,
    /// Found on the platform after an unknown outcome, and adopted.
    Adopted,
    /// Set on its ad group's targeting (platforms whose keywords are not entities).
    Applied,
    /// A converging push found it as the set wants it: nothing written.
    Unchanged,
    /// Created anew, and the entity it replaces (moved to another parent, or
    /// with a field that cannot change in place) archived.
    Replaced {
        /// The archived entity's platform id.
        old_id: String,
    },
    /// No longer in the set: archived on the platform (`--prune`).
    Archived,
    /// No longer in the set: left on the platform (a push without `--prune`).
    Left,
    /// Failed; the platform's message.
    Failed {
        /// The error.
        error: String,
    },
    /// Not attempted because its parent failed.
    Skipped {
        /// Which parent failed.
        reason: String,
    },
}

/// One entity of the campaign tree with its platform id, if known.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    /// The desired fields (children stripped). Shared: states are cloned by
    /// every transition, and the specs never change during a sync.
    pub(crate) spec: Arc<EntitySpec>,
    /// Index of the parent entity (`None` for the campaign).
    pub(crate) parent: Option<usize>,
    /// The platform id, recorded the moment it is known.
    pub(crate) platform_id: Option<String>,
    /// What became of it.
    pub(crate) result: EntityResult,
    /// This entity's row in the last checkpoint that listed it. Not part of
    /// the entity's value: emptied whenever the entity changes.
    #[serde(skip)]
    pub(super) row: EncodedRow,
}

impl std::fmt::Debug for Entity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Entity")
            .field("spec", &self.spec)
            .field("parent", &self.parent)
            .field("platform_id", &self.platform_id)
            .field("result", &self.result)
            .finish_non_exhaustive()
    }
}

impl Entity {
    /// The desired fields, children stripped (as the set file gave them).
    pub fn spec(&self) -> &EntitySpec {
        &self.spec
    }

    /// Index of the parent entity in [`PushState::entities`]; `None` for the
    /// campaign.
    pub fn parent(&self) -> Option<usize> {
        self.parent
    }

    /// The platform id: `Some` from the checkpoint that followed its create
    /// (or its adoption) on, before any child is touched.
    pub fn platform_id(&self) -> Option<&str> {
        self.platform_id.as_deref()
    }

    /// What became of it so far.
    pub fn result(&self) -> &EntityResult {
        &self.result
    }

    /// An entity of the plan, not created yet unless its platform id is known.
    pub(super) fn planned(
        spec: EntitySpec,
        parent: Option<usize>,
        platform_id: Option<String>,
    ) -> Entity {
        Entity {
            spec: Arc::new(spec),
            parent,
            platform_id,
            result: EntityResult::Pending,
            row: EncodedRow::default(),
        }
    }

    /// The local id.
    pub fn local_id(&self) -> &str {
        self.spec.local_id()
    }

    /// The level.
    pub fn kind(&self) -> EntityKind {
        self.spec.kind()
    }

    fn is_blocked(&self) -> bool {
        matches!(
            self.result,
            EntityResult::Failed { .. } | EntityResult::Skipped { .. }
        )
    }
}

/// One planned effect slot: upsert an entity, or set an ad group's keywords.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Work {
    /// Read what the platform holds, and decide the plan (converging pushes:
    /// always the first item).
    Observe,
    /// Create or update `entity` (an index into [`PushState::entities`]).
    Upsert {
        /// The entity.
        entity: usize,
    },
    /// Set the keywords of ad group `ad_group` to `keywords` (targeting model).
    SetKeywords {
        /// The ad group.
        ad_group: usize,
        /// The keyword entities.
        keywords: Vec<usize>,
    },
    /// Archive `entity`, one adsync manages that the set no longer names.
    Archive {
        /// The entity (past [`PushState::entities`]' in-set part).
        entity: usize,
    },
}

/// What a converging push was started with: the user's options, and what the
/// store knew of the campaign's entities (the reading phase plans against
/// it). Part of the plan: fixed for the sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Converge {
    /// `--adopt-existing`, `--prune`, `--take-over`.
    pub(crate) options: PlanOptions,
    /// Entities from this index on are *retired*: adsync created or adopted
    /// them for this campaign and the set no longer names them.
    pub(crate) retired_from: usize,
    /// The entities adsync created or adopted, with the fields it last wrote.
    pub(crate) known: Vec<Known>,
}

/// What the reading phase decided for one entity (only entities with work
/// or something to report have one).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    /// The fields an update writes (the set file's names); empty: all of
    /// them, as a push that does not converge.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) write: Vec<String>,
    /// The platform id of the entity this one's create replaces: archived
    /// right after the create.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) replaces: Option<String>,
    /// An existing entity of its name was adopted (its id recorded).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) adopted: bool,
    /// Under keyword targeting: the ad group's keywords differ and are set.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub(crate) keywords: bool,
    /// Fields someone changed on the platform since adsync wrote them, which
    /// this push puts back to the set's value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) overwrites: Vec<Overwrite>,
}

impl Decision {
    /// The fields the update writes; empty when it writes every field.
    pub fn write(&self) -> &[String] {
        &self.write
    }

    /// The id of the entity this one replaces, archived after its create.
    pub fn replaces(&self) -> Option<&str> {
        self.replaces.as_deref()
    }

    /// The drifted fields this push overwrites.
    pub fn overwrites(&self) -> &[Overwrite] {
        &self.overwrites
    }
}

/// A drifted field a push puts back: someone changed it on the platform
/// after adsync last wrote it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Overwrite {
    /// The set file's name of the field.
    pub field: String,
    /// What the platform held.
    pub platform: serde_json::Value,
    /// What adsync had written.
    pub written: serde_json::Value,
    /// What the set asks for (and the push writes).
    pub desired: serde_json::Value,
}

/// The checkpointed state of a push sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushState {
    /// The typed phase.
    pub(crate) phase: PushPhase,
    /// Where the campaign goes. Fixed for the sync, so shared (see `entities`).
    pub(crate) target: Arc<Target>,
    /// Settings.
    pub(crate) policy: PushPolicy,
    /// The tree, flattened in sync order: campaign, ad groups, ads, keywords.
    ///
    /// Shared at two levels, because the runner keeps a copy of the latest
    /// state beside the one it returns and a transition changes one entity:
    /// cloning a state is a few reference counts, and a transition that writes
    /// ([`PushState::entity_mut`]) copies the list of pointers and the one
    /// entity it changes, instead of every entity.
    pub(crate) entities: Arc<Vec<Arc<Entity>>>,
    /// The planned work in order. Fixed for the sync, so shared.
    pub(crate) work: Arc<Vec<Work>>,
    /// The current work item.
    pub(crate) cursor: usize,
    /// Failed attempts of the current work item (or look-up).
    pub(crate) attempt: u32,
    /// When the current work item was made durable: the lower bound of a look-up.
    #[serde(with = "time::serde::rfc3339")]
    pub(crate) intent_at: Timestamp,
    /// Not before this time (backoff).
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub(crate) retry_at: Option<Timestamp>,
    /// The last error, or why the sync needs attention.
    pub(crate) last_error: Option<String>,
    /// A converging push: its options and what the store knew (`None`: a
    /// push through an adapter that cannot list).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) converge: Option<Arc<Converge>>,
    /// What the reading phase decided, by entity index (`None` before it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) decisions: Option<Arc<BTreeMap<usize, Decision>>>,
}

/// A side effect named by a push state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(tag = "effect", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum PushEffect {
    /// List what the platform holds under the account and the campaign
    /// (repeatable: reads only).
    Observe {
        /// The account.
        parent: Parent,
        /// The campaign's name: campaigns of that name are candidates to adopt.
        campaign_name: String,
        /// The platform ids of the campaign adsync manages (and listed under).
        campaign_ids: Vec<String>,
        /// Ad groups adsync manages, listed under even if moved elsewhere.
        ad_group_ids: Vec<String>,
    },
    /// Create an entity (never repeated blindly).
    Create {
        /// Under what.
        parent: Parent,
        /// What (shared with the state: building an effect copies no spec).
        spec: Arc<EntitySpec>,
    },
    /// Update an entity that has a platform id (repeatable).
    Update {
        /// Under what.
        parent: Parent,
        /// Its platform id.
        id: String,
        /// To what (shared with the state).
        spec: Arc<EntitySpec>,
        /// Only these fields (a converging push); `None`: every field.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fields: Option<Vec<String>>,
    },
    /// Archive an entity (repeatable).
    Archive {
        /// The account.
        parent: Parent,
        /// Its level.
        kind: EntityKind,
        /// Its local id (in the set that pushed it).
        local_id: String,
        /// Its platform id.
        id: String,
    },
    /// Set an ad group's keywords (repeatable).
    SetKeywords {
        /// The account.
        parent: Parent,
        /// The ad group's local id.
        ad_group: String,
        /// The ad group's platform id.
        ad_group_id: String,
        /// The keywords.
        keywords: Vec<Keyword>,
    },
    /// Look an entity up after an unknown create outcome (repeatable).
    Find {
        /// Under what.
        parent: Parent,
        /// Its local id.
        local_id: String,
        /// Level.
        kind: EntityKind,
        /// Exact name.
        name: String,
        /// Earliest creation time accepted.
        #[serde(with = "time::serde::rfc3339")]
        created_after: Timestamp,
    },
}

/// What came of a push effect, or an input from the runner or an operator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PushOutcome {
    /// What the platform lists under the account and the campaign.
    Observed {
        /// Every listed entity, in the set file's vocabulary.
        entities: Vec<Observed>,
    },
    /// The archive succeeded.
    Archived,
    /// The create succeeded with this id.
    Created {
        /// The platform id.
        id: String,
    },
    /// The update succeeded.
    Updated,
    /// The keywords were set.
    KeywordsSet,
    /// The look-up returned these matches.
    Found {
        /// Matches (exact name, created after the intent).
        matches: Vec<FoundEntity>,
    },
    /// The effect failed.
    Failed {
        /// The classified error.
        error: AdapterError,
    },
    /// Runner: after a restart, the create this state names may have been sent.
    Interrupted,
    /// Runner: a new run picks up a sync that stopped because the platform
    /// was unavailable during a look-up.
    Resumed,
    /// Operator: the entity exists with this id; adopt it.
    OperatorAdopt {
        /// The platform id.
        id: String,
    },
    /// Operator: the entity does not exist; create it.
    OperatorAbsent,
    /// Stop for good, at a step boundary ([`adsync_engine::Runner::cancel`]):
    /// only where no create's outcome is pending, so every entity that exists
    /// has its id recorded.
    Cancelled,
}

impl PushState {
    /// The typed phase, as recorded with every checkpoint.
    pub fn phase(&self) -> PushPhase {
        self.phase
    }

    /// Where the campaign goes: platform, account, set.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The settings the sync was started with.
    pub fn policy(&self) -> &PushPolicy {
        &self.policy
    }

    /// The campaign tree flattened in sync order: campaign, ad groups, ads,
    /// keywords; a parent always comes before its children.
    pub fn entities(&self) -> &[Arc<Entity>] {
        &self.entities
    }

    /// Failed attempts of the current work item (or look-up) so far.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// While backing off: the effect does not run before this time.
    pub fn retry_at(&self) -> Option<Timestamp> {
        self.retry_at
    }

    /// The last error, or why the sync needs attention.
    pub fn last_error(&self) -> Option<&str> {
        self.last_error.as_deref()
    }

    /// The initial state of a push of `campaign`. Entities whose local id is in
    /// `known_ids` already exist on the platform and take the update path.
    pub fn new(
        target: Target,
        campaign: &Campaign,
        known_ids: &BTreeMap<String, String>,
        policy: PushPolicy,
        now: Timestamp,
    ) -> Self {
        let mut entities = Vec::new();
        let known = |id: &str| known_ids.get(id).cloned();
        let mut root = campaign.clone();
        root.ad_groups.clear();
        let root_id = known(&root.id);
        entities.push(Entity::planned(EntitySpec::Campaign(root), None, root_id));
        let mut group_index = Vec::new();
        for group in &campaign.ad_groups {
            let mut g = group.clone();
            g.ads.clear();
            g.keywords.clear();
            group_index.push(entities.len());
            let id = known(&g.id);
            entities.push(Entity::planned(EntitySpec::AdGroup(g), Some(0), id));
        }
        for (group, &gi) in campaign.ad_groups.iter().zip(&group_index) {
            for ad in &group.ads {
                entities.push(Entity::planned(
                    EntitySpec::Ad(ad.clone()),
                    Some(gi),
                    known(&ad.id),
                ));
            }
        }
        let mut keyword_sets = Vec::new();
        for (group, &gi) in campaign.ad_groups.iter().zip(&group_index) {
            let mut set = Vec::new();
            for keyword in &group.keywords {
                set.push(entities.len());
                let id = match target.keyword_model {
                    KeywordModel::Entities => known(&keyword.id),
                    KeywordModel::AdGroupTargeting => None,
                };
                entities.push(Entity::planned(
                    EntitySpec::Keyword(keyword.clone()),
                    Some(gi),
                    id,
                ));
            }
            if !set.is_empty() {
                keyword_sets.push((gi, set));
            }
        }
        let mut work: Vec<Work> = entities
            .iter()
            .enumerate()
            .filter(|(_, e)| {
                e.kind() != EntityKind::Keyword || target.keyword_model == KeywordModel::Entities
            })
            .map(|(entity, _)| Work::Upsert { entity })
            .collect();
        if target.keyword_model == KeywordModel::AdGroupTargeting {
            work.extend(
                keyword_sets
                    .into_iter()
                    .map(|(ad_group, keywords)| Work::SetKeywords { ad_group, keywords }),
            );
        }
        PushState {
            phase: PushPhase::Pending,
            target: Arc::new(target),
            policy,
            entities: Arc::new(entities.into_iter().map(Arc::new).collect()),
            work: Arc::new(work),
            cursor: 0,
            attempt: 0,
            intent_at: now,
            retry_at: None,
            last_error: None,
            converge: None,
            decisions: None,
        }
    }

    /// The initial state of a *converging* push of `campaign`: it first reads
    /// what the platform holds (phase [`PushPhase::Reading`]), then plans
    /// against the set and `known` (the entities adsync created or adopted
    /// for this campaign, each with the fields it last wrote and its spec)
    /// and writes only what differs. Known entities the set no longer names
    /// are kept as *retired* entities, archived with `--prune`.
    pub(crate) fn converging(
        target: Target,
        campaign: &Campaign,
        known: Vec<(Known, Arc<EntitySpec>)>,
        options: PlanOptions,
        policy: PushPolicy,
        now: Timestamp,
    ) -> Self {
        let ids: BTreeMap<String, String> = known
            .iter()
            .map(|(k, _)| (k.local_id.clone(), k.id.clone()))
            .collect();
        let mut state = PushState::new(target, campaign, &ids, policy, now);
        let targeting = state.target.keyword_model == KeywordModel::AdGroupTargeting;
        let retired_from = state.entities.len();
        let mut entities: Vec<Arc<Entity>> = state.entities.as_ref().clone();
        let index_of = |entities: &[Arc<Entity>], kind: EntityKind, local: &str| {
            entities
                .iter()
                .position(|e| e.kind() == kind && e.local_id() == local)
        };
        // Parents first, so a retired child finds its retired parent.
        let mut retired: Vec<&(Known, Arc<EntitySpec>)> = known
            .iter()
            .filter(|(k, _)| index_of(&entities[..retired_from], k.kind, &k.local_id).is_none())
            .filter(|(k, _)| !(targeting && k.kind == EntityKind::Keyword))
            .collect();
        retired.sort_by_key(|(k, _)| depth(k.kind));
        for (k, spec) in retired {
            let parent = k.parent.as_deref().and_then(|p| {
                let kind = match k.kind {
                    EntityKind::Campaign => return None,
                    EntityKind::AdGroup => EntityKind::Campaign,
                    EntityKind::Ad | EntityKind::Keyword => EntityKind::AdGroup,
                };
                index_of(&entities, kind, p)
            });
            let mut entity = Entity::planned(spec.as_ref().clone(), parent, Some(k.id.clone()));
            entity.spec = spec.clone();
            entities.push(Arc::new(entity));
        }
        let mut work = vec![Work::Observe];
        work.extend(
            state
                .work
                .iter()
                .filter(|w| matches!(w, Work::Upsert { .. }))
                .cloned(),
        );
        if targeting {
            // Every ad group, even one whose set has no keywords: `[]` clears
            // the old targeting. The reading phase skips those that match.
            for (group, e) in entities[..retired_from].iter().enumerate() {
                if e.kind() == EntityKind::AdGroup {
                    let keywords = (0..retired_from)
                        .filter(|&k| {
                            entities[k].kind() == EntityKind::Keyword
                                && entities[k].parent == Some(group)
                        })
                        .collect();
                    work.push(Work::SetKeywords {
                        ad_group: group,
                        keywords,
                    });
                }
            }
        }
        // Children before parents: an archived parent's children stay as they are.
        let mut prunes: Vec<usize> = (retired_from..entities.len()).collect();
        prunes.sort_by_key(|&e| std::cmp::Reverse(depth(entities[e].kind())));
        work.extend(prunes.into_iter().map(|entity| Work::Archive { entity }));
        state.entities = Arc::new(entities);
        state.work = Arc::new(work);
        state.phase = PushPhase::Reading;
        state.converge = Some(Arc::new(Converge {
            options,
            retired_from,
            known: known.into_iter().map(|(k, _)| k).collect(),
        }));
        state
    }

    /// Whether this push converges (reads the platform first, writes only
    /// what differs).
    pub fn converges(&self) -> bool {
        self.converge.is_some()
    }

    /// What the reading phase decided for entity `index` (`None` before it,
    /// and for entities with nothing to write or report).
    pub fn decision(&self, index: usize) -> Option<&Decision> {
        self.decisions.as_ref()?.get(&index)
    }

    /// Whether entity `index` is retired: adsync manages it, the set no
    /// longer names it.
    pub fn is_retired(&self, index: usize) -> bool {
        self.converge
            .as_ref()
            .is_some_and(|c| index >= c.retired_from)
    }

    /// The campaign's local id.
    pub fn campaign_id(&self) -> &str {
        self.entities.first().map(|e| e.local_id()).unwrap_or("")
    }

    /// Platform ids known so far, by local id.
    pub fn platform_ids(&self) -> BTreeMap<String, String> {
        self.entities
            .iter()
            .filter_map(|e| {
                e.platform_id
                    .clone()
                    .map(|id| (e.local_id().to_string(), id))
            })
            .collect()
    }

    /// The entity an operator decides about when the sync needs attention: the
    /// one whose create is undecided, with where it would live (`None` when
    /// no create is pending).
    pub fn undecided(&self) -> Option<(&Entity, Parent)> {
        let index = self.pending_create()?;
        Some((self.entities.get(index)?.as_ref(), self.parent_of(index)?))
    }

    fn current(&self) -> Option<&Work> {
        self.work.get(self.cursor)
    }

    /// The entity whose create is pending in the current work item, if the item is a create.
    fn pending_create(&self) -> Option<usize> {
        match self.current()? {
            Work::Upsert { entity } if self.entities.get(*entity)?.platform_id.is_none() => {
                Some(*entity)
            }
            _ => None,
        }
    }

    fn parent_of(&self, entity: usize) -> Option<Parent> {
        let parent_id = match self.entities.get(entity)?.parent {
            None => None,
            Some(p) => Some(self.entities.get(p)?.platform_id.clone()?),
        };
        Some(Parent {
            account_id: self.target.account_id.clone(),
            parent_id,
        })
    }

    fn describe(&self, entity: usize) -> String {
        match self.entities.get(entity) {
            Some(e) => format!("{} `{}` ({})", e.kind(), e.local_id(), e.spec.lookup_name()),
            None => format!("entity #{entity}"),
        }
    }

    /// The phase in which work item `cursor` runs.
    fn phase_for(&self, cursor: usize) -> PushPhase {
        match self.work.get(cursor) {
            None => PushPhase::Synced,
            Some(Work::Observe) => PushPhase::Reading,
            Some(Work::Archive { .. }) => PushPhase::Pruning,
            Some(Work::SetKeywords { .. }) => PushPhase::AdsCreated,
            Some(Work::Upsert { entity }) => match self.entities.get(*entity).map(|e| e.kind()) {
                Some(EntityKind::Campaign) | None => PushPhase::Pending,
                Some(EntityKind::AdGroup) => PushPhase::CampaignCreated,
                Some(EntityKind::Ad) => PushPhase::AdGroupsCreated,
                Some(EntityKind::Keyword) => PushPhase::AdsCreated,
            },
        }
    }

    fn is_blocked(&self, work: &Work) -> bool {
        match work {
            Work::Observe => false,
            Work::Upsert { entity } | Work::Archive { entity } => {
                self.entities.get(*entity).is_none_or(|e| e.is_blocked())
            }
            Work::SetKeywords { ad_group, .. } => {
                self.entities.get(*ad_group).is_none_or(|e| e.is_blocked())
            }
        }
    }

    /// Whether `work` has nothing left to do: the reading phase settled its
    /// entity (unchanged, adopted as it is, left) or found its keywords
    /// already in place.
    fn is_settled(&self, work: &Work) -> bool {
        match work {
            Work::Observe => false,
            Work::Upsert { entity } | Work::Archive { entity } => self
                .entities
                .get(*entity)
                .is_some_and(|e| e.result != EntityResult::Pending),
            Work::SetKeywords { ad_group, .. } => self
                .decisions
                .as_ref()
                .is_some_and(|d| !d.get(ad_group).is_some_and(|d| d.keywords)),
        }
    }

    /// Marks the current item done and moves to the next unblocked one.
    fn advance(mut self, ctx: &Context) -> Self {
        self.attempt = 0;
        self.retry_at = None;
        self.intent_at = ctx.now;
        self.cursor += 1;
        while let Some(work) = self.work.get(self.cursor) {
            if !self.is_blocked(work) && !self.is_settled(work) {
                break;
            }
            self.cursor += 1;
        }
        if self.cursor >= self.work.len() {
            let failed: Vec<String> = (0..self.entities.len())
                .filter(|&i| matches!(self.entities[i].result, EntityResult::Failed { .. }))
                .map(|i| self.describe(i))
                .collect();
            if failed.is_empty() {
                self.phase = PushPhase::Synced;
                self.last_error = None;
            } else {
                self.phase = PushPhase::Failed;
                let first = self.last_error.take().unwrap_or_default();
                self.last_error = Some(format!(
                    "{} failed: {}; last error: {first}",
                    failed.len(),
                    failed.join(", ")
                ));
            }
        } else {
            self.phase = self.phase_for(self.cursor);
        }
        self
    }

    /// Fails the current item's entity (and skips its descendants), then advances.
    fn fail_current(mut self, error: String, ctx: &Context) -> Self {
        let target = match self.current() {
            Some(Work::Upsert { entity } | Work::Archive { entity }) => vec![*entity],
            // An empty keyword set (clearing the targeting) fails its group.
            Some(Work::SetKeywords { ad_group, keywords }) if keywords.is_empty() => {
                vec![*ad_group]
            }
            Some(Work::SetKeywords { keywords, .. }) => keywords.clone(),
            Some(Work::Observe) | None => vec![],
        };
        for &t in &target {
            let what = self.describe(t);
            if let Some(e) = self.entity_mut(t) {
                e.result = EntityResult::Failed {
                    error: error.clone(),
                };
            }
            // Children come after parents in the flattened order.
            for i in t + 1..self.entities.len() {
                let e = &self.entities[i];
                let parent_blocked = e.parent.is_some_and(|p| self.entities[p].is_blocked());
                if parent_blocked && !e.is_blocked() {
                    if let Some(e) = self.entity_mut(i) {
                        e.result = EntityResult::Skipped {
                            reason: format!("{what} failed"),
                        };
                    }
                }
            }
        }
        self.last_error = Some(error);
        self.advance(ctx)
    }

    /// Schedules another attempt of the current item, or gives up after the last one.
    fn retry_or(
        mut self,
        error: &AdapterError,
        ctx: &Context,
        give_up: impl FnOnce(Self, String) -> Self,
    ) -> Self {
        self.attempt += 1;
        let message = error.to_string();
        if !self.policy.backoff.allows_retry(self.attempt) {
            let attempts = self.attempt;
            return give_up(self, format!("{message} (after {attempts} attempts)"));
        }
        let mut wait = self
            .policy
            .backoff
            .delay_with_jitter(self.attempt, ctx.jitter);
        if let AdapterError::Transient {
            retry_after: Some(asked),
            ..
        } = error
        {
            wait = wait.max(*asked);
        }
        self.retry_at = Some(ctx.now + wait);
        self.last_error = Some(message);
        self
    }

    /// Entity `index`, to change: copied first if another state shares it.
    pub fn entity_mut(&mut self, index: usize) -> Option<&mut Entity> {
        let entity = Arc::make_mut(Arc::make_mut(&mut self.entities).get_mut(index)?);
        // Its encoded row is about to be stale.
        entity.row = EncodedRow::default();
        Some(entity)
    }

    fn set_result(&mut self, entity: usize, result: EntityResult, id: Option<String>) {
        if let Some(e) = self.entity_mut(entity) {
            if id.is_some() {
                e.platform_id = id;
            }
            e.result = result;
        }
    }

    fn defer(mut self, reason: String) -> Self {
        self.phase = PushPhase::LookupDeferred;
        self.attempt = 0;
        self.retry_at = None;
        self.last_error = Some(reason);
        self
    }

    /// Whether the pending look-up is for an entity whose recorded id was gone
    /// (by name alone, of any age), rather than after an unknown create.
    fn looking_up_gone(&self) -> bool {
        self.intent_at == GONE_LOOKUP_SINCE
    }

    fn attention(mut self, reason: String) -> Self {
        self.phase = PushPhase::NeedsAttention;
        self.retry_at = None;
        self.last_error = Some(reason);
        self
    }

    fn back_to_create(mut self, ctx: &Context) -> Self {
        self.phase = self.phase_for(self.cursor);
        self.attempt = 0;
        self.retry_at = None;
        self.intent_at = ctx.now;
        self
    }
}

impl PushState {
    /// The entity `index` of the set as the planner sees it ([`Desired`]):
    /// under keyword targeting an ad group carries its keyword children's texts.
    fn desired(&self, index: usize) -> Option<crate::converge::Desired> {
        let e = self.entities.get(index)?;
        let model = self.target.keyword_model;
        let fields = match (e.spec.as_ref(), model) {
            (EntitySpec::AdGroup(group), KeywordModel::AdGroupTargeting) => {
                let mut group = group.clone();
                group.keywords = self
                    .entities
                    .iter()
                    .filter(|k| k.parent == Some(index) && k.kind() == EntityKind::Keyword)
                    .filter_map(|k| match k.spec.as_ref() {
                        EntitySpec::Keyword(kw) => Some(kw.clone()),
                        _ => None,
                    })
                    .collect();
                crate::converge::fields_of(&EntitySpec::AdGroup(group), model)
            }
            (spec, _) => crate::converge::fields_of(spec, model),
        };
        Some(crate::converge::Desired {
            kind: e.kind(),
            local_id: e.local_id().to_string(),
            parent: e
                .parent
                .and_then(|p| self.entities.get(p))
                .map(|p| p.local_id().to_string()),
            name: e.spec.lookup_name().to_string(),
            fields,
        })
    }

    /// The reading phase's outcome applied: plans the set against what the
    /// store knew and what the platform lists ([`crate::converge::plan`]),
    /// records adopted ids and the decisions (durable with this transition,
    /// before any write), settles what needs no write, and moves to the first
    /// write. A refusal fails the sync here, before any write.
    fn decide(mut self, observed: &[Observed], converge: &Converge, ctx: &Context) -> Self {
        use crate::converge::{plan, Action};
        let targeting = self.target.keyword_model == KeywordModel::AdGroupTargeting;
        let in_set = converge.retired_from.min(self.entities.len());
        let desired: Vec<_> = (0..in_set)
            .filter(|&i| !(targeting && self.entities[i].kind() == EntityKind::Keyword))
            .filter_map(|i| self.desired(i))
            .collect();
        let planned = plan(
            self.campaign_id(),
            &desired,
            &converge.known,
            observed,
            converge.options,
        );
        let index: std::collections::HashMap<(EntityKind, String), usize> = self
            .entities
            .iter()
            .enumerate()
            .filter(|(_, e)| !(targeting && e.kind() == EntityKind::Keyword))
            .map(|(i, e)| ((e.kind(), e.local_id().to_string()), i))
            .collect();
        let refused: Vec<String> = planned
            .refusals()
            .map(|r| match &r.action {
                Action::Refuse { refusal } => {
                    format!("{} `{}` ({}): {refusal}", r.kind, r.local_id, r.name)
                }
                _ => String::new(),
            })
            .collect();
        if !refused.is_empty() {
            for entry in planned.refusals() {
                let Some(&i) = index.get(&(entry.kind, entry.local_id.clone())) else {
                    continue;
                };
                if let (Action::Refuse { refusal }, Some(e)) = (&entry.action, self.entity_mut(i)) {
                    e.result = EntityResult::Failed {
                        error: refusal.to_string(),
                    };
                }
            }
            self.phase = PushPhase::Failed;
            self.cursor = self.work.len();
            self.retry_at = None;
            self.last_error = Some(format!("refused before any write: {}", refused.join("; ")));
            return self;
        }
        let mut decisions = BTreeMap::new();
        let mut settled = std::collections::HashSet::new();
        for entry in &planned.entries {
            let Some(&i) = index.get(&(entry.kind, entry.local_id.clone())) else {
                continue;
            };
            settled.insert(i);
            let is_group = entry.kind == EntityKind::AdGroup;
            let wants_keywords = is_group
                && targeting
                && desired
                    .iter()
                    .find(|d| d.kind == EntityKind::AdGroup && d.local_id == entry.local_id)
                    .and_then(|d| d.fields.get("keywords"))
                    .and_then(serde_json::Value::as_array)
                    .is_some_and(|k| !k.is_empty());
            let of_changes = |changes: &[crate::converge::FieldChange], adopted: bool| {
                let keywords = changes.iter().any(|c| c.field == "keywords");
                Decision {
                    write: changes
                        .iter()
                        .filter(|c| c.field != "keywords")
                        .map(|c| c.field.to_string())
                        .collect(),
                    replaces: None,
                    adopted,
                    keywords,
                    overwrites: changes
                        .iter()
                        .filter(|c| c.drifted())
                        .map(|c| Overwrite {
                            field: c.field.to_string(),
                            platform: c.platform.clone(),
                            written: c.written.clone().unwrap_or_default(),
                            desired: c.desired.clone(),
                        })
                        .collect(),
                }
            };
            match &entry.action {
                Action::Create => {
                    decisions.insert(
                        i,
                        Decision {
                            keywords: wants_keywords,
                            ..Decision::default()
                        },
                    );
                }
                Action::Recreate { .. } | Action::Replace { .. } => {
                    if let Some(e) = self.entity_mut(i) {
                        e.platform_id = None;
                    }
                    let replaces = match &entry.action {
                        Action::Replace { old_id, .. } => Some(old_id.clone()),
                        _ => None,
                    };
                    decisions.insert(
                        i,
                        Decision {
                            keywords: wants_keywords,
                            replaces,
                            ..Decision::default()
                        },
                    );
                }
                Action::Update { changes } | Action::Adopt { changes } => {
                    let adopted = matches!(entry.action, Action::Adopt { .. });
                    let decision = of_changes(changes, adopted);
                    if let Some(e) = self.entity_mut(i) {
                        if adopted {
                            e.platform_id = entry.id.clone();
                        }
                        if decision.write.is_empty() {
                            e.result = if adopted {
                                EntityResult::Adopted
                            } else {
                                EntityResult::Unchanged
                            };
                        }
                    }
                    decisions.insert(i, decision);
                }
                Action::Unchanged => {
                    if let Some(e) = self.entity_mut(i) {
                        e.result = EntityResult::Unchanged;
                    }
                }
                Action::Prune => {}
                Action::Removed => {
                    if let Some(e) = self.entity_mut(i) {
                        e.result = EntityResult::Left;
                    }
                }
                Action::Refuse { .. } => {}
            }
        }
        // Retired entities the plan leaves out are archived or gone already.
        for i in in_set..self.entities.len() {
            if !settled.contains(&i) {
                if let Some(e) = self.entity_mut(i) {
                    e.result = EntityResult::Unchanged;
                }
            }
        }
        // Keywords whose group's targeting is already right.
        if targeting {
            for i in 0..in_set {
                let e = &self.entities[i];
                let group_sets = e
                    .parent
                    .and_then(|g| decisions.get(&g))
                    .is_some_and(|d| d.keywords);
                if e.kind() == EntityKind::Keyword && !group_sets {
                    if let Some(e) = self.entity_mut(i) {
                        e.result = EntityResult::Unchanged;
                    }
                }
            }
        }
        self.decisions = Some(Arc::new(decisions));
        self.last_error = None;
        self.advance(ctx)
    }

    /// The platform could not be read: the sync fails before any write.
    fn unreadable(mut self, message: String) -> Self {
        self.phase = PushPhase::Failed;
        self.retry_at = None;
        self.last_error = Some(format!(
            "could not read what the platform holds, so nothing was written: {message}"
        ));
        self
    }

    /// Whether the current item is the archive of the entity its create
    /// replaced: the entity exists (created or adopted) and `replaces` is set.
    fn replacing(&self) -> Option<(usize, String)> {
        let Some(&Work::Upsert { entity }) = self.current() else {
            return None;
        };
        let e = self.entities.get(entity)?;
        let old = self.decision(entity)?.replaces.clone()?;
        (e.platform_id.is_some()
            && matches!(e.result, EntityResult::Created | EntityResult::Adopted))
        .then_some((entity, old))
    }

    /// Records that `entity` exists as `id` (created or adopted), then moves
    /// on, or stays on the item to archive what it replaces.
    fn exists(mut self, entity: usize, result: EntityResult, id: String, ctx: &Context) -> Self {
        self.set_result(entity, result, Some(id));
        if self.replacing().is_some() {
            self.phase = self.phase_for(self.cursor);
            self.attempt = 0;
            self.retry_at = None;
            self.intent_at = ctx.now;
            self
        } else {
            self.advance(ctx)
        }
    }
}

/// The intent time recorded for the look-up of an entity whose platform id is
/// gone: any entity of its name under its parent is a candidate, however old.
/// (A create's intent is always a real, recent time.)
const GONE_LOOKUP_SINCE: Timestamp = Timestamp::UNIX_EPOCH;

impl Machine for PushMachine {
    const KIND: &'static str = "push";
    /// Version 2: checkpoints hold progress only; the plan is stored once
    /// (see `src/push/checkpoint.rs`).
    const STATE_VERSION: u32 = 2;
    type State = PushState;
    type Effect = PushEffect;
    type Outcome = PushOutcome;
    type Phase = PushPhase;

    fn phase(state: &PushState) -> PushPhase {
        state.phase
    }

    fn next(state: &PushState) -> Next<PushEffect> {
        let parked = Next::Settled(Status::NeedsAttention);
        match state.phase {
            PushPhase::Synced => Next::Settled(Status::Succeeded),
            PushPhase::Failed => Next::Settled(Status::Failed),
            PushPhase::Cancelled => Next::Settled(Status::Cancelled),
            PushPhase::NeedsAttention => parked,
            // Unfinished, but nothing to run now: a later run wakes it
            // (`on_restart`), so one run never spins on a platform that is down.
            PushPhase::LookupDeferred => Next::Settled(Status::Running),
            PushPhase::OutcomeUnknown => {
                let Some(entity) = state.pending_create() else {
                    return parked;
                };
                let (Some(parent), Some(e)) = (state.parent_of(entity), state.entities.get(entity))
                else {
                    return parked;
                };
                let slack = Duration::from_secs(state.policy.lookup_slack_secs);
                Next::Effect(PushEffect::Find {
                    parent,
                    local_id: e.local_id().to_string(),
                    kind: e.kind(),
                    name: e.spec.lookup_name().to_string(),
                    created_after: state.intent_at - slack,
                })
            }
            PushPhase::Reading => {
                let Some(converge) = &state.converge else {
                    return parked;
                };
                let ids = |kind: EntityKind| -> Vec<String> {
                    converge
                        .known
                        .iter()
                        .filter(|k| k.kind == kind)
                        .map(|k| k.id.clone())
                        .collect()
                };
                Next::Effect(PushEffect::Observe {
                    parent: Parent {
                        account_id: state.target.account_id.clone(),
                        parent_id: None,
                    },
                    campaign_name: state
                        .entities
                        .first()
                        .map(|e| e.spec.lookup_name().to_string())
                        .unwrap_or_default(),
                    campaign_ids: ids(EntityKind::Campaign),
                    ad_group_ids: ids(EntityKind::AdGroup),
                })
            }
            PushPhase::Pending
            | PushPhase::CampaignCreated
            | PushPhase::AdGroupsCreated
            | PushPhase::AdsCreated
            | PushPhase::Pruning => match state.current() {
                None | Some(Work::Observe) => parked,
                Some(Work::Upsert { entity }) => {
                    let (Some(parent), Some(e)) =
                        (state.parent_of(*entity), state.entities.get(*entity))
                    else {
                        return parked;
                    };
                    if let Some((_, old)) = state.replacing() {
                        return Next::Effect(PushEffect::Archive {
                            parent: Parent {
                                account_id: state.target.account_id.clone(),
                                parent_id: None,
                            },
                            kind: e.kind(),
                            local_id: e.local_id().to_string(),
                            id: old,
                        });
                    }
                    let fields = state
                        .decision(*entity)
                        .map(|d| d.write.clone())
                        .filter(|w| !w.is_empty());
                    Next::Effect(match &e.platform_id {
                        None => PushEffect::Create {
                            parent,
                            spec: e.spec.clone(),
                        },
                        Some(id) => PushEffect::Update {
                            parent,
                            id: id.clone(),
                            spec: e.spec.clone(),
                            fields,
                        },
                    })
                }
                Some(Work::Archive { entity }) => {
                    let Some(e) = state.entities.get(*entity) else {
                        return parked;
                    };
                    let Some(id) = e.platform_id.clone() else {
                        return parked;
                    };
                    Next::Effect(PushEffect::Archive {
                        parent: Parent {
                            account_id: state.target.account_id.clone(),
                            parent_id: None,
                        },
                        kind: e.kind(),
                        local_id: e.local_id().to_string(),
                        id,
                    })
                }
                Some(Work::SetKeywords { ad_group, keywords }) => {
                    let Some(group) = state.entities.get(*ad_group) else {
                        return parked;
                    };
                    let Some(ad_group_id) = group.platform_id.clone() else {
                        return parked;
                    };
                    let keywords = keywords
                        .iter()
                        .filter_map(|&k| match state.entities.get(k).map(|e| e.spec.as_ref()) {
                            Some(EntitySpec::Keyword(kw)) => Some(kw.clone()),
                            _ => None,
                        })
                        .collect();
                    Next::Effect(PushEffect::SetKeywords {
                        parent: Parent {
                            account_id: state.target.account_id.clone(),
                            parent_id: None,
                        },
                        ad_group: group.local_id().to_string(),
                        ad_group_id,
                        keywords,
                    })
                }
            },
        }
    }

    fn transition(
        state: &PushState,
        outcome: &PushOutcome,
        ctx: &Context,
    ) -> Result<PushState, TransitionError> {
        use PushOutcome as O;
        use PushPhase as P;
        let s = state.clone();
        // What the phase is about: the create whose outcome is pending (if
        // any), and in the four step phases the work item at the cursor. Arms
        // that need one come after the arm refusing its absence, so their
        // `unwrap_or_default` never picks a default.
        let create = state.pending_create();
        let work = state.current();
        // The four step phases (a pattern, so the match stays flat).
        macro_rules! step {
            () => {
                P::Pending | P::CampaignCreated | P::AdGroupsCreated | P::AdsCreated | P::Pruning
            };
        }
        match (state.phase, outcome) {
            (P::Synced | P::Failed | P::Cancelled, _) => {
                reject::<Self>(state, outcome, "the sync has finished")
            }
            (P::Reading, _) if state.converge.is_none() => {
                reject::<Self>(state, outcome, "only a converging push reads first")
            }
            (P::Reading, O::Observed { entities }) => {
                let converge = state.converge.clone().unwrap_or_else(|| {
                    Arc::new(Converge {
                        options: PlanOptions::default(),
                        retired_from: state.entities.len(),
                        known: vec![],
                    })
                });
                Ok(s.decide(entities, &converge, ctx))
            }
            (
                P::Reading,
                O::Failed {
                    error: error @ (AdapterError::Transient { .. } | AdapterError::Unknown { .. }),
                },
            ) => Ok(s.retry_or(error, ctx, |s, msg| s.unreadable(msg))),
            (
                P::Reading,
                O::Failed {
                    error: error @ (AdapterError::Permanent { .. } | AdapterError::NotFound { .. }),
                },
            ) => Ok(s.unreadable(error.to_string())),
            (step!() | P::Reading, O::Cancelled) => {
                let mut s = s;
                s.phase = P::Cancelled;
                s.retry_at = None;
                s.last_error = Some("cancelled".to_string());
                Ok(s)
            }
            (P::OutcomeUnknown | P::LookupDeferred | P::NeedsAttention, O::Cancelled) => {
                reject::<Self>(
                    state,
                    outcome,
                    "a create's outcome is not known yet: the look-up (or an operator) settles it first, so no entity is left without its id",
                )
            }

            (P::LookupDeferred, O::Resumed) => {
                let mut s = s;
                s.phase = P::OutcomeUnknown;
                s.attempt = 0;
                s.retry_at = None;
                Ok(s)
            }
            (P::LookupDeferred, _) => reject::<Self>(
                state,
                outcome,
                "the sync stopped because the platform was unavailable; a new run looks the entity up again",
            ),

            (P::NeedsAttention, _) if create.is_none() => {
                reject::<Self>(state, outcome, "nothing is pending a decision")
            }
            (P::NeedsAttention, O::OperatorAdopt { id }) => {
                let mut s = s;
                s.last_error = None;
                match create {
                    Some(entity) => Ok(s.exists(entity, EntityResult::Adopted, id.clone(), ctx)),
                    None => Ok(s.advance(ctx)),
                }
            }
            (P::NeedsAttention, O::OperatorAbsent) => {
                let mut s = s.back_to_create(ctx);
                s.last_error = None;
                Ok(s)
            }
            (P::NeedsAttention, _) => reject::<Self>(
                state,
                outcome,
                "the sync waits for an operator: adopt an id or declare the entity absent",
            ),

            (P::OutcomeUnknown, _) if create.is_none() => {
                reject::<Self>(state, outcome, "no create is pending")
            }
            (P::Reading, _) => reject::<Self>(
                state,
                outcome,
                "the pending effect reads what the platform holds",
            ),
            (P::OutcomeUnknown, O::Found { matches }) => {
                let entity = create.unwrap_or_default();
                match matches.as_slice() {
                    // Verified absent: creating now cannot duplicate.
                    [] => Ok(s.back_to_create(ctx)),
                    [found] if state.looking_up_gone() => {
                        // Its old id is gone; this one has its name under its
                        // parent: record it, then bring it to the spec.
                        let mut s = s.back_to_create(ctx);
                        if let Some(e) = s.entity_mut(entity) {
                            e.platform_id = Some(found.id.clone());
                        }
                        Ok(s)
                    }
                    [found] => {
                        Ok(s.exists(entity, EntityResult::Adopted, found.id.clone(), ctx))
                    }
                    many => {
                        let ids: Vec<&str> = many.iter().map(|m| m.id.as_str()).collect();
                        let what = state.describe(entity);
                        Ok(s.attention(format!(
                            "cannot tell which of {} platform entities is {what}: ids {}; adopt one or declare it absent",
                            many.len(),
                            ids.join(", ")
                        )))
                    }
                }
            }
            (
                P::OutcomeUnknown,
                O::Failed {
                    error: error @ (AdapterError::Transient { .. } | AdapterError::Unknown { .. }),
                },
            ) => {
                let what = state.describe(create.unwrap_or_default());
                // The platform could not answer: nothing is undecidable
                // yet, so stop where a later run asks again instead of
                // parking for an operator.
                Ok(s.retry_or(error, ctx, |s, msg| {
                    s.defer(format!(
                        "platform unavailable during the look-up of {what}: {msg}; \
                         the next resume looks it up again"
                    ))
                }))
            }
            (
                P::OutcomeUnknown,
                O::Failed {
                    error: error @ (AdapterError::Permanent { .. } | AdapterError::NotFound { .. }),
                },
            ) => {
                let what = state.describe(create.unwrap_or_default());
                Ok(s.attention(format!(
                    "cannot tell whether {what} was created: look-up rejected: {error}"
                )))
            }
            (P::OutcomeUnknown, O::Interrupted | O::Resumed) => reject::<Self>(
                state,
                outcome,
                "a look-up is repeatable and is simply run again",
            ),
            (P::OutcomeUnknown, _) => {
                reject::<Self>(state, outcome, "the pending effect is a look-up")
            }

            (step!(), _) if work.is_none() => {
                reject::<Self>(state, outcome, "no work is pending")
            }
            (step!(), O::Created { id }) => match create {
                Some(entity) => Ok(s.exists(entity, EntityResult::Created, id.clone(), ctx)),
                None => reject::<Self>(state, outcome, "the pending effect is not a create"),
            },
            (step!(), O::Updated) => match work {
                Some(&Work::Upsert { entity }) if create.is_none() && state.replacing().is_none() => {
                    let mut s = s;
                    let adopted = state.decision(entity).is_some_and(|d| d.adopted);
                    let result = if adopted {
                        EntityResult::Adopted
                    } else {
                        EntityResult::Updated
                    };
                    s.set_result(entity, result, None);
                    Ok(s.advance(ctx))
                }
                _ => reject::<Self>(state, outcome, "the pending effect is not an update"),
            },
            (step!(), O::KeywordsSet) => match work {
                Some(Work::SetKeywords { ad_group, keywords }) => {
                    let mut s = s;
                    for &k in keywords {
                        s.set_result(k, EntityResult::Applied, None);
                    }
                    // A converging push found the group's own fields right but
                    // changed its targeting: the group was updated.
                    if s.entities.get(*ad_group).map(|g| &g.result) == Some(&EntityResult::Unchanged) {
                        s.set_result(*ad_group, EntityResult::Updated, None);
                    }
                    Ok(s.advance(ctx))
                }
                _ => reject::<Self>(state, outcome, "the pending effect does not set keywords"),
            },
            (step!(), O::Found { .. }) => {
                reject::<Self>(state, outcome, "no look-up is pending")
            }
            (step!(), O::Observed { .. }) => {
                reject::<Self>(state, outcome, "the platform was read already")
            }
            // An archive answered 404: the entity is gone, which is all a
            // prune wants.
            (
                step!(),
                O::Archived
                | O::Failed {
                    error: AdapterError::NotFound { .. },
                },
            ) if matches!(work, Some(Work::Archive { .. })) || state.replacing().is_some() => {
                let mut s = s;
                match (work, state.replacing()) {
                    (Some(&Work::Archive { entity }), _) => {
                        s.set_result(entity, EntityResult::Archived, None);
                    }
                    (_, Some((entity, old_id))) => {
                        s.set_result(entity, EntityResult::Replaced { old_id }, None);
                    }
                    _ => {}
                }
                Ok(s.advance(ctx))
            }
            (step!(), O::Archived) => {
                reject::<Self>(state, outcome, "the pending effect is not an archive")
            }
            (
                step!(),
                O::Failed {
                    error: AdapterError::Unknown { .. },
                }
                | O::Interrupted,
            ) if create.is_some() => {
                // The create may have happened: find out before anything else.
                let mut s = s;
                s.phase = P::OutcomeUnknown;
                s.attempt = 0;
                s.retry_at = None;
                if let O::Failed { error } = outcome {
                    s.last_error = Some(error.to_string());
                }
                Ok(s)
            }
            (step!(), O::Interrupted) => reject::<Self>(
                state,
                outcome,
                "the pending effect is repeatable and is simply run again",
            ),
            (
                step!(),
                O::Failed {
                    error: error @ AdapterError::NotFound { .. },
                },
            ) if create.is_none() && matches!(work, Some(Work::Upsert { .. })) => {
                // The recorded id is gone from the platform: forget it and
                // look the entity up by name alone (adopt one, create if
                // none, park if several), so later pushes do not fail on it.
                let entity = match work {
                    Some(&Work::Upsert { entity }) => entity,
                    _ => create.unwrap_or_default(),
                };
                let what = state.describe(entity);
                let mut s = s;
                let gone = s
                    .entity_mut(entity)
                    .and_then(|e| e.platform_id.take())
                    .unwrap_or_default();
                s.phase = P::OutcomeUnknown;
                s.attempt = 0;
                s.retry_at = None;
                s.intent_at = GONE_LOOKUP_SINCE;
                s.last_error = Some(format!(
                    "{what}: its platform id {gone} is gone ({error}); looking it up by name"
                ));
                Ok(s)
            }
            (step!(), O::Resumed) => reject::<Self>(state, outcome, "the sync has not stopped"),
            // An update or keyword set is idempotent: an unknown outcome is retried like a transient one.
            (
                step!(),
                O::Failed {
                    error: error @ (AdapterError::Transient { .. } | AdapterError::Unknown { .. }),
                },
            ) => Ok(s.retry_or(error, ctx, |s, msg| s.fail_current(msg, ctx))),
            (
                step!(),
                O::Failed {
                    error: error @ (AdapterError::Permanent { .. } | AdapterError::NotFound { .. }),
                },
            ) => Ok(s.fail_current(error.to_string(), ctx)),
            (step!(), O::OperatorAdopt { .. } | O::OperatorAbsent) => {
                reject::<Self>(state, outcome, "no operator decision is pending")
            }
        }
    }

    fn on_restart(state: &PushState) -> Option<PushOutcome> {
        if state.phase == PushPhase::LookupDeferred {
            return Some(PushOutcome::Resumed);
        }
        let in_step = matches!(
            state.phase,
            PushPhase::Pending
                | PushPhase::CampaignCreated
                | PushPhase::AdGroupsCreated
                | PushPhase::AdsCreated
        );
        (in_step && state.pending_create().is_some()).then_some(PushOutcome::Interrupted)
    }

    fn on_cancel(state: &PushState) -> Option<PushOutcome> {
        matches!(
            state.phase,
            PushPhase::Reading
                | PushPhase::Pruning
                | PushPhase::Pending
                | PushPhase::CampaignCreated
                | PushPhase::AdGroupsCreated
                | PushPhase::AdsCreated
        )
        .then_some(PushOutcome::Cancelled)
    }

    fn not_before(state: &PushState) -> Option<Timestamp> {
        state.retry_at
    }

    fn is_failure(outcome: &PushOutcome) -> bool {
        matches!(outcome, PushOutcome::Failed { .. })
    }

    fn last_error(state: &PushState) -> Option<String> {
        state.last_error.clone()
    }

    fn effect_name(effect: &PushEffect) -> &'static str {
        effect.into()
    }

    fn describe_effect(effect: &PushEffect) -> String {
        let under = |p: &Parent| match &p.parent_id {
            Some(id) => format!("under {id}"),
            None => format!("in account {}", p.account_id),
        };
        match effect {
            // The name is the plan's (`show` lists it): a history entry is
            // written for every create, so it names the entity by local id.
            PushEffect::Create { parent, spec } => {
                format!(
                    "create {} `{}` {}",
                    spec.kind(),
                    spec.local_id(),
                    under(parent)
                )
            }
            PushEffect::Update {
                id,
                spec,
                fields: None,
                ..
            } => {
                format!("update {} `{}` as {id}", spec.kind(), spec.local_id())
            }
            PushEffect::Update {
                id,
                spec,
                fields: Some(fields),
                ..
            } => {
                format!(
                    "update {} of {} `{}` as {id}",
                    fields.join(", "),
                    spec.kind(),
                    spec.local_id()
                )
            }
            PushEffect::Observe {
                parent,
                campaign_name,
                campaign_ids,
                ad_group_ids,
            } => format!(
                "list the campaigns of account {} and what is under campaign \"{campaign_name}\" ({} known, {} known ad groups)",
                parent.account_id,
                campaign_ids.len(),
                ad_group_ids.len()
            ),
            PushEffect::Archive {
                kind, local_id, id, ..
            } => format!("archive {kind} `{local_id}` ({id})"),
            PushEffect::SetKeywords {
                ad_group,
                ad_group_id,
                keywords,
                ..
            } => {
                format!(
                    "set {} keywords of ad_group `{ad_group}` ({ad_group_id})",
                    keywords.len()
                )
            }
            PushEffect::Find {
                parent,
                kind,
                name,
                created_after,
                ..
            } => {
                let when = if *created_after <= GONE_LOOKUP_SINCE {
                    "of any age (its recorded id is gone)".to_string()
                } else {
                    format!(
                        "created after {}",
                        created_after
                            .format(&time::format_description::well_known::Rfc3339)
                            .unwrap_or_default()
                    )
                };
                format!("find {kind} \"{name}\" {} {when}", under(parent))
            }
        }
    }

    fn describe_outcome(outcome: &PushOutcome) -> String {
        match outcome {
            PushOutcome::Observed { entities } => format!("listed {} entities", entities.len()),
            PushOutcome::Archived => "archived".into(),
            PushOutcome::Created { id } => format!("created {id}"),
            PushOutcome::Updated => "updated".into(),
            PushOutcome::KeywordsSet => "keywords set".into(),
            PushOutcome::Found { matches } if matches.is_empty() => "found none".into(),
            PushOutcome::Found { matches } => {
                let ids: Vec<&str> = matches.iter().map(|m| m.id.as_str()).collect();
                format!("found {}", ids.join(", "))
            }
            PushOutcome::Failed { error } => error.to_string(),
            PushOutcome::Interrupted => {
                "interrupted: the create may have been sent before a restart".into()
            }
            PushOutcome::Resumed => "resumed: look the entity up again".into(),
            PushOutcome::OperatorAdopt { id } => format!("operator: adopt {id}"),
            PushOutcome::OperatorAbsent => "operator: absent, create it".into(),
            PushOutcome::Cancelled => "cancelled".into(),
        }
    }
}

impl CheckpointCodec for PushMachine {
    fn encode_plan(state: &PushState) -> Option<serde_json::Result<Box<RawValue>>> {
        Some(super::checkpoint::encode_plan(state))
    }

    fn encode_checkpoint(state: &PushState) -> serde_json::Result<Box<RawValue>> {
        super::checkpoint::encode_progress(state)
    }

    fn encode_segments(
        prev: Option<&PushState>,
        state: &PushState,
    ) -> serde_json::Result<Vec<(u32, Box<RawValue>)>> {
        super::checkpoint::encode_segments(prev, state)
    }

    fn decode_checkpoint(
        plan: Option<&RawValue>,
        segments: &[(u32, std::sync::Arc<RawValue>)],
        checkpoint: &RawValue,
    ) -> Result<PushState, String> {
        super::checkpoint::decode(plan, segments, checkpoint)
    }
}

impl MachineDocs for PushMachine {
    type OutcomeKind = PushOutcomeKind;

    fn outcome_kind(outcome: &PushOutcome) -> PushOutcomeKind {
        match outcome {
            PushOutcome::Observed { .. } => PushOutcomeKind::Observed,
            PushOutcome::Archived => PushOutcomeKind::Archived,
            PushOutcome::Created { .. } => PushOutcomeKind::Created,
            PushOutcome::Updated => PushOutcomeKind::Updated,
            PushOutcome::KeywordsSet => PushOutcomeKind::KeywordsSet,
            PushOutcome::Found { matches } => match matches.len() {
                0 => PushOutcomeKind::FoundNone,
                1 => PushOutcomeKind::FoundOne,
                _ => PushOutcomeKind::FoundMany,
            },
            PushOutcome::Failed {
                error: AdapterError::Transient { .. },
            } => PushOutcomeKind::Transient,
            PushOutcome::Failed {
                error: AdapterError::Permanent { .. },
            } => PushOutcomeKind::Permanent,
            PushOutcome::Failed {
                error: AdapterError::Unknown { .. },
            } => PushOutcomeKind::Unknown,
            PushOutcome::Failed {
                error: AdapterError::NotFound { .. },
            } => PushOutcomeKind::NotFound,
            PushOutcome::Interrupted => PushOutcomeKind::Interrupted,
            PushOutcome::Resumed => PushOutcomeKind::Resumed,
            PushOutcome::OperatorAdopt { .. } => PushOutcomeKind::OperatorAdopt,
            PushOutcome::OperatorAbsent => PushOutcomeKind::OperatorAbsent,
            PushOutcome::Cancelled => PushOutcomeKind::Cancelled,
        }
    }

    fn describe_phase(phase: PushPhase) -> &'static str {
        match phase {
            PushPhase::Reading => "A converging push (an adapter that lists) before its first write. Effect: list the account's campaigns and, under the campaign adsync manages (or any of its name), its ad groups, ads and keywords: reads only, so repeated after any failure. The outcome is planned against the set and what adsync last wrote: adopted ids, what each write holds (only the differing fields), and what is left as it is are checkpointed with it; a refusal (an entity of that name adsync does not manage, several candidates, a replacement without --prune) or a listing unreadable through every retry fails the sync before any write.",
            PushPhase::Pruning => "Everything the set names is settled. Effect: archive the next entity adsync created or adopted that the set no longer names (--prune); one already gone counts as archived.",
            PushPhase::Pending => "Nothing pushed yet. Effect: create the campaign (update it when it already has a platform id).",
            PushPhase::CampaignCreated => "The campaign's platform id is durable. Effect: create or update the next ad group.",
            PushPhase::AdGroupsCreated => "Every ad group is settled. Effect: create or update the next ad.",
            PushPhase::AdsCreated => "Every ad is settled. Effect: create or update the next keyword, or set an ad group's keyword targeting (Reddit).",
            PushPhase::OutcomeUnknown => "A create may have happened but its result was not recorded (timeout, dropped connection, crash), or an update found the recorded id gone (404). Effect: look the entity up by exact name under its parent, created after the recorded intent (on the platform's clock), or of any age when its id is gone; one match is adopted (and updated, when its id was gone), none means create, several park the sync.",
            PushPhase::LookupDeferred => "Stopped (status `running`): the look-up could not be made, the platform failing or timing out through every retry. No effect in this run; the next run (`adsync resume`) looks the entity up again.",
            PushPhase::NeedsAttention => "Parked: the look-up could not decide (several matches, or the platform rejected it). No effect; an operator adopts an id (verified on the platform) or declares the entity absent.",
            PushPhase::Synced => "Final: every entity exists and its id is recorded.",
            PushPhase::Failed => "Final: some entities failed (their descendants were skipped); every id created is kept, and a new push updates instead of duplicating.",
            PushPhase::Cancelled => "Final: cancelled at a step boundary (the effect in flight, if any, completed and was recorded first; never while a create's outcome is unknown). Every id created is kept, and a new push updates instead of duplicating.",
        }
    }

    fn sample_states() -> Vec<(String, PushState)> {
        samples::states()
    }

    fn sample_outcomes() -> Vec<PushOutcome> {
        samples::outcomes()
    }
}

/// Representative states and outcomes for the transition table.
mod samples {
    use super::*;
    use crate::model::{Ad, AdGroup, ConfiguredStatus, Objective};

    fn campaign() -> Campaign {
        Campaign {
            id: "c1".into(),
            name: "Campaign".into(),
            objective: Objective::Clicks,
            status: ConfiguredStatus::Paused,
            goal: None,
            ad_groups: vec![AdGroup {
                id: "g1".into(),
                name: "Group".into(),
                status: ConfiguredStatus::Paused,
                bid_strategy: None,
                bid_type: None,
                bid_value_micros: None,
                start_time: None,
                end_time: None,
                ads: vec![Ad {
                    id: "a1".into(),
                    name: "Ad one".into(),
                    post_id: "t3_x".into(),
                    click_url: None,
                    status: ConfiguredStatus::Paused,
                }],
                keywords: vec![Keyword {
                    id: "k1".into(),
                    text: "shoes".into(),
                }],
            }],
        }
    }

    fn at(cursor: usize, model: KeywordModel, with_own_id: bool) -> PushState {
        let target = Target {
            platform: "sample".into(),
            account_id: "acct".into(),
            keyword_model: model,
        };
        let now = time::macros::datetime!(2026-01-01 00:00 UTC);
        let mut s = PushState::new(
            target,
            &campaign(),
            &BTreeMap::new(),
            PushPolicy::default(),
            now,
        );
        for i in 0..cursor {
            if let Some(Work::Upsert { entity }) = s.work.get(i).cloned() {
                if let Some(e) = s.entity_mut(entity) {
                    e.platform_id = Some(format!("id{entity}"));
                    e.result = EntityResult::Created;
                }
            }
        }
        if with_own_id {
            if let Some(Work::Upsert { entity }) = s.work.get(cursor).cloned() {
                if let Some(e) = s.entity_mut(entity) {
                    e.platform_id = Some(format!("id{entity}"));
                }
            }
        }
        s.cursor = cursor;
        s.phase = s.phase_for(cursor);
        s
    }

    pub(super) fn states() -> Vec<(String, PushState)> {
        let e = KeywordModel::Entities;
        let t = KeywordModel::AdGroupTargeting;
        let mut out = vec![
            ("create".to_string(), at(0, e, false)),
            ("update".to_string(), at(0, e, true)),
            ("create".to_string(), at(1, e, false)),
            ("create".to_string(), at(2, e, false)),
            ("create keyword, last item".to_string(), at(3, e, false)),
            ("set keywords, last item".to_string(), at(3, t, false)),
        ];
        let mut last_try = at(0, e, false);
        last_try.attempt = last_try.policy.backoff.max_attempts - 1;
        out.push(("create, last attempt".to_string(), last_try));
        let mut unknown = at(1, e, false);
        unknown.phase = PushPhase::OutcomeUnknown;
        out.push(("ad group".to_string(), unknown.clone()));
        let mut unknown_last = unknown.clone();
        unknown_last.attempt = unknown_last.policy.backoff.max_attempts - 1;
        out.push(("look-up, last attempt".to_string(), unknown_last));
        let mut gone = unknown.clone();
        gone.intent_at = GONE_LOOKUP_SINCE;
        out.push(("ad group whose id was gone".to_string(), gone));
        let mut deferred = unknown.clone();
        deferred.phase = PushPhase::LookupDeferred;
        out.push((String::new(), deferred));
        let mut attention = unknown;
        attention.phase = PushPhase::NeedsAttention;
        out.push((String::new(), attention));
        let mut synced = at(4, e, false);
        synced.phase = PushPhase::Synced;
        out.push((String::new(), synced));
        let mut failed = at(4, e, false);
        failed.phase = PushPhase::Failed;
        out.push((String::new(), failed));
        let mut cancelled = at(2, e, false);
        cancelled.phase = PushPhase::Cancelled;
        out.push((String::new(), cancelled));
        out.push(("converging push".to_string(), converging()));
        let mut last_read = converging();
        last_read.attempt = last_read.policy.backoff.max_attempts - 1;
        out.push(("converging push, last attempt".to_string(), last_read));
        // Everything the set names is settled: the retired ad is archived.
        let mut pruning = converging();
        for i in 0..pruning.entities.len() - 1 {
            if let Some(e) = pruning.entity_mut(i) {
                e.platform_id = Some(format!("id{i}"));
                e.result = EntityResult::Created;
            }
        }
        pruning.decisions = Some(Arc::new(BTreeMap::new()));
        pruning.cursor = pruning.work.len() - 1;
        pruning.phase = pruning.phase_for(pruning.cursor);
        out.push(("archive".to_string(), pruning));
        // An ad moved to another group was created anew: its old copy is archived next.
        let mut replacing = converging();
        let ad = 2;
        for i in 0..=ad {
            if let Some(e) = replacing.entity_mut(i) {
                e.platform_id = Some(format!("id{i}"));
                e.result = EntityResult::Created;
            }
        }
        replacing.decisions = Some(Arc::new(BTreeMap::from([(
            ad,
            Decision {
                replaces: Some("old-ad".into()),
                ..Decision::default()
            },
        )])));
        replacing.cursor = replacing
            .work
            .iter()
            .position(|w| *w == Work::Upsert { entity: ad })
            .unwrap_or_default();
        replacing.phase = replacing.phase_for(replacing.cursor);
        out.push(("archive what the create replaced".to_string(), replacing));
        out
    }

    /// A converging push of the sample campaign with `--prune`: adsync also
    /// manages an ad the set no longer names.
    fn converging() -> PushState {
        let target = Target {
            platform: "sample".into(),
            account_id: "acct".into(),
            keyword_model: KeywordModel::Entities,
        };
        let retired = Ad {
            id: "a9".into(),
            name: "Old ad".into(),
            post_id: "t3_old".into(),
            click_url: None,
            status: ConfiguredStatus::Paused,
        };
        let known = Known {
            kind: EntityKind::Ad,
            local_id: "a9".into(),
            parent: Some("g1".into()),
            id: "old9".into(),
            name: "Old ad".into(),
            written: crate::converge::Fields::new(),
        };
        PushState::converging(
            target,
            &campaign(),
            vec![(known, Arc::new(EntitySpec::Ad(retired)))],
            PlanOptions {
                prune: true,
                ..PlanOptions::default()
            },
            PushPolicy::default(),
            time::macros::datetime!(2026-01-01 00:00 UTC),
        )
    }

    pub(super) fn outcomes() -> Vec<PushOutcome> {
        let found = |id: &str| FoundEntity {
            id: id.into(),
            name: "Group".into(),
            created_at: time::macros::datetime!(2026-01-01 00:00 UTC),
        };
        vec![
            PushOutcome::Observed { entities: vec![] },
            PushOutcome::Archived,
            PushOutcome::Created { id: "new".into() },
            PushOutcome::Updated,
            PushOutcome::KeywordsSet,
            PushOutcome::Found { matches: vec![] },
            PushOutcome::Found {
                matches: vec![found("x1")],
            },
            PushOutcome::Found {
                matches: vec![found("x1"), found("x2")],
            },
            PushOutcome::Failed {
                error: AdapterError::Transient {
                    message: "503".into(),
                    retry_after: None,
                },
            },
            PushOutcome::Failed {
                error: AdapterError::Permanent {
                    message: "Bad Request".into(),
                    fields: vec![],
                },
            },
            PushOutcome::Failed {
                error: AdapterError::Unknown {
                    message: "timeout".into(),
                },
            },
            PushOutcome::Failed {
                error: AdapterError::NotFound {
                    message: "404".into(),
                },
            },
            PushOutcome::Interrupted,
            PushOutcome::Resumed,
            PushOutcome::OperatorAdopt { id: "x1".into() },
            PushOutcome::OperatorAbsent,
            PushOutcome::Cancelled,
        ]
    }
}
