//! `adsync resume`: continues interrupted syncs, push and pull, named or all.

use std::path::{Path, PathBuf};

use adsync::Status;
use adsync::{PushMachine, SetReport};
use adsync::{Store, StoreError};

use crate::endpoint::{endpoint_of, open_adapter, Endpoint};
use crate::exit::Exit;
use crate::failure::Failure;
use crate::platform_args::{Given, PlatformArgs};
use crate::progress::progress_observer;
use crate::pushing::open_pusher;
use crate::report::{finish, pushes_ran};
use crate::suggest::{absolute, command_line};
use crate::{pulling, signals};

/// Arguments of `adsync resume`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The syncs to resume.
    syncs: Vec<String>,
    /// Resume every unfinished sync, push and pull, and name those that
    /// need attention.
    #[arg(long, conflicts_with = "syncs")]
    all: bool,
    #[command(flatten)]
    platform: PlatformArgs,
    /// Print the final report as JSON.
    #[arg(long)]
    json: bool,
}

/// `adsync resume`: the named syncs, or with `--all` every unfinished one.
pub async fn run(db: &Path, args: Args, given: Given) -> Result<Exit, Failure> {
    let Args {
        syncs,
        all,
        platform,
        json,
    } = args;
    let args = &platform;
    use adsync::Machine as _;
    let store = Store::open_existing_from_async(db).await?;
    let db = store.path().to_path_buf();
    let shown_db = absolute(&db);
    let mut again = vec!["adsync", "--db", shown_db.as_str(), "resume"];
    if all {
        again.push("--all");
    } else {
        again.extend(syncs.iter().map(String::as_str));
    }
    let interrupts = signals::Interrupts::install(adsync::StopSignal::new(), command_line(again));
    let mut records = Vec::new();
    let mut attention = Vec::new();
    if all {
        let found = store
            .blocking(|store| {
                let mut found = Vec::new();
                for record in store.records(false) {
                    let record = record?;
                    if matches!(record.status, Status::Running | Status::NeedsAttention) {
                        found.push((record.id, record.kind, record.status, record.last_error));
                    }
                }
                Ok::<_, StoreError>(found)
            })
            .await??;
        for (id, kind, status, reason) in found {
            if status == Status::NeedsAttention {
                attention.push((id, reason));
            } else {
                records.push((id, kind));
            }
        }
    } else if syncs.is_empty() {
        return Err(Failure::usage("name a sync to resume, or pass --all"));
    } else {
        for id in syncs {
            let key = id.clone();
            let record = store
                .blocking(move |store| store.record(&key))
                .await??
                .ok_or_else(|| Failure::usage(format!("no sync `{id}` in {}", db.display())))?;
            // A failed pull is resumed (its staged pages are kept); a failed push is final.
            if record.status == Status::Failed && record.kind == PushMachine::KIND {
                return Err(failed_is_final(&db, &id, &record));
            }
            records.push((id, record.kind));
        }
    }
    // Push syncs grouped by where they push to: one adapter per endpoint.
    let mut pushes: std::collections::BTreeMap<Endpoint, Vec<String>> = Default::default();
    let mut pulls = Vec::new();
    for (id, kind) in records {
        if kind == PushMachine::KIND {
            let key = id.clone();
            let record = store
                .blocking(move |store| store.record(&key))
                .await??
                .ok_or_else(|| Failure::usage(format!("no sync `{id}` in {}", db.display())))?;
            let endpoint = endpoint_of(&db, &id, &record, args, given)?;
            pushes.entry(endpoint).or_default().push(id);
        } else if kind == adsync::PullMachine::KIND {
            pulls.push(id);
        } else {
            return Err(Failure::usage(format!(
                "sync `{id}` is a `{kind}` sync, which resume does not know"
            )));
        }
    }
    let mut report = SetReport {
        campaigns: Vec::new(),
        errors: Vec::new(),
    };
    let mut cannot_run = Vec::new();
    for (endpoint, ids) in pushes {
        let pusher = match open_adapter(args, &endpoint) {
            Ok(adapter) => open_pusher(store.clone(), adapter, interrupts.stop_signal()),
            Err(f) => {
                cannot_run.push(format!(
                    "{} ({}: {})",
                    ids.join(", "),
                    endpoint.platform(),
                    f.message
                ));
                continue;
            }
        };
        let observer = progress_observer(&pusher, &ids, json).await;
        let part = pusher.run_all_observed(&ids, observer).await;
        report.campaigns.extend(part.campaigns);
        report.errors.extend(part.errors);
    }
    let mut code = if pushes_ran(&report) {
        finish(&report, json)
    } else {
        Exit::Ok
    };
    if all && pulls.is_empty() && !pushes_ran(&report) && cannot_run.is_empty() && !json {
        outln!("nothing to resume in {}", db.display());
    }
    for id in pulls {
        match pulling::resume(store.clone(), &id, json, &interrupts).await {
            Ok(pulled) => code = code.worst(pulled),
            Err(f) if f.exit == Exit::BadInput => {
                cannot_run.push(format!("{id} (pull: {})", f.message))
            }
            Err(f) => return Err(f),
        }
    }
    for (id, reason) in &attention {
        // The reason names the candidates (several matches) or the rejection.
        let db = crate::suggest::shell_quote(&db.to_string_lossy());
        errln!(
            "needs attention: `{id}`: {}; settle it with `adsync --db {db} resolve {id} --adopt <platform id>` or `adsync --db {db} resolve {id} --absent` (`adsync --db {db} history {id}` shows how it got there)",
            reason.as_deref().unwrap_or("no reason recorded"),
        );
    }
    for c in &cannot_run {
        errln!("cannot resume: {c}");
    }
    if !attention.is_empty() {
        code = code.worst(Exit::NeedsAttention);
    }
    if !cannot_run.is_empty() {
        code = code.worst(Exit::BadInput);
    }
    Ok(interrupts.finish().unwrap_or(code))
}

/// `resume` of a failed sync: failed syncs are final; say how to push again.
fn failed_is_final(db: &Path, id: &str, record: &adsync::Record) -> Failure {
    let labels = &record.labels;
    let endpoint = match (labels.get("base_url"), labels.get("memory_file")) {
        (Some(url), _) => Some(Endpoint::Reddit(url.clone())),
        (None, Some(file)) => Some(Endpoint::Memory(PathBuf::from(file))),
        _ => None,
    };
    let command = match (labels.get("set_file"), labels.get("account"), endpoint) {
        (Some(file), Some(account), Some(endpoint)) => format!(
            "`adsync --db {} push {} --account {} {}`",
            crate::suggest::shell_quote(&db.to_string_lossy()),
            crate::suggest::shell_quote(file),
            crate::suggest::shell_quote(account),
            endpoint.flags()
        ),
        _ => "`adsync push <set file> --account <account>` with the same set".to_string(),
    };
    Failure::failed(format!(
            "sync `{id}` failed ({}); failed syncs are final and are not resumed. Push the set again, which starts a new sync and updates what exists: {command}",
            record.last_error.as_deref().unwrap_or("no error recorded")
    ))
}
