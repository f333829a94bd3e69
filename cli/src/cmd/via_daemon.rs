//! The commands that talk to a running `adsync daemon` instead of opening
//! the store (`--daemon URL` or `ADSYNC_DAEMON_URL`): the daemon holds the
//! store and runs the syncs; these send it the request and print its answer
//! the way the local command prints its own.

use std::time::Duration;

use serde_json::{json, Value};

use adsync::{CampaignSet, HistoryEntry, Status};

use crate::daemon_client::DaemonClient;
use crate::exit::Exit;
use crate::failure::Failure;
use crate::platform_args::platform_name;

/// How often a waiting `push` asks the daemon how its syncs stand.
const POLL: Duration = Duration::from_millis(200);

/// `adsync push --daemon`: submits the set (validated here first, so a bad
/// file is named as the local command names it), then follows its syncs
/// until each settles; the exit is the worst of their statuses.
pub async fn push(client: &DaemonClient, args: super::push::Args) -> Result<Exit, Failure> {
    let text = std::fs::read_to_string(&args.set)
        .map_err(|e| Failure::usage(format!("cannot read {}: {e}", args.set.display())))?;
    CampaignSet::from_json(&text, &args.set.display().to_string())
        .map_err(|e| Failure::usage(e.to_string()))?;
    let set: Value = serde_json::from_str(&text)
        .map_err(|e| Failure::usage(format!("{}: {e}", args.set.display())))?;
    let body = json!({
        "set": set,
        "account": args.account,
        "platform": platform_name(args.platform.platform),
        "adopt_existing": args.adopt_existing,
        "prune": args.prune,
        "take_over": args.take_over,
    });
    let answer = client
        .post("/v1/pushes", &body)
        .await?
        .map_err(|r| r.into_failure())?;
    let ids: Vec<String> = answer
        .get("syncs")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
        .ok_or_else(|| Failure::failed(format!("the daemon's answer names no syncs: {answer}")))?;
    errln!(
        "submitted to the daemon at {}: {}",
        client.url(),
        ids.join(", ")
    );
    let mut settled = Vec::new();
    for id in &ids {
        let view = wait_settled(client, id).await?;
        settled.push(view);
    }
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&json!({ "syncs": settled })).unwrap_or_default()
        );
    } else {
        for view in &settled {
            outln!("{}", sync_line(view));
        }
    }
    Ok(settled
        .iter()
        .map(|v| exit_of(status_of(v)))
        .fold(Exit::Ok, Exit::worst))
}

/// Polls sync `id` until the daemon reports it settled.
async fn wait_settled(client: &DaemonClient, id: &str) -> Result<Value, Failure> {
    loop {
        let view = client
            .get(&format!("/v1/syncs/{id}"))
            .await?
            .map_err(|r| r.into_failure())?;
        if status_of(&view) != Some(Status::Running) {
            return Ok(view);
        }
        tokio::time::sleep(POLL).await;
    }
}

fn status_of(view: &Value) -> Option<Status> {
    view.get("status")
        .and_then(|s| serde_json::from_value(s.clone()).ok())
}

fn exit_of(status: Option<Status>) -> Exit {
    match status {
        Some(Status::Succeeded | Status::Cancelled) => Exit::Ok,
        Some(Status::NeedsAttention) => Exit::NeedsAttention,
        Some(Status::Running) => Exit::Deferred,
        Some(Status::Failed) | None => Exit::SyncFailed,
    }
}

fn text<'a>(view: &'a Value, key: &str) -> &'a str {
    view.get(key).and_then(Value::as_str).unwrap_or("-")
}

fn label<'a>(view: &'a Value, key: &str) -> &'a str {
    view.get("labels")
        .and_then(|l| l.get(key))
        .and_then(Value::as_str)
        .unwrap_or("-")
}

/// One sync as `status --daemon` lists it: where the daemon has it, when it
/// is unfinished (running now, waiting for a time, or queued for a slot); on
/// a shared store, which daemon holds it, or that it waits for a new owner.
fn sync_line(view: &Value) -> String {
    let lease = view.get("lease").filter(|l| !l.is_null());
    let status = match (view.get("queue"), lease) {
        (Some(q), _) if !q.is_null() => match (text(q, "place"), q.get("until")) {
            ("waiting", Some(Value::String(until))) => format!("waiting until {until}"),
            (place, _) => place.to_string(),
        },
        (_, Some(lease)) if text(view, "status") == "running" => {
            if lease.get("expired") == Some(&Value::Bool(true)) {
                "waiting for a new owner".to_string()
            } else {
                format!(
                    "running on {} (lease until {})",
                    text(lease, "owner"),
                    text(lease, "expires_at")
                )
            }
        }
        // Released by its last holder until its backoff ends: any daemon
        // claims it then.
        _ if text(view, "status") == "running" && text(view, "not_before") != "-" => {
            format!("waiting until {}", text(view, "not_before"))
        }
        _ => text(view, "status").to_string(),
    };
    let who = match text(view, "kind") {
        "pull" => label(view, "profile"),
        _ => label(view, "account"),
    };
    let error = text(view, "last_error");
    format!(
        "{:<28} {:<5} {:<8} {:<20} {:<18} {:<24} {}",
        text(view, "id"),
        text(view, "kind"),
        label(view, "platform"),
        who,
        text(view, "phase"),
        status,
        if error == "-" { "" } else { error }
    )
}

/// `adsync status --daemon`: every sync the daemon's store holds.
pub async fn status(client: &DaemonClient, args: super::status::Args) -> Result<Exit, Failure> {
    let answer = client
        .get("/v1/syncs")
        .await?
        .map_err(|r| r.into_failure())?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        );
        return Ok(Exit::Ok);
    }
    let syncs = answer
        .get("syncs")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    outln!(
        "{:<28} {:<5} {:<8} {:<20} {:<18} {:<24} LAST ERROR",
        "SYNC",
        "KIND",
        "PLATFORM",
        "ACCOUNT/PROFILE",
        "PHASE",
        "STATUS"
    );
    for view in &syncs {
        outln!("{}", sync_line(view));
    }
    let unreadable = answer
        .get("unreadable")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    if unreadable > 0 {
        errln!("{unreadable} record(s) in the daemon's store do not decode");
        return Ok(Exit::StoreUnusable);
    }
    Ok(Exit::Ok)
}

/// `adsync history --daemon`.
pub async fn history(client: &DaemonClient, args: super::history::Args) -> Result<Exit, Failure> {
    let answer = client
        .get(&format!("/v1/syncs/{}/history", args.sync))
        .await?
        .map_err(|r| r.into_failure())?;
    let entries: Vec<HistoryEntry> = answer
        .get("history")
        .and_then(|h| serde_json::from_value(h.clone()).ok())
        .ok_or_else(|| {
            Failure::failed(format!("the daemon's answer holds no history: {answer}"))
        })?;
    super::history::print_history(&entries, args.json);
    Ok(Exit::Ok)
}

/// `adsync cancel --daemon`.
pub async fn cancel(client: &DaemonClient, args: super::cancel::Args) -> Result<Exit, Failure> {
    let sync = args.sync;
    let answer = client
        .post(&format!("/v1/syncs/{sync}/cancel"), &json!({}))
        .await?
        .map_err(|r| r.into_failure())?;
    if answer.get("cancel").and_then(Value::as_str) == Some("requested") {
        outln!(
            "sync `{sync}`: cancel requested; the daemon cancels it at its next step boundary, \
             after the effect in flight is recorded"
        );
    } else {
        outln!("sync `{sync}` cancelled; every platform id it recorded is kept");
    }
    Ok(Exit::Ok)
}

/// `adsync resolve --daemon`: the daemon verifies an adopted id with its
/// own adapter, records the decision and continues the sync.
pub async fn resolve(client: &DaemonClient, args: super::resolve::Args) -> Result<Exit, Failure> {
    let sync = args.sync;
    let body = match (args.adopt, args.absent) {
        (Some(id), _) => json!({ "adopt": id }),
        (None, true) => json!({ "absent": true }),
        (None, false) => return Err(Failure::usage("pass --adopt <id> or --absent")),
    };
    let answer = client
        .post(&format!("/v1/syncs/{sync}/resolve"), &body)
        .await?
        .map_err(|r| r.into_failure())?;
    outln!(
        "{sync}: resolved; now {} (the daemon continues it)",
        text(&answer, "status")
    );
    Ok(Exit::Ok)
}

/// A profile id as a path or query segment: the library's own rule (letters,
/// digits, `_`, `-`), checked here so that nothing needs escaping.
fn profile_segment(profile: &str) -> Result<&str, Failure> {
    let ok = !profile.is_empty()
        && profile.len() <= 64
        && profile
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(profile)
    } else {
        Err(Failure::usage(format!(
            "invalid profile id `{profile}`: use 1 to 64 characters among A-Z a-z 0-9 _ -"
        )))
    }
}

/// `adsync pull --daemon`: submits the pull (the daemon's client, rate and
/// page size apply), then follows it until it settles.
pub async fn pull(client: &DaemonClient, args: super::pull::Args) -> Result<Exit, Failure> {
    if args.restart {
        return Err(Failure::usage(
            "--restart does not go through a daemon: the daemon resumes a failed pull from its staged pages",
        ));
    }
    let profile = profile_segment(&args.pulled.profile)?;
    let answer = client
        .post(
            "/v1/pulls",
            &json!({ "profile": profile, "platform": "amazon" }),
        )
        .await?
        .map_err(|r| r.into_failure())?;
    let sync = answer
        .get("sync")
        .and_then(Value::as_str)
        .ok_or_else(|| Failure::failed(format!("the daemon's answer names no sync: {answer}")))?
        .to_string();
    errln!("submitted to the daemon at {}: {sync}", client.url());
    let view = wait_settled(client, &sync).await?;
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&view).unwrap_or_default()
        );
    } else {
        outln!("{}", sync_line(&view));
    }
    Ok(exit_of(status_of(&view)))
}

/// `adsync show --daemon`: the profile's pull as the daemon lists it, and
/// its current snapshot when entities are asked for.
pub async fn show(client: &DaemonClient, args: super::show::Args) -> Result<Exit, Failure> {
    let profile = profile_segment(&args.pulled.profile)?.to_string();
    let listed = client
        .get(&format!(
            "/v1/syncs?kind=pull&platform=amazon&profile={profile}"
        ))
        .await?
        .map_err(|r| r.into_failure())?;
    let summary = listed
        .get("syncs")
        .and_then(Value::as_array)
        .and_then(|syncs| syncs.first())
        .map(sync_line);
    let wants_entities = args
        .kind
        .is_some_and(|k| k != super::show::ShowKind::Summary)
        || args.id.is_some();
    let snapshot = if summary.is_some() && wants_entities {
        match client
            .get(&format!("/v1/snapshots/amazon/{profile}"))
            .await?
        {
            Ok(value) => Some(serde_json::from_value(value).map_err(|e| {
                Failure::failed(format!("the daemon's snapshot does not decode: {e}"))
            })?),
            Err(refusal) if refusal.status == reqwest::StatusCode::NOT_FOUND => None,
            Err(refusal) => return Err(refusal.into_failure()),
        }
    } else {
        None
    };
    super::show::from_daemon(args, summary, snapshot).await
}
