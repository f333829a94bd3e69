//! The worker: one long-lived host for the push and pull runners over one
//! store — what a daemon embeds.

mod lease;
mod metrics;
mod queue;
mod schedule;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio::sync::Notify;
use tracing::Instrument as _;

use adsync_engine::{
    Cancel, CheckpointCodec, Clock, Commit, Effects, IntoStore, Machine, Progress, Record,
    RunError, Runner, SharedStore, Status, StopSignal, SystemClock, Timestamp,
};

use crate::model::CampaignSet;
use crate::pull::{PullError, PullMachine, PullMode, Puller};
use crate::push::{PushError, PushMachine, PushOutcome, Pusher};

pub use metrics::{Gauges, Metrics};
pub use queue::{Limits, QueueDepth, Queued};
pub use schedule::{Cadence, Schedule, ScheduleError};

use queue::{Job, Kind, Queue};

/// What a [`Worker`] call refused or failed on.
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    /// No pusher or puller of this worker serves the platform.
    #[error(
        "this worker does not {action} platform `{platform}` (platforms it can {action}: {known})"
    )]
    UnknownPlatform {
        /// What was asked: `push to` or `pull from`.
        action: &'static str,
        /// The platform named.
        platform: String,
        /// The platforms it serves, comma-separated (or `none`).
        known: String,
    },
    /// The push was refused or failed (see [`Pusher::start`]).
    #[error(transparent)]
    Push(#[from] PushError),
    /// The pull was refused or failed (see [`Puller::begin`]).
    #[error(transparent)]
    Pull(#[from] PullError),
    /// The runner or the store failed, or the sync is unknown.
    #[error(transparent)]
    Run(#[from] RunError),
    /// The schedule was refused.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// A sync's record names a platform this worker has no runner for.
    #[error(
        "sync `{sync}` is a {kind} on platform `{platform}`, which this worker does not serve"
    )]
    NotServed {
        /// The sync.
        sync: String,
        /// Its machine kind.
        kind: String,
        /// Its platform label.
        platform: String,
    },
    /// [`Worker::run`] was called while it runs already.
    #[error("this worker is already running")]
    AlreadyRunning,
    /// [`Worker::run`] was called after the worker stopped: a stopped
    /// worker's runners start no effect again; build a new worker.
    #[error("this worker has stopped; build a new one to run again")]
    Stopped,
}

/// What [`Worker::cancel`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cancelled {
    /// The sync is cancelled, durably.
    Now,
    /// An effect of the sync is in flight: the request is durable and the
    /// sync is cancelled at its next step boundary.
    Requested,
    /// The sync had already finished with this status; nothing was written.
    AlreadySettled(Status),
}

/// How [`Worker::run`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// Syncs whose effect in flight was still running at the shutdown
    /// deadline and was cut off: each resumes from its last checkpoint at the
    /// next start (a create cut off is looked up there, never re-sent).
    pub cut_off: Vec<String>,
}

/// Builds a [`Worker`]: its store, clock, pushers, pullers and limits.
pub struct WorkerBuilder {
    store: SharedStore,
    clock: Arc<dyn Clock>,
    pushers: Vec<Pusher>,
    pullers: Vec<Puller>,
    limits: Limits,
    shutdown_timeout: Duration,
    deferred_retry: Duration,
    store_retry: Duration,
    owner: Option<String>,
    lease_ttl: Duration,
    claim_every: Duration,
}

impl std::fmt::Debug for WorkerBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerBuilder")
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

impl WorkerBuilder {
    /// The clock every sync's timestamps, backoffs and schedules use
    /// (default: [`SystemClock`]). Give the pushers and pullers the same.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Pushes to `pusher`'s platform through it (one pusher per platform;
    /// a second for the same platform replaces the first). Its store must be
    /// the worker's.
    pub fn pusher(mut self, pusher: Pusher) -> Self {
        self.pushers.retain(|p| p.platform() != pusher.platform());
        self.pushers.push(pusher);
        self
    }

    /// Pulls from `puller`'s platform through it (one per platform). Its
    /// store must be the worker's.
    pub fn puller(mut self, puller: Puller) -> Self {
        self.pullers.retain(|p| p.platform() != puller.platform());
        self.pullers.push(puller);
        self
    }

    /// How many syncs run at once, in all and per account or profile
    /// (default [`Limits::default`]). Syncs over a limit wait in the queue,
    /// holding no task.
    pub fn limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// How long a graceful stop lets effects in flight finish before it cuts
    /// them off (default 30 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// How long a sync that stopped unfinished waits before the worker wakes
    /// it again (default 60 s): a push whose create look-up the platform
    /// could not decide yet.
    pub fn deferred_retry(mut self, wait: Duration) -> Self {
        self.deferred_retry = wait;
        self
    }

    /// How long a sync whose store read or commit failed waits before the
    /// worker tries it again (default 5 s): a database restarting, a disk
    /// freed. Shorter than [`WorkerBuilder::deferred_retry`]: the store
    /// usually comes back within seconds.
    pub fn store_retry(mut self, wait: Duration) -> Self {
        self.store_retry = wait;
        self
    }

    /// This worker's name in the leases of a shared store (default: host,
    /// process id and a random suffix). Used only when the store has leases
    /// (several workers on one database, see [`Worker`]).
    pub fn owner(mut self, owner: impl Into<String>) -> Self {
        self.owner = Some(owner.into());
        self
    }

    /// How long a claimed sync stays this worker's without a renewal
    /// (default 30 s; renewed every third of it). A worker paused longer
    /// loses its syncs to the others, and its commits are refused. Shared
    /// stores only.
    pub fn lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl;
        self
    }

    /// How often the worker claims due syncs from a shared store (default
    /// 1 s; a submission to this worker claims at once). Shared stores only.
    pub fn claim_every(mut self, every: Duration) -> Self {
        self.claim_every = every;
        self
    }

    /// The worker. Opens nothing and sends nothing: [`Worker::run`] (or
    /// [`Worker::run_due`]) starts the work.
    pub fn build(self) -> Worker {
        // One stop signal for every runner: a graceful stop stops them all.
        let stop = StopSignal::new();
        let pushers = self
            .pushers
            .into_iter()
            .map(|p| (p.platform().to_string(), p.with_runner(stopped_by(&stop))))
            .collect();
        let pullers = self
            .pullers
            .into_iter()
            .map(|p| (p.platform().to_string(), p.with_runner(stopped_by(&stop))))
            .collect();
        let leasing = self.store.leases().is_some().then(|| {
            lease::Leasing::new(
                self.owner.unwrap_or_else(lease::default_owner),
                self.lease_ttl,
                self.claim_every,
            )
        });
        Worker {
            inner: Arc::new(Inner {
                leasing,
                limits: self.limits,
                store: self.store,
                clock: self.clock,
                pushers,
                pullers,
                queue: Mutex::new(Queue::new(self.limits)),
                schedules: Mutex::new(BTreeMap::new()),
                wake: Notify::new(),
                idle: Notify::new(),
                stop,
                tasks: Mutex::new(tokio::task::JoinSet::new()),
                metrics: Metrics::default(),
                running: AtomicBool::new(false),
                resumed: tokio::sync::OnceCell::new(),
                submitting: Stripes::new(),
                shutdown_timeout: self.shutdown_timeout,
                deferred_retry: self.deferred_retry,
                store_retry: self.store_retry,
            }),
        }
    }
}

/// Configures a runner to honour `stop`.
fn stopped_by<M: Machine + CheckpointCodec>(
    stop: &StopSignal,
) -> impl FnOnce(Runner<M>) -> Runner<M> {
    let stop = stop.clone();
    move |runner| runner.with_stop(stop)
}

/// One long-lived host for the push and pull runners over one store: what a
/// daemon embeds, and what `adsync daemon` runs.
///
/// * **Durable submissions.** [`Worker::submit_push`] and
///   [`Worker::submit_pull`] return the sync ids after the commit that
///   creates them: a crash after the acknowledgement loses nothing.
/// * **Resume on start.** [`Worker::run`] first takes up every unfinished
///   sync in the store, under each machine's restart rules (a create that may
///   have been in flight is looked up, never re-sent).
/// * **A queue, not a task per sync.** Syncs run within [`Limits`] (in all,
///   and per account or profile); a sync over a limit, or backing off until
///   a time its checkpoint names, is an entry in the queue. A backoff is
///   durable: after a restart the sync resumes at its due time, not before.
/// * **Schedules.** Pull schedules ([`Cadence`]) are stored; a schedule that
///   fires while its profile's pull runs is skipped and counted; runs missed
///   while no worker ran collapse into one.
/// * **Cancellation** ([`Worker::cancel`]) lands at the next step boundary.
/// * **Graceful stop.** When [`Worker::run`]'s shutdown future completes, no
///   new effect starts; effects in flight get the shutdown timeout, then are
///   cut off (outcome unknown, looked up at the next start).
///
/// ```no_run
/// # async fn demo(shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> Result<(), Box<dyn std::error::Error>> {
/// use std::sync::Arc;
/// use adsync::reddit::{RedditAdapter, RedditConfig};
/// use adsync::{CampaignSet, Pusher, Store, SystemClock, Worker};
///
/// let store = Store::open("adsync.db")?;
/// let clock = Arc::new(SystemClock);
/// let reddit = Arc::new(RedditAdapter::new(RedditConfig::from_env()?)?);
/// let worker = Worker::builder(store.clone())
///     .pusher(Pusher::new(store, reddit, clock))
///     .build();
/// let running = tokio::spawn({
///     let worker = worker.clone();
///     async move { worker.run(shutdown).await } // e.g. SIGTERM received
/// });
/// let set = CampaignSet::from_json(&std::fs::read_to_string("set.json")?, "set.json")?;
/// let ids = worker.submit_push(&set, "t2_account", "reddit").await?; // durable now
/// println!("started {ids:?}");
/// running.await??;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Worker {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("store", &self.inner.store)
            .field("push", &self.inner.pushers.keys().collect::<Vec<_>>())
            .field("pull", &self.inner.pullers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

struct Inner {
    store: SharedStore,
    /// Lease mode (a store several workers share); `None` for sled's.
    leasing: Option<lease::Leasing>,
    limits: Limits,
    clock: Arc<dyn Clock>,
    pushers: BTreeMap<String, Pusher>,
    pullers: BTreeMap<String, Puller>,
    queue: Mutex<Queue>,
    /// Loaded from the store by [`Worker::resume`]; every change is
    /// committed before it is made here.
    schedules: Mutex<BTreeMap<Vec<u8>, Schedule>>,
    /// Something changed (a submission, a task ended): dispatch again.
    wake: Notify,
    /// A task ended (for [`Worker::run_due`]).
    idle: Notify,
    stop: StopSignal,
    tasks: Mutex<tokio::task::JoinSet<()>>,
    metrics: Metrics,
    running: AtomicBool,
    resumed: tokio::sync::OnceCell<()>,
    /// Serialises submissions that touch the same campaign or profile (a
    /// start reads what exists, then commits: two at once would both start).
    submitting: Stripes,
    shutdown_timeout: Duration,
    deferred_retry: Duration,
    store_retry: Duration,
}

/// How a sync's task ended.
enum End {
    Settled(Status),
    Wait(Timestamp),
    Stopped,
    Failed(RunError),
}

impl Worker {
    /// A builder over `store`: add pushers and pullers built on the same
    /// store, then [`WorkerBuilder::build`].
    pub fn builder(store: impl IntoStore) -> WorkerBuilder {
        WorkerBuilder {
            store: store.into_store(),
            clock: Arc::new(SystemClock),
            pushers: Vec::new(),
            pullers: Vec::new(),
            limits: Limits::default(),
            shutdown_timeout: Duration::from_secs(30),
            deferred_retry: Duration::from_secs(60),
            store_retry: Duration::from_secs(5),
            owner: None,
            lease_ttl: Duration::from_secs(30),
            claim_every: Duration::from_secs(1),
        }
    }

    /// The store.
    pub fn store(&self) -> &SharedStore {
        &self.inner.store
    }

    /// The pusher of `platform`, if this worker pushes there (reads, resolve).
    pub fn pusher(&self, platform: &str) -> Option<&Pusher> {
        self.inner.pushers.get(platform)
    }

    /// The puller of `platform`, if this worker pulls from there (reads of
    /// snapshots and statuses go through its [`Puller::reader`]).
    pub fn puller(&self, platform: &str) -> Option<&Puller> {
        self.inner.pullers.get(platform)
    }

    /// The worker's counters.
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Where sync `id` is in this worker's queue; `None` when the worker is
    /// not holding it (finished, parked for an operator, or unknown). What
    /// `status` shows instead of guessing from the record.
    pub fn queued(&self, id: &str) -> Option<Queued> {
        self.inner.queue.lock().place(id)
    }

    /// How many syncs are ready, waiting and running.
    pub fn depth(&self) -> QueueDepth {
        self.inner.queue.lock().depth()
    }

    fn pusher_for(&self, platform: &str) -> Result<&Pusher, WorkerError> {
        self.inner
            .pushers
            .get(platform)
            .ok_or_else(|| WorkerError::UnknownPlatform {
                action: "push to",
                platform: platform.to_string(),
                known: known(self.inner.pushers.keys()),
            })
    }

    fn puller_for(&self, platform: &str) -> Result<&Puller, WorkerError> {
        self.inner
            .pullers
            .get(platform)
            .ok_or_else(|| WorkerError::UnknownPlatform {
                action: "pull from",
                platform: platform.to_string(),
                known: known(self.inner.pullers.keys()),
            })
    }

    /// Starts one push sync per campaign of `set` on `account` of `platform`
    /// and returns their ids once they are durable; the worker runs them.
    /// The rules of [`Pusher::start`] apply: an unfinished sync of the same
    /// content is continued (its id is returned), other content is refused.
    ///
    /// # Errors
    ///
    /// [`WorkerError::UnknownPlatform`], or as [`Pusher::start`]; nothing
    /// was started then.
    pub async fn submit_push(
        &self,
        set: &CampaignSet,
        account: &str,
        platform: &str,
    ) -> Result<Vec<String>, WorkerError> {
        self.submit_push_with(set, account, platform, Default::default())
            .await
    }

    /// [`Worker::submit_push`] with what the push may do beyond creating and
    /// updating (`--adopt-existing`, `--prune`, `--take-over`; see
    /// [`Pusher::start_with`]).
    ///
    /// # Errors
    ///
    /// As [`Worker::submit_push`].
    pub async fn submit_push_with(
        &self,
        set: &CampaignSet,
        account: &str,
        platform: &str,
        options: crate::converge::PlanOptions,
    ) -> Result<Vec<String>, WorkerError> {
        let pusher = self.pusher_for(platform)?;
        let keys = set
            .campaigns
            .iter()
            .map(|c| format!("push/{platform}/{account}/{}", c.id));
        let _held = self.inner.submitting.lock(keys).await;
        let ids = pusher.start_with(set, account, options).await?;
        self.inner.metrics.submitted("push", ids.len());
        let now = self.inner.clock.now();
        // With leases, the next claim round takes it (here or elsewhere).
        if self.inner.leasing.is_none() {
            let mut queue = self.inner.queue.lock();
            for id in &ids {
                queue.track(id, Kind::Push, platform, account, None, now);
            }
        }
        self.inner.wake.notify_one();
        Ok(ids)
    }

    /// Makes a pull of `profile` from `platform` ready (see
    /// [`Puller::begin`]) and returns its sync id once durable; the worker
    /// runs it. A pull of the profile that the worker is running already is
    /// joined: its id is returned and nothing else is started.
    ///
    /// # Errors
    ///
    /// [`WorkerError::UnknownPlatform`], or as [`Puller::begin`].
    pub async fn submit_pull(&self, profile: &str, platform: &str) -> Result<String, WorkerError> {
        let (id, _) = self.begin_pull(profile, platform).await?;
        self.inner.metrics.submitted("pull", 1);
        Ok(id)
    }

    /// Begins a pull unless the worker runs one of the profile already;
    /// returns its id and whether it began one.
    async fn begin_pull(
        &self,
        profile: &str,
        platform: &str,
    ) -> Result<(String, bool), WorkerError> {
        let puller = self.puller_for(platform)?;
        let id = puller.sync_id(profile);
        let _held = self.inner.submitting.lock([id.clone()]).await;
        if self.inner.queue.lock().contains(&id) {
            return Ok((id, false));
        }
        if self.inner.leasing.is_some() {
            // Unfinished syncs wait in the shared store, not in this worker's
            // queue: a pull of the profile still running (queued for a
            // claim, or held by any worker) is the one to wait for.
            let key = id.clone();
            let unfinished = self
                .inner
                .store
                .read(move |store| store.record(&key))
                .await
                .map_err(RunError::from)?
                .map_err(RunError::from)?
                .is_some_and(|r| r.status == Status::Running);
            if unfinished {
                return Ok((id, false));
            }
        }
        let id = puller.begin(profile, PullMode::ResumeOrStart).await?;
        let now = self.inner.clock.now();
        let began = if self.inner.leasing.is_some() {
            // Claimed by the next claim round, here or by another worker.
            true
        } else {
            self.inner
                .queue
                .lock()
                .track(&id, Kind::Pull, platform, profile, None, now)
        };
        self.inner.wake.notify_one();
        Ok((id, began))
    }

    /// Cancels sync `id` at its next step boundary (see [`Runner::cancel`]):
    /// it ends `cancelled`, keeping every platform id it learnt.
    ///
    /// # Errors
    ///
    /// [`WorkerError::Run`] with [`RunError::UnknownSync`] or
    /// [`RunError::NotCancellable`]; [`WorkerError::NotServed`] if no
    /// runner of this worker serves the sync's platform.
    pub async fn cancel(&self, id: &str) -> Result<Cancelled, WorkerError> {
        let record = self.record(id).await?;
        let platform = record.labels.get("platform").cloned().unwrap_or_default();
        let outcome = match record.kind.as_str() {
            PushMachine::KIND => cancelled(
                self.pusher_served(id, &record, &platform)?
                    .runner()
                    .cancel(id)
                    .await?,
            ),
            PullMachine::KIND => cancelled(
                self.puller_served(id, &record, &platform)?
                    .runner()
                    .cancel(id)
                    .await?,
            ),
            _ => return Err(not_served(id, &record, &platform)),
        };
        if outcome == Cancelled::Now {
            let running = self.inner.queue.lock().forget(id);
            // A task that took the sync up meanwhile counts its end itself.
            if !running {
                let kind = if record.kind == PushMachine::KIND {
                    PushMachine::KIND
                } else {
                    PullMachine::KIND
                };
                self.inner.metrics.settled(kind, Status::Cancelled);
            }
        }
        Ok(outcome)
    }

    /// Applies an operator's decision to a push sync that needs attention
    /// (adopt an entity, or record that it is absent; see
    /// [`Runner::resolve`]) and, when that leaves the sync unfinished, queues
    /// it to continue. Verify an adopted id first ([`crate::verify_adoption`]).
    ///
    /// # Errors
    ///
    /// As [`Runner::resolve`]; [`WorkerError::NotServed`].
    pub async fn resolve_push(
        &self,
        id: &str,
        outcome: PushOutcome,
    ) -> Result<Status, WorkerError> {
        let record = self.record(id).await?;
        let platform = record.labels.get("platform").cloned().unwrap_or_default();
        if record.kind != "push" {
            return Err(not_served(id, &record, &platform));
        }
        let pusher = self.pusher_served(id, &record, &platform)?;
        let t = pusher.runner().resolve(id, outcome).await?;
        let status = <PushMachine as Machine>::next(&t.state);
        let status = match status {
            adsync_engine::Next::Effect(_) => Status::Running,
            adsync_engine::Next::Settled(status) => status,
        };
        if status == Status::Running {
            let account = record.labels.get("account").cloned().unwrap_or_default();
            let now = self.inner.clock.now();
            self.inner
                .queue
                .lock()
                .track(id, Kind::Push, &platform, &account, None, now);
            self.inner.wake.notify_one();
        }
        Ok(status)
    }

    fn pusher_served(
        &self,
        id: &str,
        record: &Record,
        platform: &str,
    ) -> Result<&Pusher, WorkerError> {
        self.inner
            .pushers
            .get(platform)
            .ok_or_else(|| not_served(id, record, platform))
    }

    fn puller_served(
        &self,
        id: &str,
        record: &Record,
        platform: &str,
    ) -> Result<&Puller, WorkerError> {
        self.inner
            .pullers
            .get(platform)
            .ok_or_else(|| not_served(id, record, platform))
    }

    /// The latest checkpoint of sync `id`, read off the async threads.
    ///
    /// # Errors
    ///
    /// [`WorkerError::Run`] with [`RunError::UnknownSync`] when the store
    /// has no such sync, or the store's error (a record that does not decode
    /// names its sync).
    pub async fn record(&self, id: &str) -> Result<Record, WorkerError> {
        let key = id.to_string();
        let record = self
            .inner
            .store
            .read(move |store| store.record(&key))
            .await
            .map_err(RunError::from)?
            .map_err(RunError::from)?;
        record.ok_or_else(|| WorkerError::Run(RunError::UnknownSync(id.to_string())))
    }

    /// Stores a pull schedule for `profile` on `platform` (replacing one the
    /// profile had) and returns it. Durable on return.
    ///
    /// # Errors
    ///
    /// [`WorkerError::Schedule`] for a zero interval or an invalid cron
    /// expression, [`WorkerError::UnknownPlatform`], [`WorkerError::Pull`]
    /// for an invalid profile id; nothing is stored then.
    pub async fn create_schedule(
        &self,
        platform: &str,
        profile: &str,
        cadence: Cadence,
    ) -> Result<Schedule, WorkerError> {
        self.puller_for(platform)?;
        crate::pull::check_profile(profile)?;
        let schedule = Schedule::new(platform, profile, cadence, self.inner.clock.now())?;
        self.resume().await?;
        self.store_schedule(&schedule).await?;
        self.inner.wake.notify_one();
        Ok(schedule)
    }

    /// Every stored schedule, by platform and profile.
    ///
    /// # Errors
    ///
    /// As [`Worker::resume`] (the first call loads them).
    pub async fn schedules(&self) -> Result<Vec<Schedule>, WorkerError> {
        self.resume().await?;
        Ok(self.inner.schedules.lock().values().cloned().collect())
    }

    /// Deletes the schedule of `profile` on `platform`; false if it had none.
    ///
    /// # Errors
    ///
    /// [`WorkerError::Run`] if the store fails.
    pub async fn delete_schedule(
        &self,
        platform: &str,
        profile: &str,
    ) -> Result<bool, WorkerError> {
        self.resume().await?;
        let key = Schedule::key(platform, profile);
        if !self.inner.schedules.lock().contains_key(&key) {
            return Ok(false);
        }
        self.inner
            .store
            .commit(Commit::new().delete_data(&key))
            .await
            .map_err(RunError::from)?;
        self.inner.schedules.lock().remove(&key);
        Ok(true)
    }

    async fn store_schedule(&self, schedule: &Schedule) -> Result<(), WorkerError> {
        let key = Schedule::key(&schedule.platform, &schedule.profile);
        let value = serde_json::to_vec(schedule).map_err(|e| {
            RunError::from(adsync_engine::StoreError::Corrupt {
                sync: format!("schedule {}/{}", schedule.platform, schedule.profile),
                detail: format!("cannot encode: {e}"),
            })
        })?;
        self.inner
            .store
            .commit(Commit::new().data(&key, value))
            .await
            .map_err(RunError::from)?;
        self.inner.schedules.lock().insert(key, schedule.clone());
        Ok(())
    }

    /// Takes up the store's unfinished work, once per worker (later calls
    /// return at once): every running push and pull sync of a platform this
    /// worker serves is queued — at the time its checkpoint's backoff names,
    /// if any — and the schedules are loaded. Stale cancel requests are
    /// withdrawn. [`Worker::run`] calls it first.
    ///
    /// # Errors
    ///
    /// [`WorkerError::Run`] if the store cannot be read. A record or
    /// schedule that does not decode is logged and left alone; the others
    /// are taken up.
    pub async fn resume(&self) -> Result<(), WorkerError> {
        self.inner
            .resumed
            .get_or_try_init(|| self.load())
            .await
            .map(|_| ())
    }

    async fn load(&self) -> Result<(), WorkerError> {
        if let Some(pusher) = self.inner.pushers.values().next() {
            pusher.runner().withdraw_stale_cancels().await?;
        } else if let Some(puller) = self.inner.pullers.values().next() {
            puller.runner().withdraw_stale_cancels().await?;
        }
        let (unfinished, schedules) = self
            .inner
            .store
            .read(|store| {
                let mut unfinished = Vec::new();
                // One record at a time, without plans or state decoding: the
                // due time is in the record itself.
                for record in store.records(false) {
                    match record {
                        Ok(record) if record.status == Status::Running => {
                            unfinished.push(Unfinished::of(record));
                        }
                        Ok(_) => {}
                        Err(e) => {
                            tracing::error!(error = %e, "a sync record does not decode; left alone")
                        }
                    }
                }
                let mut schedules = BTreeMap::new();
                for item in store.scan_data(schedule::PREFIX.as_bytes()) {
                    let (key, value) = item?;
                    match serde_json::from_slice::<Schedule>(&value) {
                        Ok(schedule) => {
                            schedules.insert(key, schedule);
                        }
                        Err(e) => tracing::error!(
                            key = %String::from_utf8_lossy(&key),
                            error = %e,
                            "a stored schedule does not decode; left alone"
                        ),
                    }
                }
                Ok::<_, adsync_engine::StoreError>((unfinished, schedules))
            })
            .await
            .map_err(RunError::from)?
            .map_err(RunError::from)?;
        let now = self.inner.clock.now();
        // With leases, work comes by claims (any worker may hold it).
        let unfinished = if self.inner.leasing.is_some() {
            Vec::new()
        } else {
            unfinished
        };
        {
            let mut queue = self.inner.queue.lock();
            for u in unfinished {
                let served = match u.kind {
                    Kind::Push => self.inner.pushers.contains_key(&u.platform),
                    Kind::Pull => self.inner.pullers.contains_key(&u.platform),
                };
                if !served {
                    tracing::warn!(sync = %u.id, platform = %u.platform, "unfinished sync of a platform this worker does not serve; left alone");
                    continue;
                }
                queue.track(&u.id, u.kind, &u.platform, &u.account, u.due, now);
            }
        }
        self.inner.schedules.lock().extend(schedules);
        self.inner.wake.notify_one();
        Ok(())
    }

    /// Runs the worker until `shutdown` completes, then stops gracefully:
    /// no new effect starts, effects in flight get the shutdown timeout,
    /// and it returns (listing any it had to cut off). Resumes the store's
    /// unfinished work first ([`Worker::resume`]).
    ///
    /// Waits on the worker's clock between due times, so give it a clock
    /// whose sleeps wait ([`SystemClock`]); with a [`adsync_engine::ManualClock`]
    /// drive it with [`Worker::run_due`] instead.
    ///
    /// # Errors
    ///
    /// [`WorkerError::AlreadyRunning`] if another `run` of this worker is
    /// under way; as [`Worker::resume`].
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<Stopped, WorkerError> {
        if self.inner.running.swap(true, Ordering::SeqCst) {
            return Err(WorkerError::AlreadyRunning);
        }
        if self.inner.stop.is_stopped() {
            self.inner.running.store(false, Ordering::SeqCst);
            return Err(WorkerError::Stopped);
        }
        let result = self.run_until(shutdown).await;
        self.inner.running.store(false, Ordering::SeqCst);
        result
    }

    async fn run_until(&self, shutdown: impl Future<Output = ()>) -> Result<Stopped, WorkerError> {
        self.resume().await?;
        tokio::pin!(shutdown);
        loop {
            let next = self.dispatch().await;
            let clock = self.inner.clock.clone();
            let sleep = async move {
                match next {
                    Some(at) => clock.sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = &mut shutdown => break,
                () = self.inner.wake.notified() => {}
                () = sleep => {}
            }
        }
        Ok(self.stop().await)
    }

    /// Starts every sync and schedule due now (within the limits) and
    /// returns when none is running: syncs that wait for a later time stay
    /// queued. The way to drive a worker one round at a time on a
    /// [`adsync_engine::ManualClock`] (advance the clock, call again), or
    /// from a batch job. Resumes the store's unfinished work on first use.
    ///
    /// # Errors
    ///
    /// As [`Worker::resume`].
    pub async fn run_due(&self) -> Result<QueueDepth, WorkerError> {
        self.resume().await?;
        loop {
            let idle = self.inner.idle.notified();
            tokio::pin!(idle);
            idle.as_mut().enable();
            self.dispatch().await;
            let depth = self.depth();
            if depth.running == 0 {
                // Nothing running, and nothing became ready by the dispatch.
                self.reap();
                if self.depth().running == 0 && !self.has_ready_now() {
                    return Ok(self.depth());
                }
                continue;
            }
            idle.await;
        }
    }

    fn has_ready_now(&self) -> bool {
        let now = self.inner.clock.now();
        let mut queue = self.inner.queue.lock();
        queue.promote_due(now);
        queue.depth().ready > 0 && !self.inner.stop.is_stopped()
    }

    /// One dispatch round: fires due schedules, starts ready syncs within
    /// the limits; returns the next time something falls due.
    async fn dispatch(&self) -> Option<Timestamp> {
        self.reap();
        if self.inner.stop.is_stopped() {
            return None;
        }
        let now = self.inner.clock.now();
        if self.leads_schedules().await {
            self.fire_schedules(now).await;
        }
        let claims_due = self.claim_round(now).await;
        let jobs: Vec<Job> = {
            let mut queue = self.inner.queue.lock();
            queue.promote_due(now);
            std::iter::from_fn(|| queue.next_job()).collect()
        };
        for job in jobs {
            self.spawn(job);
        }
        let due = self.inner.queue.lock().next_due();
        let scheduled = self
            .inner
            .schedules
            .lock()
            .values()
            .map(|s| s.next_run)
            .min();
        [due, scheduled, claims_due].into_iter().flatten().min()
    }

    async fn fire_schedules(&self, now: Timestamp) {
        let due: Vec<Schedule> = self
            .inner
            .schedules
            .lock()
            .values()
            .filter(|s| s.next_run <= now)
            .cloned()
            .collect();
        for mut schedule in due {
            // The pull begins before the schedule advances: a crash between
            // the two fires the schedule again at the next start, which then
            // finds the pull running and counts a skip, never a lost run.
            let ran = match self.begin_pull(&schedule.profile, &schedule.platform).await {
                Ok((_, began)) => began,
                Err(e) => {
                    // Neither a run nor a skip: try again in a while, and
                    // keep the stored next run (a restart tries at once).
                    tracing::error!(platform = %schedule.platform, profile = %schedule.profile, error = %e, "a scheduled pull could not begin; trying again later");
                    schedule.next_run = now + self.inner.deferred_retry;
                    self.inner.schedules.lock().insert(
                        Schedule::key(&schedule.platform, &schedule.profile),
                        schedule,
                    );
                    continue;
                }
            };
            schedule.fired(now, ran);
            self.inner.metrics.schedule_fired(&schedule.platform, ran);
            if let Err(e) = self.store_schedule(&schedule).await {
                tracing::error!(platform = %schedule.platform, profile = %schedule.profile, error = %e, "a schedule's next run could not be stored");
                // Keep the in-memory copy moving, or it would fire in a loop.
                self.inner.schedules.lock().insert(
                    Schedule::key(&schedule.platform, &schedule.profile),
                    schedule,
                );
            }
        }
    }

    fn reap(&self) {
        let mut tasks = self.inner.tasks.lock();
        while let Some(joined) = tasks.try_join_next() {
            if let Err(e) = joined {
                if e.is_panic() {
                    tracing::error!(error = %e, "a sync task panicked");
                }
            }
        }
    }

    fn spawn(&self, job: Job) {
        let worker = self.clone();
        let span = tracing::info_span!(
            "sync",
            sync = %job.id,
            machine = job.kind.as_str(),
            platform = %job.platform,
            account = %job.account
        );
        self.inner
            .tasks
            .lock()
            .spawn(async move { worker.drive(job).await }.instrument(span));
    }

    /// Runs one sync until it settles, must wait, or the worker stops; then
    /// tells the queue.
    async fn drive(&self, job: Job) {
        // Whatever happens to this task (an end, a panic, an abort at the
        // shutdown deadline), the queue hears that the sync left its slot.
        let guard = LeaveQueue {
            inner: &self.inner,
            id: &job.id,
        };
        let end = match job.kind {
            Kind::Push => match self.inner.pushers.get(&*job.platform) {
                Some(pusher) => {
                    self.drive_machine(pusher.runner(), pusher.effects(), &job)
                        .await
                }
                None => End::Stopped,
            },
            Kind::Pull => match self.inner.pullers.get(&*job.platform) {
                Some(puller) => {
                    self.drive_machine(puller.runner(), puller.effects(), &job)
                        .await
                }
                None => End::Stopped,
            },
        };
        std::mem::forget(guard);
        let machine = job.kind.as_str();
        let leased = self.inner.leasing.is_some();
        let lease_lost = matches!(
            end,
            End::Failed(RunError::Store(adsync_engine::StoreError::LeaseLost { .. }))
        );
        {
            let mut queue = self.inner.queue.lock();
            let now = self.inner.clock.now();
            let retry = now + self.inner.deferred_retry;
            match &end {
                // With leases, a waiting sync is given back and claimed
                // again (by any worker) when it is due.
                End::Wait(due) if !leased => queue.wait(&job.id, *due),
                _ if lease_lost => queue.finished(&job.id),
                // A store failure may pass (a full disk freed): try again
                // later.
                End::Failed(RunError::Store(_)) => {
                    queue.wait(&job.id, now + self.inner.store_retry)
                }
                // Anything else (a state that does not decode) would fail
                // the same way every time: alone, it waits for the next
                // start; with leases, this worker keeps the sync and tries
                // again later, rather than hand it from worker to worker.
                End::Failed(_) if leased => queue.wait(&job.id, retry),
                _ => queue.finished(&job.id),
            }
        }
        if lease_lost {
            self.lost(&job.id);
        } else if matches!(end, End::Settled(_) | End::Wait(_) | End::Stopped) {
            self.release(&job.id, job.kind, &job.platform).await;
        }
        match end {
            End::Settled(status) => self.inner.metrics.settled(machine, status),
            End::Failed(e) => {
                self.inner.metrics.error(machine);
                tracing::error!(error = %e, "sync stopped on an error; it resumes from its last checkpoint at the next start");
            }
            End::Wait(_) | End::Stopped => {}
        }
        self.inner.wake.notify_one();
        self.inner.idle.notify_waiters();
    }

    async fn drive_machine<M: Machine + CheckpointCodec>(
        &self,
        runner: &Runner<M>,
        effects: &dyn Effects<M>,
        job: &Job,
    ) -> End {
        let metrics = &self.inner.metrics;
        let platform = &*job.platform;
        let last = Mutex::new(Instant::now());
        let observe = |t: &adsync_engine::Transition<M>| {
            let mut last = last.lock();
            metrics.transition(
                M::KIND,
                platform,
                t.effect.as_ref().map(M::effect_name),
                last.elapsed(),
            );
            *last = Instant::now();
        };
        match runner.run_until_waiting(&job.id, effects, &observe).await {
            Ok(Progress::Waiting(at)) => End::Wait(at),
            Ok(Progress::Settled(checkpoint)) => match checkpoint.record.status {
                // Stopped unfinished (a look-up the platform could not
                // decide): try again later rather than spin.
                Status::Running => End::Wait(self.inner.clock.now() + self.inner.deferred_retry),
                status => End::Settled(status),
            },
            Err(RunError::Stopped(_)) => End::Stopped,
            // Someone else (an operator's resolve) holds the sync for a moment.
            Err(RunError::Busy(_)) => End::Wait(self.inner.clock.now() + Duration::from_secs(1)),
            Err(e) => End::Failed(e),
        }
    }

    /// The graceful stop: no new effect, a deadline for those in flight.
    async fn stop(&self) -> Stopped {
        self.inner.stop.stop();
        // Taken out of the mutex and awaited directly: a task's end is then
        // seen when it happens, not at the next wake-up.
        let mut tasks = std::mem::take(&mut *self.inner.tasks.lock());
        let drained = tokio::time::timeout(self.inner.shutdown_timeout, async {
            while let Some(joined) = tasks.join_next().await {
                if let Err(e) = joined {
                    if e.is_panic() {
                        tracing::error!(error = %e, "a sync task panicked");
                    }
                }
            }
        })
        .await;
        let mut cut_off = Vec::new();
        if drained.is_err() {
            cut_off = self.inner.queue.lock().running_ids();
            tasks.abort_all();
            // Wait for the aborted tasks to be dropped, so that the queue
            // has heard of each before this returns.
            while tasks.join_next().await.is_some() {}
            tracing::warn!(syncs = ?cut_off, "effects cut off at the shutdown deadline: each is resumed (looked up) at the next start");
        }
        // Syncs left waiting in the queue go back to the other workers now.
        self.release_all().await;
        Stopped { cut_off }
    }

    /// Every figure [`Metrics::render`] reports, read now.
    ///
    /// # Errors
    ///
    /// [`WorkerError::Run`] if the store cannot be listed.
    pub async fn gauges(&self) -> Result<Gauges, WorkerError> {
        let syncs = self
            .inner
            .store
            .read(|store| {
                let mut syncs: BTreeMap<(String, Status), u64> = BTreeMap::new();
                // One record at a time, without plans: a scrape must not hold
                // every sync's state in memory.
                for record in store.records(false).flatten() {
                    *syncs.entry((record.kind, record.status)).or_default() += 1;
                }
                Ok::<_, adsync_engine::StoreError>(syncs)
            })
            .await
            .map_err(RunError::from)?
            .map_err(RunError::from)?;
        Ok(Gauges {
            syncs,
            depth: self.depth(),
            writer: self.inner.store.writer_stats(),
            platforms: crate::telemetry::platforms(),
        })
    }

    /// The metrics in the Prometheus text format.
    ///
    /// # Errors
    ///
    /// As [`Worker::gauges`].
    pub async fn render_metrics(&self) -> Result<String, WorkerError> {
        let gauges = self.gauges().await?;
        Ok(self.inner.metrics.render(&gauges))
    }
}

/// A fixed set of locks that keys hash onto: submissions of different
/// campaigns mostly take different stripes and commit together (group
/// commit), while two of the same campaign take turns. Bounded memory,
/// whatever the number of keys.
struct Stripes {
    locks: Vec<tokio::sync::Mutex<()>>,
}

impl Stripes {
    const COUNT: usize = 64;

    fn new() -> Self {
        Stripes {
            locks: (0..Self::COUNT)
                .map(|_| tokio::sync::Mutex::new(()))
                .collect(),
        }
    }

    /// Holds the stripes of every key until the guards drop; taken in
    /// stripe order, so two callers never wait for each other in a circle.
    async fn lock(
        &self,
        keys: impl IntoIterator<Item = String>,
    ) -> Vec<tokio::sync::MutexGuard<'_, ()>> {
        use std::hash::{Hash, Hasher};
        let stripes: std::collections::BTreeSet<usize> = keys
            .into_iter()
            .map(|key| {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                key.hash(&mut h);
                (h.finish() % Self::COUNT as u64) as usize
            })
            .collect();
        let mut guards = Vec::with_capacity(stripes.len());
        for stripe in stripes {
            guards.push(self.locks[stripe].lock().await);
        }
        guards
    }
}

/// Takes a sync out of the queue if its task ends without reporting (a
/// panic, an abort): it is resumed at the next start.
struct LeaveQueue<'a> {
    inner: &'a Inner,
    id: &'a str,
}

impl Drop for LeaveQueue<'_> {
    fn drop(&mut self) {
        self.inner.queue.lock().finished(self.id);
        // Not renewed any more: another worker takes the sync over at the
        // lease's expiry.
        if let Some(leasing) = &self.inner.leasing {
            leasing.take(self.id);
        }
        self.inner.idle.notify_waiters();
    }
}

/// An unfinished sync found by [`Worker::resume`]: what the queue needs.
struct Unfinished {
    id: String,
    kind: Kind,
    platform: String,
    account: String,
    due: Option<Timestamp>,
}

impl Unfinished {
    fn of(record: Record) -> Unfinished {
        let (kind, account_label) = if record.kind == PullMachine::KIND {
            (Kind::Pull, "profile")
        } else {
            (Kind::Push, "account")
        };
        let platform = record.labels.get("platform").cloned().unwrap_or_default();
        let account = record
            .labels
            .get(account_label)
            .cloned()
            .unwrap_or_default();
        let id = record.id;
        let due = record.not_before;
        Unfinished {
            id,
            kind,
            platform,
            account,
            due,
        }
    }
}

fn cancelled<M: Machine>(c: Cancel<M>) -> Cancelled {
    match c {
        Cancel::Cancelled(_) => Cancelled::Now,
        Cancel::Requested => Cancelled::Requested,
        Cancel::AlreadySettled(status) => Cancelled::AlreadySettled(status),
    }
}

fn not_served(id: &str, record: &Record, platform: &str) -> WorkerError {
    WorkerError::NotServed {
        sync: id.to_string(),
        kind: record.kind.clone(),
        platform: platform.to_string(),
    }
}

fn known<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}
