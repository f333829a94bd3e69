//! How a push state is checkpointed: a plan written once, progress written at
//! every transition.
//!
//! A [`PushState`] holds two kinds of data. The *plan* — target, policy, every
//! entity's spec and parent, the work list — is fixed when the sync starts. The
//! *progress* — phase, platform ids, results, cursor, attempts, the intent time
//! — is what transitions change. Writing the whole state before every side
//! effect made each step cost in proportion to the campaign (in serialization,
//! in the log's `fdatasync` and in sled; docs/performance.md), so a push was
//! quadratic in its size. The runner now stores the plan
//! once, in the start commit ([`adsync_engine::Machine::encode_plan`]), and
//! each checkpoint holds only the progress: a few hundred bytes, and only the
//! entities that have an id or a result are listed.
//!
//! Progress layout (version 2 of the push state). Each listed entity is a
//! row `[index, platform id, result, message]`, the message being a failure's
//! error or a skip's reason. Rows rather than objects: objects were most of a
//! checkpoint's encoding cost, most of it escaping the repeated keys
//! (docs/performance.md).
//! An entity created with an id, nearly every row of a push, is the short
//! row `[index, platform id]` (rows in the long form, `[0,"c-1","created",null]`,
//! as earlier versions wrote them, still read).
//!
//! ```json
//! {"phase":"AdGroupsCreated","entities":[[0,"c-1"],[1,null,"failed","name taken"]],
//!  "cursor":2,"attempt":0,"intent_at":"2026-01-01T00:00:00Z","retry_at":null,"last_error":"name taken"}
//! ```
//!
//! **Segments.** Listing every entity touched so far in every checkpoint made
//! a campaign of n entities write O(n²) bytes (sled keeps the old versions
//! until it cleans its segments). So the entities are grouped in chunks of
//! [`CHUNK`] by index, and a chunk is *sealed* once every work item still to
//! run (from the cursor on) touches only entities of later chunks: its rows
//! are then written once, as a segment under its own key
//! ([`adsync_engine::Machine::encode_segments`]), in the commit of the
//! checkpoint that seals it, and the checkpoint says `"sealed": n` and lists
//! only the rows of chunks `n` and later. Should an entity of a sealed chunk
//! change anyway (nothing in today's transitions does), its chunk is written
//! again with that checkpoint: the runner passes the previous state, and a
//! changed entity is a different `Arc`. A segment is an array of rows. A
//! checkpoint without `sealed` (all earlier versions) lists every row.
//!
//! **A converging push** adds to the plan its options, the index of its
//! first *retired* entity and what the store knew (`"converge"`), and its
//! first item is `"observe"`. The reading phase's decisions (fields each
//! update writes, replacements, adoptions, drift overwritten) never change
//! once made, so they are written once, as the segment [`DECISIONS`], with
//! the checkpoint of the reading phase's outcome; its progress and every
//! later one say `"decided": true`. These are optional additions: every
//! earlier checkpoint still decodes, so the state version stays 2.

use std::sync::{Arc, OnceLock};

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::machine::{
    Converge, Decision, Entity, EntityResult, PushPhase, PushPolicy, PushState, Target, Work,
};
use crate::adapter::EntitySpec;
use adsync_engine::Timestamp;

/// The plan as written: `{"target", "policy", "entities", "work"}`, each
/// entity a [`PlannedOut`] tuple and each work item a [`WorkOut`]. The plan
/// repeats the whole campaign, so its layout decides whether the store is a
/// small or a large multiple of the set: tuples carry no field names, no
/// empty child arrays and no `null` trailing optionals. The earlier layout
/// (entities as `{"spec", "parent"}` objects, work items as objects) still
/// decodes.
#[derive(Serialize)]
struct PlanOut<'a> {
    target: &'a Target,
    policy: &'a PushPolicy,
    entities: Vec<PlannedOut<'a>>,
    work: Vec<WorkOut<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    converge: Option<&'a Converge>,
}

/// One entity of a plan: `[parent, kind, fields…]`, the parent an index or
/// `null` (the campaign), the kind `c`, `g`, `a` or `k`, then that kind's
/// fields in a fixed order:
/// * campaign: `id, name, objective, status[, goal]`
/// * ad group: `id, name, status, bid_strategy, bid_type, bid_value_micros,
///   start_time, end_time` (trailing absent ones left out, inner ones `null`)
/// * ad: `id, name, post_id, status[, click_url]`
/// * keyword: `id, text`
struct PlannedOut<'a> {
    spec: &'a EntitySpec,
    parent: Option<usize>,
}

impl Serialize for PlannedOut<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        let mut t = serializer.serialize_seq(None)?;
        t.serialize_element(&self.parent)?;
        match self.spec {
            EntitySpec::Campaign(c) => {
                t.serialize_element("c")?;
                t.serialize_element(&c.id)?;
                t.serialize_element(&c.name)?;
                t.serialize_element(&c.objective)?;
                t.serialize_element(&c.status)?;
                if let Some(goal) = &c.goal {
                    t.serialize_element(goal)?;
                }
            }
            EntitySpec::AdGroup(g) => {
                t.serialize_element("g")?;
                t.serialize_element(&g.id)?;
                t.serialize_element(&g.name)?;
                t.serialize_element(&g.status)?;
                let optional = [
                    g.bid_strategy.is_some(),
                    g.bid_type.is_some(),
                    g.bid_value_micros.is_some(),
                    g.start_time.is_some(),
                    g.end_time.is_some(),
                ];
                let present = optional.iter().rposition(|&p| p).map_or(0, |i| i + 1);
                if present > 0 {
                    t.serialize_element(&g.bid_strategy)?;
                }
                if present > 1 {
                    t.serialize_element(&g.bid_type)?;
                }
                if present > 2 {
                    t.serialize_element(&g.bid_value_micros)?;
                }
                if present > 3 {
                    t.serialize_element(&g.start_time)?;
                }
                if present > 4 {
                    t.serialize_element(&g.end_time)?;
                }
            }
            EntitySpec::Ad(a) => {
                t.serialize_element("a")?;
                t.serialize_element(&a.id)?;
                t.serialize_element(&a.name)?;
                t.serialize_element(&a.post_id)?;
                t.serialize_element(&a.status)?;
                if let Some(url) = &a.click_url {
                    t.serialize_element(url)?;
                }
            }
            EntitySpec::Keyword(k) => {
                t.serialize_element("k")?;
                t.serialize_element(&k.id)?;
                t.serialize_element(&k.text)?;
            }
        }
        t.end()
    }
}

/// A work item as written: an upsert is its entity's index, setting an ad
/// group's keywords `[ad group, [keyword…]]`.
struct WorkOut<'a>(&'a Work);

impl Serialize for WorkOut<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Work::Upsert { entity } => serializer.serialize_u64(*entity as u64),
            Work::SetKeywords { ad_group, keywords } => (ad_group, keywords).serialize(serializer),
            // Once per sync: the object form.
            Work::Observe | Work::Archive { .. } => self.0.serialize(serializer),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlanIn {
    target: Target,
    policy: PushPolicy,
    entities: Vec<PlannedIn>,
    work: Vec<WorkIn>,
    #[serde(default)]
    converge: Option<Converge>,
}

/// An entity of a plan as read: a [`PlannedOut`] tuple, or the object
/// earlier versions wrote.
struct PlannedIn {
    spec: EntitySpec,
    parent: Option<usize>,
}

/// Entities per progress segment: big enough that a segment's key and the
/// sealing test are cheap beside its rows, small enough that the rows a
/// checkpoint still lists stay a few hundred bytes.
pub(crate) const CHUNK: usize = 16;

/// The earlier layout of a planned entity.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PlannedObject {
    spec: EntitySpec,
    parent: Option<usize>,
}

impl<'de> Deserialize<'de> for PlannedIn {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = PlannedIn;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a planned entity: [parent, kind, fields…] or {spec, parent}")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<PlannedIn, A::Error> {
                use crate::model::{Ad, AdGroup, Campaign, Keyword};
                use serde::de::Error;
                let mut at = 0;
                // The next field: required, or optional (absent at the end).
                macro_rules! next {
                    () => {{
                        at += 1;
                        seq.next_element()?
                            .ok_or_else(|| A::Error::invalid_length(at - 1, &self))?
                    }};
                    (optional) => {{
                        at += 1;
                        seq.next_element::<Option<_>>()?.flatten()
                    }};
                }
                let parent: Option<usize> = next!();
                let kind: String = next!();
                let spec = match kind.as_str() {
                    "c" => EntitySpec::Campaign(Campaign {
                        id: next!(),
                        name: next!(),
                        objective: next!(),
                        status: next!(),
                        goal: next!(optional),
                        ad_groups: Vec::new(),
                    }),
                    "g" => EntitySpec::AdGroup(AdGroup {
                        id: next!(),
                        name: next!(),
                        status: next!(),
                        bid_strategy: next!(optional),
                        bid_type: next!(optional),
                        bid_value_micros: next!(optional),
                        start_time: next!(optional),
                        end_time: next!(optional),
                        ads: Vec::new(),
                        keywords: Vec::new(),
                    }),
                    "a" => EntitySpec::Ad(Ad {
                        id: next!(),
                        name: next!(),
                        post_id: next!(),
                        status: next!(),
                        click_url: next!(optional),
                    }),
                    "k" => EntitySpec::Keyword(Keyword {
                        id: next!(),
                        text: next!(),
                    }),
                    other => {
                        return Err(A::Error::unknown_variant(other, &["c", "g", "a", "k"]));
                    }
                };
                if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(A::Error::invalid_length(at + 1, &self));
                }
                Ok(PlannedIn { spec, parent })
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<PlannedIn, A::Error> {
                let old =
                    PlannedObject::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(PlannedIn {
                    spec: old.spec,
                    parent: old.parent,
                })
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// A work item as read: a [`WorkOut`], or the object earlier versions wrote.
struct WorkIn(Work);

impl<'de> Deserialize<'de> for WorkIn {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = WorkIn;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a work item: an entity index, [ad group, [keywords]] or an object")
            }

            fn visit_u64<E: serde::de::Error>(self, entity: u64) -> Result<WorkIn, E> {
                let entity = usize::try_from(entity)
                    .map_err(|_| E::custom(format!("entity #{entity} is out of range")))?;
                Ok(WorkIn(Work::Upsert { entity }))
            }

            fn visit_str<E: serde::de::Error>(self, tag: &str) -> Result<WorkIn, E> {
                Work::deserialize(serde::de::value::StrDeserializer::<E>::new(tag)).map(WorkIn)
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<WorkIn, A::Error> {
                let (ad_group, keywords) = <(usize, Vec<usize>)>::deserialize(
                    serde::de::value::SeqAccessDeserializer::new(seq),
                )?;
                Ok(WorkIn(Work::SetKeywords { ad_group, keywords }))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<WorkIn, A::Error> {
                Work::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(WorkIn)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[derive(Serialize)]
struct ProgressOut<'a> {
    phase: PushPhase,
    #[serde(skip_serializing_if = "is_zero")]
    sealed: usize,
    entities: TouchedEntities<'a>,
    cursor: usize,
    attempt: u32,
    #[serde(with = "time::serde::rfc3339")]
    intent_at: Timestamp,
    #[serde(with = "time::serde::rfc3339::option")]
    retry_at: Option<Timestamp>,
    last_error: &'a Option<String>,
    /// The reading phase's decisions are in their segment ([`DECISIONS`]).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    decided: bool,
}

/// The segment holding a converging push's decisions: written once, with
/// the checkpoint of the reading phase's outcome (they never change after).
/// Past every chunk number.
pub(crate) const DECISIONS: u32 = u32::MAX;

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// The rows of the entities that have a platform id or a result, written
/// straight from the state (no list of rows is built first); `.1` is the
/// index of the first entity of `.0`.
struct TouchedEntities<'a>(&'a [Arc<Entity>], usize);

impl Serialize for TouchedEntities<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let TouchedEntities(entities, first) = *self;
        serializer.collect_seq(
            entities
                .iter()
                .enumerate()
                .filter(|(_, e)| e.platform_id.is_some() || e.result != EntityResult::Pending)
                .map(|(entity, e)| CachedRow(first + entity, e)),
        )
    }
}

/// How many leading chunks of `state` are sealed: none of their entities is
/// touched by a work item still to run (the current one included). Only
/// full chunks: a campaign smaller than one chunk, or the end of a larger
/// one, gains nothing from a segment, and its checkpoints stay as they were.
fn sealed(state: &PushState) -> usize {
    let lowest = state
        .work
        .get(state.cursor..)
        .unwrap_or_default()
        .iter()
        .flat_map(|w| match w {
            Work::Observe => None,
            Work::Upsert { entity } | Work::Archive { entity } => Some(*entity),
            Work::SetKeywords { ad_group, keywords } => std::iter::once(*ad_group)
                .chain(keywords.iter().copied())
                .min(),
        })
        .min();
    let full = state.entities.len() / CHUNK;
    lowest.map_or(full, |entity| (entity / CHUNK).min(full))
}

/// The entities of chunk `chunk` (empty past the end).
fn chunk_of(entities: &[Arc<Entity>], chunk: usize) -> &[Arc<Entity>] {
    let start = (chunk * CHUNK).min(entities.len());
    let end = (start + CHUNK).min(entities.len());
    &entities[start..end]
}

/// The segments to write with the checkpoint of `state`, `prev` being the
/// state it came from: the chunks sealed since `prev`, and any sealed chunk
/// one of whose entities changed (see the module docs).
pub(crate) fn encode_segments(
    prev: Option<&PushState>,
    state: &PushState,
) -> serde_json::Result<Vec<(u32, Box<RawValue>)>> {
    let sealed_now = sealed(state);
    let sealed_before = prev.map_or(0, sealed).min(sealed_now);
    let entities = state.entities.as_slice();
    let changed = |chunk: usize| match prev {
        None => true,
        Some(prev) if Arc::ptr_eq(&prev.entities, &state.entities) => false,
        Some(prev) => {
            let before = chunk_of(&prev.entities, chunk);
            let now = chunk_of(entities, chunk);
            before.len() != now.len() || before.iter().zip(now).any(|(a, b)| !Arc::ptr_eq(a, b))
        }
    };
    let mut segments = (0..sealed_now)
        .filter(|&chunk| chunk >= sealed_before || changed(chunk))
        .map(|chunk| {
            let rows = TouchedEntities(chunk_of(entities, chunk), chunk * CHUNK);
            // Chunk numbers fit: a plan of 2³² × 64 entities is not pushed.
            let n = u32::try_from(chunk).map_err(serde::ser::Error::custom)?;
            Ok((n, serde_json::value::to_raw_value(&rows)?))
        })
        .collect::<serde_json::Result<Vec<_>>>()?;
    if let Some(decisions) = &state.decisions {
        let new = prev
            .and_then(|p| p.decisions.as_ref())
            .is_none_or(|before| !Arc::ptr_eq(before, decisions));
        if new {
            segments.push((
                DECISIONS,
                serde_json::value::to_raw_value(decisions.as_ref())?,
            ));
        }
    }
    Ok(segments)
}

/// An entity's encoded progress row, kept with the entity, so a checkpoint
/// encodes only the rows its transition changed and copies the others.
/// Encoding every row at every step made each checkpoint cost O(entities) in
/// escaping and formatting, a cost every step paid again for rows that had
/// not changed (docs/performance.md has the figure).
///
/// [`PushState::entity_mut`] empties it, and a row is used only while the
/// entity still holds what it was encoded from, so a stale row is never
/// written, however the entity was changed.
#[derive(Clone, Default)]
pub(super) struct EncodedRow(OnceLock<Row>);

#[derive(Clone)]
struct Row {
    index: usize,
    platform_id: Option<String>,
    result: EntityResult,
    json: Box<RawValue>,
}

impl PartialEq for EncodedRow {
    /// A cache, not part of the entity's value.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// Entity `.0`'s row, from its cache (filled on the first use).
struct CachedRow<'a>(usize, &'a Entity);

impl Serialize for CachedRow<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let CachedRow(index, entity) = *self;
        let current = |row: &&Row| {
            row.index == index
                && row.platform_id == entity.platform_id
                && row.result == entity.result
        };
        if let Some(row) = entity.row.0.get().filter(current) {
            return row.json.serialize(serializer);
        }
        let row = EntityProgressOut::new(index, entity);
        // A row always encodes (numbers and strings); were it ever to fail, the
        // error surfaces from encoding it directly.
        let Ok(json) = serde_json::value::to_raw_value(&row) else {
            return row.serialize(serializer);
        };
        let cached = entity.row.0.get_or_init(|| Row {
            index,
            platform_id: entity.platform_id.clone(),
            result: entity.result.clone(),
            json,
        });
        match Some(cached).filter(current) {
            Some(cached) => cached.json.serialize(serializer),
            // The cache held a stale row (the entity was changed in place).
            None => row.serialize(serializer),
        }
    }
}

/// `[index, platform id, result, message]`, or `[index, platform id]` for an
/// entity created with that id, which is what nearly every row of a push says.
///
/// Short rows because a checkpoint lists every entity touched so far and is
/// rewritten at every step: its rows are most of the bytes a push writes to
/// the log and to sled, and sled keeps the old versions until it cleans its
/// segments (docs/performance.md).
struct EntityProgressOut<'a>(usize, &'a Option<String>, &'static str, Option<&'a str>);

impl Serialize for EntityProgressOut<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeTuple as _;
        let EntityProgressOut(index, platform_id, result, message) = *self;
        match (platform_id, result, message) {
            (Some(id), "created", None) => {
                let mut row = serializer.serialize_tuple(2)?;
                row.serialize_element(&index)?;
                row.serialize_element(id)?;
                row.end()
            }
            _ => {
                let mut row = serializer.serialize_tuple(4)?;
                row.serialize_element(&index)?;
                row.serialize_element(platform_id)?;
                row.serialize_element(result)?;
                row.serialize_element(&message)?;
                row.end()
            }
        }
    }
}

impl<'a> EntityProgressOut<'a> {
    fn new(entity: usize, e: &'a Entity) -> Self {
        let (result, message) = match &e.result {
            EntityResult::Pending => ("pending", None),
            EntityResult::Created => ("created", None),
            EntityResult::Updated => ("updated", None),
            EntityResult::Adopted => ("adopted", None),
            EntityResult::Applied => ("applied", None),
            EntityResult::Unchanged => ("unchanged", None),
            EntityResult::Replaced { old_id } => ("replaced", Some(old_id.as_str())),
            EntityResult::Archived => ("archived", None),
            EntityResult::Left => ("left", None),
            EntityResult::Failed { error } => ("failed", Some(error.as_str())),
            EntityResult::Skipped { reason } => ("skipped", Some(reason.as_str())),
        };
        EntityProgressOut(entity, &e.platform_id, result, message)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProgressIn {
    phase: PushPhase,
    /// Chunks whose rows are in segments (0 in checkpoints written before them).
    #[serde(default)]
    sealed: usize,
    entities: Vec<EntityProgressIn>,
    cursor: usize,
    attempt: u32,
    #[serde(with = "time::serde::rfc3339")]
    intent_at: Timestamp,
    #[serde(default, with = "time::serde::rfc3339::option")]
    retry_at: Option<Timestamp>,
    last_error: Option<String>,
    #[serde(default)]
    decided: bool,
}

/// A row in either form (see [`EntityProgressOut`]).
struct EntityProgressIn(usize, Option<String>, ResultTag, Option<String>);

impl<'de> Deserialize<'de> for EntityProgressIn {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Row;
        impl<'de> serde::de::Visitor<'de> for Row {
            type Value = EntityProgressIn;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a row [index, platform id] or [index, platform id, result, message]")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<Self::Value, A::Error> {
                use serde::de::Error as _;
                let index = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(0, &self))?;
                let platform_id: Option<String> = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(1, &self))?;
                let Some(tag) = seq.next_element::<ResultTag>()? else {
                    return match platform_id {
                        Some(id) => Ok(EntityProgressIn(index, Some(id), ResultTag::Created, None)),
                        None => Err(A::Error::custom(format!(
                            "entity #{index}: a short row without a platform id"
                        ))),
                    };
                };
                let message = seq
                    .next_element()?
                    .ok_or_else(|| A::Error::invalid_length(3, &self))?;
                if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(A::Error::invalid_length(5, &self));
                }
                Ok(EntityProgressIn(index, platform_id, tag, message))
            }
        }
        deserializer.deserialize_seq(Row)
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum ResultTag {
    Pending,
    Created,
    Updated,
    Adopted,
    Applied,
    Unchanged,
    Replaced,
    Archived,
    Left,
    Failed,
    Skipped,
}

impl EntityProgressIn {
    fn result(self) -> Result<(usize, Option<String>, EntityResult), String> {
        let EntityProgressIn(entity, platform_id, tag, message) = self;
        let needs = |what: &str| format!("entity #{entity} is {what} without a message");
        let result = match tag {
            ResultTag::Pending => EntityResult::Pending,
            ResultTag::Created => EntityResult::Created,
            ResultTag::Updated => EntityResult::Updated,
            ResultTag::Adopted => EntityResult::Adopted,
            ResultTag::Applied => EntityResult::Applied,
            ResultTag::Unchanged => EntityResult::Unchanged,
            ResultTag::Replaced => EntityResult::Replaced {
                old_id: message.ok_or_else(|| needs("replaced"))?,
            },
            ResultTag::Archived => EntityResult::Archived,
            ResultTag::Left => EntityResult::Left,
            ResultTag::Failed => EntityResult::Failed {
                error: message.ok_or_else(|| needs("failed"))?,
            },
            ResultTag::Skipped => EntityResult::Skipped {
                reason: message.ok_or_else(|| needs("skipped"))?,
            },
        };
        Ok((entity, platform_id, result))
    }
}

/// The plan of `state`: what its sync fixed when it started.
pub(crate) fn encode_plan(state: &PushState) -> serde_json::Result<Box<RawValue>> {
    serde_json::value::to_raw_value(&PlanOut {
        target: &state.target,
        policy: &state.policy,
        entities: state
            .entities
            .iter()
            .map(|e| PlannedOut {
                spec: &e.spec,
                parent: e.parent,
            })
            .collect(),
        work: state.work.iter().map(WorkOut).collect(),
        converge: state.converge.as_deref(),
    })
}

/// The progress of `state`: everything but the plan. Entities still pending
/// without a platform id are left out (they are the plan's defaults).
pub(crate) fn encode_progress(state: &PushState) -> serde_json::Result<Box<RawValue>> {
    let sealed = sealed(state);
    let first = (sealed * CHUNK).min(state.entities.len());
    serde_json::value::to_raw_value(&ProgressOut {
        phase: state.phase,
        sealed,
        entities: TouchedEntities(&state.entities[first..], first),
        cursor: state.cursor,
        attempt: state.attempt,
        intent_at: state.intent_at,
        retry_at: state.retry_at,
        last_error: &state.last_error,
        decided: state.decisions.is_some(),
    })
}

/// Rebuilds a state from its sync's plan, its progress segments and one
/// checkpoint's progress. The error says which part does not decode or where
/// they disagree.
pub(crate) fn decode(
    plan: Option<&RawValue>,
    segments: &[(u32, Arc<RawValue>)],
    progress: &RawValue,
) -> Result<PushState, String> {
    let plan = plan.ok_or("its plan (the entity specs, key `p/<sync id>`) is missing")?;
    let plan: PlanIn =
        serde_json::from_str(plan.get()).map_err(|e| format!("the plan does not decode: {e}"))?;
    let progress: ProgressIn = serde_json::from_str(progress.get())
        .map_err(|e| format!("the checkpoint does not decode: {e}"))?;
    let count = plan.entities.len();
    if let Some(bad) = plan
        .entities
        .iter()
        .filter_map(|e| e.parent)
        .chain(plan.work.iter().flat_map(|w| {
            match &w.0 {
                Work::Observe => vec![],
                Work::Upsert { entity } | Work::Archive { entity } => vec![*entity],
                Work::SetKeywords { ad_group, keywords } => std::iter::once(*ad_group)
                    .chain(keywords.iter().copied())
                    .collect(),
            }
        }))
        .find(|&i| i >= count)
    {
        return Err(format!(
            "the plan refers to entity #{bad}, but it has {count} entities"
        ));
    }
    if let Some(converge) = &plan.converge {
        if converge.retired_from > count {
            return Err(format!(
                "the plan retires entities from #{}, but it has {count} entities",
                converge.retired_from
            ));
        }
    }
    let decisions = match segments.iter().find(|(n, _)| *n == DECISIONS) {
        _ if !progress.decided => None,
        None => return Err(
            "the checkpoint says the push decided its plan, but the decisions' segment is missing"
                .to_string(),
        ),
        Some((_, raw)) => {
            let decisions: std::collections::BTreeMap<usize, Decision> =
                serde_json::from_str(raw.get())
                    .map_err(|e| format!("the decisions' segment does not decode: {e}"))?;
            if let Some(bad) = decisions.keys().find(|&&i| i >= count) {
                return Err(format!(
                    "the decisions name entity #{bad}, but the plan has {count} entities"
                ));
            }
            Some(Arc::new(decisions))
        }
    };
    let mut entities: Vec<Entity> = plan
        .entities
        .into_iter()
        .map(|e| Entity::planned(e.spec, e.parent, None))
        .collect();
    // Segments past `sealed` are left from before a rewind of the cursor:
    // the checkpoint's rows hold those chunks.
    let mut segments = segments
        .iter()
        .filter(|(n, _)| (*n as usize) < progress.sealed);
    for chunk in 0..progress.sealed {
        let Some((_, segment)) = segments.next().filter(|(n, _)| *n as usize == chunk) else {
            return Err(format!(
                "the checkpoint says {} chunks of entities are in segments, but segment {chunk} is missing",
                progress.sealed
            ));
        };
        let rows: Vec<EntityProgressIn> = serde_json::from_str(segment.get())
            .map_err(|e| format!("segment {chunk} does not decode: {e}"))?;
        for row in rows {
            let (entity, platform_id, result) = row
                .result()
                .map_err(|e| format!("segment {chunk} does not decode: {e}"))?;
            if entity / CHUNK != chunk {
                return Err(format!(
                    "segment {chunk} records entity #{entity}, of another chunk"
                ));
            }
            set_row(&mut entities, entity, platform_id, result)?;
        }
    }
    for row in progress.entities {
        let (entity, platform_id, result) = row
            .result()
            .map_err(|e| format!("the checkpoint does not decode: {e}"))?;
        set_row(&mut entities, entity, platform_id, result)?;
    }
    Ok(PushState {
        phase: progress.phase,
        target: Arc::new(plan.target),
        policy: plan.policy,
        entities: Arc::new(entities.into_iter().map(Arc::new).collect()),
        work: Arc::new(plan.work.into_iter().map(|w| w.0).collect()),
        cursor: progress.cursor,
        attempt: progress.attempt,
        intent_at: progress.intent_at,
        retry_at: progress.retry_at,
        last_error: progress.last_error,
        converge: plan.converge.map(Arc::new),
        decisions,
    })
}

/// Sets entity `entity`'s progress, or says it is not in the plan.
fn set_row(
    entities: &mut [Entity],
    entity: usize,
    platform_id: Option<String>,
    result: EntityResult,
) -> Result<(), String> {
    let count = entities.len();
    let Some(e) = entities.get_mut(entity) else {
        return Err(format!(
            "the checkpoint records entity #{entity}, but the plan has {count} entities"
        ));
    };
    e.platform_id = platform_id;
    e.result = result;
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::push::PushMachine;
    use adsync_engine::{Machine, MachineDocs};

    fn round_trip(state: &PushState) -> PushState {
        let plan = encode_plan(state).expect("plan encodes");
        let progress = encode_progress(state).expect("progress encodes");
        decode(Some(&plan), &segments(None, state), &progress).expect("decodes")
    }

    fn segments(prev: Option<&PushState>, state: &PushState) -> Vec<(u32, Arc<RawValue>)> {
        encode_segments(prev, state)
            .expect("segments encode")
            .into_iter()
            .map(|(n, s)| (n, Arc::from(s)))
            .collect()
    }

    /// The progress of `state` encoded from scratch: decoding gives entities
    /// whose rows were never encoded.
    fn encoded_afresh(state: &PushState) -> String {
        encode_progress(&round_trip(state))
            .expect("progress encodes")
            .get()
            .to_string()
    }

    #[test]
    fn a_checkpoint_reuses_a_row_only_while_its_entity_is_unchanged() {
        let (_, mut state) = PushMachine::sample_states().remove(0);
        for i in 0..state.entities.len() {
            if let Some(e) = state.entity_mut(i) {
                e.result = EntityResult::Created;
                e.platform_id = Some(format!("t2_{i}"));
            }
        }
        let first = encode_progress(&state).expect("encodes").get().to_string();
        assert_eq!(first, encoded_afresh(&state));
        assert!(first.contains(r#"[1,"t2_1"]"#), "{first}");

        // Through `entity_mut`, as transitions do.
        let mut next = state.clone();
        if let Some(e) = next.entity_mut(1) {
            e.result = EntityResult::Failed {
                error: "name taken".into(),
            };
        }
        let second = encode_progress(&next).expect("encodes").get().to_string();
        assert_eq!(second, encoded_afresh(&next));
        assert!(
            second.contains(r#"[1,"t2_1","failed","name taken"]"#),
            "{second}"
        );
        // The state it was copied from still encodes its own rows.
        assert_eq!(encode_progress(&state).expect("encodes").get(), first);

        // Around `entity_mut`: the copy carries the old row, which must not be used.
        let mut third = next.clone();
        let entities = Arc::make_mut(&mut third.entities);
        let e = Arc::make_mut(&mut entities[2]);
        e.platform_id = Some("t2_changed".into());
        let encoded = encode_progress(&third).expect("encodes").get().to_string();
        assert_eq!(encoded, encoded_afresh(&third));
        assert!(encoded.contains(r#"[2,"t2_changed"]"#), "{encoded}");
    }

    /// A campaign of `ads` ads in one ad group: `ads + 2` entities.
    fn big_campaign(ads: usize) -> crate::model::Campaign {
        let ads: Vec<serde_json::Value> = (0..ads)
            .map(|a| serde_json::json!({"id": format!("a{a}"), "name": format!("Ad {a}"), "post_id": "t3_x"}))
            .collect();
        let set = serde_json::json!({"name": "s", "campaigns": [
            {"id": "c1", "name": "Spring", "objective": "CLICKS",
             "ad_groups": [{"id": "g1", "name": "Trail", "ads": ads}]}]});
        crate::model::CampaignSet::from_json(&set.to_string(), "inline.json")
            .expect("set")
            .campaigns
            .remove(0)
    }

    /// The state of a push of [`big_campaign`].
    fn big_state(ads: usize) -> PushState {
        PushState::new(
            super::super::machine::Target {
                platform: "memory".into(),
                account_id: "a2".into(),
                keyword_model: crate::adapter::KeywordModel::Entities,
            },
            &big_campaign(ads),
            &std::collections::BTreeMap::new(),
            PushPolicy::default(),
            time::OffsetDateTime::UNIX_EPOCH,
        )
    }

    /// Runs `state` to its end with every create succeeding; returns the
    /// states in order, from the first.
    fn run(state: PushState) -> Vec<PushState> {
        use adsync_engine::{Context, Next};
        let ctx = Context {
            now: time::OffsetDateTime::UNIX_EPOCH,
            jitter: 0.0,
        };
        let mut states = vec![state];
        for n in 0.. {
            let last = states.last().expect("a state");
            let Next::Effect(_) = PushMachine::next(last) else {
                break;
            };
            let outcome = super::super::machine::PushOutcome::Created {
                id: format!("t2_{n}"),
            };
            let next = PushMachine::transition(last, &outcome, &ctx).expect("transition");
            states.push(next);
        }
        states
    }

    /// A converging push of `big_state`'s campaign that adsync pushed
    /// before: every entity known, one ad (`a9`) retired, pruned.
    fn converging_state(ads: usize) -> (PushState, Vec<crate::converge::Observed>) {
        use crate::converge::{fields_of, Known, Observed, PlanOptions};
        let fresh = big_state(ads);
        let model = crate::adapter::KeywordModel::Entities;
        let mut known = Vec::new();
        let mut observed = Vec::new();
        let local = |i: usize| fresh.entities[i].local_id().to_string();
        for (i, e) in fresh.entities.iter().enumerate() {
            let fields = fields_of(&e.spec, model);
            let parent = e.parent.map(local);
            known.push((
                Known {
                    kind: e.kind(),
                    local_id: local(i),
                    parent: parent.clone(),
                    id: format!("t2_{i}"),
                    name: e.spec.lookup_name().to_string(),
                    written: fields.clone(),
                },
                e.spec.clone(),
            ));
            let mut fields = fields;
            // Every tenth ad was renamed on the platform: drift.
            if e.kind() == crate::adapter::EntityKind::Ad && i % 10 == 0 {
                fields.insert("name", serde_json::Value::from("Renamed by hand"));
            }
            observed.push(Observed {
                kind: e.kind(),
                id: format!("t2_{i}"),
                parent_id: e.parent.map(|p| format!("t2_{p}")),
                name: e.spec.lookup_name().to_string(),
                fields,
            });
        }
        let retired = crate::model::Ad {
            id: "a9x".into(),
            name: "Retired".into(),
            post_id: "t3_r".into(),
            click_url: None,
            status: crate::model::ConfiguredStatus::Paused,
        };
        let spec = EntitySpec::Ad(retired);
        known.push((
            Known {
                kind: crate::adapter::EntityKind::Ad,
                local_id: "a9x".into(),
                parent: Some("g1".into()),
                id: "t2_old".into(),
                name: "Retired".into(),
                written: fields_of(&spec, model),
            },
            Arc::new(spec.clone()),
        ));
        observed.push(Observed {
            kind: crate::adapter::EntityKind::Ad,
            id: "t2_old".into(),
            parent_id: Some("t2_1".into()),
            name: "Retired".into(),
            fields: fields_of(&spec, model),
        });
        let set_campaign = big_campaign(ads);
        let state = PushState::converging(
            fresh.target.as_ref().clone(),
            &set_campaign,
            known,
            PlanOptions {
                prune: true,
                ..PlanOptions::default()
            },
            PushPolicy::default(),
            time::OffsetDateTime::UNIX_EPOCH,
        );
        (state, observed)
    }

    #[test]
    fn a_converging_push_decodes_at_every_step_with_its_decisions_written_once() {
        use super::super::machine::{PushEffect, PushOutcome};
        use adsync_engine::{Context, Next};
        let (start, observed) = converging_state(100);
        assert_eq!(start.phase, PushPhase::Reading);
        assert_eq!(
            start.entities.len(),
            103,
            "the set's 102 and the retired ad"
        );
        let ctx = Context {
            now: time::OffsetDateTime::UNIX_EPOCH,
            jitter: 0.0,
        };
        let plan = encode_plan(&start).expect("plan");
        let mut stored: BTreeMap<u32, Arc<RawValue>> = BTreeMap::new();
        let mut states = vec![start];
        let mut decisions_written = 0;
        loop {
            let last = states.last().expect("a state");
            let outcome = match PushMachine::next(last) {
                Next::Effect(PushEffect::Observe { .. }) => PushOutcome::Observed {
                    entities: observed.clone(),
                },
                Next::Effect(PushEffect::Update { fields, .. }) => {
                    assert_eq!(
                        fields,
                        Some(vec!["name".to_string()]),
                        "only the drifted field"
                    );
                    PushOutcome::Updated
                }
                Next::Effect(PushEffect::Archive { id, .. }) => {
                    assert_eq!(id, "t2_old");
                    PushOutcome::Archived
                }
                Next::Effect(other) => panic!("no other effect: {other:?}"),
                Next::Settled(_) => break,
            };
            let next = PushMachine::transition(last, &outcome, &ctx).expect("transition");
            for (n, segment) in encode_segments(Some(last), &next).expect("segments") {
                decisions_written += usize::from(n == DECISIONS);
                stored.insert(n, Arc::from(segment));
            }
            let progress = encode_progress(&next).expect("progress");
            let segments: Vec<(u32, Arc<RawValue>)> =
                stored.iter().map(|(n, s)| (*n, s.clone())).collect();
            let decoded = decode(Some(&plan), &segments, &progress).expect("decodes");
            assert_eq!(decoded, next);
            states.push(next);
        }
        assert_eq!(decisions_written, 1);
        let last = states.last().expect("a state");
        assert_eq!(last.phase, PushPhase::Synced, "{:?}", last.last_error);
        let results: Vec<&EntityResult> = last.entities.iter().map(|e| &e.result).collect();
        assert_eq!(
            results
                .iter()
                .filter(|r| ***r == EntityResult::Updated)
                .count(),
            10
        );
        assert_eq!(*results[102], EntityResult::Archived);
        assert_eq!(
            results
                .iter()
                .filter(|r| ***r == EntityResult::Unchanged)
                .count(),
            92
        );
        // Observe, ten updates, one archive.
        assert_eq!(states.len(), 1 + 1 + 10 + 1);
    }

    #[test]
    fn segments_plus_the_latest_progress_decode_to_every_state_of_a_push() {
        let states = run(big_state(200));
        assert_eq!(states[0].entities.len(), 202);
        let plan = encode_plan(&states[0]).expect("plan");
        // What the store holds: every segment written so far, the latest of each.
        let mut stored: BTreeMap<u32, Arc<RawValue>> = BTreeMap::new();
        let mut prev: Option<&PushState> = None;
        let mut writes = 0;
        let mut longest = 0;
        for state in &states {
            for (n, segment) in segments(prev, state) {
                writes += 1;
                stored.insert(n, segment);
            }
            let progress = encode_progress(state).expect("progress");
            longest = longest.max(progress.get().len());
            let segments: Vec<_> = stored.iter().map(|(n, s)| (*n, s.clone())).collect();
            let decoded = decode(Some(&plan), &segments, &progress).expect("decodes");
            assert_eq!(&decoded, state, "cursor {}", state.cursor);
            prev = Some(state);
        }
        // Each full chunk was written once, and the last state has them all
        // sealed: it lists only the entities of the last, partial chunk.
        let full = 202 / CHUNK;
        assert_eq!(writes, full);
        assert_eq!(stored.len(), writes);
        let last = encode_progress(states.last().expect("last")).expect("progress");
        let expected = format!(r#""sealed":{full},"entities":[[{},"#, full * CHUNK);
        assert!(last.get().contains(&expected), "{}", last.get());
        let before = format!("[{},", full * CHUNK - 1);
        assert!(!last.get().contains(&before), "{}", last.get());
        // A checkpoint lists at most two chunks' rows (the open one and the
        // one the current work item may still be in), however far the push is.
        assert!(longest < 2 * CHUNK * 16 + 300, "{longest} bytes");
    }

    #[test]
    fn a_sealed_chunk_is_written_again_when_one_of_its_entities_changes() {
        let states = run(big_state(200));
        let done = states.last().expect("last");
        assert!(encode_segments(Some(done), done)
            .expect("segments")
            .is_empty());
        let mut changed = done.clone();
        if let Some(e) = changed.entity_mut(70) {
            e.platform_id = Some("t2_other".into());
        }
        let again = encode_segments(Some(done), &changed).expect("segments");
        assert_eq!(again.len(), 1, "only the changed chunk");
        assert_eq!(again[0].0 as usize, 70 / CHUNK);
        assert!(again[0].1.get().contains(r#"[70,"t2_other"]"#));
        // Decoded over the older segment 1, the rewritten one wins.
        let plan = encode_plan(done).expect("plan");
        let mut stored: BTreeMap<u32, Arc<RawValue>> = segments(None, done).into_iter().collect();
        for (n, s) in again {
            stored.insert(n, Arc::from(s));
        }
        let stored: Vec<_> = stored.into_iter().collect();
        let progress = encode_progress(&changed).expect("progress");
        assert_eq!(
            decode(Some(&plan), &stored, &progress).expect("decodes"),
            changed
        );
    }

    #[test]
    fn a_checkpoint_written_before_segments_still_decodes() {
        let states = run(big_state(200));
        let plan = encode_plan(&states[0]).expect("plan");
        for state in [&states[100], states.last().expect("last")] {
            // How the previous version wrote it: every row, no `sealed`.
            let old = serde_json::value::to_raw_value(&ProgressOut {
                phase: state.phase,
                sealed: 0,
                entities: TouchedEntities(&state.entities, 0),
                cursor: state.cursor,
                attempt: state.attempt,
                intent_at: state.intent_at,
                retry_at: state.retry_at,
                last_error: &state.last_error,
                decided: false,
            })
            .expect("encodes");
            assert!(!old.get().contains("sealed"));
            assert_eq!(&decode(Some(&plan), &[], &old).expect("decodes"), state);
        }
    }

    #[test]
    fn a_missing_or_misplaced_segment_is_an_error_not_a_panic() {
        let states = run(big_state(200));
        let done = states.last().expect("last");
        let plan = encode_plan(done).expect("plan");
        let progress = encode_progress(done).expect("progress");
        let mut all = segments(None, done);
        assert_eq!(all.len(), 202 / CHUNK);
        let error = decode(Some(&plan), &all[..2], &progress).expect_err("refused");
        assert!(error.contains("segment 2 is missing"), "{error}");
        all.swap(0, 1);
        let error = decode(Some(&plan), &all, &progress).expect_err("refused");
        assert!(error.contains("segment 0 is missing"), "{error}");
        all.swap(0, 1);
        all[2].1 = Arc::from(RawValue::from_string(r#"[[5,"t2_x"]]"#.into()).expect("raw"));
        let error = decode(Some(&plan), &all, &progress).expect_err("refused");
        assert!(error.contains("segment 2 records entity #5"), "{error}");
    }

    #[test]
    fn a_created_entity_is_a_short_row_and_long_rows_still_read() {
        let (_, mut state) = PushMachine::sample_states().remove(0);
        if let Some(e) = state.entity_mut(0) {
            e.result = EntityResult::Created;
            e.platform_id = Some("t2_0".into());
        }
        let progress = encode_progress(&state).expect("encodes");
        assert!(
            progress.get().contains(r#"[[0,"t2_0"]]"#),
            "{}",
            progress.get()
        );
        let plan = encode_plan(&state).expect("plan");
        // The same progress as an older adsync wrote it.
        let long = progress
            .get()
            .replace(r#"[0,"t2_0"]"#, r#"[0,"t2_0","created",null]"#);
        let long = serde_json::value::RawValue::from_string(long).expect("raw");
        assert_eq!(decode(Some(&plan), &[], &long).expect("decodes"), state);
        // A short row must carry an id; a row of 3 or 5 elements is refused.
        for bad in [
            r#"[0,null]"#,
            r#"[0,"t2_0","created"]"#,
            r#"[0,"t2_0","created",null,1]"#,
        ] {
            let text = progress.get().replace(r#"[0,"t2_0"]"#, bad);
            let raw = serde_json::value::RawValue::from_string(text).expect("raw");
            let error = decode(Some(&plan), &[], &raw).expect_err(bad);
            assert!(
                error.contains("the checkpoint does not decode"),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn every_sample_state_survives_plan_plus_progress() {
        for (label, state) in PushMachine::sample_states() {
            assert_eq!(round_trip(&state), state, "{label}");
        }
        // Every result, with and without a platform id.
        let (_, mut state) = PushMachine::sample_states().remove(0);
        let results = [
            EntityResult::Created,
            EntityResult::Updated,
            EntityResult::Adopted,
            EntityResult::Applied,
            EntityResult::Failed {
                error: "name \"taken\"".into(),
            },
            EntityResult::Skipped {
                reason: "parent failed".into(),
            },
        ];
        for result in results {
            for i in 0..state.entities.len() {
                if let Some(e) = state.entity_mut(i) {
                    e.result = result.clone();
                    e.platform_id = (i % 2 == 0).then(|| format!("t2_{i}"));
                }
            }
            assert_eq!(round_trip(&state), state, "{result:?}");
        }
    }

    #[test]
    fn progress_carries_no_spec_and_lists_only_touched_entities() {
        for (label, state) in PushMachine::sample_states() {
            let progress = encode_progress(&state).expect("encodes");
            let text = progress.get();
            for entity in state.entities.iter() {
                let name = format!("\"{}\"", entity.spec.lookup_name());
                assert!(!text.contains(&name), "{label}: {name} in {text}");
            }
            let listed: serde_json::Value = serde_json::from_str(text).expect("json");
            let touched = state
                .entities
                .iter()
                .filter(|e| e.platform_id.is_some() || e.result != EntityResult::Pending)
                .count();
            assert_eq!(listed["entities"].as_array().map(Vec::len), Some(touched));
        }
    }

    /// The plan as versions before the compact layout wrote it: entities as
    /// `{"spec", "parent"}` objects, work items as objects.
    fn old_plan(state: &PushState) -> Box<RawValue> {
        let entities: Vec<serde_json::Value> = state
            .entities
            .iter()
            .map(|e| serde_json::json!({ "spec": e.spec, "parent": e.parent }))
            .collect();
        serde_json::value::to_raw_value(&serde_json::json!({
            "target": state.target,
            "policy": state.policy,
            "entities": entities,
            "work": state.work,
        }))
        .expect("raw")
    }

    /// Every kind and every optional field, present and absent.
    fn varied_state() -> PushState {
        use crate::model::{BidType, GoalType, SpendGoal};
        let (_, mut state) = PushMachine::sample_states().remove(0);
        let mut entities: Vec<Entity> = state.entities.iter().map(|e| (**e).clone()).collect();
        let template = entities.clone();
        for e in template {
            let mut spec = (*e.spec).clone();
            match &mut spec {
                EntitySpec::Campaign(c) => {
                    c.goal = Some(SpendGoal {
                        goal_type: GoalType::LifetimeSpend,
                        value_micros: 7,
                    })
                }
                EntitySpec::AdGroup(g) => {
                    g.bid_strategy = None;
                    g.bid_type = Some(BidType::Cpm);
                    g.bid_value_micros = None;
                    g.start_time = None;
                    g.end_time = Some("2027-01-01T00:00:00Z".into());
                }
                EntitySpec::Ad(a) => a.click_url = None,
                EntitySpec::Keyword(k) => k.text = "\"quoted\" ü".into(),
            }
            entities.push(Entity::planned(spec, e.parent, None));
        }
        let mut work = (*state.work).clone();
        work.push(Work::SetKeywords {
            ad_group: 1,
            keywords: vec![2, 3],
        });
        state.entities = Arc::new(entities.into_iter().map(Arc::new).collect());
        state.work = Arc::new(work);
        state
    }

    #[test]
    fn a_plan_is_compact_tuples_and_the_earlier_layout_still_decodes() {
        let state = varied_state();
        let kinds: std::collections::BTreeSet<_> =
            state.entities.iter().map(|e| e.spec.kind()).collect();
        assert_eq!(kinds.len(), 4, "every kind: {kinds:?}");
        let plan = encode_plan(&state).expect("plan");
        let progress = encode_progress(&state).expect("progress");
        assert_eq!(decode(Some(&plan), &[], &progress).expect("decodes"), state);
        let text = plan.get();
        for absent in ["\"spec\"", "\"parent\"", "null]", "[]", "\"upsert\""] {
            assert!(!text.contains(absent), "{absent} in {text}");
        }
        let old = old_plan(&state);
        assert!(old.get().contains("\"spec\"") && old.get().contains("\"upsert\""));
        assert_eq!(decode(Some(&old), &[], &progress).expect("decodes"), state);
        assert!(
            text.len() * 3 < old.get().len() * 2,
            "{} vs {} bytes",
            text.len(),
            old.get().len()
        );
        // A tuple of an unknown kind, too short or too long is refused.
        let mut value: serde_json::Value = serde_json::from_str(text).expect("json");
        let keyword = value["entities"]
            .as_array()
            .and_then(|e| e.iter().position(|e| e[1] == "k"))
            .expect("a keyword");
        for bad in [
            serde_json::json!([0, "x", "id", "text"]),
            serde_json::json!([0, "k", "id"]),
            serde_json::json!([0, "k", "id", "text", 1]),
        ] {
            value["entities"][keyword] = bad.clone();
            let raw = serde_json::value::to_raw_value(&value).expect("raw");
            let error = decode(Some(&raw), &[], &progress).expect_err("refused");
            assert!(error.contains("the plan does not decode"), "{bad}: {error}");
        }
    }

    #[test]
    fn a_checkpoint_that_does_not_fit_its_plan_is_an_error_not_a_panic() {
        let (_, state) = PushMachine::sample_states()
            .into_iter()
            .find(|(_, s)| s.entities.iter().any(|e| e.platform_id.is_some()))
            .expect("a sample with an id");
        let plan = encode_plan(&state).expect("plan");
        let progress = encode_progress(&state).expect("progress");
        // A plan with fewer entities than the checkpoint names.
        let mut short: serde_json::Value = serde_json::from_str(plan.get()).expect("json");
        short["entities"] = serde_json::json!([]);
        short["work"] = serde_json::json!([]);
        let short = serde_json::value::to_raw_value(&short).expect("raw");
        let error = decode(Some(&short), &[], &progress).expect_err("refused");
        assert!(error.contains("the plan has 0 entities"), "{error}");
        // A work item pointing past the plan.
        let mut dangling: serde_json::Value = serde_json::from_str(plan.get()).expect("json");
        dangling["work"] = serde_json::json!([99]);
        let dangling = serde_json::value::to_raw_value(&dangling).expect("raw");
        let error = decode(Some(&dangling), &[], &progress).expect_err("refused");
        assert!(error.contains("entity #99"), "{error}");
        // A failure row without its message.
        let mut bare: serde_json::Value = serde_json::from_str(progress.get()).expect("json");
        bare["entities"] = serde_json::json!([[0, "c-1", "failed", null]]);
        let bare = serde_json::value::to_raw_value(&bare).expect("raw");
        let error = decode(Some(&plan), &[], &bare).expect_err("refused");
        assert!(
            error.contains("entity #0 is failed without a message"),
            "{error}"
        );
        // No plan at all, and garbage.
        assert!(decode(None, &[], &progress)
            .expect_err("refused")
            .contains("missing"));
        let garbage = serde_json::value::to_raw_value(&7).expect("raw");
        assert!(decode(Some(&plan), &[], &garbage)
            .expect_err("refused")
            .contains("the checkpoint does not decode"));
    }
}
