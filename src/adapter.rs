//! The platform seam: what the push engine needs from an ad platform.

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use strum::{Display, EnumIter, EnumString, IntoStaticStr};

use crate::model::{Ad, AdGroup, Campaign, Keyword};
use adsync_engine::Timestamp;

/// The four levels of the hierarchy.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    Display,
    EnumIter,
    EnumString,
    IntoStaticStr,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum EntityKind {
    /// A campaign (parent: the ad account).
    Campaign,
    /// An ad group (parent: a campaign).
    AdGroup,
    /// An ad (parent: an ad group).
    Ad,
    /// A keyword (parent: an ad group).
    Keyword,
}

/// How a platform represents keywords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeywordModel {
    /// Keywords are entities with their own ids, created one by one (Amazon-style).
    Entities,
    /// Keywords are strings on the ad group's targeting (Reddit-style): syncing
    /// them is one idempotent update of the ad group, and they have no ids.
    AdGroupTargeting,
}

/// The desired fields of one entity, without its children.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EntitySpec {
    /// Campaign fields (`ad_groups` is always empty here).
    Campaign(Campaign),
    /// Ad group fields (`ads` and `keywords` are always empty here).
    AdGroup(AdGroup),
    /// Ad fields.
    Ad(Ad),
    /// Keyword fields.
    Keyword(Keyword),
}

impl EntitySpec {
    /// Which level this spec is for.
    pub fn kind(&self) -> EntityKind {
        match self {
            EntitySpec::Campaign(_) => EntityKind::Campaign,
            EntitySpec::AdGroup(_) => EntityKind::AdGroup,
            EntitySpec::Ad(_) => EntityKind::Ad,
            EntitySpec::Keyword(_) => EntityKind::Keyword,
        }
    }

    /// The name the entity is looked up by after an unknown outcome (keyword: its text).
    pub fn lookup_name(&self) -> &str {
        match self {
            EntitySpec::Campaign(c) => &c.name,
            EntitySpec::AdGroup(g) => &g.name,
            EntitySpec::Ad(a) => &a.name,
            EntitySpec::Keyword(k) => &k.text,
        }
    }

    /// The local id from the campaign-set file.
    pub fn local_id(&self) -> &str {
        match self {
            EntitySpec::Campaign(c) => &c.id,
            EntitySpec::AdGroup(g) => &g.id,
            EntitySpec::Ad(a) => &a.id,
            EntitySpec::Keyword(k) => &k.id,
        }
    }
}

/// Where an entity lives: its account and, below campaigns, its parent's platform id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parent {
    /// The ad account (Reddit `a2_…`).
    pub account_id: String,
    /// The parent entity's platform id; `None` for campaigns.
    pub parent_id: Option<String>,
}

/// An entity seen on the platform by a look-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoundEntity {
    /// Its platform id.
    pub id: String,
    /// Its name (keyword: text).
    pub name: String,
    /// When the platform says it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
}

/// An entity read back by its platform id (see [`PushAdapter::get`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlatformEntity {
    /// Its platform id.
    pub id: String,
    /// Its level.
    pub kind: EntityKind,
    /// Its name (keyword: text).
    pub name: String,
    /// The ad account it belongs to, when the platform says.
    pub account_id: Option<String>,
    /// Its parent's platform id (`None` for campaigns).
    pub parent_id: Option<String>,
}

/// One field the platform rejected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// The field, as the platform names it.
    pub field: String,
    /// The platform's message.
    pub message: String,
}

/// A failed platform call, classified for the state machine (see [`PushAdapter`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(tag = "class", rename_all = "snake_case")]
pub enum AdapterError {
    /// Certainly not applied; safe to retry after `retry_after` (if the platform said) or a backoff.
    #[error("transient: {message}")]
    Transient {
        /// What happened.
        message: String,
        /// The platform's requested wait, if it gave one.
        #[serde(
            default,
            skip_serializing_if = "Option::is_none",
            with = "opt_duration_ms"
        )]
        retry_after: Option<Duration>,
    },
    /// Rejected by the platform; retrying the same request cannot succeed.
    #[error("permanent: {message}{}", fields_suffix(.fields))]
    Permanent {
        /// The platform's message.
        message: String,
        /// Per-field messages, if the platform gave them.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        fields: Vec<FieldError>,
    },
    /// The request may or may not have been applied.
    #[error("outcome unknown: {message}")]
    Unknown {
        /// What happened.
        message: String,
    },
    /// The entity the request names (or its parent) does not exist on the
    /// platform (HTTP 404): nothing was applied. An update answered this way
    /// means the recorded platform id is gone.
    #[error("not found: {message}")]
    NotFound {
        /// What is missing, and where the platform said so.
        message: String,
    },
}

fn fields_suffix(fields: &[FieldError]) -> String {
    if fields.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = fields
        .iter()
        .map(|f| format!("{}: {}", f.field, f.message))
        .collect();
    format!(" ({})", parts.join("; "))
}

mod opt_duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(d) => s.serialize_some(&(d.as_millis() as u64)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(Option::<u64>::deserialize(d)?.map(Duration::from_millis))
    }
}

/// The platform seam: what the push engine needs from an ad platform.
///
/// The trait is deliberately small and generic over the entity kind, so that an
/// HTTP adapter (Reddit Ads), the in-memory platform used in tests, and users' own
/// adapters all plug into the same runner. Every call reports failures as an
/// [`AdapterError`] whose *class* drives the state machine:
///
/// | class       | meaning                                              | machine does           |
/// |-------------|------------------------------------------------------|------------------------|
/// | `Transient` | the request was certainly **not** applied            | retry after backoff    |
/// | `Permanent` | the platform rejected it (validation, not found…)    | fail the entity        |
/// | `Unknown`   | it may or may not have been applied (timeout after the request was sent, dropped connection) | look the entity up, adopt it |
/// | `NotFound`  | the entity (or its parent) does not exist on the platform | an update: look the entity up by name, adopt or create it; otherwise fail the entity |
///
/// No platform here offers idempotency keys, so an adapter must never retry a
/// create on its own after the request may have reached the server: it returns
/// `Unknown` and lets the machine decide, durably, what happened.
///
/// What the push engine needs from an ad platform.
///
/// Implementations: [`crate::platform::memory::MemoryPlatform`] (tests, demo) and
/// the Reddit Ads HTTP adapter. All methods are called from the runner only.
#[async_trait]
pub trait PushAdapter: Send + Sync + 'static {
    /// A short platform name stored in checkpoints (`"reddit"`, `"memory"`).
    fn platform(&self) -> &str;

    /// How this platform stores keywords. Read once by
    /// [`Pusher::new`](crate::push::Pusher::new) and recorded in every sync it
    /// starts, so it must not change for one platform.
    fn keyword_model(&self) -> KeywordModel;

    /// Creates one entity under `parent` and returns its platform id.
    ///
    /// Must not retry by itself once the request may have reached the platform:
    /// return [`AdapterError::Unknown`] instead.
    ///
    /// # Errors
    ///
    /// [`AdapterError::Transient`] only when the request certainly was not
    /// applied; [`AdapterError::Unknown`] when it may have been;
    /// [`AdapterError::Permanent`] or [`AdapterError::NotFound`] (the parent)
    /// when the platform refused it. The machine acts on the class (see
    /// [`PushAdapter`]).
    async fn create(&self, parent: &Parent, spec: &EntitySpec) -> Result<String, AdapterError>;

    /// Brings the entity `id` to `spec` (idempotent, so the machine may send
    /// it again after any failure).
    ///
    /// # Errors
    ///
    /// [`AdapterError::NotFound`] when `id` is gone from the platform (the
    /// machine then looks the entity up by name); the other classes as for
    /// [`PushAdapter::create`].
    async fn update(
        &self,
        parent: &Parent,
        id: &str,
        spec: &EntitySpec,
    ) -> Result<(), AdapterError>;

    /// Writes only `fields` (the set file's names, [`crate::converge::fields_of`])
    /// of `spec` onto entity `id`: what a converging push sends when it found
    /// those fields differing. A field the spec leaves out is cleared (set to
    /// the platform's default). Idempotent, like [`PushAdapter::update`].
    ///
    /// The default writes every field through [`PushAdapter::update`]: the
    /// same end state, in a larger request.
    ///
    /// # Errors
    ///
    /// As [`PushAdapter::update`].
    async fn update_fields(
        &self,
        parent: &Parent,
        id: &str,
        spec: &EntitySpec,
        fields: &[String],
    ) -> Result<(), AdapterError> {
        let _ = fields;
        self.update(parent, id, spec).await
    }

    /// Archives entity `id` of `kind`: stops it for good while keeping it
    /// (and its reporting) on the platform, which is how a converging push
    /// prunes an entity the set no longer names (`--prune`) or retires one it
    /// replaced. Idempotent: archiving an archived entity succeeds.
    /// The default answers `Permanent` ("cannot archive").
    ///
    /// # Errors
    ///
    /// [`AdapterError::NotFound`] when `id` is gone (the machine counts it as
    /// pruned); the other classes as for [`PushAdapter::update`].
    async fn archive(
        &self,
        parent: &Parent,
        kind: EntityKind,
        id: &str,
    ) -> Result<(), AdapterError> {
        let _ = (parent, id);
        Err(AdapterError::Permanent {
            message: format!("the {} adapter cannot archive a {kind}", self.platform()),
            fields: vec![],
        })
    }

    /// Whether [`PushAdapter::list`] is implemented. A push through an
    /// adapter that lists *converges*: it reads the platform first and writes
    /// only what differs (see [`crate::converge`]); through one that does
    /// not, it creates what has no id and updates the rest, as before.
    fn lists(&self) -> bool {
        false
    }

    /// Lists entities of `kind` under `parent` named exactly `name` and created at or
    /// after `created_after`: used to settle an unknown create outcome.
    ///
    /// `created_after` is on this machine's clock (the runner's). An adapter
    /// whose platform stamps `created_at` with its own clock must compare on
    /// that clock (the Reddit adapter uses the offset shown by the `Date`
    /// header of the platform's responses): a platform clock running behind
    /// ours would otherwise hide the entity and cause a duplicate create.
    async fn find(
        &self,
        parent: &Parent,
        kind: EntityKind,
        name: &str,
        created_after: Timestamp,
    ) -> Result<Vec<FoundEntity>, AdapterError>;

    /// Reads entity `id` of `kind` in `parent.account_id`: `Ok(None)` when the
    /// platform has no such entity of that kind. Used to verify an id an
    /// operator asks to adopt before it is recorded. The default answers
    /// `Permanent` ("cannot verify"), so adapters written before it still build.
    async fn get(
        &self,
        parent: &Parent,
        kind: EntityKind,
        id: &str,
    ) -> Result<Option<PlatformEntity>, AdapterError> {
        let _ = (parent, id);
        Err(AdapterError::Permanent {
            message: format!(
                "the {} adapter cannot read a {kind} by id, so an adopted id cannot be verified",
                self.platform()
            ),
            fields: vec![],
        })
    }

    /// Lists every entity of `kind` directly under `parent` (campaigns: the
    /// account's; ad groups: a campaign's; ads and keyword entities: an ad
    /// group's) with the fields a push controls, in the set file's
    /// vocabulary ([`crate::converge::fields_of`]): what a converging push
    /// compares the set with. Reads only. The default answers `Permanent`
    /// ("cannot list"): a platform without it cannot plan a converging push.
    ///
    /// # Errors
    ///
    /// As [`PushAdapter::find`]; a listing the adapter cannot read is
    /// `Transient` (retried within the read budget), never a partial list.
    async fn list(
        &self,
        parent: &Parent,
        kind: EntityKind,
    ) -> Result<Vec<crate::converge::Observed>, AdapterError> {
        let _ = parent;
        Err(AdapterError::Permanent {
            message: format!(
                "the {} adapter cannot list {kind}s, so it cannot plan a converging push",
                self.platform()
            ),
            fields: vec![],
        })
    }

    /// Sets the keywords of ad group `ad_group_id` to exactly `keywords`
    /// (idempotent). Only called when [`PushAdapter::keyword_model`] is
    /// [`KeywordModel::AdGroupTargeting`].
    async fn set_ad_group_keywords(
        &self,
        parent: &Parent,
        ad_group_id: &str,
        keywords: &[Keyword],
    ) -> Result<(), AdapterError>;
}
