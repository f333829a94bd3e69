//! A faithful fake of the Sponsored Products v3 list endpoints, on loopback.
//!
//! Follows `docs/platforms/amazon.md`, not the client: every list call must carry
//! `Authorization: Bearer <token>` (else **401**), `Amazon-Advertising-API-ClientId`
//! and `Amazon-Advertising-API-Scope` naming a known profile (else **403**), and the
//! endpoint's vendor media type on both `Content-Type` and `Accept` (else **415**;
//! the fake is stricter than Amazon about a missing `Accept`, on purpose).
//! Paths, media types and request bodies are read, and the entities, pages and
//! error bodies written, with the fake's own [`wire`] types (none of adsync's
//! client types), so a client that misspells them gets a 400/415 or a failed
//! comparison ([`wire_json`]), not a mirror.
//!
//! * **Paging.** `maxResults` in `1..=max_page_size` (default 1000; absent →
//!   `default_page_size`, 100); anything else is **400**. `nextToken` is opaque
//!   (hex of kind, profile, filter fingerprint and the last id served); a token
//!   for another endpoint, profile or filter set is **400**. Because the token
//!   holds the last id and data are kept sorted by id, serving a page is a binary
//!   search plus the page (no scan per page), and data changed between pages
//!   never duplicates or skips the entities that did not change. Filtered calls
//!   (`campaignIdFilter`, `adGroupIdFilter` — ignored on campaigns —,
//!   `stateFilter.include`) scan forward from the token and count `totalResults`
//!   with one pass. Other body fields (`nameFilter`, …) are accepted and ignored.
//! * **Throttling.** An optional server-side token bucket ([`ServerRateLimit`]),
//!   changeable at run time; a request over it gets **429** with
//!   `{"code":"THROTTLED",...}` and a `Retry-After` header on the endpoints
//!   configured in [`FakeAmazonConfig::retry_after`] only.
//! * **Faults** ([`AmazonFault`]): the next *n* list calls (after the auth and media
//!   type checks) answer 429 (a "storm"), a 5xx, a delay, a chosen error status,
//!   or a garbled 200 (invalid JSON, missing field, unknown enum value); queued
//!   `Pass` faults answer normally, so a fault can target a later call.
//! * **Admin** (no auth, loopback only, under `/_admin`): `GET|DELETE
//!   /_admin/requests` (request log with arrival times), `POST|DELETE
//!   /_admin/faults` (`{"fault": {...}, "count": n}`), `PUT /_admin/rate-limit`
//!   (`{"rate": r, "burst": b}` or `null`), `POST /_admin/mutations` (a
//!   [`Mutation`] or a list of them), `GET /_admin/profiles/{id}/counts`. The
//!   same operations exist as methods on [`FakeAmazon`].

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{Path, State as AxState};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use parking_lot::{Mutex, MutexGuard, RwLock, RwLockReadGuard, RwLockWriteGuard};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::generator::ProfileData;

pub mod wire;

use wire::{items_key, media_type, path, Entity, ErrorBody, ListRequest, ListResponse};
pub use wire::{wire_json, AdGroup, Campaign, Keyword, ListKind, State};

/// A server-side token bucket.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ServerRateLimit {
    /// Requests per second.
    pub rate: f64,
    /// Bucket size (at least 1).
    pub burst: f64,
}

/// `Retry-After` (whole seconds) sent with 429s from the token bucket, per
/// endpoint; `None` sends 429 without the header, like some Amazon endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetryAfter {
    /// For `/sp/campaigns/list`.
    pub campaigns: Option<u32>,
    /// For `/sp/adGroups/list`.
    pub ad_groups: Option<u32>,
    /// For `/sp/keywords/list`.
    pub keywords: Option<u32>,
}

impl Default for RetryAfter {
    fn default() -> Self {
        RetryAfter {
            campaigns: Some(1),
            ad_groups: Some(1),
            keywords: None,
        }
    }
}

impl RetryAfter {
    fn for_kind(&self, kind: ListKind) -> Option<u32> {
        match kind {
            ListKind::Campaigns => self.campaigns,
            ListKind::AdGroups => self.ad_groups,
            ListKind::Keywords => self.keywords,
        }
    }
}

/// Settings of a fake server.
#[derive(Debug, Clone)]
pub struct FakeAmazonConfig {
    /// Port on 127.0.0.1; 0 picks a free one.
    pub port: u16,
    /// The accepted bearer token.
    pub token: String,
    /// The accepted client id.
    pub client_id: String,
    /// Profiles by id.
    pub profiles: BTreeMap<String, ProfileData>,
    /// Largest `maxResults` accepted (larger is 400).
    pub max_page_size: u32,
    /// Page size when `maxResults` is absent.
    pub default_page_size: u32,
    /// Server-side throttling; `None` never throttles (faults aside).
    pub rate_limit: Option<ServerRateLimit>,
    /// `Retry-After` on token-bucket 429s, per endpoint.
    pub retry_after: RetryAfter,
}

impl Default for FakeAmazonConfig {
    fn default() -> Self {
        FakeAmazonConfig {
            port: 0,
            token: "fake-token".to_owned(),
            client_id: "fake-client-id".to_owned(),
            profiles: BTreeMap::new(),
            max_page_size: 1000,
            default_page_size: 100,
            rate_limit: None,
            retry_after: RetryAfter::default(),
        }
    }
}

impl FakeAmazonConfig {
    /// Adds (or replaces) a profile.
    pub fn with_profile(mut self, profile_id: impl Into<String>, data: ProfileData) -> Self {
        self.profiles.insert(profile_id.into(), data);
        self
    }
}

/// A fault served instead of (or before) the normal answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum AmazonFault {
    /// 429 `{"code":"THROTTLED"}`, with `Retry-After` when given.
    Throttle {
        /// Seconds for the `Retry-After` header.
        retry_after_secs: Option<u32>,
    },
    /// A 5xx with an `{"code": ..., "message": ...}` body.
    ServerError {
        /// Status (500, 502, 503…).
        status: u16,
    },
    /// Any status with the given code and message.
    Reject {
        /// Status.
        status: u16,
        /// `code` in the body.
        code: String,
        /// `message` in the body.
        message: String,
    },
    /// Sleep this long, then answer normally (to provoke client timeouts). A
    /// request whose client gave up first is cancelled and not logged.
    Delay {
        /// Milliseconds.
        ms: u64,
    },
    /// 200 with a body cut in the middle.
    InvalidJson,
    /// The normal answer. Only holds a place in the queue, so that the fault
    /// after `n` of them hits the (n+1)-th list call from now: a garbled
    /// page in the middle of a pull run in one go.
    Pass,
    /// 200 whose first item lacks `state` (the items key, if the page is empty).
    MissingField,
    /// 200 whose first item has `"state": "SUSPENDED"`.
    UnknownEnum,
}

/// One entry of the request log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    /// Arrival time, since the server started.
    pub at: Duration,
    /// Method.
    pub method: String,
    /// Path.
    pub path: String,
    /// Status answered.
    pub status: u16,
    /// `Amazon-Advertising-API-Scope`.
    pub profile_id: Option<String>,
    /// `nextToken` of the body (the page asked for).
    pub next_token: Option<String>,
    /// `maxResults` of the body.
    pub max_results: Option<u32>,
    /// `Content-Type` received.
    pub content_type: Option<String>,
    /// `Accept` received.
    pub accept: Option<String>,
}

/// The time between each request of `log` and the next, in order: what a
/// test of pacing (rate limits, `Retry-After`) asserts on.
pub fn request_gaps(log: &[RequestRecord]) -> Vec<Duration> {
    log.windows(2).map(|w| w[1].at - w[0].at).collect()
}

/// The status answered to each request of `log`, in order.
pub fn request_statuses(log: &[RequestRecord]) -> Vec<u16> {
    log.iter().map(|r| r.status).collect()
}

/// A change to the data between (or during) pulls.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Mutation {
    /// Inserts or replaces a campaign (by id).
    PutCampaign {
        /// Profile.
        profile_id: String,
        /// The campaign.
        campaign: Campaign,
    },
    /// Inserts or replaces an ad group (by id).
    PutAdGroup {
        /// Profile.
        profile_id: String,
        /// The ad group.
        ad_group: AdGroup,
    },
    /// Inserts or replaces a keyword (by id).
    PutKeyword {
        /// Profile.
        profile_id: String,
        /// The keyword.
        keyword: Keyword,
    },
    /// Removes an entity and everything under it.
    Remove {
        /// Profile.
        profile_id: String,
        /// Which list.
        kind: ListKind,
        /// Its id.
        id: String,
    },
    /// Renames a campaign or ad group, or changes a keyword's text.
    Rename {
        /// Profile.
        profile_id: String,
        /// Which list.
        kind: ListKind,
        /// Its id.
        id: String,
        /// New name (keyword text).
        name: String,
    },
    /// Changes a state.
    SetState {
        /// Profile.
        profile_id: String,
        /// Which list.
        kind: ListKind,
        /// Its id.
        id: String,
        /// New state.
        state: State,
    },
}

impl Mutation {
    /// The profile it changes.
    pub fn profile_id(&self) -> &str {
        match self {
            Mutation::PutCampaign { profile_id, .. }
            | Mutation::PutAdGroup { profile_id, .. }
            | Mutation::PutKeyword { profile_id, .. }
            | Mutation::Remove { profile_id, .. }
            | Mutation::Rename { profile_id, .. }
            | Mutation::SetState { profile_id, .. } => profile_id,
        }
    }
}

/// Entity counts of a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProfileCounts {
    /// Campaigns.
    pub campaigns: usize,
    /// Ad groups.
    pub ad_groups: usize,
    /// Keywords.
    pub keywords: usize,
}

/// The fake server's state; cheap to clone (shared). Serve it with [`serve`] or
/// [`FakeAmazon::start`].
#[derive(Debug, Clone)]
pub struct FakeAmazon {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    /// Settings; `profiles` is moved out into `data`.
    config: FakeAmazonConfig,
    started: Instant,
    data: RwLock<BTreeMap<String, ProfileData>>,
    control: Mutex<Control>,
}

#[derive(Debug)]
struct Control {
    rate_limit: Option<ServerRateLimit>,
    tokens: f64,
    refilled_at: Instant,
    faults: VecDeque<AmazonFault>,
    log: Vec<RequestRecord>,
    request_ids: u64,
}

/// A running fake server; stops on [`shutdown`](Self::shutdown) or drop.
/// Dereferences to [`FakeAmazon`] for the admin API.
#[derive(Debug)]
pub struct FakeAmazonHandle {
    fake: FakeAmazon,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl std::ops::Deref for FakeAmazonHandle {
    type Target = FakeAmazon;
    fn deref(&self) -> &FakeAmazon {
        &self.fake
    }
}

impl FakeAmazonHandle {
    /// `http://127.0.0.1:<port>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting requests and waits (at most 5 s) for the server to finish.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(5), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }
}

impl Drop for FakeAmazonHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Serves `fake` on `listener` until `shutdown` resolves. Refuses a listener that
/// is not on a loopback address (the fake has no real authentication).
pub async fn serve(
    listener: TcpListener,
    fake: FakeAmazon,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("the fake Amazon server only binds loopback, not {addr}"),
        ));
    }
    axum::serve(listener, fake.router())
        .with_graceful_shutdown(shutdown)
        .await
}

impl FakeAmazon {
    /// A server state from `config` (nothing is bound yet).
    pub fn new(mut config: FakeAmazonConfig) -> Self {
        // The data live in one place (a 500k-keyword profile is not copied).
        let data = RwLock::new(std::mem::take(&mut config.profiles));
        let control = Mutex::new(Control {
            rate_limit: config.rate_limit,
            tokens: config.rate_limit.map_or(0.0, |r| r.burst.max(1.0)),
            refilled_at: Instant::now(),
            faults: VecDeque::new(),
            log: Vec::new(),
            request_ids: 0,
        });
        FakeAmazon {
            shared: Arc::new(Shared {
                config,
                started: Instant::now(),
                data,
                control,
            }),
        }
    }

    /// Binds `127.0.0.1:config.port` and serves in a background task.
    pub async fn start(config: FakeAmazonConfig) -> io::Result<FakeAmazonHandle> {
        let listener = TcpListener::bind(("127.0.0.1", config.port)).await?;
        let addr = listener.local_addr()?;
        let fake = FakeAmazon::new(config);
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(serve(listener, fake.clone(), async move {
            let _ = stopped.await;
        }));
        Ok(FakeAmazonHandle {
            fake,
            addr,
            stop: Some(stop),
            task: Some(task),
        })
    }

    /// The axum router (list endpoints and admin API).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/sp/campaigns/list", post(list_campaigns))
            .route("/sp/adGroups/list", post(list_ad_groups))
            .route("/sp/keywords/list", post(list_keywords))
            .route(
                "/_admin/requests",
                get(admin_requests).delete(admin_clear_requests),
            )
            .route(
                "/_admin/faults",
                post(admin_inject).delete(admin_clear_faults),
            )
            .route("/_admin/rate-limit", put(admin_rate_limit))
            .route("/_admin/mutations", post(admin_mutations))
            .route("/_admin/profiles/{profile_id}/counts", get(admin_counts))
            .with_state(self.clone())
    }

    fn control(&self) -> MutexGuard<'_, Control> {
        self.shared.control.lock()
    }

    /// Queues `fault` for the next `count` list calls (after already queued faults).
    pub fn inject(&self, fault: AmazonFault, count: usize) {
        let mut c = self.control();
        c.faults.extend(std::iter::repeat_n(fault, count));
    }

    /// Drops all queued faults.
    pub fn clear_faults(&self) {
        self.control().faults.clear();
    }

    /// Faults still queued.
    pub fn pending_faults(&self) -> usize {
        self.control().faults.len()
    }

    /// Changes (or removes) the server-side rate limit; the bucket starts full.
    pub fn set_rate_limit(&self, limit: Option<ServerRateLimit>) {
        let mut c = self.control();
        c.rate_limit = limit;
        c.tokens = limit.map_or(0.0, |r| r.burst.max(1.0));
        c.refilled_at = Instant::now();
    }

    /// The request log, in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        let mut log = self.control().log.clone();
        log.sort_by_key(|r| r.at);
        log
    }

    /// Empties the request log.
    pub fn clear_requests(&self) {
        self.control().log.clear();
    }

    /// A copy of a profile's data.
    pub fn profile(&self, profile_id: &str) -> Option<ProfileData> {
        self.read().get(profile_id).cloned()
    }

    /// Entity counts of a profile.
    pub fn counts(&self, profile_id: &str) -> Option<ProfileCounts> {
        self.read().get(profile_id).map(|p| ProfileCounts {
            campaigns: p.campaigns.len(),
            ad_groups: p.ad_groups.len(),
            keywords: p.keywords.len(),
        })
    }

    /// Adds or replaces a whole profile.
    pub fn put_profile(&self, profile_id: impl Into<String>, data: ProfileData) {
        self.write().insert(profile_id.into(), data);
    }

    fn read(&self) -> RwLockReadGuard<'_, BTreeMap<String, ProfileData>> {
        self.shared.data.read()
    }

    fn write(&self) -> RwLockWriteGuard<'_, BTreeMap<String, ProfileData>> {
        self.shared.data.write()
    }

    /// Applies a data change; errors name what was not found.
    pub fn mutate(&self, mutation: Mutation) -> Result<(), String> {
        let mut data = self.write();
        let profile_id = mutation.profile_id().to_owned();
        let p = data
            .get_mut(&profile_id)
            .ok_or_else(|| format!("profile {profile_id} not found"))?;
        let missing =
            |kind: ListKind, id: &str| format!("{kind} {id} not found in profile {profile_id}");
        match mutation {
            Mutation::PutCampaign { campaign, .. } => upsert(&mut p.campaigns, campaign),
            Mutation::PutAdGroup { ad_group, .. } => upsert(&mut p.ad_groups, ad_group),
            Mutation::PutKeyword { keyword, .. } => upsert(&mut p.keywords, keyword),
            Mutation::Remove { kind, id, .. } => {
                let before = (p.campaigns.len(), p.ad_groups.len(), p.keywords.len());
                match kind {
                    ListKind::Campaigns => {
                        p.campaigns.retain(|c| c.campaign_id != id);
                        p.ad_groups.retain(|g| g.campaign_id != id);
                        p.keywords.retain(|k| k.campaign_id != id);
                    }
                    ListKind::AdGroups => {
                        p.ad_groups.retain(|g| g.ad_group_id != id);
                        p.keywords.retain(|k| k.ad_group_id != id);
                    }
                    ListKind::Keywords => p.keywords.retain(|k| k.keyword_id != id),
                }
                if before == (p.campaigns.len(), p.ad_groups.len(), p.keywords.len()) {
                    return Err(missing(kind, &id));
                }
            }
            Mutation::Rename { kind, id, name, .. } => {
                let slot = match kind {
                    ListKind::Campaigns => find(&mut p.campaigns, &id).map(|c| &mut c.name),
                    ListKind::AdGroups => find(&mut p.ad_groups, &id).map(|g| &mut g.name),
                    ListKind::Keywords => find(&mut p.keywords, &id).map(|k| &mut k.keyword_text),
                };
                *slot.ok_or_else(|| missing(kind, &id))? = name;
            }
            Mutation::SetState {
                kind, id, state, ..
            } => {
                let slot = match kind {
                    ListKind::Campaigns => find(&mut p.campaigns, &id).map(|c| &mut c.state),
                    ListKind::AdGroups => find(&mut p.ad_groups, &id).map(|g| &mut g.state),
                    ListKind::Keywords => find(&mut p.keywords, &id).map(|k| &mut k.state),
                };
                *slot.ok_or_else(|| missing(kind, &id))? = state;
            }
        }
        Ok(())
    }

    fn log(&self, record: RequestRecord) {
        self.control().log.push(record);
    }

    /// Takes a token from the server bucket; `false` means throttle.
    fn take_token(&self) -> bool {
        let mut c = self.control();
        let Some(limit) = c.rate_limit else {
            return true;
        };
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(c.refilled_at).as_secs_f64();
        c.tokens = (c.tokens + elapsed * limit.rate).min(limit.burst.max(1.0));
        c.refilled_at = now;
        if c.tokens >= 1.0 {
            c.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    fn next_request_id(&self) -> String {
        let mut c = self.control();
        c.request_ids += 1;
        format!("FAKE-{:08}", c.request_ids)
    }
}

fn upsert<T: Entity>(items: &mut Vec<T>, item: T) {
    match items.binary_search_by(|x| x.id().cmp(item.id())) {
        Ok(i) => items[i] = item,
        Err(i) => items.insert(i, item),
    }
}

fn find<'a, T: Entity>(items: &'a mut [T], id: &str) -> Option<&'a mut T> {
    let i = items.binary_search_by(|x| x.id().cmp(id)).ok()?;
    items.get_mut(i)
}

struct Filters {
    campaigns: Option<HashSet<String>>,
    ad_groups: Option<HashSet<String>>,
    states: Option<HashSet<State>>,
}

impl Filters {
    fn of(req: &ListRequest) -> Self {
        Filters {
            campaigns: req
                .campaign_id_filter
                .as_ref()
                .map(|f| f.include.iter().cloned().collect()),
            ad_groups: req
                .ad_group_id_filter
                .as_ref()
                .map(|f| f.include.iter().cloned().collect()),
            states: req
                .state_filter
                .as_ref()
                .map(|f| f.include.iter().copied().collect()),
        }
    }

    fn is_empty(&self) -> bool {
        self.campaigns.is_none() && self.ad_groups.is_none() && self.states.is_none()
    }

    fn keeps<T: Entity>(&self, row: &T) -> bool {
        self.campaigns
            .as_ref()
            .is_none_or(|s| s.contains(row.campaign_id()))
            && match (&self.ad_groups, row.ad_group_id()) {
                (Some(s), Some(ag)) => s.contains(ag),
                _ => true,
            }
            && self
                .states
                .as_ref()
                .is_none_or(|s| s.contains(&row.state()))
    }

    /// FNV-1a over the filters, so a token cannot be replayed with other filters.
    fn fingerprint(req: &ListRequest) -> u64 {
        req.filter_key()
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            })
    }
}

fn encode_token(kind: ListKind, profile_id: &str, fingerprint: u64, last_id: &str) -> String {
    let plain = format!(
        "v1|{}|{profile_id}|{fingerprint:016x}|{last_id}",
        items_key(kind)
    );
    plain.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The last id served, if `token` was issued for this kind, profile and filters.
fn decode_token(token: &str, kind: ListKind, profile_id: &str, fingerprint: u64) -> Option<String> {
    if token.len() % 2 != 0 || !token.is_ascii() {
        return None;
    }
    let bytes: Option<Vec<u8>> = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16).ok())
        .collect();
    let plain = String::from_utf8(bytes?).ok()?;
    let mut parts = plain.splitn(5, '|');
    let ok = parts.next() == Some("v1")
        && parts.next() == Some(items_key(kind))
        && parts.next() == Some(profile_id)
        && parts.next() == Some(format!("{fingerprint:016x}").as_str());
    if !ok {
        return None;
    }
    parts.next().map(str::to_owned)
}

/// One page of `rows` after `last_id`: (items, total, last id if more remain).
fn page_of<'a, T: Entity>(
    rows: &'a [T],
    last_id: Option<&str>,
    filters: &Filters,
    max: usize,
) -> (Vec<&'a T>, usize, Option<&'a str>) {
    let start = last_id.map_or(0, |last| rows.partition_point(|r| r.id() <= last));
    if filters.is_empty() {
        let end = (start + max).min(rows.len());
        let items: Vec<&T> = rows[start..end].iter().collect();
        let more = end < rows.len() && !items.is_empty();
        let last = if more {
            items.last().map(|r| r.id())
        } else {
            None
        };
        return (items, rows.len(), last);
    }
    let total = rows.iter().filter(|r| filters.keeps(*r)).count();
    let mut matching = rows[start..].iter().filter(|r| filters.keeps(*r));
    let items: Vec<&T> = matching.by_ref().take(max).collect();
    let more = !items.is_empty() && matching.next().is_some();
    let last = if more {
        items.last().map(|r| r.id())
    } else {
        None
    };
    (items, total, last)
}

/// One page of `rows` after `last_id` as the endpoint's JSON answer, with a
/// `nextToken` made by `token` from the last id served when more remain.
fn page_json<T: Entity>(
    rows: &[T],
    last_id: Option<&str>,
    filters: &Filters,
    max: usize,
    token: impl Fn(&str) -> String,
) -> serde_json::Result<String> {
    let (items, total, last) = page_of(rows, last_id, filters, max);
    let next_token = last.map(token);
    serde_json::to_string(&ListResponse {
        total_results: total as u64,
        items: &items,
        next_token: next_token.as_deref(),
    })
}

fn error_body(status: StatusCode, code: &str, message: &str, request_id: &str) -> Response {
    // Amazon uses both shapes; the fake alternates by status so clients handle both.
    let body = if status.is_client_error() && status != StatusCode::TOO_MANY_REQUESTS {
        ErrorBody {
            code: status.as_u16().to_string(),
            message: None,
            details: Some(message.to_owned()),
            request_id: Some(request_id.to_owned()),
        }
    } else {
        ErrorBody {
            code: code.to_owned(),
            message: Some(message.to_owned()),
            details: None,
            request_id: None,
        }
    };
    (status, Json(body)).into_response()
}

fn header_str(headers: &HeaderMap, name: impl axum::http::header::AsHeaderName) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn media_type_ok(value: Option<&str>, expected: &str) -> bool {
    value.is_some_and(|v| {
        v.split(',').any(|part| {
            part.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case(expected))
        })
    })
}

async fn list_campaigns(
    AxState(fake): AxState<FakeAmazon>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    fake.handle_list(ListKind::Campaigns, headers, body).await
}

async fn list_ad_groups(
    AxState(fake): AxState<FakeAmazon>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    fake.handle_list(ListKind::AdGroups, headers, body).await
}

async fn list_keywords(
    AxState(fake): AxState<FakeAmazon>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    fake.handle_list(ListKind::Keywords, headers, body).await
}

impl FakeAmazon {
    async fn handle_list(&self, kind: ListKind, headers: HeaderMap, body: Bytes) -> Response {
        let at = self.shared.started.elapsed();
        let request: Result<ListRequest, String> =
            serde_json::from_slice(&body).map_err(|e| e.to_string());
        let mut record = RequestRecord {
            at,
            method: Method::POST.to_string(),
            path: path(kind).to_owned(),
            status: 0,
            profile_id: header_str(&headers, "Amazon-Advertising-API-Scope"),
            next_token: request.as_ref().ok().and_then(|r| r.next_token.clone()),
            max_results: request.as_ref().ok().and_then(|r| r.max_results),
            content_type: header_str(&headers, header::CONTENT_TYPE),
            accept: header_str(&headers, header::ACCEPT),
        };
        let response = self.answer(kind, &headers, request, &record).await;
        record.status = response.status().as_u16();
        tracing::debug!(path = path(kind), status = record.status, "fake amazon");
        self.log(record);
        response
    }

    async fn answer(
        &self,
        kind: ListKind,
        headers: &HeaderMap,
        request: Result<ListRequest, String>,
        record: &RequestRecord,
    ) -> Response {
        let config = &self.shared.config;
        let rid = self.next_request_id();
        let expected_auth = format!("Bearer {}", config.token);
        if header_str(headers, header::AUTHORIZATION).as_deref() != Some(expected_auth.as_str()) {
            return error_body(
                StatusCode::UNAUTHORIZED,
                "UNAUTHORIZED",
                "Not authorized: missing or invalid bearer token",
                &rid,
            );
        }
        if header_str(headers, "Amazon-Advertising-API-ClientId").as_deref()
            != Some(config.client_id.as_str())
        {
            return error_body(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "Missing or unknown Amazon-Advertising-API-ClientId",
                &rid,
            );
        }
        let Some(profile_id) = record.profile_id.clone() else {
            return error_body(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                "Missing Amazon-Advertising-API-Scope",
                &rid,
            );
        };
        if !self.read().contains_key(&profile_id) {
            return error_body(
                StatusCode::FORBIDDEN,
                "FORBIDDEN",
                &format!("Profile {profile_id} is not accessible"),
                &rid,
            );
        }
        if !media_type_ok(record.content_type.as_deref(), media_type(kind))
            || !media_type_ok(record.accept.as_deref(), media_type(kind))
        {
            return error_body(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                &format!(
                    "Content-Type and Accept must be {} (got {:?} / {:?})",
                    media_type(kind),
                    record.content_type,
                    record.accept
                ),
                &rid,
            );
        }

        let fault = self.control().faults.pop_front();
        let mut garble = None;
        match fault {
            None => {}
            Some(AmazonFault::Throttle { retry_after_secs }) => {
                return throttled(retry_after_secs);
            }
            Some(AmazonFault::ServerError { status }) => {
                let status =
                    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return error_body(status, "INTERNAL_ERROR", "Injected server error", &rid);
            }
            Some(AmazonFault::Reject {
                status,
                code,
                message,
            }) => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
                return (
                    status,
                    Json(ErrorBody {
                        code,
                        message: Some(message),
                        details: None,
                        request_id: Some(rid),
                    }),
                )
                    .into_response();
            }
            Some(AmazonFault::Delay { ms }) => tokio::time::sleep(Duration::from_millis(ms)).await,
            Some(AmazonFault::Pass) => {}
            Some(other) => garble = Some(other),
        }
        if !self.take_token() {
            return throttled(config.retry_after.for_kind(kind));
        }

        let request = match request {
            Ok(r) => r,
            Err(e) => {
                return error_body(
                    StatusCode::BAD_REQUEST,
                    "INVALID_ARGUMENT",
                    &format!("Invalid request body: {e}"),
                    &rid,
                )
            }
        };
        let max = request.max_results.unwrap_or(config.default_page_size);
        if max == 0 || max > config.max_page_size {
            return error_body(
                StatusCode::BAD_REQUEST,
                "INVALID_ARGUMENT",
                &format!("maxResults must be between 1 and {}", config.max_page_size),
                &rid,
            );
        }
        let fingerprint = Filters::fingerprint(&request);
        let last_id = match &request.next_token {
            None => None,
            Some(t) => match decode_token(t, kind, &profile_id, fingerprint) {
                Some(last) => Some(last),
                None => {
                    return error_body(
                        StatusCode::BAD_REQUEST,
                        "INVALID_ARGUMENT",
                        "Invalid nextToken",
                        &rid,
                    )
                }
            },
        };
        let filters = Filters::of(&request);
        // Serialized straight from the borrowed page (no intermediate `Value`) so a
        // 1000-item page costs one pass; faults re-parse it to garble it.
        let full = {
            let data = self.read();
            let Some(p) = data.get(&profile_id) else {
                return error_body(StatusCode::FORBIDDEN, "FORBIDDEN", "Profile vanished", &rid);
            };
            let last_id = last_id.as_deref();
            let max = max as usize;
            let token = |last: &str| encode_token(kind, &profile_id, fingerprint, last);
            let body = match kind {
                ListKind::Campaigns => page_json(&p.campaigns, last_id, &filters, max, token),
                ListKind::AdGroups => page_json(&p.ad_groups, last_id, &filters, max, token),
                ListKind::Keywords => page_json(&p.keywords, last_id, &filters, max, token),
            };
            match body {
                Ok(body) => body,
                Err(e) => {
                    return error_body(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "INTERNAL_ERROR",
                        &format!("Could not serialize the page: {e}"),
                        &rid,
                    )
                }
            }
        };
        let body = match garble {
            Some(AmazonFault::InvalidJson) => full[..full.len() / 2].to_owned(),
            Some(fault @ (AmazonFault::MissingField | AmazonFault::UnknownEnum)) => {
                let mut value: Value = serde_json::from_str(&full).unwrap_or(Value::Null);
                match value[items_key(kind)]
                    .get_mut(0)
                    .and_then(Value::as_object_mut)
                {
                    Some(first) if fault == AmazonFault::MissingField => {
                        first.remove("state");
                    }
                    Some(first) => {
                        first.insert("state".into(), Value::String("SUSPENDED".into()));
                    }
                    None => {
                        if let Some(o) = value.as_object_mut() {
                            o.remove(items_key(kind));
                        }
                    }
                }
                value.to_string()
            }
            _ => full,
        };
        (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static(media_type(kind)),
            )],
            body,
        )
            .into_response()
    }
}

fn throttled(retry_after_secs: Option<u32>) -> Response {
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(ErrorBody {
            code: "THROTTLED".to_owned(),
            message: Some("Request was throttled".to_owned()),
            details: None,
            request_id: None,
        }),
    )
        .into_response();
    if let Some(secs) = retry_after_secs {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// Body of `POST /_admin/faults`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InjectFaults {
    /// The fault.
    pub fault: AmazonFault,
    /// For how many of the next list calls.
    pub count: usize,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    Many(Vec<Mutation>),
    One(Box<Mutation>),
}

async fn admin_requests(AxState(fake): AxState<FakeAmazon>) -> Json<Vec<RequestRecord>> {
    Json(fake.requests())
}

async fn admin_clear_requests(AxState(fake): AxState<FakeAmazon>) -> StatusCode {
    fake.clear_requests();
    StatusCode::NO_CONTENT
}

async fn admin_inject(
    AxState(fake): AxState<FakeAmazon>,
    Json(req): Json<InjectFaults>,
) -> StatusCode {
    fake.inject(req.fault, req.count);
    StatusCode::NO_CONTENT
}

async fn admin_clear_faults(AxState(fake): AxState<FakeAmazon>) -> StatusCode {
    fake.clear_faults();
    StatusCode::NO_CONTENT
}

async fn admin_rate_limit(
    AxState(fake): AxState<FakeAmazon>,
    Json(limit): Json<Option<ServerRateLimit>>,
) -> StatusCode {
    fake.set_rate_limit(limit);
    StatusCode::NO_CONTENT
}

async fn admin_mutations(AxState(fake): AxState<FakeAmazon>, Json(m): Json<OneOrMany>) -> Response {
    let list = match m {
        OneOrMany::Many(v) => v,
        OneOrMany::One(m) => vec![*m],
    };
    for m in list {
        if let Err(e) = fake.mutate(m) {
            return (StatusCode::NOT_FOUND, Json(json!({"error": e}))).into_response();
        }
    }
    StatusCode::NO_CONTENT.into_response()
}

async fn admin_counts(
    AxState(fake): AxState<FakeAmazon>,
    Path(profile_id): Path<String>,
) -> Response {
    match fake.counts(&profile_id) {
        Some(c) => Json(c).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}
