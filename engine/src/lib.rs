//! # adsync-engine
//!
//! Typed workflow state machines whose every transition is made durable
//! *before* the next side effect starts, so a sync survives a killed process
//! without losing or repeating work. It knows nothing of ads: adsync's push
//! and pull are two machines built on it, and you can write your own.
//!
//! ## The flow
//!
//! ```text
//!   machine ──────▶ runner ──────▶ store (CheckpointStore)
//!   (pure)          (the only      sled + a write-ahead log by default;
//!                    side effects)  group commit)
//! ```
//!
//! * **machine** — a [`Machine`] is a *definition*: its states, the
//!   effect each state names ([`Machine::next`]), and a pure, total
//!   transition `(state, outcome) → next state`. Two more traits complete it:
//!   [`CheckpointCodec`] (how states are checkpointed; the defaults
//!   store them whole) and [`MachineDocs`] (what its transition table
//!   is derived from; the runner does not need it). An impossible pair is a
//!   [`TransitionError`], never a panic. After a restart, an effect
//!   that must not run twice is replaced by the outcome
//!   [`Machine::on_restart`] names (so "did it happen?" becomes a
//!   state the machine handles, typically a look-up).
//! * **runner** — a [`Runner`] performs one effect per
//!   [`Runner::step`], through the [`Effects`] you pass it,
//!   applies the outcome and commits the next state before returning: one durable write per
//!   side effect.
//! * **store** — a [`CheckpointStore`]: per sync a record and its
//!   history, written atomically; concurrent syncs share one durable write
//!   (group commit). The runner, and everything above it, holds a
//!   [`SharedStore`] (`Arc<dyn CheckpointStore>`) and reads through
//!   [`StoreRead`] off the async threads. sled's [`Store`] (with its own
//!   write-ahead log) is the embedded default; a backend that keeps the same
//!   key layout gets every read from [`LayoutReader`] (crate
//!   `adsync-postgres` does, for many workers on one database).
//! * **clock** and **backoff** — time comes through a [`Clock`], so tests run
//!   on a [`ManualClock`]; retries wait by a [`Backoff`].
//!
//! ## A machine in one page
//!
//! A newsletter that is sent once and never twice: two phases, one effect.
//!
//! ```
//! use std::collections::BTreeMap;
//! use std::sync::Arc;
//!
//! use adsync_engine::{
//!     reject, CheckpointCodec, Commit, Context, Effects, Machine, MachineDocs, Next, Runner,
//!     Status, Step, Store, SystemClock, TransitionError, TransitionTable,
//! };
//! use serde::{Deserialize, Serialize};
//!
//! /// The machine: a definition, not a running thing.
//! struct Newsletter;
//!
//! /// Its state: two phases, plus the data they carry.
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! enum Letter {
//!     /// Written, not yet sent: names the effect `Send`.
//!     Draft { to: String },
//!     /// Sent: final.
//!     Sent { to: String, message_id: String },
//! }
//!
//! /// The side effect a state names.
//! #[derive(Debug, Clone, PartialEq, Serialize)]
//! enum Effect {
//!     Send { to: String },
//! }
//!
//! /// What came of the effect (or what the runner substitutes after a restart).
//! #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! enum Outcome {
//!     Sent { message_id: String },
//!     /// The process died while `Send` may have been in flight.
//!     Interrupted,
//! }
//!
//! #[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display, strum::EnumIter)]
//! enum Phase {
//!     Draft,
//!     Sent,
//! }
//!
//! #[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display, strum::EnumIter)]
//! enum OutcomeKind {
//!     Sent,
//!     Interrupted,
//! }
//!
//! /// The core: what the runner steps.
//! impl Machine for Newsletter {
//!     const KIND: &'static str = "newsletter";
//!     const STATE_VERSION: u32 = 1;
//!     type State = Letter;
//!     type Effect = Effect;
//!     type Outcome = Outcome;
//!     type Phase = Phase;
//!
//!     fn phase(state: &Letter) -> Phase {
//!         match state {
//!             Letter::Draft { .. } => Phase::Draft,
//!             Letter::Sent { .. } => Phase::Sent,
//!         }
//!     }
//!     fn next(state: &Letter) -> Next<Effect> {
//!         match state {
//!             Letter::Draft { to } => Next::Effect(Effect::Send { to: to.clone() }),
//!             Letter::Sent { .. } => Next::Settled(Status::Succeeded),
//!         }
//!     }
//!     /// Pure and total: every (state, outcome) pair is an answer, never a panic.
//!     fn transition(state: &Letter, outcome: &Outcome, _: &Context) -> Result<Letter, TransitionError> {
//!         match (state, outcome) {
//!             (Letter::Draft { to }, Outcome::Sent { message_id }) => Ok(Letter::Sent {
//!                 to: to.clone(),
//!                 message_id: message_id.clone(),
//!             }),
//!             (Letter::Draft { .. }, Outcome::Interrupted) => reject::<Self>(
//!                 state,
//!                 outcome,
//!                 "a real machine would look the letter up; this toy refuses",
//!             ),
//!             (Letter::Sent { .. }, _) => reject::<Self>(state, outcome, "already sent"),
//!         }
//!     }
//!     /// Sending twice is not allowed, so a restart must not simply resend.
//!     fn on_restart(state: &Letter) -> Option<Outcome> {
//!         matches!(state, Letter::Draft { .. }).then_some(Outcome::Interrupted)
//!     }
//! }
//!
//! /// Checkpoints hold the whole state: the defaults.
//! impl CheckpointCodec for Newsletter {}
//!
//! /// What the transition table (`TransitionTable::derive`) is made of.
//! impl MachineDocs for Newsletter {
//!     type OutcomeKind = OutcomeKind;
//!
//!     fn outcome_kind(outcome: &Outcome) -> OutcomeKind {
//!         match outcome {
//!             Outcome::Sent { .. } => OutcomeKind::Sent,
//!             Outcome::Interrupted => OutcomeKind::Interrupted,
//!         }
//!     }
//!     fn describe_phase(phase: Phase) -> &'static str {
//!         match phase {
//!             Phase::Draft => "written; `Send` leaves it",
//!             Phase::Sent => "final",
//!         }
//!     }
//!     fn sample_states() -> Vec<(String, Letter)> {
//!         vec![
//!             (String::new(), Letter::Draft { to: "ann".into() }),
//!             (String::new(), Letter::Sent { to: "ann".into(), message_id: "m1".into() }),
//!         ]
//!     }
//!     fn sample_outcomes() -> Vec<Outcome> {
//!         vec![Outcome::Sent { message_id: "m1".into() }, Outcome::Interrupted]
//!     }
//! }
//!
//! /// The only code with side effects: here, a pretend mail server.
//! struct Mailer;
//!
//! #[async_trait::async_trait]
//! impl Effects<Newsletter> for Mailer {
//!     async fn perform(&self, _sync: &str, effect: &Effect) -> (Outcome, Commit) {
//!         let Effect::Send { to } = effect;
//!         // No data to commit with the checkpoint: an empty `Commit`.
//!         (Outcome::Sent { message_id: format!("msg-for-{to}") }, Commit::new())
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let store = Store::temporary()?;
//!     let runner = Runner::<Newsletter>::new(store, Arc::new(SystemClock));
//!     // Durable before anything runs: a crash from here on resumes this sync.
//!     runner
//!         .start("weekly-1", Letter::Draft { to: "ann".into() }, BTreeMap::new(), &[])
//!         .await?;
//!     // One step = one effect, its outcome applied, the next state made durable.
//!     while let Step::Transitioned(t) = runner.step("weekly-1", &Mailer).await? {
//!         println!("{} --{:?}--> {}", t.from, t.outcome, t.to);
//!     }
//!     let done = runner.get("weekly-1").await?;
//!     assert_eq!(done.record.status, Status::Succeeded);
//!     assert_eq!(done.state, Letter::Sent { to: "ann".into(), message_id: "msg-for-ann".into() });
//!     // The table is derived from the real transition function.
//!     let table = TransitionTable::derive::<Newsletter>()?;
//!     assert!(table.to_markdown().contains("| Draft |  | Sent | **Sent** |"));
//!     Ok(())
//! # }
//! ```
#![warn(missing_docs)]

// Modules are private: the list below is the whole public API, so the files
// behind it can be reorganised without breaking an embedder.
mod backoff;
mod clock;
mod machine;
mod runner;
mod status;
mod store;

pub use backoff::Backoff;
pub use clock::{Clock, ManualClock, SystemClock, Timestamp};
pub use machine::{
    reject, render_definition, CheckpointCodec, Context, CoverageError, Machine, MachineDocs, Next,
    TableRow, TransitionError, TransitionTable,
};
pub use runner::{
    Cancel, Checkpoint, Effects, Hook, HookPoint, HookWhen, Progress, RunError, Runner, Start,
    Step, StopSignal, Transition,
};
pub use status::Status;
pub use store::{
    Cause, CheckpointStore, Claim, Commit, HistoryEntry, IntoStore, LayoutReader, LeaseView,
    Leases, RawRead, ReadIter, Reads, Record, SharedStore, Store, StoreError, StoreRead, Write,
    WriterStats, RECORD_FORMAT,
};
