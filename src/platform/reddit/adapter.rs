//! [`RedditAdapter`]: the Reddit Ads API v3 behind [`PushAdapter`].

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, DATE, RETRY_AFTER, USER_AGENT};
use reqwest::{Method, StatusCode, Url};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::time::Instant;
use tracing::debug;

use super::api::{
    AdGroupWrite, AdWrite, CampaignWrite, Created, EntitySummary, Envelope, ErrorEnvelope,
    ListEnvelope, Targeting, TargetingWrite,
};
use super::token::{StaticToken, TokenSource};
use crate::adapter::{
    AdapterError, EntityKind, EntitySpec, FieldError, FoundEntity, KeywordModel, Parent,
    PlatformEntity, PushAdapter,
};
use crate::converge::{instant, Fields, Observed};
use crate::model::Keyword;
use crate::ratelimit::RateLimiter;
use crate::secret::Secret;
use adsync_engine::Backoff;
use adsync_engine::Timestamp;

/// The production API root.
pub const DEFAULT_BASE_URL: &str = "https://ads-api.reddit.com/api/v3";
/// Environment variable overriding [`RedditConfig::base_url`].
pub const ENV_BASE_URL: &str = "ADSYNC_REDDIT_BASE_URL";
/// Environment variable holding the bearer token.
pub const ENV_TOKEN: &str = "ADSYNC_REDDIT_TOKEN";
/// Environment variable overriding [`RedditConfig::user_agent`].
pub const ENV_USER_AGENT: &str = "ADSYNC_REDDIT_USER_AGENT";

/// Client-side request budget per ad account (Reddit: reads 400, writes 200 per 60 s).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RatePolicy {
    /// GET requests per window.
    pub reads: u32,
    /// POST/PATCH requests per window.
    pub writes: u32,
    /// The window the two budgets refill over (Reddit: 60 s).
    pub window: Duration,
}

impl Default for RatePolicy {
    fn default() -> Self {
        RatePolicy {
            reads: 400,
            writes: 200,
            window: Duration::from_secs(60),
        }
    }
}

/// Settings of a [`RedditAdapter`]. `Debug` never shows the token.
#[derive(Debug, Clone)]
pub struct RedditConfig {
    /// API root, e.g. `https://ads-api.reddit.com/api/v3` (no trailing slash needed).
    pub base_url: String,
    /// Bearer token used by [`RedditAdapter::new`] (a [`StaticToken`]).
    pub token: Option<Secret>,
    /// `User-Agent` header (Reddit requires one).
    pub user_agent: String,
    /// Whole-request timeout (connect, send, and read the response).
    pub timeout: Duration,
    /// Connect timeout: how long establishing a connection may take, within
    /// `timeout`.
    pub connect_timeout: Duration,
    /// Client-side rate limits, shared per ad account.
    pub rate: RatePolicy,
    /// Retries of throttled (429), failed-to-connect and 5xx reads/updates.
    /// Waits longer than `backoff.max` are not slept inside a call: the call
    /// returns [`AdapterError::Transient`] with `retry_after` instead.
    pub backoff: Backoff,
    /// `page.size` sent on list requests (`None`: the platform's default).
    pub page_size: Option<u32>,
}

impl Default for RedditConfig {
    fn default() -> Self {
        RedditConfig {
            base_url: DEFAULT_BASE_URL.to_string(),
            token: None,
            user_agent: concat!("adsync/", env!("CARGO_PKG_VERSION")).to_string(),
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            rate: RatePolicy::default(),
            backoff: Backoff::default(),
            page_size: Some(100),
        }
    }
}

/// Why an adapter could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The base URL does not parse or is not http(s).
    #[error("invalid Reddit base URL `{url}`: {reason}")]
    BaseUrl {
        /// The offending value.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// No token was configured.
    #[error("no Reddit access token: set {ENV_TOKEN} or RedditConfig::token")]
    MissingToken,
    /// The user agent is empty (Reddit rejects requests without one).
    #[error("the User-Agent must not be empty")]
    EmptyUserAgent,
    /// The user agent cannot be sent as an HTTP header value (a newline or
    /// another control character).
    #[error("the User-Agent cannot be sent as an HTTP header: {reason}")]
    InvalidUserAgent {
        /// What is wrong with it.
        reason: String,
    },
    /// The token cannot be sent in an `Authorization` header (a newline or
    /// another control character). Its value is never shown.
    #[error("the access token cannot be sent as an HTTP header: it contains a newline or another character not allowed in a header")]
    InvalidToken,
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
}

impl RedditConfig {
    /// Defaults, overridden by `ADSYNC_REDDIT_BASE_URL`, `ADSYNC_REDDIT_TOKEN` and
    /// `ADSYNC_REDDIT_USER_AGENT` when set (empty values count as unset).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Like [`RedditConfig::from_env`] with a custom variable lookup (tests).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let mut config = RedditConfig::default();
        if let Some(url) = get(ENV_BASE_URL) {
            config.base_url = url.trim().to_string();
        }
        if let Some(token) = get(ENV_TOKEN) {
            config.token = Some(Secret::new(token.trim()));
        }
        if let Some(ua) = get(ENV_USER_AGENT) {
            config.user_agent = ua;
        }
        parse_base(&config.base_url)?;
        Ok(config)
    }
}

/// Whether `token` can be sent as `Authorization: Bearer <token>`.
fn check_token(token: &Secret) -> Result<(), ConfigError> {
    HeaderValue::from_str(&format!("Bearer {}", token.expose()))
        .map(|_| ())
        .map_err(|_| ConfigError::InvalidToken)
}

fn parse_base(raw: &str) -> Result<Url, ConfigError> {
    let bad = |reason: String| ConfigError::BaseUrl {
        url: raw.to_string(),
        reason,
    };
    let mut url = Url::parse(raw).map_err(|e| bad(e.to_string()))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(bad("scheme must be http or https".into()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not have a query or fragment".into()));
    }
    let path = url.path().trim_end_matches('/').to_string();
    url.set_path(&path);
    Ok(url)
}

#[derive(Debug)]
struct AccountLimits {
    reads: RateLimiter,
    writes: RateLimiter,
}

/// The Reddit Ads API v3 as a [`PushAdapter`].
///
/// * keywords are strings on the ad group's targeting
///   ([`KeywordModel::AdGroupTargeting`]);
/// * a create is sent **at most once**: a timeout, dropped connection, 5xx or
///   unreadable success body after the POST may have reached Reddit yields
///   [`AdapterError::Unknown`], to be settled with [`PushAdapter::find`];
/// * reads and updates are retried on 5xx, connect failures and 429 within the
///   configured [`Backoff`], then reported as [`AdapterError::Transient`];
/// * one pair of rate limiters (reads, writes) per ad account is shared by every
///   call on this adapter, and follows `X-Ratelimit-Remaining`/`-Reset`.
///
/// ```
/// use std::time::Duration;
/// use adsync::{KeywordModel, PushAdapter};
/// use adsync::reddit::{RatePolicy, RedditAdapter, RedditConfig};
/// use adsync::Secret;
///
/// let config = RedditConfig {
///     base_url: "http://127.0.0.1:8080/api/v3".into(),
///     token: Some(Secret::new("my-token")),
///     user_agent: "adsync-docs/1.0".into(),
///     timeout: Duration::from_secs(10),
///     rate: RatePolicy { reads: 400, writes: 200, window: Duration::from_secs(60) },
///     ..RedditConfig::default()
/// };
/// let adapter = RedditAdapter::new(config)?;
/// assert_eq!(adapter.platform(), "reddit");
/// assert_eq!(adapter.keyword_model(), KeywordModel::AdGroupTargeting);
/// assert!(!format!("{adapter:?}").contains("my-token"));
/// # Ok::<(), adsync::reddit::ConfigError>(())
/// ```
#[derive(Debug)]
pub struct RedditAdapter {
    config: RedditConfig,
    base: Url,
    http: reqwest::Client,
    tokens: Arc<dyn TokenSource>,
    limits: Mutex<HashMap<String, Arc<AccountLimits>>>,
    /// Reddit's clock minus ours, from the `Date` header of the latest
    /// response that had one: look-ups compare `created_at` (Reddit's clock)
    /// with an intent recorded on ours.
    clock_offset: Mutex<Option<time::Duration>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    /// GET: never changes anything.
    Read,
    /// PATCH: idempotent, safe to repeat.
    Update,
    /// POST create: must be sent at most once.
    Create,
}

struct Call<'a> {
    account: &'a str,
    method: Method,
    url: Url,
    body: Option<serde_json::Value>,
    op: Op,
    /// What a 404 means, e.g. "campaign c_1 no longer exists".
    not_found: String,
}

impl RedditAdapter {
    /// An adapter using the configured token ([`RedditConfig::token`]).
    /// Sends nothing; every setting that could make a request fail to be
    /// built is checked here, so a push never stops on configuration halfway.
    ///
    /// ```
    /// use adsync::reddit::{RedditAdapter, RedditConfig};
    /// use adsync::Secret;
    ///
    /// let config = RedditConfig { token: Some(Secret::new("token")), ..RedditConfig::default() };
    /// assert!(RedditAdapter::new(config).is_ok());
    /// // Without a token there is no adapter, and no request "may have been sent".
    /// assert!(RedditAdapter::new(RedditConfig::default()).is_err());
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::MissingToken`] without a token;
    /// [`ConfigError::InvalidToken`] if it cannot be a header value; otherwise
    /// as [`RedditAdapter::with_token_source`].
    pub fn new(config: RedditConfig) -> Result<Self, ConfigError> {
        let token = config.token.clone().ok_or(ConfigError::MissingToken)?;
        check_token(&token)?;
        Self::with_token_source(config, Arc::new(StaticToken::new(token)))
    }

    /// An adapter taking tokens from `tokens` (e.g. an OAuth refresh flow);
    /// [`RedditConfig::token`] is ignored.
    ///
    /// # Errors
    ///
    /// [`ConfigError::BaseUrl`], [`ConfigError::EmptyUserAgent`],
    /// [`ConfigError::InvalidUserAgent`] for a bad setting;
    /// [`ConfigError::Client`] if the HTTP client cannot be built.
    pub fn with_token_source(
        config: RedditConfig,
        tokens: Arc<dyn TokenSource>,
    ) -> Result<Self, ConfigError> {
        let base = parse_base(&config.base_url)?;
        if config.user_agent.trim().is_empty() {
            return Err(ConfigError::EmptyUserAgent);
        }
        // Checked now so that a bad value is a configuration error before the
        // first request, never a request that "may have been sent".
        HeaderValue::from_str(&config.user_agent).map_err(|e| ConfigError::InvalidUserAgent {
            reason: format!("{e} (a newline or another control character)"),
        })?;
        let http = crate::platform::http_client_builder(&config.base_url)
            .connect_timeout(config.connect_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(ConfigError::Client)?;
        Ok(RedditAdapter {
            config,
            base,
            http,
            tokens,
            limits: Mutex::new(HashMap::new()),
            clock_offset: Mutex::new(None),
        })
    }

    /// The configuration it was built with (its `Debug` hides the token).
    pub fn config(&self) -> &RedditConfig {
        &self.config
    }

    /// Reddit's clock minus this machine's, as the `Date` header of the latest
    /// response showed it (`None` before the first response with one).
    pub fn clock_offset(&self) -> Option<time::Duration> {
        *self.clock_offset.lock()
    }

    fn observe_date(&self, headers: &HeaderMap) {
        let Some(platform_now) = headers
            .get(DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_http_date)
        else {
            return;
        };
        let offset = platform_now - OffsetDateTime::now_utc();
        *self.clock_offset.lock() = Some(offset);
    }

    fn limits_for(&self, account: &str) -> Arc<AccountLimits> {
        let mut map = self.limits.lock();
        map.entry(account.to_string())
            .or_insert_with(|| {
                let p = self.config.rate;
                Arc::new(AccountLimits {
                    reads: RateLimiter::per_window(p.reads, p.window),
                    writes: RateLimiter::per_window(p.writes, p.window),
                })
            })
            .clone()
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    /// Sends one logical request, retrying only where that cannot duplicate work,
    /// and returns the body of a 2xx response.
    async fn execute(&self, call: &Call<'_>) -> Result<Vec<u8>, AdapterError> {
        let limits = self.limits_for(call.account);
        let limiter = if call.method == Method::GET {
            &limits.reads
        } else {
            &limits.writes
        };
        let endpoint = format!("{} {}", call.method, call.url.path());
        let backoff = self.config.backoff;
        let mut failures = 0u32;
        let mut refreshed = false;
        loop {
            let queued = Instant::now();
            limiter.acquire().await;
            crate::telemetry::waited("reddit", queued.elapsed());
            let token = self.tokens.token().await?;
            let mut req = self
                .http
                .request(call.method.clone(), call.url.clone())
                .bearer_auth(token.expose())
                .header(USER_AGENT, &self.config.user_agent)
                .header(ACCEPT, "application/json")
                .timeout(self.config.timeout);
            if let Some(body) = &call.body {
                req = req.json(body);
            }
            let started = Instant::now();
            let sent = req.send().await;
            let (status, headers, body) = match sent {
                Ok(resp) => {
                    let status = resp.status();
                    let headers = resp.headers().clone();
                    observe_rate_headers(limiter, &headers);
                    self.observe_date(&headers);
                    match resp.bytes().await {
                        Ok(b) => (status, headers, b.to_vec()),
                        Err(e) => {
                            debug!(method = %call.method, path = call.url.path(), status = status.as_u16(),
                                latency_ms = started.elapsed().as_millis() as u64, error = %e, "reddit request: body lost");
                            self.after_send_failure(call, &endpoint, &describe(&e), &mut failures)
                                .await?;
                            continue;
                        }
                    }
                }
                Err(e) => {
                    debug!(method = %call.method, path = call.url.path(),
                        latency_ms = started.elapsed().as_millis() as u64, error = %e, "reddit request failed");
                    if e.is_builder() {
                        // The request never left this machine: a configuration
                        // error (e.g. a header value with a newline), not an
                        // unknown outcome. reqwest's message names no header value.
                        return Err(AdapterError::Permanent {
                            message: format!(
                                "{endpoint}: the request could not be built (nothing was sent): {}",
                                error_chain(&e)
                            ),
                            fields: vec![],
                        });
                    }
                    if e.is_connect() {
                        // Never reached the server: safe to retry even a create.
                        failures += 1;
                        if !backoff.allows_retry(failures) {
                            return Err(AdapterError::Transient {
                                message: format!("{endpoint}: cannot connect: {}", describe(&e)),
                                retry_after: None,
                            });
                        }
                        tokio::time::sleep(backoff.delay(failures)).await;
                        continue;
                    }
                    self.after_send_failure(call, &endpoint, &describe(&e), &mut failures)
                        .await?;
                    continue;
                }
            };
            debug!(method = %call.method, path = call.url.path(), status = status.as_u16(),
                latency_ms = started.elapsed().as_millis() as u64, "reddit request");

            if status.is_success() {
                return Ok(body);
            }
            match status {
                StatusCode::UNAUTHORIZED => {
                    // Rejected before processing: safe to retry, creates included.
                    if refreshed {
                        let why = if self.tokens.can_refresh() {
                            "the access token was rejected even after refreshing it".to_string()
                        } else {
                            // A fixed token was only retried once, in case the
                            // rejection was a blip: there was nothing to refresh.
                            format!(
                                "the access token was rejected twice (it is fixed and cannot be \
                                 refreshed: check {ENV_TOKEN})"
                            )
                        };
                        return Err(AdapterError::Permanent {
                            message: format!("{endpoint}: 401 Unauthorized: {why}"),
                            fields: vec![],
                        });
                    }
                    refreshed = true;
                    self.tokens.refresh().await?;
                    continue;
                }
                StatusCode::TOO_MANY_REQUESTS => {
                    // Throttled requests are not processed: safe to retry, creates included.
                    crate::telemetry::throttled("reddit");
                    failures += 1;
                    let wait = header_secs(&headers, RETRY_AFTER.as_str())
                        .or_else(|| header_secs(&headers, "x-ratelimit-reset"))
                        .unwrap_or_else(|| backoff.delay(failures));
                    limiter.pause_until(Instant::now() + wait);
                    if !backoff.allows_retry(failures) || wait > backoff.max {
                        return Err(AdapterError::Transient {
                            message: format!("{endpoint}: throttled (429)"),
                            retry_after: Some(wait),
                        });
                    }
                    continue;
                }
                s if s.is_server_error() => {
                    if call.op == Op::Create {
                        return Err(AdapterError::Unknown {
                            message: format!(
                                "{endpoint}: {s}{} after the create was sent; it may have been applied \
                                 (not re-sent: Reddit has no idempotency keys)",
                                error_suffix(s, &body)
                            ),
                        });
                    }
                    failures += 1;
                    if !backoff.allows_retry(failures) {
                        return Err(AdapterError::Transient {
                            message: format!("{endpoint}: {s}{}", error_suffix(s, &body)),
                            retry_after: None,
                        });
                    }
                    tokio::time::sleep(backoff.delay(failures)).await;
                    continue;
                }
                StatusCode::NOT_FOUND => {
                    return Err(AdapterError::NotFound {
                        message: format!("{} (404 from {endpoint})", call.not_found),
                    });
                }
                s => return Err(rejected(&endpoint, s, &body)),
            }
        }
    }

    /// The request may have reached Reddit but no usable answer came back.
    async fn after_send_failure(
        &self,
        call: &Call<'_>,
        endpoint: &str,
        what: &str,
        failures: &mut u32,
    ) -> Result<(), AdapterError> {
        if call.op == Op::Create {
            return Err(AdapterError::Unknown {
                message: format!(
                    "{endpoint}: {what} after the create was sent; it may have been applied \
                     (not re-sent: Reddit has no idempotency keys)"
                ),
            });
        }
        *failures += 1;
        if !self.config.backoff.allows_retry(*failures) {
            let note = if call.op == Op::Update {
                " (the update may have been applied; it is idempotent and safe to repeat)"
            } else {
                ""
            };
            return Err(AdapterError::Transient {
                message: format!("{endpoint}: {what}{note}"),
                retry_after: None,
            });
        }
        tokio::time::sleep(self.config.backoff.delay(*failures)).await;
        Ok(())
    }

    /// Reads every page of the listing of `kind` under `parent`, handing
    /// each page's items to `on_page`, following `pagination.next_url` (on
    /// Reddit's own origin only: the token never goes elsewhere) and refusing
    /// a pagination that loops.
    async fn list_pages<T: DeserializeOwned>(
        &self,
        parent: &Parent,
        kind: EntityKind,
        mut on_page: impl FnMut(&str, Vec<T>) -> Result<(), AdapterError>,
    ) -> Result<(), AdapterError> {
        let mut url = self.url(&["ad_accounts", &parent.account_id, collection(kind)?]);
        {
            let mut q = url.query_pairs_mut();
            match kind {
                EntityKind::AdGroup => {
                    q.append_pair("campaign_id", parent_id(parent, kind)?);
                }
                EntityKind::Ad => {
                    q.append_pair("ad_group_id", parent_id(parent, kind)?);
                }
                _ => {}
            }
            if let Some(size) = self.config.page_size {
                q.append_pair("page.size", &size.to_string());
            }
        }
        if url.query() == Some("") {
            url.set_query(None);
        }
        let mut seen_pages = std::collections::HashSet::new();
        let mut next = Some(url);
        while let Some(page_url) = next.take() {
            if !seen_pages.insert(page_url.to_string()) {
                return Err(AdapterError::Transient {
                    message: format!(
                        "GET {}: pagination loops back to a page already read",
                        page_url.path()
                    ),
                    retry_after: None,
                });
            }
            let endpoint = format!("GET {}", page_url.path());
            let page: ListEnvelope<T> = self
                .get_json(
                    &parent.account_id,
                    page_url,
                    format!("the parent of these {kind}s no longer exists on Reddit"),
                )
                .await?;
            on_page(&endpoint, page.data)?;
            if let Some(raw) = page.pagination.and_then(|p| p.next_url) {
                if raw.trim().is_empty() {
                    continue;
                }
                let next_url = Url::parse(&raw).map_err(|e| AdapterError::Transient {
                    message: format!("{endpoint}: unusable pagination.next_url `{raw}`: {e}"),
                    retry_after: None,
                })?;
                // The bearer token must never go to another host.
                if next_url.origin() != self.base.origin() {
                    return Err(AdapterError::Permanent {
                        message: format!(
                            "{endpoint}: pagination.next_url points to another origin ({}); refusing to send the token there",
                            next_url.origin().ascii_serialization()
                        ),
                        fields: vec![],
                    });
                }
                next = Some(next_url);
            }
        }
        Ok(())
    }

    async fn get_json<T: DeserializeOwned>(
        &self,
        account: &str,
        url: Url,
        not_found: String,
    ) -> Result<T, AdapterError> {
        let endpoint = format!("GET {}", url.path());
        let call = Call {
            account,
            method: Method::GET,
            url,
            body: None,
            op: Op::Read,
            not_found,
        };
        // A read changes nothing: a body cut short or garbled on the way is
        // read again, within the same backoff budget as a 5xx.
        let mut garbled = 0u32;
        loop {
            let body = self.execute(&call).await?;
            match serde_json::from_slice(&body) {
                Ok(value) => return Ok(value),
                Err(e) => {
                    garbled += 1;
                    if !self.config.backoff.allows_retry(garbled) {
                        return Err(AdapterError::Transient {
                            message: format!(
                                "{endpoint}: unreadable success response ({garbled} times): {e}"
                            ),
                            retry_after: None,
                        });
                    }
                    debug!(path = call.url.path(), error = %e, "reddit read: garbled body; reading again");
                    tokio::time::sleep(self.config.backoff.delay(garbled)).await;
                }
            }
        }
    }

    async fn patch(
        &self,
        account: &str,
        url: Url,
        data: impl Serialize,
        not_found: String,
    ) -> Result<(), AdapterError> {
        let endpoint = format!("PATCH {}", url.path());
        let body = envelope(&data, &endpoint)?;
        let resp = self
            .execute(&Call {
                account,
                method: Method::PATCH,
                url,
                body: Some(body),
                op: Op::Update,
                not_found,
            })
            .await?;
        // The update was accepted; still insist on a well-formed answer.
        serde_json::from_slice::<Envelope<serde_json::Map<String, serde_json::Value>>>(&resp)
            .map_err(|e| AdapterError::Transient {
                message: format!(
                    "{endpoint}: unreadable success response ({e}); the update may have been \
                     applied and is safe to repeat"
                ),
                retry_after: None,
            })?;
        Ok(())
    }

    fn entity_url(&self, kind: EntityKind, id: &str) -> Result<Url, AdapterError> {
        Ok(self.url(&[collection(kind)?, id]))
    }
}

fn collection(kind: EntityKind) -> Result<&'static str, AdapterError> {
    match kind {
        EntityKind::Campaign => Ok("campaigns"),
        EntityKind::AdGroup => Ok("ad_groups"),
        EntityKind::Ad => Ok("ads"),
        EntityKind::Keyword => Err(keyword_not_entity()),
    }
}

fn keyword_not_entity() -> AdapterError {
    AdapterError::Permanent {
        message: "Reddit has no keyword entities: keywords are strings in the ad group's \
                  targeting.keywords; sync them with set_ad_group_keywords"
            .into(),
        fields: vec![],
    }
}

fn parent_id(parent: &Parent, kind: EntityKind) -> Result<&str, AdapterError> {
    parent
        .parent_id
        .as_deref()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| AdapterError::Permanent {
            message: format!("a Reddit {kind} needs its parent's platform id"),
            fields: vec![],
        })
}

fn envelope(data: &impl Serialize, endpoint: &str) -> Result<serde_json::Value, AdapterError> {
    serde_json::to_value(Envelope { data }).map_err(|e| AdapterError::Permanent {
        message: format!("{endpoint}: cannot encode the request body: {e}"),
        fields: vec![],
    })
}

/// The error and its sources, `: `-separated.
fn error_chain(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

fn describe(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_body() || e.is_decode() {
        "response body lost"
    } else {
        "connection failed"
    };
    // The error text holds the URL, never headers: no token can leak here.
    let mut msg = format!("{kind} ({e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg.push(')');
    msg
}

fn header_secs(headers: &HeaderMap, name: &str) -> Option<Duration> {
    let raw = headers.get(name)?.to_str().ok()?.trim();
    let secs: f64 = raw.parse().ok()?;
    if secs.is_finite() && secs >= 0.0 {
        Some(Duration::from_secs_f64(secs.min(86_400.0)))
    } else {
        None
    }
}

fn observe_rate_headers(limiter: &RateLimiter, headers: &HeaderMap) {
    let remaining = headers
        .get("x-ratelimit-remaining")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|v| v.is_finite());
    let reset = header_secs(headers, "x-ratelimit-reset");
    if let (Some(remaining), Some(reset)) = (remaining, reset) {
        limiter.observe_remaining(
            remaining.max(0.0).floor().min(f64::from(u32::MAX)) as u32,
            reset,
        );
    }
}

/// `": message"` when the platform's message says more than the status line
/// (`"400 Bad Request: Bad Request"` says nothing twice).
fn message_suffix(status: StatusCode, message: Option<&str>) -> String {
    match message.map(str::trim) {
        None | Some("") => String::new(),
        Some(m)
            if status
                .canonical_reason()
                .is_some_and(|r| r.eq_ignore_ascii_case(m)) =>
        {
            String::new()
        }
        Some(m) => format!(": {m}"),
    }
}

fn error_suffix(status: StatusCode, body: &[u8]) -> String {
    match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(e) => message_suffix(status, e.error.message.as_deref()),
        Err(_) => String::new(),
    }
}

fn rejected(endpoint: &str, status: StatusCode, body: &[u8]) -> AdapterError {
    match serde_json::from_slice::<ErrorEnvelope>(body) {
        Ok(e) => AdapterError::Permanent {
            message: format!(
                "{endpoint}: {status}{}",
                message_suffix(status, e.error.message.as_deref())
            ),
            fields: e
                .error
                .fields
                .into_iter()
                .map(|f| FieldError {
                    field: f.field,
                    message: f.message,
                })
                .collect(),
        },
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let snippet: String = text.chars().take(200).collect();
            AdapterError::Permanent {
                message: format!("{endpoint}: {status}: {snippet}"),
                fields: vec![],
            }
        }
    }
}

fn parse_time(raw: &str) -> Option<Timestamp> {
    OffsetDateTime::parse(raw, &Rfc3339).ok()
}

/// Parses an HTTP `Date` (IMF-fixdate, `Tue, 01 Dec 2026 16:04:15 GMT`).
fn parse_http_date(raw: &str) -> Option<Timestamp> {
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    time::PrimitiveDateTime::parse(raw.trim(), format)
        .ok()
        .map(|t| t.assume_utc())
}

#[async_trait]
impl PushAdapter for RedditAdapter {
    fn platform(&self) -> &str {
        "reddit"
    }

    fn keyword_model(&self) -> KeywordModel {
        KeywordModel::AdGroupTargeting
    }

    async fn create(&self, parent: &Parent, spec: &EntitySpec) -> Result<String, AdapterError> {
        let kind = spec.kind();
        let data = match spec {
            EntitySpec::Campaign(c) => serde_json::to_value(CampaignWrite::from(c)),
            EntitySpec::AdGroup(g) => serde_json::to_value(AdGroupWrite::new(
                g,
                Some(parent_id(parent, kind)?.to_string()),
            )),
            EntitySpec::Ad(a) => {
                serde_json::to_value(AdWrite::new(a, Some(parent_id(parent, kind)?.to_string())))
            }
            EntitySpec::Keyword(_) => return Err(keyword_not_entity()),
        }
        .map_err(|e| AdapterError::Permanent {
            message: format!("cannot encode {kind}: {e}"),
            fields: vec![],
        })?;
        let url = self.url(&["ad_accounts", &parent.account_id, collection(kind)?]);
        let endpoint = format!("POST {}", url.path());
        let body = envelope(&data, &endpoint)?;
        let resp = self
            .execute(&Call {
                account: &parent.account_id,
                method: Method::POST,
                url,
                body: Some(body),
                op: Op::Create,
                not_found: format!("ad account {} not found", parent.account_id),
            })
            .await?;
        match serde_json::from_slice::<Envelope<Created>>(&resp) {
            Ok(c) if !c.data.id.trim().is_empty() => Ok(c.data.id),
            Ok(_) => Err(AdapterError::Unknown {
                message: format!(
                    "{endpoint}: success response with an empty id; the {kind} `{}` may exist",
                    spec.lookup_name()
                ),
            }),
            Err(e) => Err(AdapterError::Unknown {
                message: format!(
                    "{endpoint}: unreadable success response ({e}); the {kind} `{}` may exist",
                    spec.lookup_name()
                ),
            }),
        }
    }

    async fn update(
        &self,
        parent: &Parent,
        id: &str,
        spec: &EntitySpec,
    ) -> Result<(), AdapterError> {
        let kind = spec.kind();
        let url = self.entity_url(kind, id)?;
        let not_found = format!("{kind} {id} no longer exists on Reddit");
        let account = &parent.account_id;
        match spec {
            EntitySpec::Campaign(c) => {
                self.patch(account, url, CampaignWrite::from(c), not_found)
                    .await
            }
            EntitySpec::AdGroup(g) => {
                self.patch(account, url, AdGroupWrite::new(g, None), not_found)
                    .await
            }
            EntitySpec::Ad(a) => {
                self.patch(account, url, AdWrite::new(a, None), not_found)
                    .await
            }
            EntitySpec::Keyword(_) => Err(keyword_not_entity()),
        }
    }

    async fn update_fields(
        &self,
        parent: &Parent,
        id: &str,
        spec: &EntitySpec,
        fields: &[String],
    ) -> Result<(), AdapterError> {
        let kind = spec.kind();
        let url = self.entity_url(kind, id)?;
        let not_found = format!("{kind} {id} no longer exists on Reddit");
        let full = match spec {
            EntitySpec::Campaign(c) => serde_json::to_value(CampaignWrite::from(c)),
            EntitySpec::AdGroup(g) => serde_json::to_value(AdGroupWrite::new(g, None)),
            EntitySpec::Ad(a) => serde_json::to_value(AdWrite::new(a, None)),
            EntitySpec::Keyword(_) => return Err(keyword_not_entity()),
        }
        .map_err(|e| AdapterError::Permanent {
            message: format!("cannot encode the {kind} update: {e}"),
            fields: vec![],
        })?;
        let body = partial_body(&full, fields)?;
        self.patch(&parent.account_id, url, body, not_found).await
    }

    async fn archive(
        &self,
        parent: &Parent,
        kind: EntityKind,
        id: &str,
    ) -> Result<(), AdapterError> {
        let url = self.entity_url(kind, id)?;
        let not_found = format!("{kind} {id} no longer exists on Reddit");
        // Archived, not deleted: Reddit keeps an archived entity's reporting
        // and it can still be read by id (docs/platforms/reddit.md).
        let body = serde_json::json!({ "configured_status": "ARCHIVED" });
        self.patch(&parent.account_id, url, body, not_found).await
    }

    fn lists(&self) -> bool {
        true
    }

    async fn find(
        &self,
        parent: &Parent,
        kind: EntityKind,
        name: &str,
        created_after: Timestamp,
    ) -> Result<Vec<FoundEntity>, AdapterError> {
        // `created_after` is on this machine's clock, `created_at` on
        // Reddit's: compare on Reddit's, as its latest `Date` showed it. The
        // header has whole seconds; the caller's slack absorbs that.
        let threshold = created_after + self.clock_offset().unwrap_or(time::Duration::ZERO);
        let mut found = Vec::new();
        self.list_pages::<EntitySummary>(parent, kind, |endpoint, page| {
            for e in page {
                if e.name != name {
                    continue;
                }
                let created = e
                    .created_at
                    .as_deref()
                    .and_then(parse_time)
                    .ok_or_else(|| AdapterError::Transient {
                        message: format!(
                            "{endpoint}: {kind} {} has no readable created_at ({:?})",
                            e.id, e.created_at
                        ),
                        retry_after: None,
                    })?;
                if created >= threshold {
                    found.push(FoundEntity {
                        id: e.id,
                        name: e.name,
                        created_at: created,
                    });
                }
            }
            Ok(())
        })
        .await?;
        Ok(found)
    }

    async fn list(&self, parent: &Parent, kind: EntityKind) -> Result<Vec<Observed>, AdapterError> {
        if kind == EntityKind::Keyword {
            // Keywords are the ad group's targeting here: a field of the group.
            return Ok(vec![]);
        }
        let mut listed = Vec::new();
        self.list_pages::<serde_json::Map<String, Value>>(parent, kind, |endpoint, page| {
            for item in page {
                listed.push(observed(endpoint, kind, &item)?);
            }
            Ok(())
        })
        .await?;
        Ok(listed)
    }

    async fn get(
        &self,
        parent: &Parent,
        kind: EntityKind,
        id: &str,
    ) -> Result<Option<PlatformEntity>, AdapterError> {
        let url = self.entity_url(kind, id)?;
        let read: Result<Envelope<serde_json::Map<String, serde_json::Value>>, _> = self
            .get_json(
                &parent.account_id,
                url,
                format!("{kind} {id} does not exist on Reddit"),
            )
            .await;
        let data = match read {
            Ok(envelope) => envelope.data,
            Err(AdapterError::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(e),
        };
        let text = |key: &str| {
            data.get(key)
                .and_then(serde_json::Value::as_str)
                .map(str::to_string)
        };
        let parent_key = match kind {
            EntityKind::AdGroup => Some("campaign_id"),
            EntityKind::Ad => Some("ad_group_id"),
            EntityKind::Campaign | EntityKind::Keyword => None,
        };
        Ok(Some(PlatformEntity {
            id: text("id").unwrap_or_else(|| id.to_string()),
            kind,
            name: text("name").unwrap_or_default(),
            account_id: text("ad_account_id"),
            parent_id: parent_key.and_then(text),
        }))
    }

    async fn set_ad_group_keywords(
        &self,
        parent: &Parent,
        ad_group_id: &str,
        keywords: &[Keyword],
    ) -> Result<(), AdapterError> {
        let url = self.entity_url(EntityKind::AdGroup, ad_group_id)?;
        let not_found = format!("ad group {ad_group_id} no longer exists on Reddit");
        let current: Envelope<serde_json::Map<String, serde_json::Value>> = self
            .get_json(&parent.account_id, url.clone(), not_found.clone())
            .await?;
        let mut targeting: Targeting = match current.data.get("targeting") {
            None | Some(serde_json::Value::Null) => Targeting::default(),
            Some(t) => serde_json::from_value(t.clone()).map_err(|e| AdapterError::Transient {
                message: format!("GET {}: unreadable targeting: {e}", url.path()),
                retry_after: None,
            })?,
        };
        let wanted: Vec<String> = keywords.iter().map(|k| k.text.clone()).collect();
        if targeting.keywords == wanted {
            // Already in place: save a write from the budget.
            return Ok(());
        }
        targeting.keywords = wanted;
        self.patch(
            &parent.account_id,
            url,
            TargetingWrite { targeting },
            not_found,
        )
        .await
    }
}

/// The PATCH body holding only `fields` (the set file's names) of `full`, the
/// whole write body in Reddit's names: a field the set leaves out is sent as
/// `null`, which clears it on Reddit.
fn partial_body(
    full: &Value,
    fields: &[String],
) -> Result<serde_json::Map<String, Value>, AdapterError> {
    let mut body = serde_json::Map::new();
    for field in fields {
        let same = [field.as_str()];
        let keys: &[&str] = match field.as_str() {
            "status" => &["configured_status"],
            "goal" => &["goal_type", "goal_value"],
            "bid_value_micros" => &["bid_value"],
            "name" | "objective" | "bid_strategy" | "bid_type" | "start_time" | "end_time"
            | "post_id" | "click_url" => &same,
            other => {
                return Err(AdapterError::Permanent {
                    message: format!("Reddit has no field for `{other}` in an update"),
                    fields: vec![],
                })
            }
        };
        for key in keys {
            let value = full.get(*key).cloned().unwrap_or(Value::Null);
            body.insert((*key).to_string(), value);
        }
    }
    Ok(body)
}

/// One listed Reddit entity in the set file's vocabulary (see
/// `docs/platforms/reddit.md` for the names): `configured_status` is
/// `status`, `bid_value` is `bid_value_micros`, `goal_type` and `goal_value`
/// are `goal`, the targeting's keywords are the group's `keywords` (a set).
/// Values are kept as Reddit sent them (an enum value this version does not
/// know simply differs from the set's); an item without an id or name is a
/// garbled page, retried like any unreadable answer.
fn observed(
    endpoint: &str,
    kind: EntityKind,
    item: &serde_json::Map<String, Value>,
) -> Result<Observed, AdapterError> {
    let text = |key: &str| item.get(key).and_then(Value::as_str).map(str::to_string);
    let field = |key: &str| item.get(key).cloned().unwrap_or(Value::Null);
    let garbled = |what: &str| AdapterError::Transient {
        message: format!("{endpoint}: a listed {kind} has no {what}"),
        retry_after: None,
    };
    let id = text("id").ok_or_else(|| garbled("id"))?;
    let name = text("name").ok_or_else(|| garbled("name"))?;
    let mut fields = Fields::new();
    fields.insert("name", Value::from(name.as_str()));
    let parent_id = match kind {
        EntityKind::Campaign => {
            fields.insert("objective", field("objective"));
            fields.insert("status", field("configured_status"));
            let goal = match item.get("goal_type") {
                Some(Value::Null) | None => Value::Null,
                Some(goal_type) => serde_json::json!({
                    "type": goal_type, "value_micros": field("goal_value"),
                }),
            };
            fields.insert("goal", goal);
            None
        }
        EntityKind::AdGroup => {
            fields.insert("status", field("configured_status"));
            fields.insert("bid_strategy", field("bid_strategy"));
            fields.insert("bid_type", field("bid_type"));
            fields.insert("bid_value_micros", field("bid_value"));
            for key in ["start_time", "end_time"] {
                let value = match item.get(key) {
                    Some(Value::String(t)) => instant(Some(t)),
                    Some(other) => other.clone(),
                    None => Value::Null,
                };
                fields.insert(key, value);
            }
            let keywords: std::collections::BTreeSet<&str> = item
                .get("targeting")
                .and_then(|t| t.get("keywords"))
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            fields.insert("keywords", keywords.into_iter().collect());
            text("campaign_id")
        }
        EntityKind::Ad => {
            fields.insert("post_id", field("post_id"));
            fields.insert("click_url", field("click_url"));
            fields.insert("status", field("configured_status"));
            text("ad_group_id")
        }
        EntityKind::Keyword => return Err(garbled("kind: keywords are targeting on Reddit")),
    };
    Ok(Observed {
        kind,
        id,
        parent_id,
        name,
        fields,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_from_lookup_reads_env_and_redacts() {
        let config = RedditConfig::from_lookup(|k| match k {
            ENV_BASE_URL => Some("http://127.0.0.1:9/api/v3/".into()),
            ENV_TOKEN => Some("tok-123".into()),
            _ => None,
        })
        .expect("valid");
        assert_eq!(config.base_url, "http://127.0.0.1:9/api/v3/");
        assert!(!format!("{config:?}").contains("tok-123"));
        let adapter = RedditAdapter::new(config).expect("builds");
        assert_eq!(
            adapter.url(&["campaigns", "c 1"]).as_str(),
            "http://127.0.0.1:9/api/v3/campaigns/c%201"
        );
        assert!(matches!(
            RedditConfig::from_lookup(|k| (k == ENV_BASE_URL).then(|| "ftp://x".to_string())),
            Err(ConfigError::BaseUrl { .. })
        ));
        assert!(matches!(
            RedditAdapter::new(RedditConfig::default()),
            Err(ConfigError::MissingToken)
        ));
    }
}
