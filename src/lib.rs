//! # adsync
//!
//! Workflow state machines with persistent checkpoints, used to keep advertising
//! campaigns in sync with ad platforms without ever losing or duplicating work
//! when a process dies, a request times out or a platform throttles.
//!
//! ## The whole flow in four layers
//!
//! ```text
//!   machine ──────▶ runner ──────▶ checkpoint store ──────▶ platform adapter
//!   (pure)          (the only      (sled + a write-ahead    (in-memory, HTTP)
//!                    side effects)  log, group commit)
//! ```
//!
//! 1. **machine** — a sync is a typed state machine. [`Machine::transition`]
//!    maps `(state, outcome)` to the next state and does no I/O; an impossible pair is
//!    a [`TransitionError`], never a panic. Every non-terminal state *names*
//!    the side effect that leaves it ([`Machine::next`]). The transition table
//!    is derived from the code ([`TransitionTable`]) and published in
//!    `state_machines/`.
//! 2. **runner** — the only place side effects happen. One [`Runner::step`]:
//!    the state naming the effect is already durable → the effect runs → the outcome is
//!    applied → the resulting state is made durable. One durable write per side effect.
//!    What is fixed at start (a push's entity specs) is written once, so a checkpoint
//!    carries only progress and a step's cost does not grow with the campaign.
//!    After a restart, a state whose effect may have started is first given the
//!    machine's restart outcome ([`Machine::on_restart`]), so "outcome
//!    unknown" is a state the machine handles (look up, adopt), never a blind retry.
//! 3. **store** — the checkpoint [`Store`] on sled: per sync a record and an
//!    append-only history, committed atomically. Concurrent syncs' commits are
//!    appended together to a write-ahead log and made durable with one write
//!    (`O_DIRECT | O_DSYNC`, or `fdatasync` where that is refused: group commit);
//!    a separate thread then applies them to sled, in batches. Async callers
//!    never block a worker thread, and sled's `flush_async` is never called.
//! 4. **adapter** — the platform seam: a small async trait
//!    ([`PushAdapter`]) with create / update / find. [`memory::MemoryPlatform`] is a
//!    scriptable in-memory platform for tests (fail the Nth call, lose a response,
//!    count duplicates).
//!
//! The first three are the `adsync-engine` crate, re-exported here. On top sit
//! the concrete machines:
//!
//! * **push** ([`Pusher`], [`PushMachine`]) — campaign → ad groups → ads → keywords
//!   to a platform, every platform id checkpointed before children are touched;
//!   adapters in [`memory`] and [`reddit`] (HTTP; its fake is in the
//!   `adsync-fakes` crate).
//! * **pull** ([`Puller`], [`PullMachine`]) — an Amazon Ads profile's campaigns,
//!   ad groups and keywords, page by page (each page staged in the checkpoint
//!   that records its `nextToken`), then persisted as a new snapshot generation
//!   made current in one commit; client in [`amazon`] (its fake is in
//!   `adsync-fakes`).
//!
//! * **converge** ([`converge`], [`Pusher::plan`]) — what a push of a set
//!   would do, from what the platform lists and what adsync last wrote: per
//!   entity create / update only the differing fields (drift marked) /
//!   unchanged / adopt / replace / prune, or refuse. Pure planner, read-only
//!   reads; the push machine does not carry plans out yet.
//!
//! And one that hosts them:
//!
//! * **worker** ([`Worker`]) — the push and pull runners of one store in a
//!   long-lived process: submissions durable before they are acknowledged,
//!   every unfinished sync resumed on start, a queue that runs syncs within
//!   [`Limits`] (a waiting sync holds no task), backoff waits that survive a
//!   restart, stored pull [`Schedule`]s, cancellation, a graceful stop, and
//!   [`Metrics`]. `adsync daemon` serves one over HTTP.
//!
//! Time comes through [`Clock`], so tests run on a [`ManualClock`]; rate limits
//! through [`RateLimiter`], backoff through [`Backoff`].
//!
//! ## The public API
//!
//! Everything public is listed at this crate's root: the engine's types, the
//! campaign-set model, the adapter seam, push and pull. Each platform's own
//! vocabulary (configuration, wire types, errors) is grouped in [`memory`],
//! [`reddit`] and [`amazon`]. Accessors that only tests and benchmarks need
//! are behind the `testing` feature.
//!
//! ## Example: push a campaign set, one transition at a time
//!
//! ```
//! use std::sync::Arc;
//! use adsync::memory::MemoryPlatform;
//! use adsync::{CampaignSet, ManualClock, Pusher, Status, Step, Store};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let set = CampaignSet::from_json(
//!     r#"{"name": "shoes", "campaigns": [{"id": "c1", "name": "Spring launch",
//!         "objective": "CLICKS", "ad_groups": [{"id": "g1", "name": "Trail runners",
//!         "ads": [{"id": "a1", "name": "Trail video", "post_id": "t3_abc"}]}]}]}"#,
//!     "inline.json",
//! )?;
//!
//! let dir = tempfile::tempdir()?;
//! // A sled directory; opening blocks, so async code opens it on the blocking pool.
//! let store = Store::open_from_async(dir.path().join("adsync.db")).await?;
//! let clock = Arc::new(ManualClock::new(time::OffsetDateTime::UNIX_EPOCH));
//! let platform = Arc::new(MemoryPlatform::new(clock.clone()));
//! // The pusher builds its runner; the platform both performs the effects and
//! // names what the syncs record.
//! let pusher = Pusher::new(store, platform.clone(), clock);
//!
//! // One durable sync per campaign, in its first state (Pending).
//! let ids = pusher.start(&set, "a2_account").await?;
//!
//! // Step: each call runs exactly one side effect and checkpoints its result.
//! while let Step::Transitioned(t) = pusher.step(&ids[0]).await? {
//!     println!("{:?} → {:?} after {:?}", t.from, t.to, t.outcome);
//! }
//!
//! // After a crash, a new process calls `pusher.run(id)` (or
//! // `pusher.resume_all()`), which continues from the last checkpoint.
//! let done = pusher.run(&ids[0]).await?;
//! assert_eq!(done.record.status, Status::Succeeded);
//! assert_eq!(platform.creations(), 3); // campaign, ad group, ad — once each
//! # Ok(())
//! # }
//! ```
//!
//! ## Example: a worker inside your program
//!
//! ```
//! use std::sync::Arc;
//! use adsync::memory::MemoryPlatform;
//! use adsync::{CampaignSet, Pusher, Store, SystemClock, Worker};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let set = CampaignSet::from_json(r#"{"name": "s", "campaigns": [{"id": "c1", "name": "Spring launch", "objective": "CLICKS", "ad_groups": []}]}"#, "inline.json")?;
//! let store = Store::temporary()?;
//! let clock = Arc::new(SystemClock);
//! let platform = Arc::new(MemoryPlatform::new(clock.clone()));
//! let worker = Worker::builder(store.clone())
//!     .pusher(Pusher::new(store, platform, clock))
//!     .build();
//! let (stop, stopped) = tokio::sync::oneshot::channel::<()>(); // e.g. fed by SIGTERM
//! let serving = tokio::spawn({
//!     let worker = worker.clone();
//!     async move { worker.run(async { stopped.await.ok(); }).await } // resumes, then runs
//! });
//! let ids = worker.submit_push(&set, "a2_account", "memory").await?; // durable now
//! stop.send(()).ok();
//! let stopped = serving.await??; // no effect starts after the signal
//! assert!(stopped.cut_off.is_empty());
//! # let _ = ids; Ok(()) }
//! ```
#![warn(missing_docs)]

// Modules are private: the `pub use` lists below are the whole public API, so
// the files behind them can be reorganised without breaking an embedder.
mod adapter;
/// Converging pushes: plan what a push writes from what the platform holds
/// (the module lists its public items itself).
pub mod converge;
mod model;
mod platform;
mod pull;
mod push;
mod ratelimit;
mod secret;
mod telemetry;
mod worker;

// The engine (crate `adsync-engine`): machines, the runner, the checkpoint
// store, time. Re-exported so that one dependency is enough.
pub use adsync_engine::{
    reject, render_definition, Backoff, Cancel, Cause, Checkpoint, CheckpointCodec,
    CheckpointStore, Claim, Clock, Commit, Context, CoverageError, Effects, HistoryEntry, Hook,
    HookPoint, HookWhen, IntoStore, LayoutReader, LeaseView, Leases, Machine, MachineDocs,
    ManualClock, Next, Progress, RawRead, ReadIter, Reads, Record, RunError, Runner, SharedStore,
    Start, Status, Step, StopSignal, Store, StoreError, StoreRead, SystemClock, TableRow,
    Timestamp, Transition, TransitionError, TransitionTable, Write, WriterStats, RECORD_FORMAT,
};

// The desired state: a campaign set as the user writes it.
pub use model::{
    Ad, AdGroup, BidStrategy, BidType, Campaign, CampaignSet, ConfiguredStatus, GoalType,
    InputError, Keyword, Objective, SpendGoal, MAX_KEYWORDS_PER_AD_GROUP, MAX_NAME_LEN,
    MIN_NAME_LEN,
};

// The platform seam a push talks through.
pub use adapter::{
    AdapterError, EntityKind, EntitySpec, FieldError, FoundEntity, KeywordModel, Parent,
    PlatformEntity, PushAdapter,
};

// Push: a campaign set to a platform.
pub use push::{
    set_records, verify_adoption, AdapterEffects, AdoptError, CampaignReport, Decision, Entity,
    EntityReport, EntityResult, Overwrite, PushEffect, PushError, PushMachine, PushObserver,
    PushOutcome, PushOutcomeKind, PushPhase, PushPolicy, PushState, Pusher, SetMember, SetRecord,
    SetReport, Target, Work, DEFAULT_MAX_RUNNING,
};

// Pull: an Amazon Ads profile into a snapshot.
pub use pull::{
    AmazonPullEffects, ProfileSnapshot, PullCounts, PullEffect, PullError, PullMachine, PullMode,
    PullObserver, PullOutcome, PullOutcomeKind, PullPhase, PullPolicy, PullReader, PullState,
    PullStatus, Puller, SnapshotError, SnapshotRef, SyncState,
};

pub use ratelimit::RateLimiter;

// The service: a long-lived host for the runners, with a queue and schedules.
pub use secret::Secret;
pub use worker::{
    Cadence, Cancelled, Gauges, Limits, Metrics, QueueDepth, Queued, Schedule, ScheduleError,
    Stopped, Worker, WorkerBuilder, WorkerError,
};

/// The in-memory platform: a [`PushAdapter`] for tests and the demo that can
/// fail the Nth call, lose a response or be made to hold an entity, and
/// counts duplicates.
pub mod memory {
    pub use crate::platform::memory::{
        CallRecord, Fault, MemoryPlatform, Op, PlatformFileError, StoredEntity, Trigger,
        CALL_LOG_LEN,
    };
}

/// Reddit Ads API v3: the push adapter over HTTP.
///
/// [`RedditAdapter`](reddit::RedditAdapter) implements [`PushAdapter`]; build it
/// from a [`RedditConfig`](reddit::RedditConfig) (see
/// [`RedditConfig::from_env`](reddit::RedditConfig::from_env)). A fake serving
/// the same API on 127.0.0.1 with fault injection is in the `adsync-fakes`
/// crate. Both follow `docs/platforms/reddit.md`, not each other.
pub mod reddit {
    pub use crate::platform::reddit::{
        ConfigError, RatePolicy, RedditAdapter, RedditConfig, StaticToken, TokenSource,
        DEFAULT_BASE_URL, ENV_BASE_URL, ENV_TOKEN, ENV_USER_AGENT,
    };
}

/// Amazon Ads Sponsored Products API v3: the list client a pull uses, its
/// throttle, and the entity types a snapshot holds.
///
/// [`AmazonClient`](amazon::AmazonClient) lists one page at a time and waits
/// out throttling through its [`Throttle`](amazon::Throttle). A fake serving
/// the same API is in the `adsync-fakes` crate. Both follow
/// `docs/platforms/amazon.md`, not each other.
pub mod amazon {
    pub use crate::platform::amazon::api::{Extra, IdFilter, StateFilter};
    pub use crate::platform::amazon::client::{check_page_size, PAGE_SIZES};
    pub use crate::platform::amazon::{
        AmazonClient, AmazonConfig, AmazonError, Budget, BudgetType, Items, ListKind, ListRequest,
        MatchType, Page, PageRef, PlatformMessage, SpAdGroup, SpCampaign, SpEntity, SpKeyword,
        State, TargetingType, Throttle, ThrottleConfig, DEFAULT_HOST, DEFAULT_MAX_RESULTS,
    };
}

/// Accessors for tests and benchmarks: where a pull stages pages and keeps
/// snapshot generations, read without a [`Puller`]. Behind the `testing`
/// feature, off for embedders.
#[cfg(feature = "testing")]
pub mod testing {
    pub use crate::pull::snapshot::{
        current_key, generation_of, generations_prefix, read_snapshot, stage_key, stage_prefix,
    };
    pub use crate::pull::{sync_id as pull_sync_id, AMAZON};
}
