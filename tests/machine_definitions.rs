//! Each machine's complete transition table and diagram are snapshots, and the
//! human-readable definitions in `state_machines/` are kept identical to the code.

mod common;

use std::path::Path;

use adsync::PushMachine;
use adsync::{Machine, MachineDocs, TransitionTable};
use strum::IntoEnumIterator;

/// Derives `M`'s table and checks totality: every phase × every outcome kind
/// has a row, accepted or rejected.
fn total_table<M: MachineDocs>() -> TransitionTable {
    let table = TransitionTable::derive::<M>().expect("samples cover every phase and outcome kind");
    for phase in M::Phase::iter() {
        for kind in M::OutcomeKind::iter() {
            assert!(
                table
                    .rows
                    .iter()
                    .any(|r| r.phase == phase.to_string() && r.outcome == kind.to_string()),
                "no row for {phase} × {kind}"
            );
        }
    }
    table
}

/// `state_machines/<kind>.md` is exactly what the code generates.
fn assert_definition_on_disk<M: Machine>(generated: String) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("state_machines")
        .join(format!("{}.md", M::KIND));
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        on_disk == generated,
        "{} is out of date with the code; regenerate it with `cargo run -- machines --markdown {} > {}`",
        path.display(),
        M::KIND,
        path.display()
    );
}

#[test]
fn push_transition_table_covers_every_phase_and_outcome() {
    let table = total_table::<PushMachine>();
    snap!("push_transition_table", table.to_markdown());
    snap!("push_diagram_mermaid", table.to_mermaid());
}

#[test]
fn finished_phases_accept_nothing() {
    let table = TransitionTable::derive::<PushMachine>().unwrap();
    for row in table
        .rows
        .iter()
        .filter(|r| ["Synced", "Failed", "Cancelled"].contains(&r.phase.as_str()))
    {
        assert!(row.result.is_err(), "{row:?}");
    }
}

#[test]
fn state_machines_directory_matches_the_code() {
    assert_definition_on_disk::<PushMachine>(adsync::PushMachine::definition_markdown());
}

#[test]
fn pull_transition_table_covers_every_phase_and_outcome() {
    let table = total_table::<adsync::PullMachine>();
    // Completed accepts only a new pull request.
    for row in table.rows.iter().filter(|r| r.phase == "Completed") {
        assert_eq!(
            row.result.is_ok(),
            row.outcome == "PullRequested",
            "{row:?}"
        );
    }
    snap!("pull_transition_table", table.to_markdown());
    snap!("pull_diagram_mermaid", table.to_mermaid());
}

#[test]
fn pull_definition_in_state_machines_matches_the_code() {
    assert_definition_on_disk::<adsync::PullMachine>(adsync::PullMachine::definition_markdown());
}
