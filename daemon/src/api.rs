//! The routes of the control API and their handlers.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use adsync::{Cancelled, PushAdapter, PushOutcome, Queued, Record, RunError, Status, Worker};

use crate::body::{self, PullBody, PushBody, ResolveBody, ScheduleBody};
use crate::error::ApiError;
use crate::Config;

/// Every route the router serves, as `(method, path)` with axum's `{param}`
/// syntax, which is also OpenAPI's: `docs/openapi.yaml` describes exactly
/// these (a test checks both ways).
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/healthz"),
    ("GET", "/metrics"),
    ("POST", "/v1/pushes"),
    ("POST", "/v1/pulls"),
    ("GET", "/v1/syncs"),
    ("GET", "/v1/syncs/{id}"),
    ("GET", "/v1/syncs/{id}/history"),
    ("POST", "/v1/syncs/{id}/cancel"),
    ("POST", "/v1/syncs/{id}/resolve"),
    ("GET", "/v1/snapshots/{platform}/{profile}"),
    ("GET", "/v1/schedules"),
    ("POST", "/v1/schedules"),
    ("DELETE", "/v1/schedules/{platform}/{profile}"),
];

struct AppState {
    worker: Worker,
    verifiers: BTreeMap<String, Arc<dyn PushAdapter>>,
}

type Shared = State<Arc<AppState>>;
type Body = Result<Bytes, BytesRejection>;

/// The control API over `worker` as an axum router (see the crate docs and
/// `docs/openapi.yaml`): bearer-token check and body limit included, so
/// that embedding it elsewhere keeps them. It does not run the worker:
/// [`crate::serve`] does both.
pub fn router(worker: Worker, config: Config) -> Router {
    let state = Arc::new(AppState {
        worker,
        verifiers: config.verifiers.clone(),
    });
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/pushes", post(submit_push))
        .route("/v1/pulls", post(submit_pull))
        .route("/v1/syncs", get(list_syncs))
        .route("/v1/syncs/{id}", get(get_sync))
        .route("/v1/syncs/{id}/history", get(history))
        .route("/v1/syncs/{id}/cancel", post(cancel))
        .route("/v1/syncs/{id}/resolve", post(resolve))
        .route("/v1/snapshots/{platform}/{profile}", get(snapshot))
        .route("/v1/schedules", get(list_schedules).post(create_schedule))
        .route(
            "/v1/schedules/{platform}/{profile}",
            delete(delete_schedule),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(DefaultBodyLimit::max(config.body_limit));
    crate::auth::layer(routes, config.token)
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route (see docs/openapi.yaml)")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method not allowed on this route (see docs/openapi.yaml)",
    )
}

/// The body, or the limit's 413 (and other read failures) as a JSON error.
fn bytes(body: Body) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        let status = rejection.status();
        let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "the request body is larger than the daemon's limit (--body-limit); nothing was written"
                .to_string()
        } else {
            format!("cannot read the request body: {}", rejection.body_text())
        };
        ApiError::new(status, message)
    })
}

async fn healthz(State(state): Shared) -> Json<Value> {
    let depth = state.worker.depth();
    Json(json!({
        "status": "ok",
        "queue": { "ready": depth.ready, "waiting": depth.waiting, "running": depth.running },
    }))
}

async fn metrics(State(state): Shared) -> Result<Response, ApiError> {
    let text = state.worker.render_metrics().await?;
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

async fn submit_push(State(state): Shared, body: Body) -> Result<Response, ApiError> {
    let bytes = bytes(body)?;
    let push = PushBody::parse(body::text(&bytes)?)?;
    // An unknown platform is refused by the worker before anything is written.
    let ids = state
        .worker
        .submit_push_with(&push.set, &push.account, &push.platform, push.options)
        .await?;
    tracing::info!(set = %push.set.name, account = %push.account, platform = %push.platform, syncs = ids.len(), "push submitted");
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "set": push.set.name, "syncs": ids })),
    )
        .into_response())
}

async fn submit_pull(State(state): Shared, body: Body) -> Result<Response, ApiError> {
    let bytes = bytes(body)?;
    let pull: PullBody = body::parse(body::text(&bytes)?)?;
    let id = state
        .worker
        .submit_pull(&pull.profile, &pull.platform)
        .await?;
    tracing::info!(profile = %pull.profile, platform = %pull.platform, sync = %id, "pull submitted");
    Ok((StatusCode::ACCEPTED, Json(json!({ "sync": id }))).into_response())
}

/// One sync as the API shows it.
#[derive(Debug, Serialize)]
struct SyncView {
    id: String,
    kind: String,
    status: Status,
    phase: String,
    seq: u64,
    effects_run: u64,
    failed_effects: u64,
    last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: time::OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: time::OffsetDateTime,
    labels: BTreeMap<String, String>,
    /// When its next effect may start at the earliest (a backoff).
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    not_before: Option<time::OffsetDateTime>,
    /// Where the worker has it, for an unfinished sync: whether it is
    /// being worked on right now, not a guess from the record.
    queue: Option<QueueView>,
    /// On a store several daemons share: which daemon holds the sync, until
    /// when (the store's clock), and whether that ran out (the holder died or
    /// stalled: the sync waits for a new owner).
    #[serde(skip_serializing_if = "Option::is_none")]
    lease: Option<LeaseJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    state: Option<Box<serde_json::value::RawValue>>,
}

/// A sync's place in the worker's queue.
#[derive(Debug, Serialize)]
struct QueueView {
    /// `running`, `waiting` (for `until`) or `ready` (for a free slot).
    place: &'static str,
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    until: Option<time::OffsetDateTime>,
}

impl QueueView {
    fn of(queued: Option<Queued>) -> Option<QueueView> {
        queued.map(|q| match q {
            Queued::Running => QueueView {
                place: "running",
                until: None,
            },
            Queued::Ready => QueueView {
                place: "ready",
                until: None,
            },
            Queued::Waiting(at) => QueueView {
                place: "waiting",
                until: Some(at),
            },
        })
    }
}

/// A sync's lease on a shared store.
#[derive(Debug, Serialize)]
struct LeaseJson {
    owner: String,
    #[serde(with = "time::serde::rfc3339")]
    expires_at: time::OffsetDateTime,
    expired: bool,
    fence: u64,
}

/// The leases of the worker's store by sync, when it has leases.
async fn leases(worker: &Worker) -> Result<BTreeMap<String, LeaseJson>, ApiError> {
    let Some(leases) = worker.store().leases() else {
        return Ok(BTreeMap::new());
    };
    Ok(leases
        .leases()
        .await
        .map_err(RunError::from)?
        .into_iter()
        .map(|l| {
            (
                l.sync,
                LeaseJson {
                    owner: l.owner,
                    expires_at: l.expires_at,
                    expired: l.expired,
                    fence: l.fence,
                },
            )
        })
        .collect())
}

impl SyncView {
    fn of(record: Record, with_state: bool, queued: Option<Queued>) -> SyncView {
        SyncView {
            lease: None,
            not_before: record.not_before,
            queue: QueueView::of(queued),
            state: with_state.then(|| record.state.clone()),
            id: record.id,
            kind: record.kind,
            status: record.status,
            phase: record.phase,
            seq: record.seq,
            effects_run: record.effects_run,
            failed_effects: record.failed_effects,
            last_error: record.last_error,
            created_at: record.created_at,
            updated_at: record.updated_at,
            labels: record.labels,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SyncFilter {
    status: Option<String>,
    kind: Option<String>,
    account: Option<String>,
    profile: Option<String>,
    platform: Option<String>,
}

async fn list_syncs(
    State(state): Shared,
    filter: Result<Query<SyncFilter>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(filter) =
        filter.map_err(|e| ApiError::bad_request(format!("query: {}", e.body_text())))?;
    let status = match filter.status.as_deref() {
        None => None,
        Some(s) => Some(s.parse::<Status>().map_err(|_| {
            ApiError::bad_request(format!(
                "query: unknown status `{s}` (running, succeeded, failed, needs_attention, cancelled)"
            ))
        })?),
    };
    if let Some(kind) = filter.kind.as_deref() {
        if kind != "push" && kind != "pull" {
            return Err(ApiError::bad_request(format!(
                "query: unknown kind `{kind}` (push, pull)"
            )));
        }
    }
    let records = state
        .worker
        .store()
        // Record by record and without plans: a listing never needs them,
        // and a push's plan is its whole campaign.
        .read(|store| Ok::<_, adsync::StoreError>(store.records(false).collect::<Vec<_>>()))
        .await
        .map_err(RunError::from)?
        .map_err(RunError::from)?;
    let label = |r: &Record, key: &str, want: &Option<String>| {
        want.as_ref()
            .is_none_or(|w| r.labels.get(key).is_some_and(|v| v == w))
    };
    let mut leases = leases(&state.worker).await?;
    let mut syncs = Vec::new();
    let mut unreadable = 0usize;
    for record in records {
        let Ok(record) = record else {
            unreadable += 1;
            continue;
        };
        if status.is_some_and(|s| s != record.status)
            || filter.kind.as_ref().is_some_and(|k| *k != record.kind)
            || !label(&record, "account", &filter.account)
            || !label(&record, "profile", &filter.profile)
            || !label(&record, "platform", &filter.platform)
        {
            continue;
        }
        let queued = state.worker.queued(&record.id);
        let lease = leases.remove(&record.id);
        let mut view = SyncView::of(record, false, queued);
        view.lease = lease;
        syncs.push(view);
    }
    Ok(Json(json!({ "syncs": syncs, "unreadable": unreadable })))
}

async fn get_sync(State(state): Shared, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let record = state.worker.record(&id).await?;
    let queued = state.worker.queued(&id);
    let mut view = SyncView::of(record, true, queued);
    view.lease = leases(&state.worker).await?.remove(&id);
    Ok(Json(json!(view)))
}

async fn history(State(state): Shared, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    state.worker.record(&id).await?;
    let key = id.clone();
    let entries = state
        .worker
        .store()
        .read(move |store| store.history(&key))
        .await
        .map_err(RunError::from)?
        .map_err(RunError::from)?;
    Ok(Json(json!({ "sync": id, "history": entries })))
}

async fn cancel(State(state): Shared, Path(id): Path<String>) -> Result<Response, ApiError> {
    let outcome = state.worker.cancel(&id).await?;
    Ok(match outcome {
        Cancelled::Now => (
            StatusCode::OK,
            Json(json!({ "sync": id, "status": Status::Cancelled })),
        )
            .into_response(),
        Cancelled::Requested => (
            StatusCode::ACCEPTED,
            Json(json!({ "sync": id, "status": Status::Running, "cancel": "requested" })),
        )
            .into_response(),
        Cancelled::AlreadySettled(status) => {
            ApiError::conflict(format!("sync `{id}` has already finished ({status})"))
                .with("sync", id)
                .with("status", status.to_string())
                .into_response()
        }
    })
}

async fn resolve(
    State(state): Shared,
    Path(id): Path<String>,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let bytes = bytes(body)?;
    let decision: ResolveBody = body::parse(body::text(&bytes)?)?;
    let record = state.worker.record(&id).await?;
    if record.kind != "push" {
        return Err(ApiError::conflict(format!(
            "sync `{id}` is a {} sync; only push syncs are resolved",
            record.kind
        )));
    }
    match record.status {
        Status::NeedsAttention => {}
        Status::Running => {
            return Err(ApiError::conflict(format!(
                "sync `{id}` does not need attention: it is unfinished, and the daemon continues it"
            )))
        }
        status => {
            return Err(ApiError::conflict(format!(
                "sync `{id}` has finished ({status}); nothing to resolve"
            )))
        }
    }
    let platform = record.labels.get("platform").cloned().unwrap_or_default();
    let outcome = match (decision.adopt, decision.absent) {
        (Some(_), true) | (None, false) => {
            return Err(ApiError::bad_request(format!(
                "{}: give exactly one of {{\"adopt\": \"<platform id>\"}} and {{\"absent\": true}}",
                body::ORIGIN
            )))
        }
        (Some(adopt), false) => {
            let Some(adapter) = state.verifiers.get(&platform) else {
                return Err(ApiError::conflict(format!(
                    "sync `{id}`: cannot verify an id on platform `{platform}` (this daemon has no adapter for it); nothing was recorded"
                )));
            };
            let pusher = state.worker.pusher(&platform).ok_or_else(|| {
                ApiError::conflict(format!(
                    "sync `{id}` is on platform `{platform}`, which this daemon does not serve"
                ))
            })?;
            let checkpoint = pusher.runner().get(&id).await?;
            adsync::verify_adoption(adapter.as_ref(), &checkpoint.state, &adopt)
                .await
                .map_err(|e| {
                    let message =
                        format!("sync `{id}`: not adopting {adopt}: {e}; nothing was recorded");
                    if e.is_refusal() {
                        ApiError::bad_request(message)
                    } else {
                        ApiError::new(StatusCode::BAD_GATEWAY, message)
                    }
                })?;
            PushOutcome::OperatorAdopt { id: adopt }
        }
        (None, true) => PushOutcome::OperatorAbsent,
    };
    let status = state.worker.resolve_push(&id, outcome).await?;
    Ok(Json(json!({ "sync": id, "status": status })))
}

async fn snapshot(
    State(state): Shared,
    Path((platform, profile)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let puller = state.worker.puller(&platform).ok_or_else(|| {
        ApiError::not_found(format!(
            "this daemon does not pull from platform `{platform}`"
        ))
    })?;
    let snapshot = puller.reader().snapshot(&profile).await?.ok_or_else(|| {
        ApiError::not_found(format!(
            "no completed pull of profile `{profile}` on `{platform}`"
        ))
    })?;
    Ok(Json(json!(snapshot)))
}

async fn list_schedules(State(state): Shared) -> Result<Json<Value>, ApiError> {
    let schedules = state.worker.schedules().await?;
    Ok(Json(json!({ "schedules": schedules })))
}

async fn create_schedule(State(state): Shared, body: Body) -> Result<Response, ApiError> {
    let bytes = bytes(body)?;
    let wanted: ScheduleBody = body::parse(body::text(&bytes)?)?;
    let schedule = state
        .worker
        .create_schedule(&wanted.platform, &wanted.profile, wanted.cadence)
        .await?;
    Ok((StatusCode::CREATED, Json(json!(schedule))).into_response())
}

async fn delete_schedule(
    State(state): Shared,
    Path((platform, profile)): Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    if state.worker.delete_schedule(&platform, &profile).await? {
        Ok(Json(
            json!({ "deleted": { "platform": platform, "profile": profile } }),
        ))
    } else {
        Err(ApiError::not_found(format!(
            "no schedule of profile `{profile}` on `{platform}`"
        )))
    }
}
