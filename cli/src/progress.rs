//! What a push prints while it runs: each durable transition, and a progress
//! bar of settled entities on a terminal.

use std::sync::Arc;

use adsync::Machine;
use adsync::{PushMachine, PushObserver, Pusher};

/// Prints transitions, with a progress bar over the syncs' entities on a terminal.
pub async fn progress_observer(
    pusher: &Pusher,
    ids: &[String],
    json: bool,
) -> adsync::PushObserver {
    let mut syncs = Vec::new();
    for id in ids {
        if let Ok(c) = pusher.runner().get(id).await {
            syncs.push((
                id.clone(),
                c.state.entities().len() as u64,
                settled(&c.state),
            ));
        }
    }
    printer_with_progress(json, &syncs)
}

/// [`printer`], plus a progress bar of settled entities on stderr when stderr
/// is a terminal (never in scripts, pipes or tests). `syncs` are the syncs about
/// to run, with how many entities each has and how many are already settled.
fn printer_with_progress(json: bool, syncs: &[(String, u64, u64)]) -> PushObserver {
    use std::io::IsTerminal as _;
    let print = printer(json);
    let total: u64 = syncs.iter().map(|(_, n, _)| n).sum();
    if !std::io::stderr().is_terminal() || total == 0 {
        return print;
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} entities settled ({per_sec}, eta {eta})",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let done: parking_lot::Mutex<std::collections::HashMap<String, u64>> =
        parking_lot::Mutex::new(syncs.iter().map(|(id, _, d)| (id.clone(), *d)).collect());
    bar.set_position(syncs.iter().map(|(_, _, d)| d).sum());
    Arc::new(move |t| {
        bar.suspend(|| print(t));
        let settled = settled(&t.state);
        let mut done = done.lock();
        done.insert(t.sync.clone(), settled);
        bar.set_position(done.values().sum());
        if bar.position() >= total {
            bar.finish_and_clear();
        }
    })
}

/// Entities of a push state that are no longer pending.
fn settled(state: &adsync::PushState) -> u64 {
    state
        .entities()
        .iter()
        .filter(|e| !matches!(e.result(), adsync::EntityResult::Pending))
        .count() as u64
}

/// Prints each transition as it becomes durable (humans only; JSON prints the report at the end).
pub fn printer(json: bool) -> PushObserver {
    Arc::new(move |t| {
        if !json {
            let effect = t
                .effect
                .as_ref()
                .map(PushMachine::describe_effect)
                .unwrap_or_else(|| "(no effect run)".into());
            outln!(
                "[{}] #{} {} → {}: {effect} ⇒ {}",
                t.sync,
                t.seq,
                t.from,
                t.to,
                PushMachine::describe_outcome(&t.outcome)
            );
        }
    })
}
