//! `adsync status`: every sync, every set push, every pull.

use std::io::Write;
use std::path::Path;

use adsync::Machine;
use adsync::PushMachine;
use adsync::{Record, StoreRead};

use crate::activity::Watch;
use crate::exit::Exit;
use crate::failure::Failure;
use crate::format::{rfc3339, short_time};
use crate::opened::Opened;
use crate::store_url::StoreUrl;

/// Arguments of `adsync status`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `adsync status`.
pub async fn run(db: &Path, shared: Option<&StoreUrl>, args: Args) -> Result<Exit, Failure> {
    let json = args.json;
    let opened = Opened::existing(db, shared).await?;
    let watch = opened.watch().await?;
    opened
        .store
        .read(move |store| status(store, &watch, json))
        .await?
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
fn status(store: &dyn StoreRead, watch: &Watch, json: bool) -> Result<Exit, Failure> {
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut broken = Vec::new();
    let written = if json {
        status_json(store, watch, &mut out, &mut broken)
    } else {
        status_table(store, watch, &mut out, &mut broken)
    };
    let _ = written.and_then(|()| out.flush());
    Ok(if broken.is_empty() {
        Exit::Ok
    } else {
        Exit::StoreUnusable
    })
}

fn status_json(
    store: &dyn StoreRead,
    watch: &Watch,
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
        let activity = watch.of(&r);
        let value = serde_json::json!({
            "id": r.id, "kind": r.kind,
            "platform": r.labels.get("platform"), "account": r.labels.get("account"),
            "phase": r.phase, "status": activity.shown(&r.status.to_string()),
            "recorded_status": r.status,
            "interrupted_at": activity.interrupted_at().map(rfc3339),
            "lease": activity.lease_json(),
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
    for set in set_rows(store, watch, broken) {
        write!(out, "{}\n    ", if first { "" } else { "," })?;
        first = false;
        serde_json::to_writer(&mut *out, &set)?;
    }
    let pulls: Vec<_> = crate::pulling::pull_statuses(&pull_records(store, broken), watch)
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
fn pull_records(store: &dyn StoreRead, broken: &mut Vec<String>) -> Vec<Record> {
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
fn set_rows(
    store: &dyn StoreRead,
    watch: &Watch,
    broken: &mut Vec<String>,
) -> Vec<serde_json::Value> {
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
                        Ok(Some(r)) => watch.of(&r).shown(&r.status.to_string()),
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
    store: &dyn StoreRead,
    watch: &Watch,
    out: &mut impl Write,
    broken: &mut Vec<String>,
) -> std::io::Result<()> {
    // A first pass sizes the columns (ids are never cut: they are pasted into commands).
    let (mut id_w, mut platform_w, mut account_w, mut phase_w) = (4, 8, 7, 5);
    // On a shared store a status names its daemon and lease ("running on …").
    let mut status_w = 11;
    for r in store.records(false).flatten() {
        id_w = id_w.max(r.id.chars().count());
        status_w = status_w.max(watch.of(&r).shown(&r.status.to_string()).chars().count());
        platform_w = platform_w.max(label(&r, "platform").chars().count().min(CELL / 3));
        account_w = account_w.max(label(&r, "account").chars().count().min(CELL / 2));
        phase_w = phase_w.max(r.phase.chars().count().min(CELL / 2));
    }
    writeln!(
        out,
        "{} {:<6} {} {} {} {} {:>7}  {:<20}  last error",
        pad("sync", id_w),
        "kind",
        pad("platform", platform_w),
        pad("account", account_w),
        pad("phase", phase_w),
        pad("status", status_w),
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
            "{} {:<6} {} {} {} {} {:>7}  {:<20}  {}",
            pad(&r.id, id_w),
            truncate(&r.kind, 6),
            pad(&truncate(label(&r, "platform"), platform_w), platform_w),
            pad(&truncate(label(&r, "account"), account_w), account_w),
            pad(&truncate(&r.phase, phase_w), phase_w),
            pad(&watch.of(&r).shown(&r.status.to_string()), status_w),
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
    let sets = set_rows(store, watch, broken);
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
    crate::pulling::print_pull_section(&pull_records(store, broken), watch);
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
