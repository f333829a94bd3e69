//! Typed state machines: states, the effect each state names, outcomes, and a
//! pure transition function.

use std::fmt::{Debug, Display, Write as _};

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::value::RawValue;
use strum::IntoEnumIterator;

use crate::clock::Timestamp;

/// What the runner observed when an outcome arrived: the machine's only window
/// on the world, so transitions stay pure and replayable.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Context {
    /// The runner's [`Clock`](crate::clock::Clock) reading when the outcome
    /// was applied: the time a machine computes backoff deadlines from, and
    /// the history entry's time.
    pub now: Timestamp,
    /// A uniform sample in `[0, 1)` for backoff jitter.
    pub jitter: f64,
}

pub use crate::status::Status;

/// What [`Machine::next`] says about a state: the effect the runner runs
/// next, or the status the sync rests in.
#[derive(Debug, Clone, PartialEq)]
pub enum Next<E> {
    /// The runner runs this effect (after [`Machine::not_before`], if any)
    /// and applies its outcome with [`Machine::transition`].
    Effect(E),
    /// No effect leaves this state (final, or parked for an operator); the
    /// status is the one written into the sync's record.
    Settled(Status),
}

/// A `(state, outcome)` pair the machine does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{machine}: outcome `{outcome}` is impossible in phase `{phase}`: {reason}")]
pub struct TransitionError {
    /// [`Machine::KIND`] of the machine that refused.
    pub machine: &'static str,
    /// The state's [`Machine::Phase`], displayed: the row of the transition table.
    pub phase: String,
    /// The outcome's [`MachineDocs::OutcomeKind`], displayed: the column of
    /// the transition table (the outcome's data is left out).
    pub outcome: String,
    /// Why the pair is impossible.
    pub reason: String,
}

impl TransitionError {
    /// Machine `M` refuses `outcome` in `state`, for `reason`. The error names
    /// the outcome by its kind, as the transition tables do, so a refusal and
    /// its table row read the same.
    pub fn new<M: MachineDocs>(state: &M::State, outcome: &M::Outcome, reason: &str) -> Self {
        TransitionError {
            machine: M::KIND,
            phase: M::phase(state).to_string(),
            outcome: M::outcome_kind(outcome).to_string(),
            reason: reason.to_string(),
        }
    }
}

/// The answer of a transition to a `(state, outcome)` pair it does not allow:
/// `Err` of a [`TransitionError`] naming machine, phase, outcome kind and
/// `reason`. One helper, so every machine's refusals have the same shape.
pub fn reject<M: MachineDocs>(
    state: &M::State,
    outcome: &M::Outcome,
    reason: &str,
) -> Result<M::State, TransitionError> {
    Err(TransitionError::new::<M>(state, outcome, reason))
}

/// Typed state machines: states, the effect each state names, outcomes, and a
/// pure transition function.
///
/// A machine is a *definition*, not a running thing, given by up to three
/// traits: the core [`Machine`] (the transducer the runner steps),
/// [`CheckpointCodec`] (how its states are checkpointed; the defaults store
/// them whole) and [`MachineDocs`] (what its transition table is derived
/// from). The core says:
///
/// * which [`Machine::Phase`] a state is in (a finite enum, recorded with every
///   checkpoint and used by tables and diagrams);
/// * which effect leaves a state ([`Machine::next`]), or that the state is final;
/// * how an outcome moves a state ([`Machine::transition`]): **pure and total**.
///   It does no I/O; everything it needs from the outside world (the time, a
///   random jitter sample) arrives in a [`Context`]. An impossible
///   `(state, outcome)` pair is a [`TransitionError`], never a panic.
/// * what to do after a restart when the effect a state names may already have
///   run ([`Machine::on_restart`]): repeatable effects simply run again; a
///   non-repeatable one (a create, on platforms without idempotency keys) is
///   replaced by an outcome such as "interrupted", which the machine turns into
///   a look-up. That is how *outcome unknown* becomes a state instead of a retry.
///
/// The [`Runner`](crate::Runner) is the only code that performs effects.
///
/// [`TransitionTable`] derives the complete `phase × outcome` table and a Mermaid
/// diagram by running the real transition function on sample states, so the
/// documentation in `state_machines/` cannot drift from the code.
///
/// The core of a typed, checkpointable workflow: a transducer from
/// `(state, outcome)` to the next state.
///
/// Besides the transducer itself (`next`, `transition`, `on_restart`) it holds
/// only what the [runner](crate::Runner) needs to step and to record a step:
/// the [`Machine::Phase`] written into every record and history entry, the
/// backoff time ([`Machine::not_before`]), whether an outcome counts as a
/// failed effect, the error shown in status output, and the one-line
/// descriptions that the history stores. How a state is checkpointed is
/// [`CheckpointCodec`]; what the transition tables need is [`MachineDocs`],
/// which the runner does not require.
pub trait Machine: Send + Sync + 'static {
    /// Stable name stored in checkpoints (`"push"`, `"pull"`).
    const KIND: &'static str;
    /// Version of the serialized state; bump it when the layout changes.
    const STATE_VERSION: u32;

    /// The full state, with its data. Checkpointed at every transition (only
    /// its progress, for machines that split out a plan: see
    /// [`CheckpointCodec::encode_plan`]).
    type State: Clone + Debug + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// A side effect a state names, handed to the runner's
    /// [`Effects`](crate::runner::Effects). Never checkpointed: the state names
    /// it again after a restart; history stores
    /// [`Machine::describe_effect`]'s text.
    type Effect: Clone + Debug + PartialEq + Serialize + Send + Sync + 'static;
    /// What came of an effect, failures included (a failure is an outcome, not
    /// an error); also what an operator feeds in ([`Runner::resolve`](crate::runner::Runner::resolve))
    /// and what [`Machine::on_restart`] substitutes.
    type Outcome: Clone + Debug + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The finite set of phases (the "typed states" of tables and diagrams);
    /// the runner writes a state's phase into its record and history.
    type Phase: Copy + Eq + Debug + Display + Send + Sync + 'static;

    /// The phase `state` is in: what the record and each history entry store
    /// of it, so status output can be read without decoding states.
    fn phase(state: &Self::State) -> Self::Phase;
    /// The effect that leaves `state`, or why none does.
    fn next(state: &Self::State) -> Next<Self::Effect>;
    /// The state after `outcome` in `state`. Pure: no I/O, and the time and
    /// randomness it may use come in `ctx`, so the same inputs always give
    /// the same state. Total: an outcome the state does not allow is an
    /// error, never a panic.
    ///
    /// # Errors
    ///
    /// A [`TransitionError`] (build it with [`reject`]) for a pair the machine
    /// does not allow; the runner then writes nothing and returns it to its
    /// caller.
    fn transition(
        state: &Self::State,
        outcome: &Self::Outcome,
        ctx: &Context,
    ) -> Result<Self::State, TransitionError>;
    /// After a restart the effect named by `state` may have been in flight. If
    /// running it again is unsafe, the outcome to apply instead; `None` when the
    /// effect is repeatable.
    fn on_restart(state: &Self::State) -> Option<Self::Outcome>;
    /// The outcome that cancels a sync in `state` at a step boundary
    /// ([`Runner::cancel`](crate::Runner::cancel)), instead of running the
    /// effect `state` names; `None` when a sync in `state` cannot be cancelled
    /// (the default: a machine opts in). The transition it leads to must keep
    /// what the sync learnt and settle with [`Status::Cancelled`].
    fn on_cancel(_state: &Self::State) -> Option<Self::Outcome> {
        None
    }
    /// The earliest time the effect may run (backoff); `None` for "now". The
    /// runner sleeps on its clock until then, and a stop signal cuts the wait
    /// short.
    fn not_before(_state: &Self::State) -> Option<Timestamp> {
        None
    }
    /// Whether `outcome` reports a failed effect: counted in the record's
    /// `failed_effects` (only for outcomes of effects that ran). Default: never.
    fn is_failure(_outcome: &Self::Outcome) -> bool {
        false
    }
    /// The error worth showing in status output, if any: written into the
    /// record's `last_error` at every checkpoint, so listing syncs needs no
    /// state decoding. Must hold no secret. Default: none.
    fn last_error(_state: &Self::State) -> Option<String> {
        None
    }
    /// A one-line, human description of an effect, for traces, logs and the
    /// stored history.
    fn describe_effect(effect: &Self::Effect) -> String {
        format!("{effect:?}")
    }
    /// A short, fixed name for the kind of an effect (`create`, `fetch_page`):
    /// a metrics label and a tracing field, so it must not vary with the
    /// entity (unlike [`Machine::describe_effect`]). Default: `"effect"`.
    fn effect_name(_effect: &Self::Effect) -> &'static str {
        "effect"
    }
    /// A one-line, human description of an outcome, for traces, logs and the
    /// stored history.
    fn describe_outcome(outcome: &Self::Outcome) -> String {
        format!("{outcome:?}")
    }
}

/// How the runner checkpoints a machine's state. Every method has a default
/// that stores the whole state as JSON, so a machine that needs nothing more
/// writes `impl CheckpointCodec for MyMachine {}`.
pub trait CheckpointCodec: Machine {
    /// The part of `state` that is fixed when its sync starts, if the machine
    /// splits one out; `None` (the default) checkpoints whole states.
    ///
    /// Why: a checkpoint is written before every side effect, so its size is
    /// paid on every step — in serialization, in the bytes the log appends and
    /// syncs, in sled. A push state holds every entity's spec; written whole,
    /// each step would cost in proportion to the campaign's size. With a plan,
    /// the runner writes it once, in the start commit, and each checkpoint holds
    /// only [`CheckpointCodec::encode_checkpoint`]'s progress.
    fn encode_plan(_state: &Self::State) -> Option<serde_json::Result<Box<RawValue>>> {
        None
    }
    /// What a checkpoint stores of `state` (default: all of it, as JSON).
    ///
    /// # Errors
    ///
    /// serde's error if `state` does not serialize; the runner reports it as
    /// `RunError::CorruptState` and writes nothing.
    fn encode_checkpoint(state: &Self::State) -> serde_json::Result<Box<RawValue>> {
        serde_json::value::to_raw_value(state)
    }
    /// Segments of `state`'s progress to write with its checkpoint, each under
    /// its own key (`(n, text)`, replacing any earlier segment `n`); `prev` is
    /// the state before the transition (`None` for a sync's first checkpoint).
    /// Default: none.
    ///
    /// Why: a checkpoint rewritten at every step that lists everything done so
    /// far makes a sync write O(steps²) bytes. A machine whose progress grows
    /// moves the parts that no longer change into segments, written once, and
    /// leaves only the parts still changing in
    /// [`CheckpointCodec::encode_checkpoint`];
    /// [`CheckpointCodec::decode_checkpoint`] gets every segment back. The
    /// segments are committed atomically with the checkpoint. A segment
    /// already written must be written again whenever what it holds changes
    /// (hence `prev`).
    ///
    /// # Errors
    ///
    /// serde's error if a segment does not serialize, reported as for
    /// [`CheckpointCodec::encode_checkpoint`].
    fn encode_segments(
        _prev: Option<&Self::State>,
        _state: &Self::State,
    ) -> serde_json::Result<Vec<(u32, Box<RawValue>)>> {
        Ok(Vec::new())
    }
    /// Rebuilds a state from a checkpoint and, for machines that split them
    /// out, the sync's plan and its progress segments (in segment order).
    ///
    /// # Errors
    ///
    /// A message saying what does not fit (the default gives serde's); the
    /// runner reports it as `RunError::CorruptState` naming the sync.
    fn decode_checkpoint(
        _plan: Option<&RawValue>,
        _segments: &[(u32, std::sync::Arc<RawValue>)],
        checkpoint: &RawValue,
    ) -> Result<Self::State, String> {
        serde_json::from_str(checkpoint.get()).map_err(|e| e.to_string())
    }
}

/// The documentation side of a machine: what [`TransitionTable`] and
/// [`render_definition`] need to derive the complete `phase × outcome` table
/// from the real transition function. Its phases must be enumerable; the
/// outcome kinds also name the outcome in a [`TransitionError`] (hence
/// [`reject`] needs this trait). The runner does not.
pub trait MachineDocs: Machine<Phase: IntoEnumIterator> {
    /// The outcome kinds, data left out: the columns of the transition table,
    /// and how a [`TransitionError`] names an outcome.
    type OutcomeKind: Copy + Eq + Debug + Display + IntoEnumIterator + Send + Sync + 'static;

    /// The kind of `outcome`.
    fn outcome_kind(outcome: &Self::Outcome) -> Self::OutcomeKind;
    /// What a phase means and which effect leaves it (for `state_machines/`).
    fn describe_phase(phase: Self::Phase) -> &'static str;
    /// Representative states, each labelled with the condition it stands for;
    /// together they must cover every phase (checked by [`TransitionTable::derive`]).
    fn sample_states() -> Vec<(String, Self::State)>;
    /// Representative outcomes; together they must cover every outcome kind
    /// (checked by [`TransitionTable::derive`]).
    fn sample_outcomes() -> Vec<Self::Outcome>;
}

/// One cell of a transition table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TableRow {
    /// The phase of the sample state.
    pub phase: String,
    /// The condition the sample stands for (empty when the phase has one sample).
    pub condition: String,
    /// The outcome kind.
    pub outcome: String,
    /// `Ok(phase)` or the rejection reason.
    pub result: Result<String, String>,
}

/// The complete `phase × outcome` table of a machine, derived from its code.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransitionTable {
    /// [`Machine::KIND`] of the machine it was derived from.
    pub machine: String,
    /// Every sample state × every sample outcome.
    pub rows: Vec<TableRow>,
}

/// A sample set that leaves a phase or an outcome kind untested.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the samples of `{machine}` do not cover: {missing}")]
pub struct CoverageError {
    machine: &'static str,
    missing: String,
}

impl TransitionTable {
    /// Runs [`Machine::transition`] on every sample state × sample outcome.
    /// Pure: nothing is run, only the transition function is called.
    ///
    /// # Errors
    ///
    /// [`CoverageError`], naming what is missing, when the samples miss a
    /// phase or an outcome kind: a table is complete or not derived at all.
    pub fn derive<M: MachineDocs>() -> Result<Self, CoverageError> {
        let states = M::sample_states();
        let outcomes = M::sample_outcomes();
        let mut missing = Vec::new();
        for phase in M::Phase::iter() {
            if !states.iter().any(|(_, s)| M::phase(s) == phase) {
                missing.push(format!("phase {phase}"));
            }
        }
        for kind in M::OutcomeKind::iter() {
            if !outcomes.iter().any(|o| M::outcome_kind(o) == kind) {
                missing.push(format!("outcome {kind}"));
            }
        }
        if !missing.is_empty() {
            return Err(CoverageError {
                machine: M::KIND,
                missing: missing.join(", "),
            });
        }
        // A fixed context: the table shows *where* a transition goes, not when.
        let ctx = Context {
            now: time::macros::datetime!(2026-01-01 00:00 UTC),
            jitter: 0.5,
        };
        let mut rows = Vec::new();
        for phase in M::Phase::iter() {
            for (condition, state) in states.iter().filter(|(_, s)| M::phase(s) == phase) {
                for outcome in &outcomes {
                    let result = M::transition(state, outcome, &ctx)
                        .map(|next| M::phase(&next).to_string())
                        .map_err(|e| e.reason);
                    rows.push(TableRow {
                        phase: phase.to_string(),
                        condition: condition.clone(),
                        outcome: M::outcome_kind(outcome).to_string(),
                        result,
                    });
                }
            }
        }
        // Several sample outcomes of one kind give the same row; keep one.
        rows.dedup();
        Ok(TransitionTable {
            machine: M::KIND.to_string(),
            rows,
        })
    }

    /// The table as Markdown: one line per cell, accepted and rejected.
    pub fn to_markdown(&self) -> String {
        let mut out =
            String::from("| phase | condition | outcome | next phase |\n|---|---|---|---|\n");
        for r in &self.rows {
            let next = match &r.result {
                Ok(p) => format!("**{p}**"),
                Err(reason) => format!("rejected: {reason}"),
            };
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} |",
                r.phase, r.condition, r.outcome, next
            );
        }
        out
    }

    /// A Mermaid state diagram of the accepted transitions.
    pub fn to_mermaid(&self) -> String {
        let mut edges: Vec<(String, String, Vec<String>)> = Vec::new();
        for r in &self.rows {
            if let Ok(to) = &r.result {
                // Conditions are in the table; the diagram stays readable.
                let label = r.outcome.clone();
                match edges.iter_mut().find(|(f, t, _)| *f == r.phase && t == to) {
                    Some((_, _, labels)) => {
                        if !labels.contains(&label) {
                            labels.push(label)
                        }
                    }
                    None => edges.push((r.phase.clone(), to.clone(), vec![label])),
                }
            }
        }
        let mut out = String::from("stateDiagram-v2\n");
        if let Some(first) = self.rows.first() {
            let _ = writeln!(out, "    [*] --> {}", first.phase);
        }
        for (from, to, labels) in edges {
            let _ = writeln!(out, "    {from} --> {to}: {}", labels.join(", "));
        }
        out
    }
}

/// Renders the human-readable definition of a machine: phases with their
/// meaning, the complete table and the diagram. `state_machines/<kind>.md` holds
/// exactly this text, and a test keeps it so. `title` becomes the heading,
/// `intro` the paragraph under it (Markdown).
///
/// # Errors
///
/// [`CoverageError`] as [`TransitionTable::derive`].
pub fn render_definition<M: MachineDocs>(
    title: &str,
    intro: &str,
) -> Result<String, CoverageError> {
    let table = TransitionTable::derive::<M>()?;
    let mut out = format!("# {title}\n\n<!-- Generated from the code by `adsync machines --markdown {kind}`; a test fails when it drifts. -->\n\n{intro}\n\n## Phases\n\n| phase | meaning, and the effect that leaves it |\n|---|---|\n", kind = M::KIND);
    for phase in M::Phase::iter() {
        let _ = writeln!(out, "| {phase} | {} |", M::describe_phase(phase));
    }
    let _ = write!(
        out,
        "\n## Diagram\n\n```mermaid\n{}```\n\n## Transition table (every phase × outcome)\n\n{}",
        table.to_mermaid(),
        table.to_markdown()
    );
    Ok(out)
}
