//! Push: make a campaign set exist on a platform, exactly once.
//!
//! Each campaign of a set is its own sync (so one campaign's failure does not
//! stop the others), driven by the [`PushMachine`]:
//!
//! ```text
//! Pending ─▶ CampaignCreated ─▶ AdGroupsCreated ─▶ AdsCreated ─▶ Synced
//!    │              │                  │               │      └▶ Failed
//!    └──────────────┴──── OutcomeUnknown (look up, adopt) ──▶ NeedsAttention
//! ```
//!
//! * Every platform id is recorded in the checkpoint written right after its
//!   create returned, before any child is touched.
//! * An entity that already has a platform id (from an earlier push of the same
//!   campaign to the same account) takes the update path: never a second create.
//! * A create whose result is unknown (timeout, dropped connection, crash) is
//!   followed by a look-up by exact name under its parent, created after the
//!   intent was recorded: one match is adopted, none means create, several park
//!   the sync as needing attention.
//!
//! [`Pusher`] ties it together for a whole [`CampaignSet`].

mod checkpoint;
mod effects;
mod machine;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

pub use effects::{verify_adoption, AdapterEffects, AdoptError};
pub use machine::{
    Entity, EntityResult, PushEffect, PushMachine, PushOutcome, PushOutcomeKind, PushPhase,
    PushPolicy, PushState, Target, Work,
};

use crate::adapter::PushAdapter;
use crate::clock::Clock;
use crate::machine::Status;
use crate::model::CampaignSet;
use crate::runner::{Checkpoint, RunError, Runner};

/// The human-readable definition of the push machine, as kept in
/// `state_machines/push.md` (a test keeps the file identical to this).
pub fn definition_markdown() -> String {
    crate::machine::render_definition::<PushMachine>(
        "Push machine",
        "One sync pushes one campaign tree (campaign → ad groups → ads → keywords) to one ad account. \
Every transition is checkpointed before the next effect starts; each platform id is recorded in the \
checkpoint that follows its create, before any child is touched. After a restart, a create that may have \
been in flight is never re-sent: the machine looks the entity up and adopts it.",
    )
    .unwrap_or_else(|e| format!("error: {e}\n"))
}

/// Errors of a set push, before or around the runs themselves.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The runner or the store failed.
    #[error(transparent)]
    Run(#[from] RunError),
    /// An earlier sync of this campaign has not finished.
    #[error("campaign `{campaign}` has an unfinished sync `{sync}`; resume it (`adsync resume {sync}`) before pushing again")]
    InProgress {
        /// The campaign's local id.
        campaign: String,
        /// The unfinished sync.
        sync: String,
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
}

/// How one campaign's sync ended.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CampaignReport {
    /// The sync.
    pub sync: String,
    /// The campaign's local id.
    pub campaign: String,
    /// Final status.
    pub status: Status,
    /// The error worth showing, if any.
    pub last_error: Option<String>,
    /// Every entity: local id, kind, platform id and result.
    pub entities: Vec<EntityReport>,
}

/// One entity in a [`CampaignReport`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntityReport {
    /// Level.
    pub kind: crate::adapter::EntityKind,
    /// Local id.
    pub local_id: String,
    /// Platform id, if it exists.
    pub platform_id: Option<String>,
    /// What became of it.
    pub result: EntityResult,
}

impl CampaignReport {
    /// The report of a push checkpoint.
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
                .map(|e| EntityReport {
                    kind: e.kind(),
                    local_id: e.local_id().to_string(),
                    platform_id: e.platform_id.clone(),
                    result: e.result.clone(),
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
    /// Whether every campaign synced.
    pub fn all_synced(&self) -> bool {
        self.errors.is_empty() && self.campaigns.iter().all(|c| c.status == Status::Succeeded)
    }
}

/// Called after every durable transition of a push sync.
pub type Observer = Arc<dyn Fn(&crate::runner::Transition<PushMachine>) + Send + Sync>;

/// Pushes campaign sets through a [`Runner`] of the [`PushMachine`].
pub struct Pusher {
    runner: Arc<Runner<PushMachine>>,
    platform: String,
    keyword_model: crate::adapter::KeywordModel,
    policy: PushPolicy,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Pusher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pusher")
            .field("platform", &self.platform)
            .finish_non_exhaustive()
    }
}

/// The index key naming the latest sync of a campaign on an account.
fn latest_key(platform: &str, account: &str, campaign: &str) -> String {
    format!("push/{platform}/{account}/{campaign}")
}

impl Pusher {
    /// A pusher over `runner`; `adapter` tells the platform and keyword model.
    pub fn new(
        runner: Arc<Runner<PushMachine>>,
        adapter: &dyn PushAdapter,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Pusher {
            runner,
            platform: adapter.platform().to_string(),
            keyword_model: adapter.keyword_model(),
            policy: PushPolicy::default(),
            clock,
        }
    }

    /// Replaces the default retry and look-up settings.
    pub fn with_policy(mut self, policy: PushPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The runner (for stepping syncs one transition at a time).
    pub fn runner(&self) -> &Arc<Runner<PushMachine>> {
        &self.runner
    }

    /// Starts one sync per campaign of `set` on `account` and makes them
    /// durable; returns their ids. Platform ids learnt by earlier pushes of the
    /// same campaigns to the same account are carried over, so those entities
    /// are updated, not created again. Nothing is started when any campaign has
    /// an unfinished or parked sync.
    pub async fn start(&self, set: &CampaignSet, account: &str) -> Result<Vec<String>, PushError> {
        let mut plans = Vec::new();
        for campaign in &set.campaigns {
            let key = latest_key(&self.platform, account, &campaign.id);
            let index_key = key.clone();
            let (known, generation) = match self
                .runner
                .read(move |store| store.index(&index_key))
                .await?
            {
                None => (BTreeMap::new(), 0),
                Some(previous) => {
                    let checkpoint = self.runner.get(&previous).await?;
                    match checkpoint.record.status {
                        Status::Running => {
                            return Err(PushError::InProgress {
                                campaign: campaign.id.clone(),
                                sync: previous,
                            })
                        }
                        Status::NeedsAttention => {
                            return Err(PushError::NeedsAttention {
                                campaign: campaign.id.clone(),
                                sync: previous,
                                reason: checkpoint.record.last_error.unwrap_or_default(),
                            })
                        }
                        Status::Succeeded | Status::Failed => {}
                    }
                    let generation = previous
                        .rsplit('-')
                        .next()
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or(0);
                    (checkpoint.state.platform_ids(), generation)
                }
            };
            plans.push((campaign, key, known, generation));
        }
        let mut ids = Vec::new();
        let mut starts = tokio::task::JoinSet::new();
        for (campaign, key, known, generation) in plans {
            let target = Target {
                platform: self.platform.clone(),
                account_id: account.to_string(),
                keyword_model: self.keyword_model,
            };
            let state = PushState::new(target, campaign, &known, self.policy, self.clock.now());
            let mut n = generation + 1;
            let id = loop {
                let candidate = format!("{}-{n}", campaign.id);
                let probe = candidate.clone();
                if self
                    .runner
                    .read(move |store| store.record(&probe))
                    .await?
                    .is_none()
                {
                    break candidate;
                }
                n += 1;
            };
            let labels = BTreeMap::from([
                ("platform".to_string(), self.platform.clone()),
                ("account".to_string(), account.to_string()),
                ("campaign".to_string(), campaign.id.clone()),
                ("set".to_string(), set.name.clone()),
            ]);
            ids.push(id.clone());
            let runner = self.runner.clone();
            starts
                .spawn(async move { runner.start(&id, state, labels, &[(key, id.clone())]).await });
        }
        // Started together, the syncs' first checkpoints share one flush.
        while let Some(started) = starts.join_next().await {
            match started {
                Ok(result) => {
                    result?;
                }
                // A start that panicked panics here, as it would have inline.
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
        Ok(ids)
    }

    /// Runs the given syncs concurrently to the end and reports on each.
    pub async fn run_all(&self, ids: &[String]) -> SetReport {
        self.run_all_observed(ids, Arc::new(|_| {})).await
    }

    /// [`Pusher::run_all`], calling `observer` after every durable transition of any sync.
    pub async fn run_all_observed(&self, ids: &[String], observer: Observer) -> SetReport {
        let mut tasks = tokio::task::JoinSet::new();
        for id in ids {
            let runner = self.runner.clone();
            let id = id.clone();
            let observer = observer.clone();
            tasks.spawn(async move {
                (
                    id.clone(),
                    runner.run_observed(&id, observer.as_ref()).await,
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

    /// Starts and runs a whole set.
    pub async fn push(&self, set: &CampaignSet, account: &str) -> Result<SetReport, PushError> {
        let ids = self.start(set, account).await?;
        Ok(self.run_all(&ids).await)
    }

    /// The ids of every unfinished push sync in the store.
    pub async fn unfinished(&self) -> Result<Vec<String>, PushError> {
        Ok(self
            .runner
            .list()
            .await?
            .into_iter()
            .filter_map(|item| item.ok())
            .filter(|c| c.record.status == Status::Running)
            .map(|c| c.record.id)
            .collect())
    }

    /// Resumes every unfinished push sync in the store (after a crash).
    pub async fn resume_all(&self) -> Result<SetReport, PushError> {
        let ids = self.unfinished().await?;
        Ok(self.run_all(&ids).await)
    }
}
