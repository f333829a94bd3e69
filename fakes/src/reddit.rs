//! A local fake of the Reddit Ads API v3, with fault injection.
//!
//! It follows `docs/platforms/reddit.md` on its own terms (it shares no types with the
//! adapter): envelopes, string ids, RFC 3339 `created_at`/`modified_at`,
//! validation errors as 400 with field messages, 404 for unsupported methods and
//! for `GET /ad_accounts/{a}/ads/{id}`, pagination with `page.size`/`page.token`
//! and an absolute `next_url`, bearer auth, a required `User-Agent`, and
//! fixed-window rate limits with `X-Ratelimit-*` headers and optional `Retry-After`.
//! Any `a2_…` account id exists (and starts empty); other account ids are 404.
//! The rate-limit windows are per server (reads and writes separately), not per account.
//!
//! It only ever listens on loopback.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use adsync_fakes::reddit::{RedditFault, RedditFaultKind, FakeReddit, FakeRedditConfig};
//!
//! let fake = FakeReddit::start(FakeRedditConfig::default()).await?;
//! println!("Reddit Ads API at {}", fake.base_url()); // http://127.0.0.1:PORT/api/v3
//! // The next POST creating a campaign is stored, but its response is lost.
//! fake.inject(RedditFault::new(RedditFaultKind::LoseResponse { withhold_ms: None })
//!     .method("POST").path_contains("/campaigns").times(1));
//! // … run the adapter …
//! assert_eq!(fake.entities().campaigns.len(), 1);
//! fake.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! # Admin endpoints (no auth, not rate limited, not logged)
//!
//! | method & path              | effect                                              |
//! |----------------------------|-----------------------------------------------------|
//! | `POST /__admin/faults`     | add a [`RedditFault`] (JSON), answers 204                 |
//! | `GET /__admin/faults`      | the pending faults                                  |
//! | `DELETE /__admin/faults`   | clear all faults                                    |
//! | `GET /__admin/entities`    | every entity held: [`FakeEntities`]                 |
//! | `GET /__admin/requests`    | the request log: [`LoggedRequest`]s                 |
//! | `DELETE /__admin/requests` | clear the request log                               |
//! | `POST /__admin/token`      | `{"token": "..."}`: the bearer token now expected   |

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Bytes};
use axum::extract::{Request, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE, DATE, HOST, RETRY_AFTER, USER_AGENT};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use parking_lot::{Mutex, MutexGuard};
use reqwest::Url;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Notify};
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt;

/// Settings of a fake server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeRedditConfig {
    /// Where [`FakeReddit::start`] binds; must be a loopback address (port 0: any free port).
    pub bind: SocketAddr,
    /// The bearer token requests must carry (`Authorization: Bearer <token>`).
    pub token: String,
    /// GET requests allowed per window.
    pub reads_per_window: u32,
    /// POST/PATCH requests allowed per window.
    pub writes_per_window: u32,
    /// The rate-limit window (60 s on Reddit; scale it down for tests).
    pub window: Duration,
    /// Whether a 429 from the rate limiter carries `Retry-After`.
    pub retry_after_header: bool,
    /// Whether responses carry `X-Ratelimit-Used`/`-Remaining`/`-Reset`.
    pub ratelimit_headers: bool,
    /// Page size when a list request gives no `page.size`.
    pub default_page_size: usize,
    /// Largest accepted `page.size`.
    pub max_page_size: usize,
    /// Send `X-Ratelimit-Reset` with millisecond precision (`"0.250"`) instead
    /// of whole seconds rounded up. Reddit sends whole seconds over a 60 s
    /// window; a test or benchmark that scales the window down to 1 s should
    /// scale the header's precision with it, or the rounding (≤ 1 s, i.e. ≤ 1/60
    /// of a real window) becomes up to a whole window.
    pub fractional_reset: bool,
    /// How far the fake's clock runs ahead of this machine's (negative: behind),
    /// in seconds: it stamps `created_at`/`modified_at` and the `Date` header
    /// with it, like a platform whose clock disagrees with ours.
    pub clock_offset_secs: i64,
}

impl Default for FakeRedditConfig {
    fn default() -> Self {
        FakeRedditConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: "fake-reddit-token".into(),
            reads_per_window: 400,
            writes_per_window: 200,
            window: Duration::from_secs(60),
            retry_after_header: true,
            ratelimit_headers: true,
            default_page_size: 25,
            max_page_size: 1000,
            fractional_reset: false,
            clock_offset_secs: 0,
        }
    }
}

/// One injected misbehaviour, applied to the next matching requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedditFault {
    /// Only requests with this method (e.g. `"POST"`), if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Only requests whose path contains this, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_contains: Option<String>,
    /// How many requests it hits; `None`: every matching request until cleared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub times: Option<u32>,
    /// What happens.
    pub kind: RedditFaultKind,
}

impl RedditFault {
    /// A fault hitting every request until cleared (narrow it with the builders).
    pub fn new(kind: RedditFaultKind) -> Self {
        RedditFault {
            method: None,
            path_contains: None,
            times: None,
            kind,
        }
    }

    /// Only requests with `method`.
    pub fn method(mut self, method: &str) -> Self {
        self.method = Some(method.to_ascii_uppercase());
        self
    }

    /// Only requests whose path contains `fragment`.
    pub fn path_contains(mut self, fragment: &str) -> Self {
        self.path_contains = Some(fragment.to_string());
        self
    }

    /// Only the next `n` matching requests.
    pub fn times(mut self, n: u32) -> Self {
        self.times = Some(n);
        self
    }

    fn matches(&self, method: &Method, path: &str) -> bool {
        self.times != Some(0)
            && self
                .method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method.as_str()))
            && self
                .path_contains
                .as_deref()
                .is_none_or(|p| path.contains(p))
    }
}

/// The misbehaviours a [`RedditFault`] can inject.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum RedditFaultKind {
    /// Answer `status` with an error body. With `after_apply` the request is
    /// processed first (a create is stored) and only the answer is the error.
    /// `retry_after_secs` / `reset_secs` add `Retry-After` /
    /// `X-Ratelimit-Remaining: 0` + `X-Ratelimit-Reset` (useful with 429).
    Status {
        /// HTTP status, e.g. 500 or 429.
        status: u16,
        /// Process the request before answering the error.
        #[serde(default)]
        after_apply: bool,
        /// `Retry-After` seconds to send.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_secs: Option<u64>,
        /// `X-Ratelimit-Reset` seconds to send (with `X-Ratelimit-Remaining: 0`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reset_secs: Option<u64>,
    },
    /// Wait before handling the request normally.
    Latency {
        /// Milliseconds.
        ms: u64,
    },
    /// Close the connection without answering and without processing.
    Drop,
    /// Process the request (a create is stored), then lose the answer: close the
    /// connection (`withhold_ms: None`) or answer only after `withhold_ms`.
    LoseResponse {
        /// Delay before the (probably too late) answer; `None` drops the connection.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        withhold_ms: Option<u64>,
    },
    /// Process the request, then answer 200 with a truncated, invalid JSON body.
    Garble,
    /// Process the request, then answer 200 with exactly this body (e.g. `{"data": {}}`).
    RawBody {
        /// The body sent.
        body: String,
    },
    /// Answer 401 whatever the token ("the token expired").
    Unauthorized,
}

/// One request the fake received (admin requests are not logged).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoggedRequest {
    /// HTTP method.
    pub method: String,
    /// Path and query as received.
    pub path: String,
    /// Status answered; `None` when no answer was given: the connection was
    /// dropped, the answer withheld, or the client went away first.
    pub status: Option<u16>,
    /// When it arrived (RFC 3339).
    pub at: String,
    /// The injected fault that hit it, if any (e.g. `"lose_response"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// Its `User-Agent` header as sent (empty when missing or not text):
    /// tells apart the clients of one fake, e.g. several workers.
    #[serde(default)]
    pub user_agent: String,
    /// The `data` object of a POST or PATCH body, as sent (tests check that
    /// an update holds only the fields that changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

/// Everything the fake holds, in creation order (each object as the API shows it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FakeEntities {
    /// Campaigns.
    pub campaigns: Vec<Value>,
    /// Ad groups.
    pub ad_groups: Vec<Value>,
    /// Ads.
    pub ads: Vec<Value>,
}

impl FakeEntities {
    /// How many entities are held in all.
    pub fn len(&self) -> usize {
        self.campaigns.len() + self.ad_groups.len() + self.ads.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Entities that share their kind, parent (ad account, campaign or ad
    /// group) and name with another: one line `"ad_group cmp_1/Name ×2"` per
    /// group, empty when there are no duplicates.
    pub fn duplicates(&self) -> Vec<String> {
        let mut groups: std::collections::BTreeMap<(&str, String, String), usize> =
            std::collections::BTreeMap::new();
        let text =
            |v: &Value, key: &str| v.get(key).and_then(Value::as_str).unwrap_or("").to_string();
        for (kind, list, parent) in [
            ("campaign", &self.campaigns, "ad_account_id"),
            ("ad_group", &self.ad_groups, "campaign_id"),
            ("ad", &self.ads, "ad_group_id"),
        ] {
            for v in list {
                *groups
                    .entry((kind, text(v, parent), text(v, "name")))
                    .or_default() += 1;
            }
        }
        groups
            .into_iter()
            .filter(|(_, n)| *n > 1)
            .map(|((kind, parent, name), n)| format!("{kind} {parent}/{name} ×{n}"))
            .collect()
    }

    /// Fetches what a running fake holds through its admin endpoint
    /// (`GET /__admin/entities`); `addr` is the fake's loopback address.
    pub async fn fetch(addr: SocketAddr) -> Result<FakeEntities, reqwest::Error> {
        reqwest::Client::builder()
            .no_proxy()
            .timeout(Duration::from_secs(10))
            .build()?
            .get(format!("http://{addr}/__admin/entities"))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Campaign,
    AdGroup,
    Ad,
}

impl Kind {
    fn from_collection(c: &str) -> Option<Kind> {
        match c {
            "campaigns" => Some(Kind::Campaign),
            "ad_groups" => Some(Kind::AdGroup),
            "ads" => Some(Kind::Ad),
            _ => None,
        }
    }

    fn collection(self) -> &'static str {
        match self {
            Kind::Campaign => "campaigns",
            Kind::AdGroup => "ad_groups",
            Kind::Ad => "ads",
        }
    }

    fn id_prefix(self) -> &'static str {
        match self {
            Kind::Campaign => "cmp",
            Kind::AdGroup => "adg",
            Kind::Ad => "ad",
        }
    }

    fn fields(self) -> &'static [FieldSpec] {
        match self {
            Kind::Campaign => CAMPAIGN_FIELDS,
            Kind::AdGroup => AD_GROUP_FIELDS,
            Kind::Ad => AD_FIELDS,
        }
    }
}

#[derive(Debug)]
struct Stored {
    kind: Kind,
    account: String,
    data: Map<String, Value>,
}

impl Stored {
    fn id(&self) -> &str {
        self.data.get("id").and_then(Value::as_str).unwrap_or("")
    }
    fn str_field(&self, f: &str) -> Option<&str> {
        self.data.get(f).and_then(Value::as_str)
    }
}

#[derive(Debug, Default)]
struct Window {
    started: Option<Instant>,
    used: u32,
}

struct Quota {
    allowed: bool,
    used: u32,
    remaining: u32,
    reset: Duration,
}

impl Window {
    fn take(&mut self, limit: u32, len: Duration, now: Instant) -> Quota {
        let started = match self.started {
            Some(s) if now.duration_since(s) < len => s,
            _ => {
                self.used = 0;
                self.started = Some(now);
                now
            }
        };
        let allowed = self.used < limit;
        if allowed {
            self.used += 1;
        }
        Quota {
            allowed,
            used: self.used,
            remaining: limit.saturating_sub(self.used),
            reset: len.saturating_sub(now.duration_since(started)),
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    token: String,
    next_id: u64,
    entities: Vec<Stored>,
    page_tokens: HashMap<String, usize>,
    faults: Vec<RedditFault>,
    log: Vec<(u64, LoggedRequest)>,
    log_seq: u64,
    reads: Window,
    writes: Window,
    /// See [`FakeRedditConfig::clock_offset_secs`].
    clock_offset: time::Duration,
}

#[derive(Debug)]
struct Shared {
    config: FakeRedditConfig,
    inner: Mutex<Inner>,
}

/// A fake Reddit Ads API: its state, usable with [`serve`] or [`FakeReddit::start`].
/// Cloning shares the state.
#[derive(Debug, Clone)]
pub struct FakeReddit {
    shared: Arc<Shared>,
}

/// A running fake started by [`FakeReddit::start`]; stops on [`FakeRedditHandle::shutdown`]
/// or when dropped. Derefs to [`FakeReddit`] for faults and inspection.
#[derive(Debug)]
pub struct FakeRedditHandle {
    fake: FakeReddit,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl Deref for FakeRedditHandle {
    type Target = FakeReddit;
    fn deref(&self) -> &FakeReddit {
        &self.fake
    }
}

impl FakeRedditHandle {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The API root to configure an adapter with: `http://127.0.0.1:PORT/api/v3`.
    pub fn base_url(&self) -> String {
        format!("http://{}/api/v3", self.addr)
    }

    /// Stops accepting, closes every connection and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for FakeRedditHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

impl FakeReddit {
    /// A fake with no entities.
    pub fn new(config: FakeRedditConfig) -> Self {
        let inner = Inner {
            token: config.token.clone(),
            next_id: 1,
            clock_offset: time::Duration::seconds(config.clock_offset_secs),
            ..Inner::default()
        };
        FakeReddit {
            shared: Arc::new(Shared {
                config,
                inner: Mutex::new(inner),
            }),
        }
    }

    /// Binds `config.bind` (loopback only) and serves in a background task.
    pub async fn start(config: FakeRedditConfig) -> io::Result<FakeRedditHandle> {
        if !config.bind.ip().is_loopback() {
            return Err(loopback_only(config.bind));
        }
        let listener = TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let fake = FakeReddit::new(config);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, fake.clone(), async move {
            let _ = stopped.await;
        }));
        Ok(FakeRedditHandle {
            fake,
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The settings it runs with.
    pub fn config(&self) -> &FakeRedditConfig {
        &self.shared.config
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.shared.lock()
    }

    /// Adds a fault; faults are tried in insertion order, one per request.
    pub fn inject(&self, fault: RedditFault) {
        self.lock().faults.push(fault);
    }

    /// Removes every pending fault.
    pub fn clear_faults(&self) {
        self.lock().faults.clear();
    }

    /// The pending faults (with their remaining `times`).
    pub fn faults(&self) -> Vec<RedditFault> {
        self.lock().faults.clone()
    }

    /// Makes exactly the next API request fail with 401 (an expired token).
    pub fn expire_token_once(&self) {
        self.inject(RedditFault::new(RedditFaultKind::Unauthorized).times(1));
    }

    /// Changes the bearer token requests must carry.
    pub fn set_token(&self, token: impl Into<String>) {
        self.lock().token = token.into();
    }

    /// Everything held, in creation order.
    pub fn entities(&self) -> FakeEntities {
        entities_of(&self.lock())
    }

    /// The request log, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.lock().log.iter().map(|(_, r)| r.clone()).collect()
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        self.lock().log.clear();
    }

    /// The axum router (without the connection-dropping ability of [`serve`]:
    /// behind another server a dropped connection becomes a response withheld forever).
    pub fn router(&self) -> Router {
        Router::new()
            .fallback(handle)
            .with_state(self.shared.clone())
    }
}

fn loopback_only(addr: SocketAddr) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("the fake Reddit server only listens on loopback, not {addr}"),
    )
}

/// Serves `fake` on `listener` (which must be bound to a loopback address) until
/// `shutdown` completes; then closes every open connection. Use it to run the
/// fake in the foreground, e.g. from a CLI command.
pub async fn serve(
    listener: TcpListener,
    fake: FakeReddit,
    shutdown: impl Future<Output = ()> + Send,
) -> io::Result<()> {
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        return Err(loopback_only(addr));
    }
    let router = fake.router();
    let mut conns = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!(error = %e, "fake reddit: accept failed");
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        continue;
                    }
                };
                let router = router.clone();
                conns.spawn(async move {
                    let kill = Arc::new(Notify::new());
                    let kill_in_handler = kill.clone();
                    let service = hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
                        req.extensions_mut().insert(ConnKill(kill_in_handler.clone()));
                        router.clone().oneshot(req)
                    });
                    let conn = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                    tokio::select! {
                        _ = conn => {}
                        _ = kill.notified() => {}
                    }
                });
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.shutdown().await;
    Ok(())
}

/// Lets a handler close its own connection without answering.
#[derive(Clone)]
struct ConnKill(Arc<Notify>);

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    fn take_fault(&self, method: &Method, path: &str) -> Option<RedditFaultKind> {
        let mut inner = self.lock();
        let i = inner.faults.iter().position(|f| f.matches(method, path))?;
        let fault = &mut inner.faults[i];
        let kind = fault.kind.clone();
        if let Some(n) = fault.times.as_mut() {
            *n -= 1;
            if *n == 0 {
                inner.faults.remove(i);
            }
        }
        Some(kind)
    }

    /// Logs a request on arrival (status unknown yet) and returns its sequence number.
    fn log_start(
        &self,
        method: &Method,
        path: String,
        user_agent: String,
        fault: Option<&RedditFaultKind>,
        data: Option<Value>,
    ) -> u64 {
        let at = now_rfc3339();
        let mut inner = self.lock();
        inner.log_seq += 1;
        let seq = inner.log_seq;
        inner.log.push((
            seq,
            LoggedRequest {
                method: method.to_string(),
                path,
                status: None,
                at,
                fault: fault.map(fault_name),
                user_agent,
                data,
            },
        ));
        seq
    }

    /// Records the status answered to request `seq`.
    fn log_status(&self, seq: u64, status: StatusCode) {
        let mut inner = self.lock();
        if let Some((_, entry)) = inner.log.iter_mut().rev().find(|(s, _)| *s == seq) {
            entry.status = Some(status.as_u16());
        }
    }
}

fn fault_name(f: &RedditFaultKind) -> String {
    match f {
        RedditFaultKind::Status { status, .. } => format!("status_{status}"),
        RedditFaultKind::Latency { .. } => "latency".into(),
        RedditFaultKind::Drop => "drop".into(),
        RedditFaultKind::LoseResponse { .. } => "lose_response".into(),
        RedditFaultKind::Garble => "garble".into(),
        RedditFaultKind::RawBody { .. } => "raw_body".into(),
        RedditFaultKind::Unauthorized => "unauthorized".into(),
    }
}

fn now_rfc3339() -> String {
    platform_now_rfc3339(time::Duration::ZERO)
}

/// The fake platform's own time, `offset` away from this machine's.
fn platform_now_rfc3339(offset: time::Duration) -> String {
    (OffsetDateTime::now_utc() + offset)
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

/// An HTTP `Date` value (IMF-fixdate) of the fake platform's clock.
fn http_date(offset: time::Duration) -> Option<HeaderValue> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let text = (OffsetDateTime::now_utc() + offset).format(format).ok()?;
    HeaderValue::from_str(&text).ok()
}

/// An answer before headers are added.
struct Reply {
    status: StatusCode,
    body: Value,
    headers: Vec<(&'static str, String)>,
}

impl Reply {
    fn ok(status: StatusCode, body: Value) -> Self {
        Reply {
            status,
            body,
            headers: vec![],
        }
    }

    fn error(status: StatusCode, message: &str, fields: Vec<(String, String)>) -> Self {
        let mut error = json!({"code": status.as_u16(), "message": message});
        if !fields.is_empty() {
            error["fields"] = Value::Array(
                fields
                    .into_iter()
                    .map(|(field, message)| json!({"field": field, "message": message}))
                    .collect(),
            );
        }
        Reply::ok(status, json!({ "error": error }))
    }

    fn not_found() -> Self {
        Reply::error(StatusCode::NOT_FOUND, "Not Found", vec![])
    }

    fn bad_request(fields: Vec<(String, String)>) -> Self {
        Reply::error(StatusCode::BAD_REQUEST, "Bad Request", fields)
    }

    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body)).into_response();
        add_headers(resp.headers_mut(), self.headers);
        resp
    }
}

fn add_headers(map: &mut HeaderMap, headers: Vec<(&'static str, String)>) {
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            map.insert(name, v);
        }
    }
}

async fn drop_connection(kill: Option<ConnKill>) -> Response {
    if let Some(k) = kill {
        k.0.notify_one();
    }
    // The connection task drops this future along with the connection.
    std::future::pending::<Response>().await
}

async fn handle(State(shared): State<Arc<Shared>>, req: Request) -> Response {
    let kill = req.extensions().get::<ConnKill>().cloned();
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let path = parts.uri.path().to_string();
    let logged_path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| path.clone());
    let bytes = match to_bytes(body, 16 << 20).await {
        Ok(b) => b,
        Err(_) => {
            return Reply::error(StatusCode::BAD_REQUEST, "unreadable body", vec![]).into_response()
        }
    };
    if let Some(rest) = path.strip_prefix("/__admin") {
        return admin(&shared, &method, rest, &bytes);
    }

    let fault = shared.take_fault(&method, &path);
    let user_agent = parts
        .headers
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let data = (method == Method::POST || method == Method::PATCH)
        .then(|| serde_json::from_slice::<Value>(&bytes).ok())
        .flatten()
        .and_then(|v| v.get("data").cloned());
    let seq = shared.log_start(&method, logged_path, user_agent, fault.as_ref(), data);
    match &fault {
        Some(RedditFaultKind::Latency { ms }) => {
            tokio::time::sleep(Duration::from_millis(*ms)).await
        }
        Some(RedditFaultKind::Drop) => return drop_connection(kill).await,
        Some(RedditFaultKind::Status {
            status,
            after_apply: false,
            retry_after_secs,
            reset_secs,
        }) => {
            let reply = injected_status(*status, *retry_after_secs, *reset_secs);
            shared.log_status(seq, reply.status);
            return with_date(&shared, reply.into_response());
        }
        _ => {}
    }

    let unauthorized = matches!(fault, Some(RedditFaultKind::Unauthorized));
    let reply = api(&shared, &parts, &bytes, unauthorized);
    let processed = reply.status.is_success();

    let response = match &fault {
        Some(RedditFaultKind::Status {
            status,
            after_apply: true,
            retry_after_secs,
            reset_secs,
        }) => {
            let mut r = injected_status(*status, *retry_after_secs, *reset_secs);
            r.headers.extend(reply.headers);
            r.into_response()
        }
        Some(RedditFaultKind::LoseResponse { withhold_ms }) if processed => {
            // Logged without a status: the client gets no (timely) answer.
            match withhold_ms {
                None => return drop_connection(kill).await,
                Some(ms) => {
                    tokio::time::sleep(Duration::from_millis(*ms)).await;
                    return reply.into_response();
                }
            }
        }
        Some(RedditFaultKind::Garble) if processed => {
            let text = reply.body.to_string();
            let cut: String = text.chars().take(text.chars().count() / 2).collect();
            raw_response(reply.status, reply.headers, format!("{cut}\u{0}}}garbage"))
        }
        Some(RedditFaultKind::RawBody { body }) if processed => {
            raw_response(reply.status, reply.headers, body.clone())
        }
        _ => reply.into_response(),
    };
    shared.log_status(seq, response.status());
    with_date(&shared, response)
}

/// Stamps the fake platform's clock on a response (hyper would add the real
/// time otherwise).
fn with_date(shared: &Shared, mut response: Response) -> Response {
    let offset = shared.lock().clock_offset;
    if let Some(date) = http_date(offset) {
        response.headers_mut().insert(DATE, date);
    }
    response
}

fn raw_response(
    status: StatusCode,
    headers: Vec<(&'static str, String)>,
    body: String,
) -> Response {
    let mut resp = (status, body).into_response();
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    add_headers(resp.headers_mut(), headers);
    resp
}

fn injected_status(status: u16, retry_after: Option<u64>, reset: Option<u64>) -> Reply {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut reply = Reply::error(
        status,
        status.canonical_reason().unwrap_or("injected fault"),
        vec![],
    );
    if let Some(s) = retry_after {
        reply.headers.push((RETRY_AFTER.as_str(), s.to_string()));
    }
    if let Some(s) = reset {
        reply.headers.push(("x-ratelimit-remaining", "0".into()));
        reply.headers.push(("x-ratelimit-reset", s.to_string()));
    }
    reply
}

fn admin(shared: &Shared, method: &Method, path: &str, body: &Bytes) -> Response {
    let ok = || StatusCode::NO_CONTENT.into_response();
    match (method.as_str(), path.trim_end_matches('/')) {
        ("POST", "/faults") => match serde_json::from_slice::<RedditFault>(body) {
            Ok(f) => {
                shared.lock().faults.push(f);
                ok()
            }
            Err(e) => Reply::bad_request(vec![("fault".into(), e.to_string())]).into_response(),
        },
        ("GET", "/faults") => axum::Json(shared.lock().faults.clone()).into_response(),
        ("DELETE", "/faults") => {
            shared.lock().faults.clear();
            ok()
        }
        ("GET", "/entities") => axum::Json(entities_of(&shared.lock())).into_response(),
        ("GET", "/requests") => {
            let log: Vec<LoggedRequest> =
                shared.lock().log.iter().map(|(_, r)| r.clone()).collect();
            axum::Json(log).into_response()
        }
        ("DELETE", "/requests") => {
            shared.lock().log.clear();
            ok()
        }
        ("POST", "/token") => match serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v.get("token").and_then(Value::as_str).map(str::to_string))
        {
            Some(t) => {
                shared.lock().token = t;
                ok()
            }
            None => Reply::bad_request(vec![("token".into(), "expected a string".into())])
                .into_response(),
        },
        _ => Reply::not_found().into_response(),
    }
}

fn entities_of(inner: &Inner) -> FakeEntities {
    let mut out = FakeEntities::default();
    for e in &inner.entities {
        let v = Value::Object(e.data.clone());
        match e.kind {
            Kind::Campaign => out.campaigns.push(v),
            Kind::AdGroup => out.ad_groups.push(v),
            Kind::Ad => out.ads.push(v),
        }
    }
    out
}

/// Auth, rate limits, routing and the entity store.
fn api(
    shared: &Shared,
    parts: &axum::http::request::Parts,
    body: &Bytes,
    force_unauthorized: bool,
) -> Reply {
    let config = &shared.config;
    let user_agent = parts
        .headers
        .get(USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if user_agent.trim().is_empty() {
        return Reply::error(
            StatusCode::BAD_REQUEST,
            "a User-Agent header is required",
            vec![("User-Agent".into(), "is required".into())],
        );
    }
    let mut inner = shared.lock();
    let bearer = parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    if force_unauthorized || bearer != Some(inner.token.as_str()) {
        return Reply::error(StatusCode::UNAUTHORIZED, "Unauthorized", vec![]);
    }

    let now = Instant::now();
    let (limit, window) = if parts.method == Method::GET {
        (config.reads_per_window, &mut inner.reads)
    } else {
        (config.writes_per_window, &mut inner.writes)
    };
    let quota = window.take(limit, config.window, now);
    let reset_secs = quota.reset.as_secs() + u64::from(quota.reset.subsec_nanos() > 0);
    let mut headers = vec![];
    if config.ratelimit_headers {
        headers.push(("x-ratelimit-used", quota.used.to_string()));
        headers.push(("x-ratelimit-remaining", quota.remaining.to_string()));
        headers.push((
            "x-ratelimit-reset",
            if config.fractional_reset {
                format!("{:.3}", quota.reset.as_secs_f64())
            } else {
                reset_secs.to_string()
            },
        ));
    }
    if !quota.allowed {
        let mut reply = Reply::error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests", vec![]);
        if config.retry_after_header {
            headers.push((RETRY_AFTER.as_str(), reset_secs.max(1).to_string()));
        }
        reply.headers = headers;
        return reply;
    }

    let host = parts
        .headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1")
        .to_string();
    let mut reply = route(
        &mut inner,
        config,
        &parts.method,
        parts.uri.path(),
        parts.uri.query().unwrap_or(""),
        body,
        &host,
    );
    reply.headers.extend(headers);
    reply
}

fn route(
    inner: &mut Inner,
    config: &FakeRedditConfig,
    method: &Method,
    path: &str,
    query: &str,
    body: &Bytes,
    host: &str,
) -> Reply {
    let Some(rest) = path.strip_prefix("/api/v3/") else {
        return Reply::not_found();
    };
    let segs: Vec<&str> = rest.split('/').filter(|s| !s.is_empty()).collect();
    match segs.as_slice() {
        ["ad_accounts", account, coll] => {
            let Some(kind) = Kind::from_collection(coll) else {
                return Reply::not_found();
            };
            // Ad accounts are `a2_…` ids; any such account exists (and starts empty).
            if !account.starts_with("a2_") {
                return Reply::not_found();
            }
            match *method {
                Method::GET => list(inner, config, account, kind, query, host),
                Method::POST => create(inner, account, kind, body),
                _ => Reply::not_found(),
            }
        }
        [coll, id] => {
            let Some(kind) = Kind::from_collection(coll) else {
                return Reply::not_found();
            };
            let Some(pos) = inner
                .entities
                .iter()
                .position(|e| e.kind == kind && e.id() == *id)
            else {
                return Reply::not_found();
            };
            match *method {
                Method::GET => Reply::ok(
                    StatusCode::OK,
                    json!({"data": Value::Object(inner.entities[pos].data.clone())}),
                ),
                Method::PATCH => update(inner, pos, body),
                _ => Reply::not_found(),
            }
        }
        _ => Reply::not_found(),
    }
}

fn query_pairs(query: &str) -> Vec<(String, String)> {
    Url::parse(&format!("http://q/?{query}"))
        .map(|u| u.query_pairs().into_owned().collect())
        .unwrap_or_default()
}

fn list(
    inner: &mut Inner,
    config: &FakeRedditConfig,
    account: &str,
    kind: Kind,
    query: &str,
    host: &str,
) -> Reply {
    let pairs = query_pairs(query);
    let get = |k: &str| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let mut errors = vec![];
    let size = match get("page.size") {
        None => config.default_page_size,
        Some(raw) => match raw.parse::<usize>() {
            Ok(n) if n >= 1 && n <= config.max_page_size => n,
            _ => {
                errors.push((
                    "page.size".to_string(),
                    format!("must be an integer from 1 to {}", config.max_page_size),
                ));
                0
            }
        },
    };
    let offset = match get("page.token") {
        None => 0,
        Some(t) => match inner.page_tokens.get(t) {
            Some(o) => *o,
            None => {
                errors.push(("page.token".into(), "unknown or expired page token".into()));
                0
            }
        },
    };
    let filters: Vec<(&str, String)> = ["campaign_id", "ad_group_id"]
        .into_iter()
        .filter_map(|f| get(f).map(|v| (f, v.to_string())))
        .collect();
    for (f, _) in &filters {
        let allowed = matches!(
            (kind, *f),
            (Kind::AdGroup, "campaign_id") | (Kind::Ad, "campaign_id") | (Kind::Ad, "ad_group_id")
        );
        if !allowed {
            errors.push((
                f.to_string(),
                format!("not a filter of {}", kind.collection()),
            ));
        }
    }
    if !errors.is_empty() {
        return Reply::bad_request(errors);
    }
    let matching: Vec<&Stored> = inner
        .entities
        .iter()
        .filter(|e| e.kind == kind && e.account == account)
        .filter(|e| {
            filters
                .iter()
                .all(|(f, v)| e.str_field(f) == Some(v.as_str()))
        })
        .collect();
    let page: Vec<Value> = matching
        .iter()
        .skip(offset)
        .take(size)
        .map(|e| Value::Object(e.data.clone()))
        .collect();
    let page_url = |token: Option<&str>| -> Value {
        let Ok(mut url) = Url::parse(&format!(
            "http://{host}/api/v3/ad_accounts/{account}/{}",
            kind.collection()
        )) else {
            return Value::Null;
        };
        {
            let mut q = url.query_pairs_mut();
            for (f, v) in &filters {
                q.append_pair(f, v);
            }
            q.append_pair("page.size", &size.to_string());
            if let Some(t) = token {
                q.append_pair("page.token", t);
            }
        }
        Value::String(url.to_string())
    };
    let new_token = |inner_next: &mut u64, tokens: &mut HashMap<String, usize>, at: usize| {
        let token = format!("pt{:x}o{at}", *inner_next * 7919);
        *inner_next += 1;
        tokens.insert(token.clone(), at);
        token
    };
    let total = matching.len();
    let mut next_url = Value::Null;
    if offset + size < total {
        let t = new_token(&mut inner.next_id, &mut inner.page_tokens, offset + size);
        next_url = page_url(Some(&t));
    }
    let mut previous_url = Value::Null;
    if offset > 0 {
        let prev = offset.saturating_sub(size);
        if prev == 0 {
            previous_url = page_url(None);
        } else {
            let t = new_token(&mut inner.next_id, &mut inner.page_tokens, prev);
            previous_url = page_url(Some(&t));
        }
    }
    Reply::ok(
        StatusCode::OK,
        json!({"data": page, "pagination": {"next_url": next_url, "previous_url": previous_url}}),
    )
}

#[derive(Debug, Clone, Copy)]
enum Ty {
    Name,
    Str,
    Enum(&'static [&'static str]),
    Micros,
    Time,
    PostId,
    Targeting,
    Ref(Kind),
}

#[derive(Debug)]
struct FieldSpec {
    name: &'static str,
    ty: Ty,
    required: bool,
    immutable: bool,
}

const fn field(name: &'static str, ty: Ty, required: bool, immutable: bool) -> FieldSpec {
    FieldSpec {
        name,
        ty,
        required,
        immutable,
    }
}

const STATUSES: &[&str] = &["ACTIVE", "ARCHIVED", "DELETED", "PAUSED"];
const OBJECTIVES: &[&str] = &[
    "APP_INSTALLS",
    "CATALOG_SALES",
    "CLICKS",
    "CONVERSIONS",
    "IMPRESSIONS",
    "LEAD_GENERATION",
    "VIDEO_VIEWABLE_IMPRESSIONS",
];
const GOAL_TYPES: &[&str] = &["DAILY_SPEND", "LIFETIME_SPEND"];
const BID_STRATEGIES: &[&str] = &["BIDLESS", "MANUAL_BIDDING", "MAXIMIZE_VOLUME", "TARGET_CPX"];
const BID_TYPES: &[&str] = &["CPC", "CPM", "CPV"];
const MAX_KEYWORDS: usize = 1000;

const CAMPAIGN_FIELDS: &[FieldSpec] = &[
    field("name", Ty::Name, true, false),
    field("objective", Ty::Enum(OBJECTIVES), true, false),
    field("configured_status", Ty::Enum(STATUSES), true, false),
    field("funding_instrument_id", Ty::Str, false, false),
    field("goal_type", Ty::Enum(GOAL_TYPES), false, false),
    field("goal_value", Ty::Micros, false, false),
    field("spend_cap", Ty::Micros, false, false),
];
const AD_GROUP_FIELDS: &[FieldSpec] = &[
    field("campaign_id", Ty::Ref(Kind::Campaign), true, true),
    field("name", Ty::Name, true, false),
    field("configured_status", Ty::Enum(STATUSES), false, false),
    field("start_time", Ty::Time, false, false),
    field("end_time", Ty::Time, false, false),
    field("bid_strategy", Ty::Enum(BID_STRATEGIES), false, false),
    field("bid_type", Ty::Enum(BID_TYPES), false, false),
    field("bid_value", Ty::Micros, false, false),
    field("targeting", Ty::Targeting, false, false),
];
const AD_FIELDS: &[FieldSpec] = &[
    field("ad_group_id", Ty::Ref(Kind::AdGroup), true, true),
    field("name", Ty::Name, true, false),
    field("post_id", Ty::PostId, true, false),
    field("click_url", Ty::Str, false, false),
    field("configured_status", Ty::Enum(STATUSES), false, false),
];

fn check_value(
    inner: &Inner,
    account: &str,
    name: &str,
    ty: Ty,
    v: &Value,
    errors: &mut Vec<(String, String)>,
) {
    let mut err = |m: String| errors.push((name.to_string(), m));
    match ty {
        Ty::Name => match v.as_str() {
            Some(s) if s.chars().count() >= 3 => {}
            Some(_) => err("must be at least 3 characters".into()),
            None => err("must be a string".into()),
        },
        Ty::Str => {
            if !v.is_string() {
                err("must be a string".into());
            }
        }
        Ty::Enum(values) => match v.as_str() {
            Some(s) if values.contains(&s) => {}
            _ => err(format!("must be one of {}", values.join(", "))),
        },
        Ty::Micros => {
            if v.as_u64().is_none() {
                err("must be a non-negative integer (micros)".into());
            }
        }
        Ty::Time => match v.as_str() {
            Some(s) if OffsetDateTime::parse(s, &Rfc3339).is_ok() => {}
            _ => err("must be an ISO 8601 date-time".into()),
        },
        Ty::PostId => match v.as_str() {
            Some(s) if s.starts_with("t3_") && s.len() > 3 => {}
            _ => err("must be a post id like t3_abc".into()),
        },
        Ty::Targeting => match v.as_object() {
            None => err("must be an object".into()),
            Some(t) => {
                for key in ["keywords", "excluded_keywords"] {
                    match t.get(key) {
                        None | Some(Value::Null) => {}
                        Some(Value::Array(items)) => {
                            if items.len() > MAX_KEYWORDS {
                                errors.push((
                                    format!("{name}.{key}"),
                                    format!("at most {MAX_KEYWORDS} keywords"),
                                ));
                            }
                            if items
                                .iter()
                                .any(|i| i.as_str().is_none_or(|s| s.trim().is_empty()))
                            {
                                errors.push((
                                    format!("{name}.{key}"),
                                    "must be non-empty strings".into(),
                                ));
                            }
                        }
                        Some(_) => errors.push((
                            format!("{name}.{key}"),
                            "must be an array of strings".into(),
                        )),
                    }
                }
            }
        },
        Ty::Ref(kind) => match v.as_str() {
            Some(id)
                if inner
                    .entities
                    .iter()
                    .any(|e| e.kind == kind && e.account == account && e.id() == id) => {}
            Some(id) => err(format!(
                "{} {id} not found in this ad account",
                kind.collection()
            )),
            None => err("must be a string id".into()),
        },
    }
}

/// Validates a create (`existing == None`) or a PATCH body.
fn validate(
    inner: &Inner,
    account: &str,
    kind: Kind,
    data: &Map<String, Value>,
    existing: Option<&Map<String, Value>>,
) -> Vec<(String, String)> {
    let specs = kind.fields();
    let mut errors = vec![];
    for key in data.keys() {
        if !specs.iter().any(|s| s.name == key) {
            errors.push((key.clone(), "unknown or read-only field".into()));
        }
    }
    for spec in specs {
        match (data.get(spec.name), existing) {
            (None, None) | (Some(Value::Null), None) if spec.required => {
                errors.push((spec.name.into(), "is required".into()));
            }
            (Some(Value::Null), Some(_)) if spec.required => {
                errors.push((spec.name.into(), "cannot be null".into()));
            }
            (None, _) | (Some(Value::Null), _) => {}
            (Some(v), Some(old)) if spec.immutable => {
                if old.get(spec.name) != Some(v) {
                    errors.push((spec.name.into(), "cannot be changed".into()));
                }
            }
            (Some(v), _) => check_value(inner, account, spec.name, spec.ty, v, &mut errors),
        }
    }
    errors
}

fn body_data(body: &Bytes) -> Result<Map<String, Value>, Reply> {
    let parsed: Value = serde_json::from_slice(body)
        .map_err(|e| Reply::bad_request(vec![("body".into(), format!("invalid JSON: {e}"))]))?;
    match parsed.get("data") {
        Some(Value::Object(m)) => Ok(m.clone()),
        _ => Err(Reply::bad_request(vec![(
            "data".into(),
            "the body must be {\"data\": {...}}".into(),
        )])),
    }
}

fn create(inner: &mut Inner, account: &str, kind: Kind, body: &Bytes) -> Reply {
    let data = match body_data(body) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let errors = validate(inner, account, kind, &data, None);
    if !errors.is_empty() {
        return Reply::bad_request(errors);
    }
    let id = format!("{}_{:06x}", kind.id_prefix(), inner.next_id);
    inner.next_id += 1;
    let now = platform_now_rfc3339(inner.clock_offset);
    let mut record = Map::new();
    record.insert("id".into(), Value::String(id));
    if kind == Kind::Campaign {
        record.insert("ad_account_id".into(), Value::String(account.into()));
    }
    if kind == Kind::Ad {
        let campaign = data
            .get("ad_group_id")
            .and_then(Value::as_str)
            .and_then(|g| {
                inner
                    .entities
                    .iter()
                    .find(|e| e.kind == Kind::AdGroup && e.id() == g)
            })
            .and_then(|g| g.data.get("campaign_id").cloned())
            .unwrap_or(Value::Null);
        record.insert("campaign_id".into(), campaign);
    }
    for spec in kind.fields() {
        let v = data.get(spec.name).cloned().unwrap_or(Value::Null);
        record.insert(spec.name.into(), v);
    }
    if record.get("configured_status") == Some(&Value::Null) {
        record.insert("configured_status".into(), Value::String("PAUSED".into()));
    }
    if kind == Kind::AdGroup && record.get("targeting") == Some(&Value::Null) {
        record.insert("targeting".into(), json!({"keywords": []}));
    }
    let status = record
        .get("configured_status")
        .cloned()
        .unwrap_or(Value::Null);
    record.insert("effective_status".into(), status);
    record.insert("created_at".into(), Value::String(now.clone()));
    record.insert("modified_at".into(), Value::String(now));
    let out = Value::Object(record.clone());
    inner.entities.push(Stored {
        kind,
        account: account.to_string(),
        data: record,
    });
    Reply::ok(StatusCode::CREATED, json!({ "data": out }))
}

fn update(inner: &mut Inner, pos: usize, body: &Bytes) -> Reply {
    let data = match body_data(body) {
        Ok(d) => d,
        Err(r) => return r,
    };
    let (kind, account) = (
        inner.entities[pos].kind,
        inner.entities[pos].account.clone(),
    );
    let errors = validate(
        inner,
        &account,
        kind,
        &data,
        Some(&inner.entities[pos].data),
    );
    if !errors.is_empty() {
        return Reply::bad_request(errors);
    }
    let record = &mut inner.entities[pos].data;
    for (k, v) in data {
        // effective_status lags configured_status on Reddit: leave it alone.
        record.insert(k, v);
    }
    record.insert(
        "modified_at".into(),
        Value::String(platform_now_rfc3339(inner.clock_offset)),
    );
    Reply::ok(
        StatusCode::OK,
        json!({"data": Value::Object(record.clone())}),
    )
}
