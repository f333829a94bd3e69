//! `adsync status`: every sync, every set push, every pull.

use std::io::Write;
use std::path::Path;

use adsync::PushMachine;
use adsync::{Machine, Status};
use adsync::{Record, Store};

use crate::exit::Exit;
use crate::failure::Failure;
use crate::format::{rfc3339, short_time};

/// Arguments of `adsync status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `adsync status`.
pub async fn run(db: &Path, args: Args) -> Result<Exit, Failure> {
    let json = args.json;
    let store = Store::open_existing_from_async(db).await?;
    store.blocking(move |store| status(store, json)).await?
}

/// When `record`'s sync was left unfinished by a process that no longer
/// works on it: the time of its last checkpoint; `None` for a settled sync.
///
/// Only for a process that holds the store, as `status` and `show` do: sled
/// locks the store's directory for the process that opened it, so no other
/// process can be running any of its syncs now (a command that runs syncs
/// holds the store until it exits, and `status` run meanwhile exits 4). A
/// record that still says `running` was therefore left by a process that
/// stopped (killed, crashed, interrupted) before the sync settled, and
/// `adsync resume` continues it.
///
/// This is the one place that decides it: a process that both runs syncs
/// and reports on them (a daemon) must ask its own runner which syncs it is
/// driving instead.
pub fn interrupted_at(record: &Record) -> Option<time::OffsetDateTime> {
    (record.status == Status::Running).then_some(record.updated_at)
}

/// How `status` shows a sync's status: `interrupted` for a sync no process
/// works on (see [`interrupted_at`]), else as recorded.
fn shown_status(record: &Record) -> String {
    match interrupted_at(record) {
        Some(_) => "interrupted".to_string(),
        None => record.status.to_string(),
    }
}

/// Longest cell of the table's free-text columns; `--json` has the full text.
const CELL: usize = 48;

/// `text` cut to `max` characters, with an ellipsis when cut.
fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut cut: String = text.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// Pads `text` to `width` characters (`{:<w}` counts bytes of `…` wrongly).
fn pad(text: &str, width: usize) -> String {
    let n = text.chars().count();
    format!("{text}{}", " ".repeat(width.saturating_sub(n)))
}

fn label<'a>(record: &'a Record, key: &str) -> &'a str {
    record.labels.get(key).map(String::as_str).unwrap_or("-")
}

/// `adsync status`: every sync, then every set push, then pulls. Records are
/// read and written one at a time (in JSON too), so memory does not grow
/// with the number of syncs. Stops quietly when stdout is closed.
fn status(store: &Store, json: bool) -> Result<Exit, Failure> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut broken = Vec::new();
    let written = if json {
        status_json(store, &mut out, &mut broken)
    } else {
        status_table(store, &mut out, &mut broken)
    };
    let _ = written.and_then(|()| out.flush());
    Ok(if broken.is_empty() {
        Exit::Ok
    } else {
        Exit::StoreUnusable
    })
}

fn status_json(
    store: &Store,
    out: &mut impl Write,
    broken: &mut Vec<String>,
) -> std::io::Result<()> {
    write!(out, "{{\n  \"syncs\": [")?;
    let mut first = true;
    for item in store.records(true) {
        let r = match item {
            Ok(r) => r,
            Err(e) => {
                broken.push(e.to_string());
                continue;
            }
        };
        let interrupted_at = interrupted_at(&r).map(rfc3339);
        let value = serde_json::json!({
            "id": r.id, "kind": r.kind,
            "platform": r.labels.get("platform"), "account": r.labels.get("account"),
            "phase": r.phase, "status": shown_status(&r), "recorded_status": r.status,
            "interrupted_at": interrupted_at,
            "effects_run": r.effects_run, "failed_effects": r.failed_effects,
            "last_error": r.last_error, "labels": r.labels,
            "created_at": rfc3339(r.created_at), "updated_at": rfc3339(r.updated_at),
            "entities": push_entities(&r),
        });
        write!(out, "{}\n    ", if first { "" } else { "," })?;
        first = false;
        serde_json::to_writer(&mut *out, &value)?;
    }
    write!(out, "\n  ],\n  \"sets\": [")?;
    let mut first = true;
    for set in set_rows(store, broken) {
        write!(out, "{}\n    ", if first { "" } else { "," })?;
        first = false;
        serde_json::to_writer(&mut *out, &set)?;
    }
    let pulls: Vec<_> = crate::pulling::pull_statuses(&pull_records(store, broken))
        .iter()
        .map(crate::pulling::ShownPull::json)
        .collect();
    write!(out, "\n  ],\n  \"pulls\": ")?;
    serde_json::to_writer(&mut *out, &pulls)?;
    write!(out, ",\n  \"unreadable\": ")?;
    serde_json::to_writer(&mut *out, &broken)?;
    writeln!(out, "\n}}")
}

/// Pull records (one per pulled profile, not per sync of a set).
fn pull_records(store: &Store, broken: &mut Vec<String>) -> Vec<Record> {
    let mut pulls = Vec::new();
    for item in store.records(false) {
        match item {
            Ok(r) if r.kind == adsync::PullMachine::KIND => {
                // Read again with its plan, outside the scan.
                pulls.push(r.id);
            }
            Ok(_) => {}
            // Already reported by the first pass.
            Err(_) => {}
        }
    }
    pulls
        .into_iter()
        .filter_map(|id| match store.record(&id) {
            Ok(r) => r,
            Err(e) => {
                broken.push(e.to_string());
                None
            }
        })
        .collect()
}

/// The set pushes with their syncs' (shown) statuses.
fn set_rows(store: &Store, broken: &mut Vec<String>) -> Vec<serde_json::Value> {
    let mut sets = Vec::new();
    for set in adsync::set_records(store) {
        match set {
            Ok(set) => sets.push(set),
            Err(e) => broken.push(e),
        }
    }
    sets.into_iter()
        .map(|set| {
            let syncs: Vec<_> = set
                .campaigns
                .iter()
                .map(|m| {
                    let status = match store.record(&m.sync) {
                        Ok(Some(r)) => shown_status(&r),
                        Ok(None) => "missing".to_string(),
                        Err(_) => "unreadable".to_string(),
                    };
                    serde_json::json!({"campaign": m.campaign, "sync": m.sync, "status": status})
                })
                .collect();
            serde_json::json!({
                "name": set.name, "platform": set.platform, "account": set.account,
                "content_hash": set.content_hash, "started_at": rfc3339(set.started_at),
                "syncs": syncs,
            })
        })
        .collect()
}

fn status_table(
    store: &Store,
    out: &mut impl Write,
    broken: &mut Vec<String>,
) -> std::io::Result<()> {
    // A first pass sizes the columns (ids are never cut: they are pasted into commands).
    let (mut id_w, mut platform_w, mut account_w, mut phase_w) = (4, 8, 7, 5);
    for r in store.records(false).flatten() {
        id_w = id_w.max(r.id.chars().count());
        platform_w = platform_w.max(label(&r, "platform").chars().count().min(CELL / 3));
        account_w = account_w.max(label(&r, "account").chars().count().min(CELL / 2));
        phase_w = phase_w.max(r.phase.chars().count().min(CELL / 2));
    }
    writeln!(
        out,
        "{} {:<6} {} {} {} {:<11} {:>7}  {:<20}  last error",
        pad("sync", id_w),
        "kind",
        pad("platform", platform_w),
        pad("account", account_w),
        pad("phase", phase_w),
        "status",
        "effects",
        "last checkpoint"
    )?;
    for item in store.records(false) {
        let r = match item {
            Ok(r) => r,
            Err(e) => {
                broken.push(e.to_string());
                continue;
            }
        };
        writeln!(
            out,
            "{} {:<6} {} {} {} {:<11} {:>7}  {:<20}  {}",
            pad(&r.id, id_w),
            truncate(&r.kind, 6),
            pad(&truncate(label(&r, "platform"), platform_w), platform_w),
            pad(&truncate(label(&r, "account"), account_w), account_w),
            pad(&truncate(&r.phase, phase_w), phase_w),
            shown_status(&r),
            r.effects_run,
            short_time(r.updated_at),
            truncate(
                &r.last_error.as_deref().unwrap_or("").replace('\n', " "),
                CELL
            )
        )?;
    }
    for b in broken.iter() {
        writeln!(out, "unreadable: {b}")?;
    }
    let sets = set_rows(store, broken);
    if !sets.is_empty() {
        writeln!(out, "\nsets:")?;
        for set in sets {
            let field = |k: &str| {
                set.get(k)
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string()
            };
            let syncs = set
                .get("syncs")
                .and_then(|s| s.as_array())
                .map(|syncs| {
                    syncs
                        .iter()
                        .map(|s| {
                            format!(
                                "{} {}",
                                s.get("sync").and_then(|v| v.as_str()).unwrap_or(""),
                                s.get("status").and_then(|v| v.as_str()).unwrap_or("")
                            )
                        })
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default();
            writeln!(
                out,
                "{} ({} account {}, started {}): {syncs}",
                truncate(&field("name"), CELL),
                field("platform"),
                truncate(&field("account"), CELL / 2),
                field("started_at"),
            )?;
        }
    }
    out.flush()?;
    crate::pulling::print_pull_section(&pull_records(store, broken));
    Ok(())
}

/// For push syncs: every entity with its platform id and result (`null` otherwise).
fn push_entities(record: &adsync::Record) -> serde_json::Value {
    if record.kind != PushMachine::KIND {
        return serde_json::Value::Null;
    }
    match adsync::Checkpoint::<PushMachine>::try_from(record.clone()) {
        Ok(checkpoint) => {
            serde_json::to_value(adsync::CampaignReport::from_checkpoint(&checkpoint).entities)
                .unwrap_or_default()
        }
        Err(_) => serde_json::Value::Null,
    }
}
