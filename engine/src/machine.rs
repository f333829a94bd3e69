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
    /// When the outcome was applied.
    pub now: Timestamp,
    /// A uniform sample in `[0, 1)` for backoff jitter.
    pub jitter: f64,
}

pub use crate::status::Status;

/// What happens next in a state.
#[derive(Debug, Clone, PartialEq)]
pub enum Next<E> {
    /// Run this effect.
    Effect(E),
    /// No effect leaves this state (final, or parked for an operator).
    Settled(Status),
}

/// A `(state, outcome)` pair the machine does not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{machine}: outcome `{outcome}` is impossible in phase `{phase}`: {reason}")]
pub struct TransitionError {
    /// The machine's kind.
    pub machine: &'static str,
    /// The phase of the state.
    pub phase: String,
    /// The kind of the outcome.
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
    /// A side effect a state names.
    type Effect: Clone + Debug + PartialEq + Serialize + Send + Sync + 'static;
    /// The result of an effect (or an operator's or the runner's input).
    type Outcome: Clone + Debug + PartialEq + Serialize + DeserializeOwned + Send + Sync + 'static;
    /// The finite set of phases (the "typed states" of tables and diagrams);
    /// the runner writes a state's phase into its record and history.
    type Phase: Copy + Eq + Debug + Display + Send + Sync + 'static;

    /// The phase `state` is in.
    fn phase(state: &Self::State) -> Self::Phase;
    /// The effect that leaves `state`, or why none does.
    fn next(state: &Self::State) -> Next<Self::Effect>;
    /// Pure, total transition.
    fn transition(
        state: &Self::State,
        outcome: &Self::Outcome,
        ctx: &Context,
    ) -> Result<Self::State, TransitionError>;
    /// After a restart the effect named by `state` may have been in flight. If
    /// running it again is unsafe, the outcome to apply instead; `None` when the
    /// effect is repeatable.
    fn on_restart(state: &Self::State) -> Option<Self::Outcome>;
    /// The earliest time the effect may run (backoff); `None` for "now".
    fn not_before(_state: &Self::State) -> Option<Timestamp> {
        None
    }
    /// Whether `outcome` reports a failed effect (counted in the record).
    fn is_failure(_outcome: &Self::Outcome) -> bool {
        false
    }
    /// The error worth showing in status output, if any.
    fn last_error(_state: &Self::State) -> Option<String> {
        None
    }
    /// A one-line, human description of an effect, for traces, logs and the
    /// stored history.
    fn describe_effect(effect: &Self::Effect) -> String {
        format!("{effect:?}")
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
    /// What a checkpoint stores of `state` (default: all of it).
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
    fn encode_segments(
        _prev: Option<&Self::State>,
        _state: &Self::State,
    ) -> serde_json::Result<Vec<(u32, Box<RawValue>)>> {
        Ok(Vec::new())
    }
    /// Rebuilds a state from a checkpoint and, for machines that split them
    /// out, the sync's plan and its progress segments (in segment order). The
    /// error says what does not fit.
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
    /// The finite set of outcome kinds.
    type OutcomeKind: Copy + Eq + Debug + Display + IntoEnumIterator + Send + Sync + 'static;

    /// The kind of `outcome`.
    fn outcome_kind(outcome: &Self::Outcome) -> Self::OutcomeKind;
    /// What a phase means and which effect leaves it (for `state_machines/`).
    fn describe_phase(phase: Self::Phase) -> &'static str;
    /// Representative states, each labelled with the condition it stands for;
    /// together they must cover every phase (checked by [`TransitionTable::derive`]).
    fn sample_states() -> Vec<(String, Self::State)>;
    /// Representative outcomes covering every outcome kind.
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
    /// The machine's kind.
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
    /// Fails when the samples miss a phase or an outcome kind, so the table is
    /// always complete.
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
/// exactly this text, and a test keeps it so.
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
