//! Pull: bring a profile's campaigns, ad groups and keywords from a platform
//! into the store, in two phases, resumably and atomically.

mod effects;
mod machine;
pub mod snapshot;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

pub use effects::{AmazonPullEffects, AMAZON};
pub use machine::{
    PullCounts, PullEffect, PullMachine, PullOutcome, PullOutcomeKind, PullPhase, PullPolicy,
    PullState, SnapshotRef,
};
pub use snapshot::{ProfileSnapshot, SnapshotError};

use crate::platform::amazon::{SpAdGroup, SpCampaign, SpEntity, SpKeyword};
use adsync_engine::{Checkpoint, RunError, Runner, Transition};
use adsync_engine::{Clock, Timestamp};

impl PullMachine {
    /// The human-readable definition of the pull machine, as kept in
    /// `state_machines/pull.md` (a test keeps the file identical to this).
    pub fn definition_markdown() -> String {
        adsync_engine::render_definition::<PullMachine>(
            "Pull machine",
            "One sync per (platform, profile) pulls the profile's campaigns, ad groups and keywords. \
    Each fetched page is staged in the same atomic commit as the checkpoint recording the `nextToken` that follows it, \
    so a resume after a crash continues at the next page and fetches nothing twice. Persisting writes a new generation \
    of the snapshot from the staged pages (no platform request) and the checkpoint to Completed makes it current \
    atomically; a failed pull keeps its staged pages for a later resume and leaves the previous snapshot untouched.",
        )
        .unwrap_or_else(|e| format!("error: {e}\n"))
    }
}

/// Errors of [`Puller`].
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The runner or the store failed; the runner's error names the sync.
    #[error(transparent)]
    Run(#[from] RunError),
    /// A persisted snapshot could not be read (a damaged chunk or directory).
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// The profile id cannot be used (it is part of store keys).
    #[error("invalid profile id `{0}`: use 1 to 64 characters among A-Z a-z 0-9 _ -")]
    InvalidProfile(String),
}

/// How a profile's sync stands, in the words of `adsync status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, strum::Display)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum SyncState {
    /// A pull is running, or was interrupted (pull again to resume it).
    Syncing,
    /// The last pull completed.
    Completed,
    /// The last pull failed (pull again to resume it).
    Failed,
    /// The last pull was cancelled (pull again to resume it).
    Cancelled,
}

/// The sync status of one profile.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullStatus {
    /// The sync id (one per platform and profile, see [`Puller::sync_id`]).
    pub sync: String,
    /// The platform pulled from (`amazon`).
    pub platform: String,
    /// The advertising profile pulled.
    pub profile_id: String,
    /// Whether a pull is under way, and how the last one ended.
    pub state: SyncState,
    /// The machine's phase.
    pub phase: PullPhase,
    /// Number of the current (or last) pull of this profile.
    pub run: u64,
    /// When the current (or last) pull started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: Timestamp,
    /// When it completed or failed; `None` while it runs.
    #[serde(with = "time::serde::rfc3339::option")]
    pub finished_at: Option<Timestamp>,
    /// When the current snapshot was completed (the last successful pull).
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_success_at: Option<Timestamp>,
    /// The error of the last failure (or the last retried one while syncing).
    pub last_error: Option<String>,
    /// Entities in the current snapshot.
    pub counts: Option<PullCounts>,
    /// Entities staged by the current (or last) pull, before de-duplication.
    pub fetched: PullCounts,
    /// Pages staged by the current (or last) pull.
    pub pages: PullCounts,
}

impl PullStatus {
    /// The status a pull checkpoint tells.
    pub fn from_checkpoint(checkpoint: &Checkpoint<PullMachine>) -> Self {
        let s = &checkpoint.state;
        PullStatus {
            sync: checkpoint.record.id.clone(),
            platform: s.platform.clone(),
            profile_id: s.profile_id.clone(),
            state: match s.phase {
                PullPhase::Completed => SyncState::Completed,
                PullPhase::Failed => SyncState::Failed,
                PullPhase::Cancelled => SyncState::Cancelled,
                _ => SyncState::Syncing,
            },
            phase: s.phase,
            run: s.run,
            started_at: s.started_at,
            finished_at: s.finished_at,
            last_success_at: s.snapshot.as_ref().map(|x| x.completed_at),
            last_error: s.last_error.clone(),
            counts: s.snapshot.as_ref().map(|x| x.counts),
            fetched: s.fetched,
            pages: s.pages,
        }
    }

    /// The status a stored record tells: an error if it is not a pull
    /// checkpoint this version can decode (another kind, another state version).
    pub fn from_record(record: adsync_engine::Record) -> Result<Self, RunError> {
        Checkpoint::<PullMachine>::try_from(record).map(|c| PullStatus::from_checkpoint(&c))
    }
}

/// How [`Puller::begin`] treats a failed earlier pull.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullMode {
    /// Resume a failed or interrupted pull where it stopped (keeping its staged
    /// pages); start a new one after a completed pull.
    #[default]
    ResumeOrStart,
    /// Discard a failed pull's staged pages and start over. An interrupted
    /// (still running) pull is resumed regardless: its checkpoint is authoritative.
    Restart,
}

/// Called after every durable transition of a pull.
pub type PullObserver = Arc<dyn Fn(&Transition<PullMachine>) + Send + Sync>;

/// The sync id of the pull of `profile` on `platform`.
pub fn sync_id(platform: &str, profile: &str) -> String {
    format!("pull-{platform}-{profile}")
}

pub(crate) fn check_profile(profile: &str) -> Result<(), PullError> {
    let ok = !profile.is_empty()
        && profile.len() <= 64
        && profile
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(PullError::InvalidProfile(profile.to_string()))
    }
}

/// Pull: bring a profile's campaigns, ad groups and keywords from a platform
/// into the store, in two phases, resumably and atomically.
///
/// One sync per (platform, profile), id `pull-<platform>-<profile>`, driven by
/// the [`PullMachine`]:
///
/// ```text
/// Idle ─▶ FetchingCampaigns ─▶ FetchingAdGroups ─▶ FetchingKeywords ─▶ Persisting ─▶ Completed
///              └────────────────────┴─────────────────────┴────────────────┴──────▶ Failed
/// ```
///
/// * **Fetch.** One page per checkpoint: the page's entities are staged in the
///   same atomic commit as the checkpoint that records the `nextToken` of the
///   following page. After a crash the pull continues at the next page; no page
///   already staged is fetched again.
/// * **Rate limits.** Every request of the [`AmazonClient`](crate::platform::amazon::AmazonClient)
///   passes one shared limiter that halves its rate on a 429 and raises it slowly;
///   `Retry-After` is obeyed, and a 429 without it backs off exponentially with
///   jitter. When the client's bounded retries are exhausted, the machine retries
///   the page later (bounded too), then fails with the error and **keeps** the
///   staged pages: pulling again resumes from the page that failed.
/// * **Persist.** The staged pages become a new *generation* (sorted by id,
///   de-duplicated: upsert by platform id). A page is staged where the
///   generation keeps it, under keys no reader looks at, so persisting writes
///   only a directory of the pages in id order (pages that overlap, when the
///   data changed during the fetch, are merged first); the checkpoint to
///   Completed writes it, flips the profile's generation pointer, deletes the
///   previous generation and the staging in one atomic commit. Readers see the previous snapshot or the new one, never a mix.
///   Entities no longer on the platform are simply absent from the new
///   generation. A crash while persisting leaves the previous snapshot current;
///   the resume rebuilds the generation from staging with no platform request.
///
/// [`Puller`] ties it together: start or resume a pull, read its status, and
/// query the persisted snapshot.
///
/// Pulls profiles through a [`Runner`] of the [`PullMachine`], which it builds
/// itself with its [`AmazonPullEffects`], and reads what they persisted.
pub struct Puller {
    runner: Runner<PullMachine>,
    effects: AmazonPullEffects,
    reader: PullReader,
    policy: PullPolicy,
    clock: Arc<dyn Clock>,
    labels: BTreeMap<String, String>,
}

impl std::fmt::Debug for Puller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Puller")
            .field("platform", &self.reader.platform)
            .finish_non_exhaustive()
    }
}

impl Puller {
    /// A puller of Amazon Ads profiles through `client`, staging and
    /// persisting into `store`: the store its effects write to is the one its
    /// runner checkpoints in. Cheap: it sends no request and writes nothing.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use std::sync::Arc;
    /// use adsync::amazon::{AmazonClient, AmazonConfig};
    /// use adsync::{Puller, Store, SystemClock};
    ///
    /// let client = AmazonClient::new(AmazonConfig::new("client-id", "token"))?;
    /// let puller = Puller::new(Store::temporary()?, client, Arc::new(SystemClock));
    /// // A profile never pulled has no status (and nothing was sent to Amazon).
    /// assert!(puller.status("1234567890").await?.is_none());
    /// # Ok(())
    /// # }
    /// ```
    pub fn new(
        store: impl adsync_engine::IntoStore,
        client: crate::platform::amazon::AmazonClient,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let store = store.into_store();
        Puller {
            runner: Runner::new(store.clone(), clock.clone()),
            effects: AmazonPullEffects::new(client, store.clone(), clock.clone()),
            reader: PullReader::new(store),
            policy: PullPolicy::default(),
            clock,
            labels: BTreeMap::new(),
        }
    }

    /// Labels recorded on a pull this puller creates, besides platform and
    /// profile: e.g. the API host (never a credential), so that a later
    /// `resume` needs no flags.
    pub fn with_labels(mut self, labels: BTreeMap<String, String>) -> Self {
        self.labels = labels;
        self
    }

    /// Replaces the default page size and retry settings (for new pulls).
    pub fn with_policy(mut self, policy: PullPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Configures the runner this puller built: a seed, a crash hook, a stop
    /// signal (see [`Runner::with_seed`], [`Runner::with_hook`],
    /// [`Runner::with_stop`]).
    pub fn with_runner(
        mut self,
        configure: impl FnOnce(Runner<PullMachine>) -> Runner<PullMachine>,
    ) -> Self {
        self.runner = configure(self.runner);
        self
    }

    /// The platform this puller pulls from.
    pub fn platform(&self) -> &str {
        &self.reader.platform
    }

    pub(crate) fn effects(&self) -> &AmazonPullEffects {
        &self.effects
    }

    /// The runner: reading pulls and applying requests ([`Runner::resolve`]).
    /// Stepping goes through [`Puller::step`] and [`Puller::run`].
    pub fn runner(&self) -> &Runner<PullMachine> {
        &self.runner
    }

    /// One transition of pull `id` ([`Runner::step`]) through this puller's
    /// effects: at most one page fetched or one persisting step, durable on
    /// return.
    ///
    /// # Errors
    ///
    /// As [`Runner::step`]; Amazon's failures are outcomes, not errors.
    pub async fn step(&self, id: &str) -> Result<adsync_engine::Step<PullMachine>, RunError> {
        self.runner.step(id, &self.effects).await
    }

    /// Runs pull `id` to its end ([`Runner::run`]) through this puller's
    /// effects; also how an interrupted pull continues after a crash.
    ///
    /// # Errors
    ///
    /// As [`Runner::run`]: every transition before the error is durable.
    pub async fn run(&self, id: &str) -> Result<Checkpoint<PullMachine>, RunError> {
        self.runner.run(id, &self.effects).await
    }

    /// The sync id of `profile` on this puller's platform: one sync per
    /// profile, reused by every later pull of it.
    pub fn sync_id(&self, profile: &str) -> String {
        self.reader.sync_id(profile)
    }

    /// The reader of what this puller's pulls recorded and persisted; the
    /// read methods below are its.
    pub fn reader(&self) -> &PullReader {
        &self.reader
    }

    /// Makes a pull of `profile` ready to run and returns its sync id: creates
    /// the sync on first use, requests a new pull after a completed one, and
    /// resumes (or, with [`PullMode::Restart`], restarts) a failed one. An
    /// interrupted pull is left as it is, to be resumed. Durable on return;
    /// nothing is sent to Amazon.
    ///
    /// # Errors
    ///
    /// [`PullError::InvalidProfile`] if `profile` cannot be part of a store
    /// key; [`PullError::Run`] if the store fails or the sync's record does
    /// not decode.
    pub async fn begin(&self, profile: &str, mode: PullMode) -> Result<String, PullError> {
        check_profile(profile)?;
        let id = self.sync_id(profile);
        let existing = {
            let key = id.clone();
            self.runner.read(move |store| store.record(&key)).await?
        };
        let Some(record) = existing else {
            let (store_platform, store_profile) =
                (self.reader.platform.clone(), profile.to_string());
            let previous = self
                .runner
                .read(move |store| {
                    snapshot::current(store, &store_platform, &store_profile).map_err(|e| {
                        adsync_engine::StoreError::Corrupt {
                            sync: store_profile.clone(),
                            detail: e.to_string(),
                        }
                    })
                })
                .await?;
            let state = PullState::new(
                &self.reader.platform,
                profile,
                self.policy,
                previous,
                self.clock.now(),
            );
            let mut labels = self.labels.clone();
            labels.extend([
                ("platform".to_string(), self.reader.platform.clone()),
                ("profile".to_string(), profile.to_string()),
            ]);
            self.runner.start(&id, state, labels, &[]).await?;
            return Ok(id);
        };
        let checkpoint = Checkpoint::<PullMachine>::try_from(record)?;
        let request = match checkpoint.state.phase {
            PullPhase::Completed => Some(PullOutcome::PullRequested {
                policy: self.policy,
            }),
            PullPhase::Failed | PullPhase::Cancelled => match (mode, checkpoint.state.failed_in) {
                (
                    PullMode::ResumeOrStart,
                    Some(
                        PullPhase::FetchingCampaigns
                        | PullPhase::FetchingAdGroups
                        | PullPhase::FetchingKeywords
                        | PullPhase::Persisting,
                    ),
                ) => Some(PullOutcome::ResumeRequested),
                _ => Some(PullOutcome::PullRequested {
                    policy: self.policy,
                }),
            },
            _ => None,
        };
        if let Some(outcome) = request {
            self.runner.resolve(&id, outcome).await?;
        }
        Ok(id)
    }

    /// Begins (see [`Puller::begin`]) and runs a pull of `profile` to its end;
    /// the status tells how it ended (a failed pull is a status, not an error).
    ///
    /// # Errors
    ///
    /// As [`Puller::begin`], and [`PullError::Run`] if a step fails (see
    /// [`Runner::step`]).
    pub async fn pull(&self, profile: &str, mode: PullMode) -> Result<PullStatus, PullError> {
        self.pull_observed(profile, mode, &|_| {}).await
    }

    /// [`Puller::pull`], calling `observer` after every durable transition.
    pub async fn pull_observed(
        &self,
        profile: &str,
        mode: PullMode,
        observer: &(dyn Fn(&Transition<PullMachine>) + Send + Sync),
    ) -> Result<PullStatus, PullError> {
        let id = self.begin(profile, mode).await?;
        let checkpoint = self
            .runner
            .run_observed(&id, &self.effects, observer)
            .await?;
        Ok(PullStatus::from_checkpoint(&checkpoint))
    }

    /// The sync status of `profile`; `None` if it was never pulled.
    ///
    /// # Errors
    ///
    /// [`PullError::InvalidProfile`], or [`PullError::Run`] if the store
    /// fails or the record does not decode.
    pub async fn status(&self, profile: &str) -> Result<Option<PullStatus>, PullError> {
        self.reader.status(profile).await
    }

    /// The status of every pulled profile (of every platform), by sync id;
    /// an unreadable record is an error in its place (see [`PullReader::statuses`]).
    pub async fn statuses(&self) -> Result<Vec<Result<PullStatus, PullError>>, PullError> {
        self.reader.statuses().await
    }

    /// The whole current snapshot of `profile`; `None` if no pull completed.
    pub async fn snapshot(&self, profile: &str) -> Result<Option<ProfileSnapshot>, PullError> {
        self.reader.snapshot(profile).await
    }

    /// The persisted campaigns of `profile`, sorted by id (empty if never pulled).
    pub async fn campaigns(&self, profile: &str) -> Result<Vec<SpCampaign>, PullError> {
        self.reader.entities(profile).await
    }

    /// The persisted ad groups of `profile`, sorted by id.
    pub async fn ad_groups(&self, profile: &str) -> Result<Vec<SpAdGroup>, PullError> {
        self.reader.entities(profile).await
    }

    /// The persisted keywords of `profile`, sorted by id.
    pub async fn keywords(&self, profile: &str) -> Result<Vec<SpKeyword>, PullError> {
        self.reader.entities(profile).await
    }

    /// The persisted entities of one kind, sorted by id.
    pub async fn entities<T: SpEntity + Send + 'static>(
        &self,
        profile: &str,
    ) -> Result<Vec<T>, PullError> {
        self.reader.entities(profile).await
    }

    /// One persisted entity by platform id.
    pub async fn find<T: SpEntity + Send + 'static>(
        &self,
        profile: &str,
        id: &str,
    ) -> Result<Option<T>, PullError> {
        self.reader.find(profile, id).await
    }
}

/// Reads what pulls recorded (their statuses) and persisted (the snapshots)
/// from a store alone: no platform client, no runner, no effect, so reading
/// needs no credentials. Every read runs on the blocking pool. A [`Puller`]'s
/// read methods are its reader's.
#[derive(Debug, Clone)]
pub struct PullReader {
    store: adsync_engine::SharedStore,
    platform: String,
}

impl PullReader {
    /// A reader of the Amazon Ads pulls in `store` (the platform every
    /// [`Puller`] pulls from).
    pub fn new(store: impl adsync_engine::IntoStore) -> Self {
        PullReader {
            store: store.into_store(),
            platform: AMAZON.to_string(),
        }
    }

    /// The sync id of `profile`.
    pub fn sync_id(&self, profile: &str) -> String {
        sync_id(&self.platform, profile)
    }

    async fn read<T: Send + 'static, E: Into<PullError> + Send + 'static>(
        &self,
        f: impl FnOnce(&dyn adsync_engine::StoreRead) -> Result<T, E> + Send + 'static,
    ) -> Result<T, PullError> {
        self.store
            .read(f)
            .await
            .map_err(|e| PullError::Run(RunError::Store(e)))?
            .map_err(Into::into)
    }

    /// The sync status of `profile`; `None` if it was never pulled.
    pub async fn status(&self, profile: &str) -> Result<Option<PullStatus>, PullError> {
        check_profile(profile)?;
        let id = self.sync_id(profile);
        let record = self
            .read(move |store| store.record(&id).map_err(RunError::Store))
            .await?;
        Ok(record.map(PullStatus::from_record).transpose()?)
    }

    /// The status of every pulled profile (of every platform), by sync id.
    /// A record that cannot be read (it may be a pull's), or a pull record
    /// that does not decode, is an error in its place, naming its sync: the
    /// others are still listed, and nothing is hidden.
    pub async fn statuses(&self) -> Result<Vec<Result<PullStatus, PullError>>, PullError> {
        let records = self.read(|store| Ok::<_, PullError>(store.list())).await?;
        Ok(records
            .into_iter()
            .filter_map(|record| match record {
                Err(e) => Some(Err(PullError::Run(RunError::Store(e)))),
                Ok(r) if r.kind == <PullMachine as adsync_engine::Machine>::KIND => {
                    Some(PullStatus::from_record(r).map_err(PullError::from))
                }
                Ok(_) => None,
            })
            .collect())
    }

    /// Runs `f` on `profile`'s snapshot, with this reader's platform.
    async fn snap<T: Send + 'static>(
        &self,
        profile: &str,
        f: impl FnOnce(&dyn adsync_engine::StoreRead, &str, &str) -> Result<T, SnapshotError>
            + Send
            + 'static,
    ) -> Result<T, PullError> {
        check_profile(profile)?;
        let (platform, profile) = (self.platform.clone(), profile.to_string());
        self.read(move |store| f(store, &platform, &profile)).await
    }

    /// The whole current snapshot of `profile`; `None` if no pull completed.
    pub async fn snapshot(&self, profile: &str) -> Result<Option<ProfileSnapshot>, PullError> {
        self.snap(profile, snapshot::read_snapshot).await
    }

    /// The persisted entities of one kind, sorted by id (empty if never pulled).
    pub async fn entities<T: SpEntity + Send + 'static>(
        &self,
        profile: &str,
    ) -> Result<Vec<T>, PullError> {
        Ok(self
            .snap(profile, snapshot::read_kind::<T>)
            .await?
            .map(|(_, items)| items)
            .unwrap_or_default())
    }

    /// One persisted entity by platform id; `None` if the current snapshot
    /// has none with that id.
    pub async fn find<T: SpEntity + Send + 'static>(
        &self,
        profile: &str,
        id: &str,
    ) -> Result<Option<T>, PullError> {
        let id = id.to_string();
        self.snap(profile, move |store, platform, profile| {
            snapshot::find::<T>(store, platform, profile, &id)
        })
        .await
    }
}
