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
//! 1. **[`machine`]** — a sync is a typed state machine. [`machine::Machine::transition`]
//!    maps `(state, outcome)` to the next state and does no I/O; an impossible pair is
//!    a [`machine::TransitionError`], never a panic. Every non-terminal state *names*
//!    the side effect that leaves it ([`machine::Machine::next`]). The transition table
//!    is derived from the code ([`machine::TransitionTable`]) and published in
//!    `state_machines/`.
//! 2. **[`runner`]** — the only place side effects happen. One [`runner::Runner::step`]:
//!    the state naming the effect is already durable → the effect runs → the outcome is
//!    applied → the resulting state is made durable. One durable write per side effect.
//!    What is fixed at start (a push's entity specs) is written once, so a checkpoint
//!    carries only progress and a step's cost does not grow with the campaign.
//!    After a restart, a state whose effect may have started is first given the
//!    machine's restart outcome ([`machine::Machine::on_restart`]), so "outcome
//!    unknown" is a state the machine handles (look up, adopt), never a blind retry.
//! 3. **[`store`]** — the checkpoint store on sled: per sync a record and an
//!    append-only history, committed atomically. Concurrent syncs' commits are
//!    appended together to a write-ahead log and made durable with one write
//!    (`O_DIRECT | O_DSYNC`, or `fdatasync` where that is refused: group commit);
//!    a separate thread then applies them to sled, in batches. Async callers
//!    never block a worker thread, and sled's `flush_async` is never called.
//! 4. **[`adapter`]** — the platform seam: a small async trait
//!    ([`adapter::PushAdapter`]) with create / update / find. [`platform::memory`] is a
//!    scriptable in-memory platform for tests (fail the Nth call, lose a response,
//!    count duplicates).
//!
//! On top sit the concrete machines:
//!
//! * [`push`] — campaign → ad groups → ads → keywords to a platform, every platform id
//!   checkpointed before children are touched; adapters in [`platform::memory`] and
//!   [`platform::reddit`] (HTTP; its fake is in the `adsync-fakes` crate).
//! * [`pull`] — an Amazon Ads profile's campaigns, ad groups and keywords, page by
//!   page (each page staged in the checkpoint that records its `nextToken`), then
//!   persisted as a new snapshot generation made current in one commit;
//!   client in [`platform::amazon`] (its fake is in `adsync-fakes`).
//!
//! Time comes through [`clock::Clock`], so tests run on a [`clock::ManualClock`];
//! rate limits through [`ratelimit::RateLimiter`], backoff through [`backoff::Backoff`].
//!
//! ## Example: push a campaign set, one transition at a time
//!
//! ```
//! use std::sync::Arc;
//! use adsync::clock::ManualClock;
//! use adsync::model::CampaignSet;
//! use adsync::platform::memory::MemoryPlatform;
//! use adsync::push::Pusher;
//! use adsync::runner::Step;
//! use adsync::store::Store;
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
//! assert_eq!(done.record.status, adsync::machine::Status::Succeeded);
//! assert_eq!(platform.creations(), 3); // campaign, ad group, ad — once each
//! # Ok(())
//! # }
//! ```
#![warn(missing_docs)]

pub use adsync_engine::{backoff, clock, machine, runner, store};

pub mod adapter;
pub mod model;
pub mod platform;
pub mod pull;
pub mod push;
pub mod ratelimit;
pub mod secret;
