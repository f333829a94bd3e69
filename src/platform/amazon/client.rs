//! The HTTP client for the Sponsored Products v3 list endpoints.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE, RETRY_AFTER};
use reqwest::StatusCode;
use serde::Deserialize;
use tokio::time::Instant;

use super::api::{decode_page, ListKind, ListRequest, Page, SpEntity};
use super::throttle::{parse_retry_after, Throttle, ThrottleConfig, ThrottleDecision};
use adsync_engine::Backoff;

/// The North America host.
pub const DEFAULT_HOST: &str = "https://advertising-api.amazon.com";

/// Page size used when the caller has no preference: the value Amazon's own
/// connectors use. (The largest accepted value is not documented with certainty.)
pub const DEFAULT_MAX_RESULTS: u32 = 100;

/// The `maxResults` (page size) values adsync sends: 1 to 1,000.
/// `docs/platforms/amazon.md`: Amazon's own connectors use 100 and scripts up
/// to 1,000, and a larger value is answered 400 — so a larger one is refused
/// before any request rather than by the platform mid-pull.
pub const PAGE_SIZES: std::ops::RangeInclusive<u32> = 1..=1000;

/// Checks a page size (`maxResults`) against [`PAGE_SIZES`].
///
/// ```
/// use adsync::amazon::check_page_size;
/// assert_eq!(check_page_size(100).unwrap(), 100);
/// assert!(check_page_size(1001).unwrap_err().to_string().contains("1..=1000"));
/// ```
///
/// # Errors
///
/// [`AmazonError::Config`] naming the value and the accepted range.
pub fn check_page_size(max_results: u32) -> Result<u32, AmazonError> {
    if PAGE_SIZES.contains(&max_results) {
        Ok(max_results)
    } else {
        Err(AmazonError::Config(format!(
            "page size (maxResults) {max_results} is outside {}..={}, the range Amazon Ads accepts",
            PAGE_SIZES.start(),
            PAGE_SIZES.end()
        )))
    }
}

use crate::secret::Secret;

/// How to reach Amazon Ads.
///
/// ```
/// use std::time::Duration;
/// use adsync::amazon::{AmazonConfig, ThrottleConfig};
///
/// let config = AmazonConfig::new("amzn1.application-oa2-client.abc", "Atza|secret")
///     .with_host("https://advertising-api-eu.amazon.com")
///     .with_timeout(Duration::from_secs(10))
///     .with_throttle(ThrottleConfig { initial_rate: 2.0, ..ThrottleConfig::default() });
/// assert_eq!(config.host, "https://advertising-api-eu.amazon.com");
/// // Secrets never reach logs:
/// assert!(!format!("{config:?}").contains("secret"));
/// ```
#[derive(Debug, Clone)]
pub struct AmazonConfig {
    /// Base URL without trailing slash (NA, `-eu`, `-fe`, or a fake server).
    pub host: String,
    /// Login with Amazon client id (`Amazon-Advertising-API-ClientId`).
    pub client_id: String,
    /// Access token (`Authorization: Bearer`).
    pub token: Secret,
    /// Timeout of one HTTP request, body included.
    pub timeout: Duration,
    /// Retry policy for 429 without `Retry-After`, 5xx and connection errors;
    /// `max_attempts` bounds the attempts of one call.
    pub backoff: Backoff,
    /// Rate policy: the starting rate and how 429s lower it (shared by every
    /// clone of the client built from this config).
    pub throttle: ThrottleConfig,
}

impl AmazonConfig {
    /// A configuration for the NA host with default timeout (30 s), backoff and rate.
    pub fn new(client_id: impl Into<String>, token: impl Into<String>) -> Self {
        AmazonConfig {
            host: DEFAULT_HOST.to_owned(),
            client_id: client_id.into(),
            token: Secret::new(token),
            timeout: Duration::from_secs(30),
            backoff: Backoff::default(),
            throttle: ThrottleConfig::default(),
        }
    }

    /// Reads `ADSYNC_AMAZON_HOST` (optional, default NA), `ADSYNC_AMAZON_CLIENT_ID`
    /// and `ADSYNC_AMAZON_TOKEN`; values are trimmed.
    ///
    /// # Errors
    ///
    /// [`AmazonError::Config`] naming the first required variable that is
    /// unset or blank (never its value).
    pub fn from_env() -> Result<Self, AmazonError> {
        fn var(name: &str) -> Result<String, AmazonError> {
            match std::env::var(name) {
                Ok(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
                _ => Err(AmazonError::Config(format!("{name} is not set"))),
            }
        }
        let mut config =
            AmazonConfig::new(var("ADSYNC_AMAZON_CLIENT_ID")?, var("ADSYNC_AMAZON_TOKEN")?);
        if let Ok(host) = var("ADSYNC_AMAZON_HOST") {
            config = config.with_host(host);
        }
        Ok(config)
    }

    /// Sets the host (a trailing `/` is removed).
    pub fn with_host(mut self, host: impl Into<String>) -> Self {
        self.host = host.into().trim_end_matches('/').to_owned();
        self
    }

    /// Sets the per-request timeout.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the retry policy.
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the rate policy.
    pub fn with_throttle(mut self, throttle: ThrottleConfig) -> Self {
        self.throttle = throttle;
        self
    }
}

/// Where in a pull an error happened: the endpoint and the page (identified by
/// the `nextToken` that requested it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRef {
    /// The endpoint path.
    pub endpoint: &'static str,
    /// The token sent; `None` for the first page.
    pub next_token: Option<String>,
}

impl fmt::Display for PageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.next_token {
            None => write!(f, "{} (first page)", self.endpoint),
            Some(t) => write!(f, "{} (page at nextToken {t:?})", self.endpoint),
        }
    }
}

/// The platform's own explanation from an error body
/// (`{"code": "THROTTLED", "message": ...}` or `{"code": "400", "details": ..., "requestId": ...}`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlatformMessage {
    /// `code`, as sent (casing varies; numbers become strings).
    pub code: Option<String>,
    /// `message`, `details` or `description`; the raw body (truncated) otherwise.
    pub message: String,
    /// `requestId`, for Amazon support.
    pub request_id: Option<String>,
}

impl PlatformMessage {
    /// Parses an error body leniently: it is only ever used for reporting.
    pub fn parse(body: &[u8]) -> Self {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Raw {
            code: Option<serde_json::Value>,
            message: Option<serde_json::Value>,
            details: Option<serde_json::Value>,
            description: Option<serde_json::Value>,
            request_id: Option<serde_json::Value>,
        }
        fn text(v: serde_json::Value) -> String {
            match v {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            }
        }
        match serde_json::from_slice::<Raw>(body) {
            Ok(raw) => PlatformMessage {
                code: raw.code.map(text),
                message: raw
                    .message
                    .or(raw.details)
                    .or(raw.description)
                    .map(text)
                    .unwrap_or_default(),
                request_id: raw.request_id.map(text),
            },
            Err(_) => PlatformMessage {
                code: None,
                message: snippet(body),
                request_id: None,
            },
        }
    }

    /// Whether `code` equals `expected` ignoring ASCII case.
    pub fn code_is(&self, expected: &str) -> bool {
        self.code
            .as_deref()
            .is_some_and(|c| c.eq_ignore_ascii_case(expected))
    }
}

impl fmt::Display for PlatformMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(code) = &self.code {
            write!(f, "[{code}] ")?;
        }
        f.write_str(&self.message)?;
        if let Some(id) = &self.request_id {
            write!(f, " (requestId {id})")?;
        }
        Ok(())
    }
}

/// Whether `body` is one complete JSON value, whatever its shape.
fn is_well_formed_json(body: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(body).is_ok()
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let mut s: String = text.chars().take(300).collect();
    if text.chars().count() > 300 {
        s.push('…');
    }
    s
}

/// Everything a list call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AmazonError {
    /// 400: the request is invalid (bad `maxResults`, unknown `nextToken`, …).
    #[error("{page}: 400 bad request: {message}")]
    BadRequest {
        /// The endpoint and page of the failed call.
        page: PageRef,
        /// The platform's explanation.
        message: Box<PlatformMessage>,
    },
    /// 401: the token is missing, expired or wrong.
    #[error("{page}: 401 unauthorized: {message}")]
    Unauthorized {
        /// The endpoint and page of the failed call.
        page: PageRef,
        /// The platform's explanation.
        message: Box<PlatformMessage>,
    },
    /// 403: client id or profile scope missing or not allowed.
    #[error("{page}: 403 forbidden: {message}")]
    Forbidden {
        /// The endpoint and page of the failed call.
        page: PageRef,
        /// The platform's explanation.
        message: Box<PlatformMessage>,
    },
    /// 415: the vendor media type was refused.
    #[error("{page}: 415 unsupported media type: {message}")]
    UnsupportedMediaType {
        /// The endpoint and page of the failed call.
        page: PageRef,
        /// The platform's explanation.
        message: Box<PlatformMessage>,
    },
    /// Any other non-retryable status.
    #[error("{page}: HTTP {status}: {message}")]
    Http {
        /// The endpoint and page of the failed call.
        page: PageRef,
        /// The status code.
        status: u16,
        /// The platform's explanation.
        message: Box<PlatformMessage>,
    },
    /// Still 429 after `attempts` attempts, or a `Retry-After` too long to wait
    /// in-process (then `retry_after` says when to come back).
    #[error("{page}: throttled (429) after {attempts} attempt(s){}: {message}",
        retry_after.map(|d| format!(", retry after {d:?}")).unwrap_or_default())]
    Throttled {
        /// The endpoint and page of the failed call.
        page: PageRef,
        /// Attempts made.
        attempts: u32,
        /// The last `Retry-After`, if any.
        retry_after: Option<Duration>,
        /// The platform's explanation.
        message: Box<PlatformMessage>,
    },
    /// 5xx, timeouts or connection errors that outlasted the retries. The call
    /// is a read, so the caller may retry it later from the same `nextToken`.
    #[error("{page}: transient failure after {attempts} attempt(s): {last}")]
    Transient {
        /// The endpoint and page of the failed call.
        page: PageRef,
        /// Attempts made.
        attempts: u32,
        /// The last failure.
        last: String,
    },
    /// A 2xx body that was not well-formed JSON (cut short, an HTML error
    /// page) on every one of `attempts` attempts. Retried like a 5xx, since
    /// the next answer is usually whole; transient, so a pull retries the page
    /// later and, when that is spent too, fails keeping its staged pages.
    #[error("{page}: unparseable response body after {attempts} attempt(s), at `{path}`: {message}; body starts: {body}")]
    Garbled {
        /// The endpoint and page of the failed call.
        page: PageRef,
        /// Attempts made.
        attempts: u32,
        /// JSON path the parser had reached (`keywords[37].keywordText`), `.` for the root.
        path: String,
        /// The parser's error, with the line and column of the body where it stopped.
        message: String,
        /// The start of the last body.
        body: String,
    },
    /// A 2xx response that is well-formed JSON but does not match the
    /// documented shape (a missing field, an unknown enum value). Not retried:
    /// the same bytes would come back.
    #[error("{page}: invalid response at `{path}`: {message}; body starts: {body}")]
    Decode {
        /// The endpoint and page of the failed call.
        page: PageRef,
        /// JSON path of the offending field (`campaigns[3].state`), `.` for the root.
        path: String,
        /// What is wrong (unknown variant, missing field, syntax error…).
        message: String,
        /// The start of the body.
        body: String,
    },
    /// The client could not be configured.
    #[error("configuration: {0}")]
    Config(String),
    /// The HTTP client could not be built (its TLS backend, say).
    #[error("configuration: building the HTTP client: {0}")]
    HttpClient(#[source] reqwest::Error),
}

impl AmazonError {
    /// Whether retrying the same call later may succeed (throttling, 5xx, network).
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            AmazonError::Throttled { .. }
                | AmazonError::Transient { .. }
                | AmazonError::Garbled { .. }
        )
    }
}

/// What one HTTP exchange came to.
enum Attempt {
    /// A final answer: a page or a non-retryable error.
    Done(Result<Page, AmazonError>),
    /// 429.
    Throttled {
        retry_after: Option<Duration>,
        message: Box<PlatformMessage>,
    },
    /// 5xx, timeout or connection error: retry after backoff.
    Transient(String),
    /// A 2xx body that is not well-formed JSON: retried like `Transient`,
    /// reported with where the parser stopped.
    Garbled {
        path: String,
        message: String,
        body: String,
    },
}

/// An Amazon Ads Sponsored Products client. Cheap to clone: clones share the
/// connection pool and the [`Throttle`], so every request of every clone counts
/// against one rate.
#[derive(Debug, Clone)]
pub struct AmazonClient {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    http: reqwest::Client,
    config: AmazonConfig,
    throttle: Throttle,
    throttled: std::sync::atomic::AtomicU64,
}

impl AmazonClient {
    /// Builds a client (rustls; system proxies apply except to a loopback host).
    /// Sends nothing: the first request goes out with the first list call, so
    /// a wrong token shows up there as [`AmazonError::Unauthorized`].
    ///
    /// ```
    /// use adsync::amazon::{AmazonClient, AmazonConfig};
    ///
    /// let config = AmazonConfig::new("amzn1.application-oa2-client.example", "Atza|token")
    ///     .with_host("http://127.0.0.1:9/");
    /// let client = AmazonClient::new(config).unwrap();
    /// assert_eq!(client.config().host, "http://127.0.0.1:9");
    /// ```
    ///
    /// # Errors
    ///
    /// [`AmazonError::Config`] if the HTTP client cannot be built (e.g. no
    /// TLS backend, or an unusable proxy setting).
    pub fn new(config: AmazonConfig) -> Result<Self, AmazonError> {
        let http = crate::platform::http_client_builder(&config.host)
            .timeout(config.timeout)
            .connect_timeout(config.timeout)
            .user_agent(concat!("adsync/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(AmazonError::HttpClient)?;
        let throttle = Throttle::new(config.throttle, config.backoff);
        Ok(AmazonClient {
            inner: Arc::new(Inner {
                http,
                config,
                throttle,
                throttled: std::sync::atomic::AtomicU64::new(0),
            }),
        })
    }

    /// The configuration it was built with (its token still redacted in
    /// `Debug`).
    pub fn config(&self) -> &AmazonConfig {
        &self.inner.config
    }

    /// The current request rate (requests per second) after AIMD adjustments.
    pub fn current_rate(&self) -> f64 {
        self.inner.throttle.rate()
    }

    /// How many responses were 429 (throttled) since the client was built,
    /// retried ones included: what a progress display shows, since retries
    /// within one list call never reach the pull's history.
    pub fn throttled_count(&self) -> u64 {
        self.inner
            .throttled
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Fetches one page of `kind` for `profile_id`: the first page when
    /// `next_token` is `None`, else the page that token designates. Throttling,
    /// 5xx and connection errors are retried within the configured bounds; the
    /// call has no side effects, so the caller can stage the page with its
    /// `next_token` and resume from there after a crash.
    pub async fn list_page(
        &self,
        profile_id: &str,
        kind: ListKind,
        next_token: Option<&str>,
        max_results: u32,
    ) -> Result<Page, AmazonError> {
        self.list_page_with(
            profile_id,
            kind,
            &ListRequest::page(next_token, max_results),
        )
        .await
    }

    /// [`list_page`](Self::list_page) typed by entity:
    /// `list_page_of::<SpKeyword>(…)` gives `(Vec<SpKeyword>, next_token, total_results)`.
    pub async fn list_page_of<T: SpEntity>(
        &self,
        profile_id: &str,
        next_token: Option<&str>,
        max_results: u32,
    ) -> Result<(Vec<T>, Option<String>, Option<u64>), AmazonError> {
        let page = self
            .list_page(profile_id, T::KIND, next_token, max_results)
            .await?;
        let items = T::from_items(page.items).ok_or_else(|| {
            AmazonError::Config(format!("{} returned items of another kind", T::KIND))
        })?;
        Ok((items, page.next_token, page.total_results))
    }

    /// Fetches every page of `kind` (convenience for tools and tests; the pull
    /// machine calls [`list_page`](Self::list_page) and stages each page).
    pub async fn list_all(
        &self,
        profile_id: &str,
        kind: ListKind,
        max_results: u32,
    ) -> Result<Vec<Page>, AmazonError> {
        let mut pages = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self
                .list_page(profile_id, kind, token.as_deref(), max_results)
                .await?;
            token = page.next_token.clone();
            pages.push(page);
            if token.is_none() {
                return Ok(pages);
            }
        }
    }

    /// Fetches one page with filters (`request.next_token` selects the page).
    pub async fn list_page_with(
        &self,
        profile_id: &str,
        kind: ListKind,
        request: &ListRequest,
    ) -> Result<Page, AmazonError> {
        let inner = &*self.inner;
        let page = PageRef {
            endpoint: kind.path(),
            next_token: request.next_token.clone(),
        };
        if let Some(max_results) = request.max_results {
            check_page_size(max_results)?;
        }
        let url = format!("{}{}", inner.config.host, kind.path());
        let headers = self.headers(profile_id, kind)?;
        let body = serde_json::to_vec(request)
            .map_err(|e| AmazonError::Config(format!("encoding the request: {e}")))?;
        let backoff = inner.config.backoff;
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let queued = Instant::now();
            inner.throttle.acquire().await;
            let sent_at = Instant::now();
            crate::telemetry::waited("amazon", sent_at - queued);
            let outcome = self
                .attempt(&url, kind, &headers, &body, &page, attempts)
                .await;
            match outcome {
                Attempt::Done(result) => {
                    if result.is_ok() {
                        inner.throttle.on_success();
                    }
                    return result;
                }
                Attempt::Throttled {
                    retry_after,
                    message,
                } => {
                    crate::telemetry::throttled("amazon");
                    inner
                        .throttled
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let decision = inner.throttle.on_throttled(sent_at, retry_after);
                    if matches!(decision, ThrottleDecision::GiveUp(_))
                        || !backoff.allows_retry(attempts)
                    {
                        return Err(AmazonError::Throttled {
                            page,
                            attempts,
                            retry_after,
                            message,
                        });
                    }
                    // The throttle paused the limiter: the next acquire waits.
                }
                Attempt::Transient(last) => {
                    if !backoff.allows_retry(attempts) {
                        return Err(AmazonError::Transient {
                            page,
                            attempts,
                            last,
                        });
                    }
                    tokio::time::sleep(backoff.delay(attempts)).await;
                }
                Attempt::Garbled {
                    path,
                    message,
                    body,
                } => {
                    if !backoff.allows_retry(attempts) {
                        return Err(AmazonError::Garbled {
                            page,
                            attempts,
                            path,
                            message,
                            body,
                        });
                    }
                    tokio::time::sleep(backoff.delay(attempts)).await;
                }
            }
        }
    }

    /// One HTTP exchange, classified.
    async fn attempt(
        &self,
        url: &str,
        kind: ListKind,
        headers: &HeaderMap,
        body: &[u8],
        page: &PageRef,
        attempts: u32,
    ) -> Attempt {
        let started = Instant::now();
        let sent = self
            .inner
            .http
            .post(url)
            .headers(headers.clone())
            .body(body.to_vec())
            .send()
            .await;
        let received = match sent {
            Ok(resp) => {
                let status = resp.status();
                let retry_after = resp
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_retry_after);
                resp.bytes().await.map(|b| (status, retry_after, b))
            }
            Err(e) => Err(e),
        };
        let latency = started.elapsed();
        let (status, retry_after, bytes) = match received {
            Ok(ok) => ok,
            Err(e) => {
                tracing::debug!(endpoint = kind.path(), page = ?page.next_token, ?latency,
                    attempts, error = %e, "amazon request failed");
                return Attempt::Transient(e.to_string());
            }
        };
        tracing::debug!(endpoint = kind.path(), page = ?page.next_token,
            status = status.as_u16(), ?latency, attempts, "amazon request");
        if status.is_success() {
            return match decode_page(kind, &bytes) {
                Ok(decoded) => Attempt::Done(Ok(decoded)),
                // Only on the error path: is the body JSON at all? Cut-short or
                // non-JSON bodies are a delivery accident worth a retry; a
                // well-formed body of the wrong shape would come back the same.
                Err((path, message)) if !is_well_formed_json(&bytes) => {
                    tracing::debug!(endpoint = kind.path(), page = ?page.next_token,
                        attempts, %path, %message, "amazon response body unparseable");
                    Attempt::Garbled {
                        path,
                        message,
                        body: snippet(&bytes),
                    }
                }
                Err((path, message)) => Attempt::Done(Err(AmazonError::Decode {
                    page: page.clone(),
                    path,
                    message,
                    body: snippet(&bytes),
                })),
            };
        }
        let message = Box::new(PlatformMessage::parse(&bytes));
        let page = page.clone();
        Attempt::Done(Err(match status {
            StatusCode::TOO_MANY_REQUESTS => {
                return Attempt::Throttled {
                    retry_after,
                    message,
                }
            }
            s if s.is_server_error() => {
                return Attempt::Transient(format!("HTTP {}: {message}", s.as_u16()))
            }
            StatusCode::BAD_REQUEST => AmazonError::BadRequest { page, message },
            StatusCode::UNAUTHORIZED => AmazonError::Unauthorized { page, message },
            StatusCode::FORBIDDEN => AmazonError::Forbidden { page, message },
            StatusCode::UNSUPPORTED_MEDIA_TYPE => {
                AmazonError::UnsupportedMediaType { page, message }
            }
            s => AmazonError::Http {
                page,
                status: s.as_u16(),
                message,
            },
        }))
    }

    fn headers(&self, profile_id: &str, kind: ListKind) -> Result<HeaderMap, AmazonError> {
        let config = &self.inner.config;
        let value = |name: &str, v: &str| {
            HeaderValue::from_str(v)
                .map_err(|_| AmazonError::Config(format!("{name} is not a valid header value")))
        };
        let mut h = HeaderMap::new();
        let mut auth = value("token", &format!("Bearer {}", config.token.expose()))?;
        auth.set_sensitive(true);
        h.insert(AUTHORIZATION, auth);
        h.insert(
            "Amazon-Advertising-API-ClientId",
            value("client id", &config.client_id)?,
        );
        h.insert(
            "Amazon-Advertising-API-Scope",
            value("profile id", profile_id)?,
        );
        h.insert(CONTENT_TYPE, HeaderValue::from_static(kind.media_type()));
        h.insert(ACCEPT, HeaderValue::from_static(kind.media_type()));
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let c = AmazonConfig::new("client", "Atza|very-secret-token");
        let client = AmazonClient::new(c.clone()).unwrap();
        for text in [
            format!("{c:?}"),
            format!("{client:?}"),
            format!("{:?}", c.token),
        ] {
            assert!(!text.contains("very-secret-token"), "{text}");
        }
    }

    #[test]
    fn config_from_env() {
        // The only test touching these variables.
        std::env::remove_var("ADSYNC_AMAZON_HOST");
        std::env::set_var("ADSYNC_AMAZON_CLIENT_ID", "cid");
        std::env::remove_var("ADSYNC_AMAZON_TOKEN");
        let err = AmazonConfig::from_env().unwrap_err();
        assert!(err.to_string().contains("ADSYNC_AMAZON_TOKEN"), "{err}");
        std::env::set_var("ADSYNC_AMAZON_TOKEN", "tok");
        let c = AmazonConfig::from_env().unwrap();
        assert_eq!(
            (c.host.as_str(), c.client_id.as_str()),
            (DEFAULT_HOST, "cid")
        );
        assert_eq!(c.token.expose(), "tok");
        std::env::set_var("ADSYNC_AMAZON_HOST", "http://127.0.0.1:9/");
        assert_eq!(AmazonConfig::from_env().unwrap().host, "http://127.0.0.1:9");
        for v in [
            "ADSYNC_AMAZON_HOST",
            "ADSYNC_AMAZON_CLIENT_ID",
            "ADSYNC_AMAZON_TOKEN",
        ] {
            std::env::remove_var(v);
        }
    }

    #[test]
    fn platform_messages_in_both_shapes() {
        let m = PlatformMessage::parse(br#"{"code":"throttled","message":"slow down"}"#);
        assert!(m.code_is("THROTTLED"));
        assert_eq!(m.message, "slow down");
        let m = PlatformMessage::parse(br#"{"code":400,"details":"bad token","requestId":"r1"}"#);
        assert_eq!(m.code.as_deref(), Some("400"));
        assert_eq!(m.to_string(), "[400] bad token (requestId r1)");
        assert_eq!(PlatformMessage::parse(b"<html>").message, "<html>");
    }
}
