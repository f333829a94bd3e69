//! The runner: the only place where side effects happen.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use tracing::Instrument as _;

use crate::clock::Clock;
use crate::machine::{CheckpointCodec, Context, Machine, Next, Status, TransitionError};
use crate::store::{
    Claim, Commit, HistoryEntry, IntoStore, Record, SharedStore, StoreError, StoreRead,
    RECORD_FORMAT,
};

/// Performs the effects of machine `M`: the adapter side of the runner. Only
/// [`Runner::step`] and [`Runner::run`] take one: reading syncs and applying an
/// operator's decision ([`Runner::resolve`]) perform no effect.
#[async_trait]
pub trait Effects<M: Machine>: Send + Sync {
    /// Runs `effect` for sync `sync` and reports what came of it, with data
    /// writes that the runner commits in the **same atomic commit** as the
    /// checkpoint recording the outcome (e.g. a fetched page staged together
    /// with the `nextToken` that follows it; most effects write nothing:
    /// `Commit::new()`). Failures are outcomes too: this never returns an
    /// error of its own.
    async fn perform(&self, sync: &str, effect: &M::Effect) -> (M::Outcome, Commit);
}

/// Errors of the runner. Each names the sync concerned.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A store read or commit failed; the [`StoreError`] names the file or
    /// sync and keeps its cause.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The store holds no record with this id.
    #[error("no sync `{0}` in the store")]
    UnknownSync(String),
    /// A sync with this id exists already.
    #[error("sync `{0}` already exists")]
    AlreadyExists(String),
    /// The sync belongs to another machine.
    #[error("sync `{sync}` is a `{found}` sync, not `{expected}`")]
    WrongKind {
        /// The sync's id.
        sync: String,
        /// The kind its record holds.
        found: String,
        /// This runner's [`Machine::KIND`].
        expected: &'static str,
    },
    /// The state was written by another version of the machine.
    #[error(
        "sync `{sync}` has {kind} state version {found}; this adsync reads version {expected}"
    )]
    StateVersion {
        /// The sync's id.
        sync: String,
        /// [`Machine::KIND`].
        kind: &'static str,
        /// The state version its record holds.
        found: u32,
        /// This build's [`Machine::STATE_VERSION`].
        expected: u32,
    },
    /// A state does not decode from its checkpoint (or, when writing, does
    /// not encode).
    #[error("sync `{sync}` has a corrupt {kind} state: {detail}")]
    CorruptState {
        /// The sync's id.
        sync: String,
        /// [`Machine::KIND`].
        kind: &'static str,
        /// The codec's message: what does not fit, and where.
        detail: String,
    },
    /// Another task is stepping (or resolving) this sync on the same runner
    /// right now; this call did nothing. The guard is per runner: it does not
    /// see another runner over the same store.
    #[error("sync `{0}` is being stepped by another task")]
    Busy(String),
    /// [`StopSignal::stop`] was called: the sync's latest checkpoint is durable
    /// and its next effect was not started; resuming continues from there.
    #[error("sync `{0}` was stopped before its next effect")]
    Stopped(String),
    /// [`Runner::cancel`] of a sync whose machine does not allow cancelling
    /// it in its current phase ([`Machine::on_cancel`]); nothing was written.
    #[error("sync `{sync}` cannot be cancelled in phase {phase}")]
    NotCancellable {
        /// The sync's id.
        sync: String,
        /// Its phase.
        phase: String,
    },
    /// The machine refused the outcome; nothing was written.
    #[error("sync `{sync}`: {source}")]
    Transition {
        /// The sync's id.
        sync: String,
        /// The machine's refusal.
        source: TransitionError,
    },
}

/// A sync's checkpoint, decoded: what [`Runner::get`] and [`Runner::run`]
/// return.
pub struct Checkpoint<M: Machine> {
    /// The stored record (status, counts, timestamps, labels).
    pub record: Record,
    /// The decoded machine state.
    pub state: M::State,
}

/// What one [`Runner::step`] (or [`Runner::resolve`]) did.
pub struct Transition<M: Machine> {
    /// The sync's id.
    pub sync: String,
    /// The new state's sequence number: its history entry's, and its record's
    /// [`Record::seq`].
    pub seq: u64,
    /// Phase before.
    pub from: M::Phase,
    /// The effect that ran; `None` when the runner applied a restart outcome instead.
    pub effect: Option<M::Effect>,
    /// The outcome applied: the effect's, the operator's ([`Runner::resolve`])
    /// or the restart substitute ([`Machine::on_restart`]).
    pub outcome: M::Outcome,
    /// Phase after.
    pub to: M::Phase,
    /// The new (durable) state.
    pub state: M::State,
}

/// What [`Runner::cancel`] did.
#[derive(Debug)]
pub enum Cancel<M: Machine> {
    /// No step was in flight: the sync is cancelled, durably, by this
    /// transition.
    Cancelled(Box<Transition<M>>),
    /// A step of the sync is in flight on this runner: the request is durable
    /// and the sync is cancelled at its next step boundary, after the effect
    /// in flight has completed and been recorded.
    Requested,
    /// The sync had already finished (succeeded, failed or cancelled);
    /// nothing was written.
    AlreadySettled(Status),
}

/// Where [`Runner::run_until_waiting`] left a sync.
#[derive(Debug)]
pub enum Progress<M: Machine> {
    /// No effect leaves its state: finished, parked for an operator, or
    /// stopped unfinished (status running, e.g. a look-up the platform could
    /// not decide; a later run wakes it).
    Settled(Box<Checkpoint<M>>),
    /// Its next effect may not start before this time (a backoff); its state
    /// is durable and names that time, so a restart waits for it too.
    Waiting(crate::clock::Timestamp),
}

/// The result of [`Runner::step`].
#[derive(Debug)]
pub enum Step<M: Machine> {
    /// One transition was applied and made durable.
    Transitioned(Box<Transition<M>>),
    /// No effect leaves the current state: nothing was run or written. A
    /// sync settled as [`Status::Running`] stopped unfinished; a later
    /// [`Runner::run`] wakes it (its first step asks [`Machine::on_restart`]).
    Settled(Status),
}

// Manual impls: a derive would demand `M: Clone + Debug`, but `M` is only a
// type-level definition.
impl<M: Machine> Clone for Checkpoint<M> {
    fn clone(&self) -> Self {
        Checkpoint {
            record: self.record.clone(),
            state: self.state.clone(),
        }
    }
}

impl<M: Machine> std::fmt::Debug for Checkpoint<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoint")
            .field("record", &self.record)
            .field("state", &self.state)
            .finish()
    }
}

impl<M: Machine> std::fmt::Debug for Transition<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transition")
            .field("sync", &self.sync)
            .field("seq", &self.seq)
            .field("from", &self.from)
            .field("effect", &self.effect)
            .field("outcome", &self.outcome)
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

/// When a test hook fires, relative to a checkpoint write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum HookWhen {
    /// The effect has run and its outcome is known, but not yet durable.
    BeforeCommit,
    /// The new state is durable; its effect has not started.
    AfterCommit,
}

/// A checkpoint boundary, passed to a [`Hook`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookPoint {
    /// The sync's id.
    pub sync: String,
    /// The seq of the checkpoint about to be / just written.
    pub seq: u64,
    /// Before or after the write.
    pub when: HookWhen,
}

/// Asks runners to start no new effect (Ctrl-C, SIGTERM, an embedder shutting
/// down). Effects already in flight finish and their outcome is checkpointed;
/// a step that would start an effect, or is waiting out a backoff, returns
/// [`RunError::Stopped`] instead. Clones share one signal.
///
/// A `watch` channel rather than a plain flag, so a step waiting for its
/// backoff time wakes up at once instead of sleeping on.
#[derive(Debug, Clone)]
pub struct StopSignal {
    tx: Arc<tokio::sync::watch::Sender<bool>>,
}

impl Default for StopSignal {
    fn default() -> Self {
        StopSignal {
            tx: Arc::new(tokio::sync::watch::Sender::new(false)),
        }
    }
}

impl StopSignal {
    /// A signal not yet given.
    pub fn new() -> Self {
        Self::default()
    }

    /// Gives the signal; idempotent and never blocks.
    pub fn stop(&self) {
        self.tx.send_replace(true);
    }

    /// Whether [`StopSignal::stop`] was called.
    pub fn is_stopped(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once [`StopSignal::stop`] has been called (at once if it was).
    pub async fn stopped(&self) {
        let mut rx = self.tx.subscribe();
        // The sender lives in `self`, so the channel cannot close while we wait.
        let _ = rx.wait_for(|stopped| *stopped).await;
    }
}

/// A test hook called at every checkpoint boundary (crash tests kill the process here).
pub type Hook = Arc<dyn Fn(&HookPoint) + Send + Sync>;

/// One sync to create with [`Runner::start_many`].
pub struct Start<M: Machine> {
    /// The new sync's id (must not exist yet).
    pub id: String,
    /// Its initial state.
    pub state: M::State,
    /// Labels for listing (platform, account, ...).
    pub labels: BTreeMap<String, String>,
    /// Index entries (`key`, `value`) written in the same commit, readable
    /// with [`Store::index`] (e.g. a key that finds the sync by its source).
    pub index: Vec<(String, String)>,
}

/// A sync held under a lease: its fencing token and until when (this
/// process's monotonic clock) effects may start.
#[derive(Debug, Clone, Copy)]
struct Held {
    fence: u64,
    until: std::time::Instant,
}

/// The runner: the only place where side effects happen.
///
/// One [`Runner::step`] is one transition:
///
/// 1. the current state — already durable, and naming its effect — is loaded;
/// 2. the effect runs (after its backoff time, if any);
/// 3. the pure [`Machine::transition`] turns the outcome into the next state;
/// 4. the next state, which names the *next* effect, is committed and flushed,
///    together with its history entry, as one atomic write.
///
/// So there is exactly one durable write per side effect, and no effect ever
/// starts before the state naming it is on disk. A machine may split out the
/// part of its state fixed at start ([`CheckpointCodec::encode_plan`]): the runner
/// writes that plan once, with the start, and every later checkpoint carries
/// only the progress, so a step's cost does not grow with the sync's size.
///
/// After a restart the runner cannot know whether the effect of a loaded state
/// had started. It asks [`Machine::on_restart`]: repeatable effects run again;
/// for a non-repeatable one (a create) it applies the machine's substitute
/// outcome instead, which leads to a look-up rather than a blind re-send. The
/// runner knows a state is "fresh" (its effect not yet started) only when this
/// very runner wrote it and has not started its effect since.
///
/// Many syncs run concurrently on one tokio runtime (one task each); their
/// commits meet in the store's writer thread and share flushes.
///
/// Drives syncs of machine `M`: start, step, run, resolve, and read them back.
///
/// A runner holds no [`Effects`]: the calls that perform one ([`Runner::step`],
/// [`Runner::run`]) take it as an argument, so a runner that only reads syncs
/// or applies operator decisions needs none.
pub struct Runner<M: Machine> {
    store: SharedStore,
    /// The leases this runner's syncs are held under (a store several
    /// workers share): every commit of such a sync carries its token, and no
    /// effect of it starts once the lease may have run out.
    fences: Mutex<HashMap<String, Held>>,
    /// Syncs held under their first claim ever: no worker ran them before,
    /// so their stored state's effect cannot have started.
    pristine: Mutex<HashSet<String>>,
    clock: Arc<dyn Clock>,
    rng: Mutex<rand::rngs::StdRng>,
    /// States this runner committed whose effect has not started yet.
    fresh: Mutex<HashMap<String, Checkpoint<M>>>,
    busy: Mutex<HashSet<String>>,
    /// Syncs with a cancel request pending until their next step boundary.
    /// Each request is also in the store, so a restart keeps it.
    cancels: Mutex<HashSet<String>>,
    hook: Option<Hook>,
    stop: StopSignal,
}

impl<M: Machine> std::fmt::Debug for Runner<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("machine", &M::KIND)
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

struct BusyGuard<'a> {
    busy: &'a Mutex<HashSet<String>>,
    id: &'a str,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.busy.lock().remove(self.id);
    }
}

impl<M: Machine + CheckpointCodec> Runner<M> {
    /// A runner over `store`, reading time from `clock` (every timestamp it
    /// records, every backoff wait). It starts with no sync in memory: a sync
    /// it did not write itself is treated on its first step as possibly
    /// interrupted ([`Machine::on_restart`]). Cheap; it holds no effects and
    /// opens nothing. The crate docs show one stepping a machine end to end.
    pub fn new(store: impl IntoStore, clock: Arc<dyn Clock>) -> Self {
        Runner {
            store: store.into_store(),
            fences: Mutex::new(HashMap::new()),
            pristine: Mutex::new(HashSet::new()),
            clock,
            rng: Mutex::new(rand::rngs::StdRng::from_os_rng()),
            fresh: Mutex::new(HashMap::new()),
            busy: Mutex::new(HashSet::new()),
            cancels: Mutex::new(HashSet::new()),
            hook: None,
            stop: StopSignal::new(),
        }
    }

    /// Makes backoff jitter reproducible (tests, snapshot traces).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.rng = Mutex::new(rand::rngs::StdRng::seed_from_u64(seed));
        self
    }

    /// Installs a hook called at every checkpoint boundary (test-only crash points).
    pub fn with_hook(mut self, hook: Hook) -> Self {
        self.hook = Some(hook);
        self
    }

    /// Makes this runner honour `stop` (see [`StopSignal`]); by default it has
    /// its own, reachable through [`Runner::stop_signal`].
    pub fn with_stop(mut self, stop: StopSignal) -> Self {
        self.stop = stop;
        self
    }

    /// The signal that stops this runner before its next effect.
    pub fn stop_signal(&self) -> &StopSignal {
        &self.stop
    }

    /// Runs `claim.sync` under its lease until `until` (this process's
    /// monotonic time at which the lease may have run out; call again after
    /// each renewal): what a worker calls after
    /// [`Leases::claim`](crate::Leases::claim).
    ///
    /// * Every later commit of the sync carries the fencing token, so the
    ///   store refuses it ([`StoreError::LeaseLost`]) once another worker
    ///   has claimed the sync. The step then fails with [`RunError::Store`]
    ///   and this runner forgets its in-memory state of the sync.
    /// * No effect of the sync starts at or after `until`: the step fails
    ///   with [`StoreError::LeaseLost`] before sending anything. A worker
    ///   that was paused past its lease (SIGSTOP, a long stall) therefore
    ///   does not send a create the new owner may also send. Its memory of
    ///   the sync is dropped too: the next step reads the store and treats
    ///   the effect as possibly started (a look-up).
    pub fn hold(&self, claim: &Claim, until: std::time::Instant) {
        let before = self.fences.lock().insert(
            claim.sync.clone(),
            Held {
                fence: claim.fence,
                until,
            },
        );
        // This runner's memory of the sync (the state it last committed) is
        // trusted only if no other worker can have held the sync since: the
        // claim renews or directly follows this runner's own lease, or it is
        // the sync's first claim ever (this runner started it). Otherwise
        // another worker may have moved it on, or sent an effect it did not
        // record: the next step reads the store and looks that effect up.
        let trusted = match before {
            Some(held) => held.fence == claim.fence || held.fence + 1 == claim.fence,
            None => claim.fence == 1,
        };
        if !trusted {
            self.fresh.lock().remove(&claim.sync);
        }
        if before.is_none() && claim.fence == 1 {
            // The first claim: the stored state is as its starter wrote it,
            // and nothing ran it since (effects run only under a lease).
            self.pristine.lock().insert(claim.sync.clone());
        }
    }

    /// Stops running `sync` under its lease (the lease was released): its
    /// commits are no longer fenced, and this runner forgets its memory of
    /// the sync (whoever claims it next reads the store).
    pub fn let_go(&self, sync: &str) {
        self.fences.lock().remove(sync);
        self.fresh.lock().remove(sync);
        self.pristine.lock().remove(sync);
    }

    /// The fencing token of sync `id` if it is held under a lease that may
    /// have run out by now.
    fn lease_ran_out(&self, id: &str) -> Option<u64> {
        let fences = self.fences.lock();
        let held = fences.get(id)?;
        (std::time::Instant::now() >= held.until).then_some(held.fence)
    }

    /// Runs `effect` of sync `id`; when the sync is held under a lease, the
    /// effect is polled only while the lease's time lasts (each poll checks
    /// it first, with the deadline of the latest renewal). An effect that
    /// waits (a rate limiter, a slow platform) across the deadline is
    /// dropped before it can send anything more: `Err(fence)`.
    async fn within_lease<T>(
        &self,
        id: &str,
        effect: impl std::future::Future<Output = T>,
    ) -> Result<T, u64> {
        if !self.fences.lock().contains_key(id) {
            return Ok(effect.await);
        }
        let mut effect = std::pin::pin!(effect);
        std::future::poll_fn(|cx| {
            if let Some(fence) = self.lease_ran_out(id) {
                return std::task::Poll::Ready(Err(fence));
            }
            effect.as_mut().poll(cx).map(Ok)
        })
        .await
    }

    /// `commit` with sync `id`'s fence, when this runner holds one.
    fn fenced(&self, id: &str, commit: Commit) -> Commit {
        match self.fences.lock().get(id) {
            Some(held) => commit.fenced(id, held.fence),
            None => commit,
        }
    }

    /// Commits writes of sync `id`, fenced when held under a lease. A lost
    /// lease makes the sync someone else's: its in-memory state is dropped,
    /// and its (stale) fence is kept, so that every later commit of it from
    /// this runner is refused too, until [`Runner::let_go`] or a new claim.
    async fn commit_for(&self, id: &str, commit: Commit) -> Result<(), StoreError> {
        let result = self.store.commit(self.fenced(id, commit)).await;
        if let Err(StoreError::LeaseLost { .. }) = &result {
            self.fresh.lock().remove(id);
        }
        result
    }

    /// The store this runner writes to.
    pub fn store(&self) -> &SharedStore {
        &self.store
    }
    /// The syncs whose first or latest committed state this runner still
    /// holds in memory, with that state's sequence number.
    #[cfg(any(test, feature = "testing"))]
    pub fn fresh_syncs(&self) -> Vec<(String, u64)> {
        let fresh = self.fresh.lock();
        fresh
            .iter()
            .map(|(id, c)| (id.clone(), c.record.seq))
            .collect()
    }

    /// Creates sync `id` in `state` and makes it durable, with `labels` for
    /// listing and `index` entries written in the same atomic commit. When it
    /// returns, the sync survives a crash; no effect has run.
    ///
    /// # Errors
    ///
    /// [`RunError::AlreadyExists`] if the store has a sync `id`;
    /// [`RunError::CorruptState`] if the state does not encode;
    /// [`RunError::Store`] if the commit fails (then nothing was written).
    pub async fn start(
        &self,
        id: &str,
        state: M::State,
        labels: BTreeMap<String, String>,
        index: &[(String, String)],
    ) -> Result<Checkpoint<M>, RunError> {
        let start = Start {
            id: id.to_string(),
            state,
            labels,
            index: index.to_vec(),
        };
        let mut started = self.start_many(vec![start], Commit::new()).await?;
        started
            .pop()
            .ok_or_else(|| RunError::UnknownSync(id.to_string()))
    }

    /// Creates every sync of `starts` and makes them durable in ONE atomic
    /// commit, together with `extra` writes (e.g. a record of the group they
    /// form): a crash leaves all of them or none. Each sync's first checkpoint
    /// is durable before any of their effects can start, as with [`Runner::start`].
    ///
    /// # Errors
    ///
    /// As [`Runner::start`]; [`RunError::AlreadyExists`] also when `starts`
    /// names one id twice. On any error none of the syncs was written.
    pub async fn start_many(
        &self,
        starts: Vec<Start<M>>,
        extra: Commit,
    ) -> Result<Vec<Checkpoint<M>>, RunError> {
        let mut seen = HashSet::new();
        for start in &starts {
            if !seen.insert(start.id.clone()) {
                return Err(RunError::AlreadyExists(start.id.clone()));
            }
        }
        // One read on the blocking pool for all of them, not one each: a
        // set's start (or a service's submission) pays one hop, whatever
        // its size.
        let ids: Vec<String> = starts.iter().map(|s| s.id.clone()).collect();
        let existing = self
            .read(move |store| {
                for id in ids {
                    if store.record(&id)?.is_some() {
                        return Ok(Some(id));
                    }
                }
                Ok(None)
            })
            .await?;
        if let Some(id) = existing {
            return Err(RunError::AlreadyExists(id));
        }
        let now = self.clock.now();
        let mut commit = Commit::new();
        let mut checkpoints = Vec::with_capacity(starts.len());
        for start in starts {
            let (record, writes) = self.first_checkpoint(&start, now)?;
            commit = commit.merge(writes);
            checkpoints.push(Checkpoint {
                record,
                state: start.state,
            });
        }
        self.store.commit(commit.merge(extra)).await?;
        let mut fresh = self.fresh.lock();
        for checkpoint in &mut checkpoints {
            // The plan is durable now, and `state` holds it decoded. Its text
            // would otherwise ride along with every later record of this sync
            // (`..prev`) in memory; the store fills it in again whenever a
            // record is read back.
            checkpoint.record.plan = None;
            fresh.insert(checkpoint.record.id.clone(), checkpoint.clone());
        }
        Ok(checkpoints)
    }

    /// The record and writes of a sync's first checkpoint (seq 0).
    fn first_checkpoint(
        &self,
        start: &Start<M>,
        now: crate::clock::Timestamp,
    ) -> Result<(Record, Commit), RunError> {
        let Start {
            id,
            state,
            labels,
            index,
        } = start;
        let id = id.as_str();
        let labels = labels.clone();
        let phase = M::phase(state);
        let plan = encode_plan::<M>(id, state)?;
        let record = Record {
            format: RECORD_FORMAT,
            id: id.to_string(),
            kind: M::KIND.to_string(),
            state_version: M::STATE_VERSION,
            seq: 0,
            phase: phase.to_string(),
            status: status_of::<M>(state),
            effects_run: 0,
            failed_effects: 0,
            last_error: M::last_error(state),
            not_before: M::not_before(state),
            created_at: now,
            updated_at: now,
            labels,
            state: encode_state::<M>(id, state)?,
            plan,
            segments: Vec::new(),
        };
        let entry = HistoryEntry {
            seq: 0,
            at: now,
            from: String::new(),
            effect: None,
            outcome: "started".into(),
            to: phase.to_string(),
        };
        let mut commit = Commit::new().record(&record)?.history(id, &entry)?;
        if let Some(plan) = &record.plan {
            commit = commit.plan(id, plan);
        }
        for (n, segment) in encode_segments::<M>(id, None, state)? {
            commit = commit.segment(id, n, &segment);
        }
        for (key, value) in index {
            commit = commit.index(key, value);
        }
        Ok((record, commit))
    }

    /// Performs exactly one transition of sync `id` (see [`Runner`]),
    /// running its effect through `effects`.
    ///
    /// Returns [`Step::Transitioned`] once the next state is durable, or
    /// [`Step::Settled`] when no effect leaves the current state. Waits out the
    /// state's backoff ([`Machine::not_before`]) on the runner's clock first.
    ///
    /// # Errors
    ///
    /// - [`RunError::Stopped`]: the [`StopSignal`] was given before the effect
    ///   started (also while waiting out a backoff); nothing was run or written.
    /// - [`RunError::Busy`]: another task is stepping `id` on this runner.
    /// - [`RunError::UnknownSync`], [`RunError::WrongKind`],
    ///   [`RunError::StateVersion`], [`RunError::CorruptState`]: the stored
    ///   checkpoint cannot be loaded as a state of `M`; nothing was run.
    /// - [`RunError::Transition`]: the machine refused the outcome; the effect
    ///   (if one ran) is not undone, nothing was written.
    /// - [`RunError::Store`]: a read or the commit failed. The effect may have
    ///   run without its outcome being durable; the sync stays at its last
    ///   durable state, and the next step treats that state's effect as
    ///   possibly started ([`Machine::on_restart`]).
    pub async fn step(&self, id: &str, effects: &dyn Effects<M>) -> Result<Step<M>, RunError> {
        self.step_waking(id, effects, false).await
    }

    /// [`Runner::step`] as the first step of a run: a sync that stopped
    /// unfinished (no effect, status running: e.g. a look-up the platform
    /// could not decide) is woken by the outcome [`Machine::on_restart`]
    /// names instead of reporting [`Step::Settled`]. What a scheduler calls
    /// when it takes a sync up again after leaving it for a while.
    ///
    /// # Errors
    ///
    /// As [`Runner::step`].
    pub async fn wake(&self, id: &str, effects: &dyn Effects<M>) -> Result<Step<M>, RunError> {
        self.step_waking(id, effects, true).await
    }

    /// [`Runner::step`]; with `wake`, a sync that stopped unfinished (no
    /// effect, status running: e.g. its platform was down) is woken by the
    /// outcome [`Machine::on_restart`] names, as it is when this runner did
    /// not write its checkpoint. A run wakes on its first step only, so it
    /// never spins on a stopped sync.
    async fn step_waking(
        &self,
        id: &str,
        effects: &dyn Effects<M>,
        wake: bool,
    ) -> Result<Step<M>, RunError> {
        if self.stop.is_stopped() {
            return Err(RunError::Stopped(id.to_string()));
        }
        let _guard = self.claim(id)?;
        // Taking the state out of `fresh` *before* the effect starts is what makes
        // a failure anywhere below count as "effect may have run" next time.
        let taken = self.fresh.lock().remove(id);
        // Used once, by the first step after the first claim: after it the
        // stored state may have had its effect started.
        let pristine = self.pristine.lock().remove(id);
        let (checkpoint, fresh) = match taken {
            Some(c) => (c, true),
            None => (self.get(id).await?, pristine),
        };
        // A state this runner did not write may have had its effect started:
        // the restart outcome (a look-up) settles that before a cancel lands.
        let unstarted = fresh || M::on_restart(&checkpoint.state).is_none();
        if self.cancel_pending(id, fresh).await? && unstarted {
            if checkpoint.record.status.is_settled()
                && checkpoint.record.status != Status::NeedsAttention
            {
                // It finished before its boundary came: nothing to cancel. The
                // stored request goes too, or it would cancel the sync's next
                // run (a pull is run again after it completes).
                self.cancels.lock().remove(id);
                self.commit_for(id, Commit::new().delete_data(&cancel_key(id)))
                    .await?;
            } else if let Some(outcome) = M::on_cancel(&checkpoint.state) {
                self.cancels.lock().remove(id);
                let withdraw = Commit::new().delete_data(&cancel_key(id));
                let t = self.apply(id, checkpoint, None, outcome, withdraw).await?;
                return Ok(Step::Transitioned(Box::new(t)));
            }
        }
        let effect = match M::next(&checkpoint.state) {
            Next::Settled(Status::Running) if wake || !fresh => {
                match M::on_restart(&checkpoint.state) {
                    Some(outcome) => {
                        let t = self
                            .apply(id, checkpoint, None, outcome, Commit::new())
                            .await?;
                        return Ok(Step::Transitioned(Box::new(t)));
                    }
                    None => {
                        self.fresh.lock().insert(id.to_string(), checkpoint);
                        return Ok(Step::Settled(Status::Running));
                    }
                }
            }
            Next::Settled(status) => {
                self.fresh.lock().insert(id.to_string(), checkpoint);
                return Ok(Step::Settled(status));
            }
            Next::Effect(effect) => effect,
        };
        let substitute = if fresh {
            None
        } else {
            M::on_restart(&checkpoint.state)
        };
        let (ran, outcome, writes) = match substitute {
            Some(outcome) => (None, outcome, Commit::new()),
            None => {
                if let Some(at) = M::not_before(&checkpoint.state) {
                    tokio::select! {
                        () = self.clock.sleep_until(at) => {}
                        () = self.stop.stopped() => {}
                    }
                }
                if self.stop.is_stopped() {
                    // Nothing started: a fresh state stays fresh, so a later
                    // step in this process sends its effect without a look-up.
                    if fresh {
                        self.fresh.lock().insert(id.to_string(), checkpoint);
                    }
                    return Err(RunError::Stopped(id.to_string()));
                }
                if let Some(fence) = self.lease_ran_out(id) {
                    // Nothing started; the sync may be someone else's now.
                    return Err(RunError::Store(StoreError::LeaseLost {
                        sync: id.to_string(),
                        fence,
                    }));
                }
                // Effect descriptions name entities and ids, never credentials.
                let span = tracing::info_span!(
                    "effect",
                    sync = id,
                    machine = M::KIND,
                    effect = M::effect_name(&effect)
                );
                tracing::info!(parent: &span, what = %M::describe_effect(&effect), "effect starts");
                let performed = effects.perform(id, &effect).instrument(span);
                let (outcome, writes) = match self.within_lease(id, performed).await {
                    Ok(done) => done,
                    Err(fence) => {
                        // The effect was dropped before its lease's time ran
                        // out under it (e.g. while it waited for a rate
                        // limiter): whether it reached the platform is for
                        // the next owner's look-up to find out.
                        return Err(RunError::Store(StoreError::LeaseLost {
                            sync: id.to_string(),
                            fence,
                        }));
                    }
                };
                (Some(effect), outcome, writes)
            }
        };
        let t = self.apply(id, checkpoint, ran, outcome, writes).await?;
        Ok(Step::Transitioned(Box::new(t)))
    }

    /// Feeds `outcome` to sync `id` without running an effect: an operator's
    /// decision for a sync that needs attention. The machine validates it.
    /// Returns once the resulting state is durable.
    ///
    /// # Errors
    ///
    /// [`RunError::Transition`] if the machine refuses `outcome` in the sync's
    /// state (nothing is written); otherwise as [`Runner::step`], less
    /// [`RunError::Stopped`].
    pub async fn resolve(&self, id: &str, outcome: M::Outcome) -> Result<Transition<M>, RunError> {
        let _guard = self.claim(id)?;
        self.fresh.lock().remove(id);
        let checkpoint = self.get(id).await?;
        self.apply(id, checkpoint, None, outcome, Commit::new())
            .await
    }

    /// Cancels sync `id` at a step boundary: its machine's cancel outcome
    /// ([`Machine::on_cancel`]) is applied instead of the next effect, and the
    /// sync settles as [`Status::Cancelled`], keeping what it learnt. A sync
    /// that needs attention can be cancelled too.
    ///
    /// When no step of `id` is in flight on this runner and its state allows
    /// it, the cancellation is durable on return ([`Cancel::Cancelled`]).
    /// Otherwise the request is made durable and the sync is cancelled at its
    /// first step boundary where the machine allows it ([`Cancel::Requested`]):
    /// after the step in flight has finished and been recorded, after the
    /// restart look-up of a create that may have been in flight, after the
    /// look-up of a create whose outcome is unknown. So a cancel never leaves
    /// an entity created without its id recorded.
    ///
    /// On a store with leases, a running sync this runner does not hold is
    /// only ever [`Cancel::Requested`]: the worker that holds it (or claims
    /// it next) cancels it at its next step boundary.
    ///
    /// # Errors
    ///
    /// [`RunError::NotCancellable`] if the sync waits for an operator in a
    /// phase the machine does not cancel (the operator decides first);
    /// otherwise as [`Runner::resolve`].
    pub async fn cancel(&self, id: &str) -> Result<Cancel<M>, RunError> {
        if self.store.leases().is_some() && !self.fences.lock().contains_key(id) {
            // A shared store, and another worker may hold the sync: only its
            // holder may write its states. The request is durable; the holder
            // sees it at its next step boundary (or whoever claims it next).
            // A sync waiting for an operator is never claimed: it is
            // cancelled here, as on a store of one's own.
            match self.load_record(id).await?.map(|r| r.status) {
                None => return Err(RunError::UnknownSync(id.to_string())),
                Some(Status::Running) => return self.request_cancel(id).await,
                Some(Status::NeedsAttention) => {}
                Some(settled) => return Ok(Cancel::AlreadySettled(settled)),
            }
        }
        let _guard = match self.claim(id) {
            Ok(guard) => guard,
            Err(RunError::Busy(_)) => return self.request_cancel(id).await,
            Err(e) => return Err(e),
        };
        let taken = self.fresh.lock().remove(id);
        let (checkpoint, fresh) = match taken {
            Some(c) => (c, true),
            None => (self.get(id).await?, false),
        };
        match checkpoint.record.status {
            Status::Running | Status::NeedsAttention => {}
            settled => {
                if fresh {
                    self.fresh.lock().insert(id.to_string(), checkpoint.clone());
                }
                return Ok(Cancel::AlreadySettled(settled));
            }
        }
        let unstarted = fresh || M::on_restart(&checkpoint.state).is_none();
        let outcome = M::on_cancel(&checkpoint.state).filter(|_| unstarted);
        let Some(outcome) = outcome else {
            if checkpoint.record.status == Status::NeedsAttention {
                return Err(RunError::NotCancellable {
                    sync: id.to_string(),
                    phase: M::phase(&checkpoint.state).to_string(),
                });
            }
            if fresh {
                self.fresh.lock().insert(id.to_string(), checkpoint);
            }
            return self.request_cancel(id).await;
        };
        self.cancels.lock().remove(id);
        let withdraw = Commit::new().delete_data(&cancel_key(id));
        let t = self.apply(id, checkpoint, None, outcome, withdraw).await?;
        Ok(Cancel::Cancelled(Box::new(t)))
    }

    /// Withdraws every stored cancel request whose sync has settled
    /// (succeeded, failed, cancelled) or no longer exists; returns how many.
    /// A request can outlive its sync when the process died between the
    /// sync's last transition and the boundary that would have seen it; left
    /// there, it would cancel the sync's next run. Covers syncs of every
    /// machine kind. What a worker calls once when it starts.
    ///
    /// # Errors
    ///
    /// [`RunError::Store`] if the scan or the commit fails.
    pub async fn withdraw_stale_cancels(&self) -> Result<usize, RunError> {
        let stale = self
            .read(|store| {
                let mut stale = Vec::new();
                for item in store.scan_data(CANCEL_PREFIX) {
                    let (key, _) = item?;
                    let id = String::from_utf8_lossy(&key[CANCEL_PREFIX.len()..]).into_owned();
                    let settled = match store.record(&id)? {
                        None => true,
                        Some(record) => {
                            !matches!(record.status, Status::Running | Status::NeedsAttention)
                        }
                    };
                    if settled {
                        stale.push(key);
                    }
                }
                Ok(stale)
            })
            .await?;
        if stale.is_empty() {
            return Ok(0);
        }
        let n = stale.len();
        let commit = stale
            .iter()
            .fold(Commit::new(), |commit, key| commit.delete_data(key));
        self.store.commit(commit).await?;
        let mut cancels = self.cancels.lock();
        for key in &stale {
            cancels.remove(String::from_utf8_lossy(&key[CANCEL_PREFIX.len()..]).as_ref());
        }
        Ok(n)
    }

    /// Makes a cancel request of `id` durable, for its next step boundary.
    async fn request_cancel(&self, id: &str) -> Result<Cancel<M>, RunError> {
        let key = cancel_key(id);
        self.store
            .commit(Commit::new().data(&key, Vec::new()))
            .await?;
        self.cancels.lock().insert(id.to_string());
        Ok(Cancel::Requested)
    }

    /// Whether a cancel request waits for sync `id`. The store is asked only
    /// for a state this runner did not write: a request made before a restart
    /// (then kept in memory until it lands).
    async fn cancel_pending(&self, id: &str, fresh: bool) -> Result<bool, RunError> {
        if self.cancels.lock().contains(id) {
            return Ok(true);
        }
        // On a shared store a request may come from another process at any
        // time: a sync held under a lease asks the store at every step.
        if fresh && !self.fences.lock().contains_key(id) {
            return Ok(false);
        }
        let key = cancel_key(id);
        let stored = self.read(move |store| store.data(&key)).await?.is_some();
        if stored {
            // From here on the sync's states are this runner's: remember it.
            self.cancels.lock().insert(id.to_string());
        }
        Ok(stored)
    }

    async fn apply(
        &self,
        id: &str,
        checkpoint: Checkpoint<M>,
        effect: Option<M::Effect>,
        outcome: M::Outcome,
        writes: Commit,
    ) -> Result<Transition<M>, RunError> {
        let ctx = Context {
            now: self.clock.now(),
            jitter: self.rng.lock().random::<f64>(),
        };
        let from = M::phase(&checkpoint.state);
        let next = M::transition(&checkpoint.state, &outcome, &ctx).map_err(|source| {
            RunError::Transition {
                sync: id.to_string(),
                source,
            }
        })?;
        let to = M::phase(&next);
        let prev = checkpoint.record;
        let record = Record {
            seq: prev.seq + 1,
            phase: to.to_string(),
            status: status_of::<M>(&next),
            effects_run: prev.effects_run + u64::from(effect.is_some()),
            failed_effects: prev.failed_effects
                + u64::from(effect.is_some() && M::is_failure(&outcome)),
            last_error: M::last_error(&next),
            not_before: M::not_before(&next),
            updated_at: ctx.now,
            state: encode_state::<M>(id, &next)?,
            // Those read back with `prev` are stale once this commit writes
            // new ones; the state holds them decoded.
            segments: Vec::new(),
            ..prev
        };
        let entry = HistoryEntry {
            seq: record.seq,
            at: ctx.now,
            from: from.to_string(),
            effect: effect.as_ref().map(M::describe_effect),
            outcome: M::describe_outcome(&outcome),
            to: to.to_string(),
        };
        let mut commit = Commit::new().record(&record)?.history(id, &entry)?;
        for (n, segment) in encode_segments::<M>(id, Some(&checkpoint.state), &next)? {
            commit = commit.segment(id, n, &segment);
        }
        let commit = commit.merge(writes);
        self.fire(id, record.seq, HookWhen::BeforeCommit);
        self.commit_for(id, commit).await?;
        self.fire(id, record.seq, HookWhen::AfterCommit);
        tracing::debug!(sync = id, seq = record.seq, %from, %to, outcome = %entry.outcome, "transition");
        let seq = record.seq;
        self.fresh.lock().insert(
            id.to_string(),
            Checkpoint {
                record,
                state: next.clone(),
            },
        );
        Ok(Transition {
            sync: id.to_string(),
            seq,
            from,
            effect,
            outcome,
            to,
            state: next,
        })
    }

    /// Takes the settled checkpoint of `id` out of `fresh`: a settled state
    /// names no effect, so nothing is lost by reading it from the store next
    /// time, and keeping it held every finished sync's whole state (its plan
    /// included) in memory until the runner was dropped.
    fn take_settled(&self, id: &str) -> Option<Checkpoint<M>> {
        self.fresh.lock().remove(id)
    }

    /// Steps sync `id` through `effects` until no effect leaves its state;
    /// returns the final checkpoint. Also what continues a sync in a new
    /// process after a crash: its first step wakes a sync that stopped
    /// unfinished (see [`Machine::on_restart`]).
    ///
    /// # Errors
    ///
    /// The first error of a step (see [`Runner::step`]); every transition
    /// before it is durable, so calling `run` again continues from there. A
    /// [`RunError::Stopped`] is the normal end of a run asked to stop.
    pub async fn run(&self, id: &str, effects: &dyn Effects<M>) -> Result<Checkpoint<M>, RunError> {
        self.run_observed(id, effects, &|_| {}).await
    }

    /// [`Runner::run`], calling `observer` after every durable transition
    /// (progress output, logs). The observer runs on the stepping task, so
    /// the next effect waits for it: keep it short.
    ///
    /// # Errors
    ///
    /// As [`Runner::run`].
    pub async fn run_observed(
        &self,
        id: &str,
        effects: &dyn Effects<M>,
        observer: &(dyn Fn(&Transition<M>) + Send + Sync),
    ) -> Result<Checkpoint<M>, RunError> {
        let mut first = true;
        loop {
            let wake = std::mem::take(&mut first);
            match self.step_waking(id, effects, wake).await? {
                // The checkpoint this runner just wrote (or read) is the final
                // one: no need to read and decode it again.
                Step::Settled(_) => match self.take_settled(id) {
                    Some(checkpoint) => return Ok(checkpoint),
                    None => return self.get(id).await,
                },
                Step::Transitioned(t) => observer(&t),
            }
        }
    }

    /// Steps sync `id` until it settles or its next effect must wait for a
    /// later time ([`Machine::not_before`]: a backoff), instead of sleeping
    /// through the wait as [`Runner::run`] does: what a scheduler calls, so
    /// that a sync backing off holds no task and no slot. The first step
    /// wakes a sync that stopped unfinished, as [`Runner::run`]'s does;
    /// `observer` is called after every durable transition.
    ///
    /// # Errors
    ///
    /// As [`Runner::run`].
    pub async fn run_until_waiting(
        &self,
        id: &str,
        effects: &dyn Effects<M>,
        observer: &(dyn Fn(&Transition<M>) + Send + Sync),
    ) -> Result<Progress<M>, RunError> {
        let mut first = true;
        loop {
            let wake = std::mem::take(&mut first);
            match self.step_waking(id, effects, wake).await? {
                Step::Settled(_) => {
                    let checkpoint = match self.take_settled(id) {
                        Some(checkpoint) => checkpoint,
                        None => self.get(id).await?,
                    };
                    return Ok(Progress::Settled(Box::new(checkpoint)));
                }
                Step::Transitioned(t) => {
                    observer(&t);
                    if let Some(at) = M::not_before(&t.state) {
                        if at > self.clock.now() {
                            return Ok(Progress::Waiting(at));
                        }
                    }
                }
            }
        }
    }

    /// The latest durable checkpoint of sync `id`, read from the store on the
    /// blocking pool.
    ///
    /// # Errors
    ///
    /// [`RunError::UnknownSync`] if there is none; [`RunError::WrongKind`],
    /// [`RunError::StateVersion`] or [`RunError::CorruptState`] if its record
    /// is not a state of `M`; [`RunError::Store`] if the read fails.
    pub async fn get(&self, id: &str) -> Result<Checkpoint<M>, RunError> {
        let record = self
            .load_record(id)
            .await?
            .ok_or_else(|| RunError::UnknownSync(id.to_string()))?;
        decode_checkpoint::<M>(record)
    }

    /// Every sync of this machine kind (records of other kinds are skipped; a
    /// record that fails to decode is an `Err` in the list, the others still come).
    pub async fn list(&self) -> Result<Vec<Result<Checkpoint<M>, RunError>>, RunError> {
        let records = self.read(|store| Ok(store.list())).await?;
        Ok(records
            .into_iter()
            .filter(|r| !matches!(r, Ok(rec) if rec.kind != M::KIND))
            .map(|r| r.map_err(RunError::from).and_then(decode_checkpoint::<M>))
            .collect())
    }

    /// The transition history of sync `id`, oldest first, starting with its
    /// start (seq 0).
    ///
    /// # Errors
    ///
    /// [`RunError::UnknownSync`] if it has no history; [`RunError::Store`] if
    /// the read fails.
    pub async fn history(&self, id: &str) -> Result<Vec<HistoryEntry>, RunError> {
        let key = id.to_string();
        let entries = self.read(move |store| store.history(&key)).await?;
        if entries.is_empty() {
            return Err(RunError::UnknownSync(id.to_string()));
        }
        Ok(entries)
    }

    /// Runs a group of store reads off the async worker threads (sled may
    /// block on I/O; a database connection is taken once for the group).
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn StoreRead) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, RunError> {
        Ok(self.store.read(f).await??)
    }

    async fn load_record(&self, id: &str) -> Result<Option<Record>, RunError> {
        let key = id.to_string();
        self.read(move |store| store.record(&key)).await
    }

    fn claim<'a>(&'a self, id: &'a str) -> Result<BusyGuard<'a>, RunError> {
        let mut busy = self.busy.lock();
        if !busy.insert(id.to_string()) {
            return Err(RunError::Busy(id.to_string()));
        }
        Ok(BusyGuard {
            busy: &self.busy,
            id,
        })
    }

    fn fire(&self, id: &str, seq: u64, when: HookWhen) {
        if let Some(hook) = &self.hook {
            hook(&HookPoint {
                sync: id.to_string(),
                seq,
                when,
            });
        }
    }
}

/// Where a pending cancel request of sync `id` is kept (machine data space).
fn cancel_key(id: &str) -> Vec<u8> {
    [CANCEL_PREFIX, id.as_bytes()].concat()
}

/// The prefix of every pending cancel request's key.
const CANCEL_PREFIX: &[u8] = b"cancel/";

fn status_of<M: Machine>(state: &M::State) -> Status {
    match M::next(state) {
        Next::Effect(_) => Status::Running,
        Next::Settled(status) => status,
    }
}

fn encode_state<M: CheckpointCodec>(
    id: &str,
    state: &M::State,
) -> Result<Box<serde_json::value::RawValue>, RunError> {
    M::encode_checkpoint(state).map_err(|e| RunError::CorruptState {
        sync: id.to_string(),
        kind: M::KIND,
        detail: format!("cannot encode: {e}"),
    })
}

fn encode_segments<M: CheckpointCodec>(
    id: &str,
    prev: Option<&M::State>,
    state: &M::State,
) -> Result<Vec<(u32, Box<serde_json::value::RawValue>)>, RunError> {
    M::encode_segments(prev, state).map_err(|e| RunError::CorruptState {
        sync: id.to_string(),
        kind: M::KIND,
        detail: format!("cannot encode a progress segment: {e}"),
    })
}

fn encode_plan<M: CheckpointCodec>(
    id: &str,
    state: &M::State,
) -> Result<Option<Arc<serde_json::value::RawValue>>, RunError> {
    match M::encode_plan(state) {
        None => Ok(None),
        Some(Ok(plan)) => Ok(Some(Arc::from(plan))),
        Some(Err(e)) => Err(RunError::CorruptState {
            sync: id.to_string(),
            kind: M::KIND,
            detail: format!("cannot encode the plan: {e}"),
        }),
    }
}

/// Decodes a stored record (e.g. one of `Store::list`) as a sync of machine
/// `M`; fails when the record is of another kind or state version, or its
/// state does not decode.
impl<M: CheckpointCodec> TryFrom<Record> for Checkpoint<M> {
    type Error = RunError;

    fn try_from(record: Record) -> Result<Self, RunError> {
        decode_checkpoint(record)
    }
}

fn decode_checkpoint<M: CheckpointCodec>(record: Record) -> Result<Checkpoint<M>, RunError> {
    if record.kind != M::KIND {
        return Err(RunError::WrongKind {
            sync: record.id,
            found: record.kind,
            expected: M::KIND,
        });
    }
    if record.state_version != M::STATE_VERSION {
        return Err(RunError::StateVersion {
            sync: record.id,
            kind: M::KIND,
            found: record.state_version,
            expected: M::STATE_VERSION,
        });
    }
    let state = M::decode_checkpoint(record.plan.as_deref(), &record.segments, &record.state)
        .map_err(|detail| RunError::CorruptState {
            sync: record.id.clone(),
            kind: M::KIND,
            detail,
        })?;
    Ok(Checkpoint { record, state })
}
