//! Each machine's complete transition table and diagram are snapshots, and the
//! human-readable definitions in `state_machines/` are kept identical to the code.

mod common;

use std::path::Path;

use adsync::machine::{Machine, TransitionTable};
use adsync::push::PushMachine;

#[test]
fn push_transition_table_covers_every_phase_and_outcome() {
    let table = TransitionTable::derive::<PushMachine>()
        .expect("samples cover every phase and outcome kind");
    // Totality: every phase × every outcome kind has a row, accepted or rejected.
    use strum::IntoEnumIterator;
    for phase in adsync::push::PushPhase::iter() {
        for kind in adsync::push::PushOutcomeKind::iter() {
            assert!(
                table
                    .rows
                    .iter()
                    .any(|r| r.phase == phase.to_string() && r.outcome == kind.to_string()),
                "no row for {phase} × {kind}"
            );
        }
    }
    snap!("push_transition_table", table.to_markdown());
    snap!("push_diagram_mermaid", table.to_mermaid());
}

#[test]
fn finished_phases_accept_nothing() {
    let table = TransitionTable::derive::<PushMachine>().unwrap();
    for row in table
        .rows
        .iter()
        .filter(|r| r.phase == "Synced" || r.phase == "Failed")
    {
        assert!(row.result.is_err(), "{row:?}");
    }
}

#[test]
fn state_machines_directory_matches_the_code() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("state_machines")
        .join(format!("{}.md", PushMachine::KIND));
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    let generated = adsync::push::definition_markdown();
    assert!(
        on_disk == generated,
        "{} is out of date with the code; regenerate it with `cargo run -- machines --markdown push > {}`",
        path.display(),
        path.display()
    );
}
