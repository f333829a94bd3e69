//! The end of a push or resume: the set's report, and the exit it implies.

use adsync::SetReport;
use adsync::Status;

use crate::exit::Exit;

/// Prints a set's report: per campaign its entities and results, or JSON.
pub fn print(report: &SetReport, json: bool) {
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
            for o in &e.overwritten {
                outln!(
                    "      drift overwritten: {}: {} on the platform (adsync had written {}) → {}",
                    o.field,
                    o.platform,
                    o.written,
                    o.desired
                );
            }
        }
    }
    for e in &report.errors {
        outln!("error: {e}");
    }
}

/// Prints `report` and says how the syncs ended: attention over a failure
/// over a sync left unfinished (deferred) over success.
pub fn finish(report: &SetReport, json: bool) -> Exit {
    print(report, json);
    let any = |s: Status| report.campaigns.iter().any(|c| c.status == s);
    for c in report
        .campaigns
        .iter()
        .filter(|c| c.status == Status::Running)
    {
        // Stopped at a durable checkpoint with nothing lost (the platform was
        // unavailable): a later resume continues it.
        errln!(
            "note: sync `{}` stopped unfinished; resume it later with `adsync resume {}`",
            c.sync,
            c.sync
        );
    }
    if any(Status::NeedsAttention) {
        Exit::NeedsAttention
    } else if !report.errors.is_empty() || any(Status::Failed) {
        Exit::SyncFailed
    } else if any(Status::Running) {
        Exit::Deferred
    } else {
        Exit::Ok
    }
}

/// Whether any push ran (a report with neither campaigns nor errors is none).
pub fn pushes_ran(report: &SetReport) -> bool {
    !report.campaigns.is_empty() || !report.errors.is_empty()
}
