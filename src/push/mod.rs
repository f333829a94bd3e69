//! Push: make a campaign set exist on a platform, exactly once.

mod checkpoint;
mod effects;
mod machine;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use effects::{verify_adoption, AdapterEffects, AdoptError};
pub use machine::{
    Decision, Entity, EntityResult, Overwrite, PushEffect, PushMachine, PushOutcome,
    PushOutcomeKind, PushPhase, PushPolicy, PushState, Target, Work,
};

use crate::adapter::{AdapterError, PushAdapter};
use crate::model::CampaignSet;
use adsync_engine::Clock;
use adsync_engine::Status;
use adsync_engine::{Checkpoint, RunError, Runner, Start};
use adsync_engine::{Commit, IntoStore, StoreRead};

impl PushMachine {
    /// The human-readable definition of the push machine, as kept in
    /// `state_machines/push.md` (a test keeps the file identical to this).
    pub fn definition_markdown() -> String {
        adsync_engine::render_definition::<PushMachine>(
            "Push machine",
            "One sync pushes one campaign tree (campaign → ad groups → ads → keywords) to one ad account. \
    Every transition is checkpointed before the next effect starts; each platform id is recorded in the \
    checkpoint that follows its create, before any child is touched. After a restart, a create that may have \
    been in flight is never re-sent: the machine looks the entity up and adopts it.",
        )
        .unwrap_or_else(|e| format!("error: {e}\n"))
    }
}

/// Errors of a set push, before or around the runs themselves.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The runner or the store failed (a read, the start commit, a record
    /// that does not decode); the runner's error names the sync.
    #[error(transparent)]
    Run(#[from] RunError),
    /// Campaigns of the set have unfinished syncs started with other content.
    #[error("set `{set}`: campaign(s) {} differ from what their unfinished syncs were started with; unfinished syncs of the set: {}. Resume them first, then push again", quoted(changed), quoted(syncs))]
    Unfinished {
        /// The set's name.
        set: String,
        /// Campaigns whose content differs from their unfinished sync's.
        changed: Vec<String>,
        /// Every unfinished sync of the set's campaigns: resume these.
        syncs: Vec<String>,
    },
    /// An earlier sync of this campaign is parked for an operator.
    #[error("campaign `{campaign}`: sync `{sync}` needs attention ({reason}); resolve it (`adsync resolve {sync} ...`) first")]
    NeedsAttention {
        /// The campaign's local id.
        campaign: String,
        /// The parked sync.
        sync: String,
        /// Why it is parked.
        reason: String,
    },
    /// Campaigns of the set were last pushed by another set (same account
    /// and campaign id): pushing would change that set's live campaigns.
    /// Nothing was written; [`Pusher::with_take_over`] allows it.
    #[error("set `{set}`: campaign(s) {} on account {account} belong to another set; pushing would rename and change its live campaigns. Give them other ids, or take them over (`--take-over`)", campaigns.join(", "))]
    OwnedByAnotherSet {
        /// The set pushed.
        set: String,
        /// The account.
        account: String,
        /// Each campaign with the set that owns it.
        campaigns: Vec<String>,
    },
    /// A read of the platform that a plan needs failed (`what` says which);
    /// nothing was written.
    #[error("{what}: {source}")]
    Platform {
        /// What was being read.
        what: String,
        /// The adapter's error.
        #[source]
        source: AdapterError,
    },
}

/// How one campaign's sync ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CampaignReport {
    /// The sync's id (`adsync status`, `history` and `resolve` take it).
    pub sync: String,
    /// The campaign's local id.
    pub campaign: String,
    /// Its status when its run ended: `Succeeded`, `Failed`, or
    /// `NeedsAttention` (parked for an operator, see `last_error`). A run that
    /// was stopped before the end is in [`SetReport::errors`] instead.
    pub status: Status,
    /// The error worth showing, if any.
    pub last_error: Option<String>,
    /// Every entity: local id, kind, platform id and result.
    pub entities: Vec<EntityReport>,
}

/// One entity in a [`CampaignReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntityReport {
    /// Campaign, ad group, ad or keyword.
    pub kind: crate::adapter::EntityKind,
    /// Its id in the campaign-set file.
    pub local_id: String,
    /// Its id on the platform; `None` until it is created or adopted (and
    /// always for keywords that live on their ad group's targeting).
    pub platform_id: Option<String>,
    /// What became of it.
    pub result: EntityResult,
    /// Fields someone had changed on the platform since adsync wrote them,
    /// which this push put back to the set's value (a converging push).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub overwritten: Vec<Overwrite>,
}

impl CampaignReport {
    /// The report of a push checkpoint, final or not: reads the state only,
    /// so it works on syncs listed from the store.
    pub fn from_checkpoint(checkpoint: &Checkpoint<PushMachine>) -> Self {
        CampaignReport {
            sync: checkpoint.record.id.clone(),
            campaign: checkpoint.state.campaign_id().to_string(),
            status: checkpoint.record.status,
            last_error: checkpoint.record.last_error.clone(),
            entities: checkpoint
                .state
                .entities
                .iter()
                .enumerate()
                .map(|(i, e)| EntityReport {
                    kind: e.kind(),
                    local_id: e.local_id().to_string(),
                    platform_id: e.platform_id.clone(),
                    result: e.result.clone(),
                    overwritten: checkpoint
                        .state
                        .decision(i)
                        .filter(|_| {
                            matches!(e.result, EntityResult::Updated | EntityResult::Adopted)
                        })
                        .map(|d| d.overwrites.clone())
                        .unwrap_or_default(),
                })
                .collect(),
        }
    }
}

/// The outcome of pushing (or resuming) a set of campaigns.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SetReport {
    /// One report per campaign sync.
    pub campaigns: Vec<CampaignReport>,
    /// Syncs that could not be run to the end (store errors and the like).
    pub errors: Vec<String>,
}

impl SetReport {
    /// Whether every campaign's sync succeeded and no sync failed to run to
    /// its end (`errors` is empty).
    pub fn all_synced(&self) -> bool {
        self.errors.is_empty() && self.campaigns.iter().all(|c| c.status == Status::Succeeded)
    }
}

/// Called after every durable transition of a push sync.
pub type PushObserver = Arc<dyn Fn(&adsync_engine::Transition<PushMachine>) + Send + Sync>;

/// Push: make a campaign set exist on a platform, exactly once.
///
/// Each campaign of a set is its own sync (so one campaign's failure does not
/// stop the others), driven by the [`PushMachine`]:
///
/// ```text
/// Reading ─▶ Pending ─▶ CampaignCreated ─▶ AdGroupsCreated ─▶ AdsCreated ─▶ Pruning ─▶ Synced
///    │          │              │                  │               │                └▶ Failed
///    │          └──────────────┴──── OutcomeUnknown (look up, adopt) ──▶ NeedsAttention
///    └▶ Failed (refused, or the platform unreadable: before any write)
/// ```
///
/// * A push through an adapter that lists ([`PushAdapter::lists`])
///   *converges*: it first reads what the platform holds and plans the set
///   against it ([`crate::converge::plan`]), the decisions durable before
///   the first write; then unchanged entities get no request and updates
///   PATCH only the differing fields (see the README, "Push: what is
///   guaranteed").
/// * Every platform id is recorded in the checkpoint written right after its
///   create returned, before any child is touched.
/// * An entity that already has a platform id (from an earlier push of the same
///   campaign to the same account) takes the update path: never a second create.
/// * A create whose result is unknown (timeout, dropped connection, crash) is
///   followed by a look-up by exact name under its parent, created after the
///   intent was recorded: one match is adopted, none means create, several park
///   the sync as needing attention.
///
/// [`Pusher`] ties it together for a whole [`CampaignSet`].
///
/// Pushes campaign sets through a [`Runner`] of the [`PushMachine`], which it
/// builds itself, performing effects through its adapter's [`AdapterEffects`].
pub struct Pusher {
    runner: Arc<Runner<PushMachine>>,
    effects: Arc<AdapterEffects>,
    platform: String,
    keyword_model: crate::adapter::KeywordModel,
    policy: PushPolicy,
    clock: Arc<dyn Clock>,
    labels: BTreeMap<String, String>,
    max_running: usize,
    take_over: bool,
    adopt_existing: bool,
    prune: bool,
}

impl std::fmt::Debug for Pusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pusher")
            .field("platform", &self.platform)
            .finish_non_exhaustive()
    }
}

/// How many syncs of a set [`Pusher::run_all`] runs at once by default.
///
/// A bound, because each running sync holds its whole state in memory; a
/// generous one, because concurrent syncs are what group commit feeds on:
/// their checkpoints share one durable write, so fewer at once means more
/// writes per transition (docs/performance.md measured both).
pub const DEFAULT_MAX_RUNNING: usize = 32;

/// The index key naming the latest sync of a campaign on an account.
pub(crate) fn latest_key(platform: &str, account: &str, campaign: &str) -> String {
    format!("push/{platform}/{account}/{campaign}")
}

impl Pusher {
    /// A pusher writing to `store` and pushing through `adapter`, which both
    /// performs the effects and names the platform and keyword model recorded
    /// in each sync (one adapter, so the two cannot disagree). Cheap: it opens
    /// nothing and calls no platform; `clock` dates every checkpoint and
    /// times every backoff. The crate docs show one pushing a set.
    pub fn new(
        store: impl IntoStore,
        adapter: Arc<dyn PushAdapter>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Pusher {
            runner: Arc::new(Runner::new(store, clock.clone())),
            platform: adapter.platform().to_string(),
            keyword_model: adapter.keyword_model(),
            effects: Arc::new(AdapterEffects::new(adapter)),
            policy: PushPolicy::default(),
            clock,
            labels: BTreeMap::new(),
            max_running: DEFAULT_MAX_RUNNING,
            take_over: false,
            adopt_existing: false,
            prune: false,
        }
    }

    /// Lets this pusher's pushes take a campaign over from another set: a
    /// campaign's identity is (platform, account, campaign id), so a set
    /// that reuses a campaign id another set pushed would rename and change
    /// that set's live campaign. Without it, [`Pusher::start`] refuses such a
    /// push ([`PushError::OwnedByAnotherSet`]) before anything is written.
    pub fn with_take_over(mut self, take_over: bool) -> Self {
        self.take_over = take_over;
        self
    }

    /// Lets this pusher's converging pushes adopt entities that exist on the
    /// platform by exact name under the right parent but that adsync does not
    /// manage (`--adopt-existing`); without it such a push is refused before
    /// any write, naming them.
    pub fn with_adopt_existing(mut self, adopt: bool) -> Self {
        self.adopt_existing = adopt;
        self
    }

    /// Lets this pusher's converging pushes archive what adsync created or
    /// adopted for a campaign of the set and the set no longer names, and
    /// replace what cannot change in place (`--prune`). Without it those are
    /// listed in the report and left on the platform.
    pub fn with_prune(mut self, prune: bool) -> Self {
        self.prune = prune;
        self
    }

    fn plan_options(&self) -> crate::converge::PlanOptions {
        crate::converge::PlanOptions {
            adopt_existing: self.adopt_existing,
            prune: self.prune,
            take_over: self.take_over,
        }
    }

    /// Runs at most `n` syncs of a set at once (at least one; default
    /// [`DEFAULT_MAX_RUNNING`]). Every sync is still started, durably and
    /// atomically, before any runs: only their running is bounded.
    pub fn with_max_running(mut self, n: usize) -> Self {
        self.max_running = n.max(1);
        self
    }

    /// Labels recorded on every sync this pusher starts, besides its own
    /// (platform, account, campaign, set, content hash): where the platform
    /// is (an API base URL, never a credential) and the set file, so that a
    /// later `resume` needs no flags.
    pub fn with_labels(mut self, labels: BTreeMap<String, String>) -> Self {
        self.labels = labels;
        self
    }

    /// Replaces the default retry and look-up settings.
    pub fn with_policy(mut self, policy: PushPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Configures the runner this pusher built: a seed, a crash hook, a stop
    /// signal shared with a signal handler (see [`Runner::with_seed`],
    /// [`Runner::with_hook`], [`Runner::with_stop`]). Meant for building the
    /// pusher; should a cancelled [`Pusher::run_all`] still hold the runner,
    /// `configure` gets a new one instead, which loses nothing durable.
    pub fn with_runner(
        mut self,
        configure: impl FnOnce(Runner<PushMachine>) -> Runner<PushMachine>,
    ) -> Self {
        let runner = Arc::try_unwrap(self.runner).unwrap_or_else(|shared| {
            // What a runner holds in memory besides its settings is a cache of
            // states it wrote: without it, a restart's look-up replaces a
            // create, never a blind re-send.
            Runner::new(shared.store().clone(), self.clock.clone())
        });
        self.runner = Arc::new(configure(runner));
        self
    }

    /// The platform this pusher pushes to (its adapter's name).
    pub fn platform(&self) -> &str {
        &self.platform
    }

    pub(crate) fn effects(&self) -> &AdapterEffects {
        &self.effects
    }

    /// The runner: reading syncs, applying an operator's decision
    /// ([`Runner::resolve`]). Stepping goes through [`Pusher::step`] and
    /// [`Pusher::run`], which bring this pusher's effects.
    pub fn runner(&self) -> &Runner<PushMachine> {
        &self.runner
    }

    /// One transition of sync `id` ([`Runner::step`]) through this pusher's
    /// adapter: at most one platform call, its outcome durable on return.
    ///
    /// # Errors
    ///
    /// As [`Runner::step`]. Platform failures are not errors: they are
    /// outcomes the push machine retries, looks up or parks on.
    pub async fn step(&self, id: &str) -> Result<adsync_engine::Step<PushMachine>, RunError> {
        self.runner.step(id, self.effects.as_ref()).await
    }

    /// Runs sync `id` to its end ([`Runner::run`]) through this pusher's
    /// adapter; also how one sync is continued after a crash.
    ///
    /// # Errors
    ///
    /// As [`Runner::run`]: every transition before the error is durable, and
    /// running the sync again continues from there.
    pub async fn run(&self, id: &str) -> Result<Checkpoint<PushMachine>, RunError> {
        self.runner.run(id, self.effects.as_ref()).await
    }

    /// Starts one sync per campaign of `set` on `account` and makes them
    /// durable; returns their ids. Platform ids learnt by ANY earlier push of
    /// the same campaign to the same account are carried over (the
    /// store keeps them per campaign and account), so those entities are updated, not created again.
    ///
    /// Every new sync's first checkpoint, the [`SetRecord`] naming them and the
    /// updated per-campaign maps of known platform ids are one atomic commit: a crash leaves the whole
    /// set started or nothing of it.
    ///
    /// A campaign whose latest sync is unfinished is continued (its id is
    /// returned, no new sync is started) when that sync was started by a push
    /// of the same set with the same content; with other content the whole push
    /// is refused ([`PushError::Unfinished`]). Nothing is started when any
    /// campaign has a parked sync.
    ///
    /// # Errors
    ///
    /// [`PushError::Unfinished`] and [`PushError::NeedsAttention`] as above;
    /// [`PushError::Run`] if a store read or the start commit fails. On any
    /// error nothing was started.
    pub async fn start(&self, set: &CampaignSet, account: &str) -> Result<Vec<String>, PushError> {
        self.start_with(set, account, self.plan_options()).await
    }

    /// [`Pusher::start`] with `options` in place of this pusher's own
    /// (`with_adopt_existing`, `with_prune`, `with_take_over`): what a
    /// service uses, one pusher serving requests that ask for different ones.
    ///
    /// # Errors
    ///
    /// As [`Pusher::start`].
    pub async fn start_with(
        &self,
        set: &CampaignSet,
        account: &str,
        options: crate::converge::PlanOptions,
    ) -> Result<Vec<String>, PushError> {
        let now = self.clock.now();
        let mut starts = Vec::new();
        let mut extra = Commit::new();
        let mut members = Vec::new();
        let mut unfinished = Vec::new();
        let mut changed = Vec::new();
        let mut owned = Vec::new();
        let mut taken = std::collections::HashSet::new();
        for campaign in &set.campaigns {
            let hash = campaign_hash(campaign);
            let key = latest_key(&self.platform, account, &campaign.id);
            // The campaign's latest sync and its known ids in one hop to the
            // blocking pool: nothing writes either between here and the
            // start's commit (one process holds the store; a worker lets one
            // submission of a campaign in at a time).
            let (index_key, ids_key) = (
                key.clone(),
                known_ids_key(&self.platform, account, &campaign.id),
            );
            let (previous, stored_ids) = self
                .runner
                .read(move |store| Ok((store.index(&index_key)?, store.data(&ids_key)?)))
                .await?;
            let mut generation = 0;
            let mut latest_ids = BTreeMap::new();
            let mut latest_without_id = Vec::new();
            if let Some(previous) = previous {
                let checkpoint = self.runner.get(&previous).await?;
                match checkpoint.record.status {
                    Status::Running => {
                        let labels = &checkpoint.record.labels;
                        let same = labels.get("content_hash") == Some(&hash)
                            && labels.get("set") == Some(&set.name);
                        if !same {
                            changed.push(campaign.id.clone());
                        }
                        unfinished.push(previous.clone());
                        members.push(SetMember {
                            campaign: campaign.id.clone(),
                            content_hash: hash,
                            sync: previous,
                        });
                        continue;
                    }
                    Status::NeedsAttention => {
                        return Err(PushError::NeedsAttention {
                            campaign: campaign.id.clone(),
                            sync: previous,
                            reason: checkpoint.record.last_error.unwrap_or_default(),
                        })
                    }
                    Status::Succeeded | Status::Failed | Status::Cancelled => {}
                }
                if let Some(owner) = checkpoint.record.labels.get("set") {
                    if *owner != set.name && !options.take_over {
                        owned.push(format!("`{}` (set `{owner}`)", campaign.id));
                    }
                }
                generation = previous
                    .rsplit('-')
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .unwrap_or(0);
                latest_ids = checkpoint.state.platform_ids();
                // An entity a converging push was replacing (its create not
                // done) keeps the id of the one it replaces: that one is still
                // live, and the next push replaces (archives) it again.
                let state = &checkpoint.state;
                latest_without_id = state
                    .entities
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.platform_id.is_none())
                    .filter(|(i, _)| state.decision(*i).and_then(|d| d.replaces()).is_none())
                    .map(|(_, e)| e.local_id().to_string())
                    .collect();
            }
            let known = self
                .known_ids(
                    stored_ids,
                    &campaign.id,
                    generation,
                    latest_ids,
                    &latest_without_id,
                )
                .await?;
            let target = Target {
                platform: self.platform.clone(),
                account_id: account.to_string(),
                keyword_model: self.keyword_model,
            };
            let state = if self.effects.adapter().lists() {
                let (mut entities, _) = self
                    .known_with_specs(account, &campaign.id, self.keyword_model)
                    .await?;
                // The ids this start carries over (an id found gone, or
                // forgotten, is not).
                entities.retain(|(k, _)| known.ids.get(&k.local_id) == Some(&k.id));
                PushState::converging(target, campaign, entities, options, self.policy, now)
            } else {
                PushState::new(target, campaign, &known.ids, self.policy, now)
            };
            let mut n = generation + 1;
            let id = loop {
                let candidate = format!("{}-{n}", campaign.id);
                let probe = candidate.clone();
                let exists = self
                    .runner
                    .read(move |store| store.record(&probe))
                    .await?
                    .is_some();
                if !exists && taken.insert(candidate.clone()) {
                    break candidate;
                }
                n += 1;
            };
            let mut labels = self.labels.clone();
            labels.extend([
                ("platform".to_string(), self.platform.clone()),
                ("account".to_string(), account.to_string()),
                ("campaign".to_string(), campaign.id.clone()),
                ("set".to_string(), set.name.clone()),
                ("content_hash".to_string(), hash.clone()),
            ]);
            extra = extra.data(
                &known_ids_key(&self.platform, account, &campaign.id),
                known.encode(),
            );
            members.push(SetMember {
                campaign: campaign.id.clone(),
                content_hash: hash,
                sync: id.clone(),
            });
            starts.push(Start {
                id: id.clone(),
                state,
                labels,
                index: vec![(key, id)],
            });
        }
        if !owned.is_empty() {
            return Err(PushError::OwnedByAnotherSet {
                set: set.name.clone(),
                account: account.to_string(),
                campaigns: owned,
            });
        }
        if !changed.is_empty() {
            return Err(PushError::Unfinished {
                set: set.name.clone(),
                changed,
                syncs: unfinished,
            });
        }
        let record = SetRecord {
            name: set.name.clone(),
            platform: self.platform.clone(),
            account: account.to_string(),
            content_hash: set_hash(set),
            started_at: now,
            campaigns: members,
        };
        let ids = record.campaigns.iter().map(|m| m.sync.clone()).collect();
        extra = extra.data(
            &set_key(&self.platform, account, &set.name),
            serde_json::to_vec(&record).map_err(|e| {
                PushError::Run(RunError::Store(adsync_engine::StoreError::Corrupt {
                    sync: set.name.clone(),
                    detail: format!("cannot encode the set record: {e}"),
                }))
            })?,
        );
        self.runner.start_many(starts, extra).await?;
        Ok(ids)
    }

    /// The ids known for `campaign` before a new sync of it starts: the
    /// durable map (`stored`, read by the caller), with the ids of its latest
    /// (finished) sync merged in. A store written before the map existed is
    /// rebuilt from every earlier sync.
    ///
    /// The stored map holds exactly the ids the latest sync started with, and
    /// a sync drops an entity's id only when the platform said it is gone (an
    /// update answered 404): so an entity of `latest_without_id` that the map
    /// has an id for lost it that way, and the id is forgotten.
    async fn known_ids(
        &self,
        stored: Option<Vec<u8>>,
        campaign: &str,
        generation: u64,
        latest: BTreeMap<String, String>,
        latest_without_id: &[String],
    ) -> Result<KnownIds, PushError> {
        let mut known = match stored {
            Some(bytes) => {
                let mut known = KnownIds::decode(campaign, &bytes)?;
                for local in latest_without_id {
                    if let Some(gone) = known.ids.get(local).cloned() {
                        known.forget(local, &gone);
                    }
                }
                known
            }
            None => {
                let mut known = KnownIds::default();
                for n in 1..generation {
                    let id = format!("{campaign}-{n}");
                    if let Ok(earlier) = self.runner.get(&id).await {
                        known.merge(earlier.state.platform_ids());
                    }
                }
                known
            }
        };
        known.merge(latest);
        Ok(known)
    }

    /// Marks platform id `platform_id` of entity `local_id` (campaign
    /// `campaign` on `account`) as gone from the platform, so no later push
    /// carries it over (the entity will be created again). This is the place
    /// for code that learns an id is gone (an update answered 404 and a
    /// look-up found nothing, or an operator's decision). Durable on return.
    ///
    /// # Errors
    ///
    /// [`PushError::Run`] if the campaign's stored ids do not decode or the
    /// store fails; then nothing was changed.
    pub async fn forget_platform_id(
        &self,
        account: &str,
        campaign: &str,
        local_id: &str,
        platform_id: &str,
    ) -> Result<(), PushError> {
        let key = known_ids_key(&self.platform, account, campaign);
        let read_key = key.clone();
        let stored = self.runner.read(move |store| store.data(&read_key)).await?;
        let mut known = match stored {
            Some(bytes) => KnownIds::decode(campaign, &bytes)?,
            None => KnownIds::default(),
        };
        known.forget(local_id, platform_id);
        self.runner
            .store()
            .commit(Commit::new().data(&key, known.encode()))
            .await
            .map_err(RunError::from)?;
        Ok(())
    }

    /// Runs the given syncs concurrently to the end and reports on each.
    /// Never fails as a whole: a sync that cannot run to its end (store error,
    /// stop signal) is listed in [`SetReport::errors`] and the others go on.
    pub async fn run_all(&self, ids: &[String]) -> SetReport {
        self.run_all_observed(ids, Arc::new(|_| {})).await
    }

    /// [`Pusher::run_all`], calling `observer` after every durable transition of any sync.
    ///
    /// At most [`Pusher::with_max_running`] run at once: a running sync holds
    /// its whole state (every entity of its campaign) in memory, a waiting one
    /// nothing but its id.
    pub async fn run_all_observed(&self, ids: &[String], observer: PushObserver) -> SetReport {
        let mut tasks = tokio::task::JoinSet::new();
        let slots = Arc::new(tokio::sync::Semaphore::new(self.max_running));
        for id in ids {
            let runner = self.runner.clone();
            let effects = self.effects.clone();
            let id = id.clone();
            let observer = observer.clone();
            let slots = slots.clone();
            tasks.spawn(async move {
                // The semaphore is never closed, so acquiring cannot fail.
                let _slot = slots.acquire_owned().await.ok();
                (
                    id.clone(),
                    runner
                        .run_observed(&id, effects.as_ref(), observer.as_ref())
                        .await,
                )
            });
        }
        let mut report = SetReport {
            campaigns: Vec::new(),
            errors: Vec::new(),
        };
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok((_, Ok(checkpoint))) => report
                    .campaigns
                    .push(CampaignReport::from_checkpoint(&checkpoint)),
                Ok((id, Err(e))) => report.errors.push(format!("{id}: {e}")),
                Err(e) => report.errors.push(format!("a sync task failed: {e}")),
            }
        }
        report.campaigns.sort_by(|a, b| a.sync.cmp(&b.sync));
        report.errors.sort();
        report
    }

    /// Starts and runs a whole set: [`Pusher::start`], then [`Pusher::run_all`].
    ///
    /// # Errors
    ///
    /// As [`Pusher::start`]; once the syncs are started, failures are in the
    /// report instead.
    pub async fn push(&self, set: &CampaignSet, account: &str) -> Result<SetReport, PushError> {
        let ids = self.start(set, account).await?;
        Ok(self.run_all(&ids).await)
    }

    /// The ids of every unfinished push sync in the store (status running;
    /// parked syncs are not included: they wait for an operator). A record
    /// that does not decode is left out.
    ///
    /// # Errors
    ///
    /// [`PushError::Run`] if the store cannot be listed.
    pub async fn unfinished(&self) -> Result<Vec<String>, PushError> {
        Ok(self.unfinished_or_unreadable().await?.0)
    }

    /// The unfinished push syncs, and what could not be read: one message
    /// per record that does not decode (its sync id and why).
    async fn unfinished_or_unreadable(&self) -> Result<(Vec<String>, Vec<String>), PushError> {
        let mut unfinished = Vec::new();
        let mut unreadable = Vec::new();
        for item in self.runner.list().await? {
            match item {
                Ok(c) if c.record.status == Status::Running => unfinished.push(c.record.id),
                Ok(_) => {}
                Err(e) => unreadable.push(format!("a sync record could not be read: {e}")),
            }
        }
        Ok((unfinished, unreadable))
    }

    /// Resumes every unfinished push sync in the store (after a crash), each
    /// from its last durable checkpoint; a create that may have been in flight
    /// is looked up, not sent again.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use adsync::memory::MemoryPlatform;
    /// use adsync::{Pusher, Store, SystemClock};
    ///
    /// let clock = Arc::new(SystemClock);
    /// let pusher = Pusher::new(Store::temporary()?, Arc::new(MemoryPlatform::new(clock.clone())), clock);
    /// // Nothing was pushed into this store, so there is nothing to resume.
    /// let report = pusher.resume_all().await?;
    /// assert!(report.campaigns.is_empty() && report.all_synced());
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`Pusher::unfinished`]; failures of the runs, and records that do
    /// not decode (not resumed), are in the report's errors.
    pub async fn resume_all(&self) -> Result<SetReport, PushError> {
        let (ids, unreadable) = self.unfinished_or_unreadable().await?;
        let mut report = self.run_all(&ids).await;
        // A record that does not decode is not resumed, but not hidden either.
        report.errors.extend(unreadable);
        Ok(report)
    }
}

/// A set push, as recorded in the store in the same atomic commit as its
/// syncs' first checkpoints: the latest push of set `name` to `account`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetRecord {
    /// The set's name (from its file).
    pub name: String,
    /// Platform pushed to ([`PushAdapter::platform`]).
    pub platform: String,
    /// Account pushed to.
    pub account: String,
    /// Content hash of the set's campaigns (FNV-1a of their canonical JSON, as hex).
    pub content_hash: String,
    /// When this push of the set started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: adsync_engine::Timestamp,
    /// One sync per campaign, in the file's order.
    pub campaigns: Vec<SetMember>,
}

/// One campaign of a [`SetRecord`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SetMember {
    /// The campaign's local id.
    pub campaign: String,
    /// Content hash of the campaign (FNV-1a of its canonical JSON, as hex).
    pub content_hash: String,
    /// The sync pushing it (a new one, or an unfinished one continued).
    pub sync: String,
}

/// Data key (under `x/`) of the set record of set `name` on an account.
pub fn set_key(platform: &str, account: &str, name: &str) -> Vec<u8> {
    format!("set/{platform}/{account}/{name}").into_bytes()
}

/// Every set record in the store (one per platform, account and set name),
/// read one at a time; a record that does not decode is an `Err` in its place.
pub fn set_records(store: &dyn StoreRead) -> impl Iterator<Item = Result<SetRecord, String>> + '_ {
    store.scan_data(b"set/").map(|item| {
        let (key, value) = item.map_err(|e| e.to_string())?;
        serde_json::from_slice(&value)
            .map_err(|e| format!("set record `{}`: {e}", String::from_utf8_lossy(&key)))
    })
}

/// Data key (under `x/`) of the known-ids of a campaign on an account.
pub fn known_ids_key(platform: &str, account: &str, campaign: &str) -> Vec<u8> {
    format!("known/{platform}/{account}/{campaign}").into_bytes()
}

/// Every platform id any sync of one campaign on one account (and platform)
/// recorded, by local id, the latest sync's winning; written with each new
/// sync's first checkpoint. An id in `forgotten` (known to be gone from the
/// platform, see [`Pusher::forget_platform_id`]) is never carried over again.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KnownIds {
    /// Local id → platform id.
    pub ids: BTreeMap<String, String>,
    /// Local id → platform ids known to be gone.
    #[serde(default)]
    pub forgotten: BTreeMap<String, std::collections::BTreeSet<String>>,
}

impl KnownIds {
    /// Adds (or replaces) ids, skipping those known to be gone.
    pub fn merge(&mut self, ids: BTreeMap<String, String>) {
        for (local, platform) in ids {
            if self
                .forgotten
                .get(&local)
                .is_some_and(|gone| gone.contains(&platform))
            {
                continue;
            }
            self.ids.insert(local, platform);
        }
    }

    /// Drops `platform_id` of `local_id` and remembers that it is gone.
    pub fn forget(&mut self, local_id: &str, platform_id: &str) {
        if self.ids.get(local_id).map(String::as_str) == Some(platform_id) {
            self.ids.remove(local_id);
        }
        self.forgotten
            .entry(local_id.to_string())
            .or_default()
            .insert(platform_id.to_string());
    }

    fn encode(&self) -> Vec<u8> {
        // Maps of strings always serialize.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub(crate) fn decode(campaign: &str, bytes: &[u8]) -> Result<Self, PushError> {
        serde_json::from_slice(bytes).map_err(|e| {
            PushError::Run(RunError::Store(adsync_engine::StoreError::Corrupt {
                sync: campaign.to_string(),
                detail: format!("known platform ids: {e}"),
            }))
        })
    }
}

/// FNV-1a, 64 bits: stable across builds and platforms (std's hasher is not
/// guaranteed to be), and enough to tell two versions of a campaign apart.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Content hash of one campaign (its canonical JSON), as hex.
pub fn campaign_hash(campaign: &crate::model::Campaign) -> String {
    format!(
        "{:016x}",
        fnv1a(&serde_json::to_vec(campaign).unwrap_or_default())
    )
}

/// Content hash of a set's campaigns, as hex.
pub fn set_hash(set: &CampaignSet) -> String {
    format!(
        "{:016x}",
        fnv1a(&serde_json::to_vec(&set.campaigns).unwrap_or_default())
    )
}

fn quoted(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}
