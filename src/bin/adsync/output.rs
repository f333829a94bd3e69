//! Human and JSON output of the CLI.

use std::sync::Arc;

use adsync::machine::Machine;
use adsync::push::{Observer, PushMachine, SetReport};
use adsync::store::Store;

use crate::Failure;

/// [`printer`], plus a progress bar of settled entities on stderr when stderr
/// is a terminal (never in scripts, pipes or tests). `syncs` are the syncs about
/// to run, with how many entities each has and how many are already settled.
pub fn printer_with_progress(json: bool, syncs: &[(String, u64, u64)]) -> Observer {
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
    let done: std::sync::Mutex<std::collections::HashMap<String, u64>> =
        std::sync::Mutex::new(syncs.iter().map(|(id, _, d)| (id.clone(), *d)).collect());
    bar.set_position(syncs.iter().map(|(_, _, d)| d).sum());
    Arc::new(move |t| {
        bar.suspend(|| print(t));
        let settled = settled(&t.state);
        let mut done = done.lock().unwrap_or_else(|p| p.into_inner());
        done.insert(t.sync.clone(), settled);
        bar.set_position(done.values().sum());
        if bar.position() >= total {
            bar.finish_and_clear();
        }
    })
}

/// Entities of a push state that are no longer pending.
pub fn settled(state: &adsync::push::PushState) -> u64 {
    state
        .entities
        .iter()
        .filter(|e| !matches!(e.result, adsync::push::EntityResult::Pending))
        .count() as u64
}

/// Prints each transition as it becomes durable (humans only; JSON prints the report at the end).
pub fn printer(json: bool) -> Observer {
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

pub fn report(report: &SetReport, json: bool) {
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        );
        return;
    }
    for c in &report.campaigns {
        outln!("\n{} (campaign `{}`): {}", c.sync, c.campaign, c.status);
        if let Some(e) = &c.last_error {
            outln!("  last error: {e}");
        }
        for e in c.entities.iter() {
            outln!(
                "  {:<9} {:<16} {:<12} {}",
                e.kind.to_string(),
                e.local_id,
                e.platform_id.as_deref().unwrap_or("-"),
                serde_json::to_value(&e.result)
                    .ok()
                    .and_then(|v| v.get("result").and_then(|r| r.as_str()).map(str::to_string))
                    .unwrap_or_default()
            );
        }
    }
    for e in &report.errors {
        outln!("error: {e}");
    }
}

pub fn status(store: &Store, json: bool) -> Result<u8, Failure> {
    let mut rows = Vec::new();
    let mut broken = Vec::new();
    for item in store.list() {
        match item {
            Ok(r) => rows.push(r),
            Err(e) => broken.push(e.to_string()),
        }
    }
    if json {
        let value = serde_json::json!({
            "syncs": rows.iter().map(|r| serde_json::json!({
                "id": r.id, "kind": r.kind, "phase": r.phase, "status": r.status,
                "effects_run": r.effects_run, "failed_effects": r.failed_effects,
                "last_error": r.last_error, "labels": r.labels,
                "created_at": fmt_time(r.created_at), "updated_at": fmt_time(r.updated_at),
                "entities": push_entities(r),
            })).collect::<Vec<_>>(),
            "pulls": crate::pull_cli::pull_statuses(&rows),
            "unreadable": broken,
        });
        outln!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        outln!(
            "{:<24} {:<6} {:<16} {:<15} {:>7}  last error",
            "sync",
            "kind",
            "phase",
            "status",
            "effects"
        );
        for r in &rows {
            outln!(
                "{:<24} {:<6} {:<16} {:<15} {:>7}  {}",
                r.id,
                r.kind,
                r.phase,
                r.status.to_string(),
                r.effects_run,
                r.last_error.as_deref().unwrap_or("")
            );
        }
        for b in &broken {
            outln!("unreadable: {b}");
        }
        crate::pull_cli::print_pull_section(&rows);
    }
    Ok(if broken.is_empty() { 0 } else { 4 })
}

pub fn history(store: &Store, sync: &str, json: bool) -> Result<u8, Failure> {
    let entries = store.history(sync)?;
    if entries.is_empty() {
        return Err(Failure::usage(format!(
            "no sync `{sync}` in {}",
            store.path().display()
        )));
    }
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&entries).unwrap_or_default()
        );
    } else {
        for e in entries {
            outln!(
                "#{:<3} {}  {:<16} → {:<16} {} ⇒ {}",
                e.seq,
                fmt_time(e.at),
                e.from,
                e.to,
                e.effect.as_deref().unwrap_or("(no effect run)"),
                e.outcome
            );
        }
    }
    Ok(0)
}

/// For push syncs: every entity with its platform id and result (`null` otherwise).
fn push_entities(record: &adsync::store::Record) -> serde_json::Value {
    if record.kind != PushMachine::KIND {
        return serde_json::Value::Null;
    }
    match adsync::runner::decode_checkpoint::<PushMachine>(record.clone()) {
        Ok(checkpoint) => serde_json::to_value(
            adsync::push::CampaignReport::from_checkpoint(&checkpoint).entities,
        )
        .unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    }
}

fn fmt_time(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
