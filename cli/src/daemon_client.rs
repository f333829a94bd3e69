//! The HTTP client of a running `adsync daemon` (`--daemon URL` or
//! `ADSYNC_DAEMON_URL`): the commands that change or read syncs send their
//! request to the daemon, which holds the store, instead of opening it.
//! The control API is `docs/openapi.yaml`.

use std::time::Duration;

use adsync::Secret;
use reqwest::StatusCode;
use serde_json::Value;

use crate::exit::Exit;
use crate::failure::Failure;

/// The environment variable holding the daemon's bearer token, when it
/// listens on a non-loopback address.
pub const ENV_TOKEN: &str = "ADSYNC_DAEMON_TOKEN";

/// A daemon's control API.
pub struct DaemonClient {
    base: String,
    token: Option<Secret>,
    http: reqwest::Client,
}

/// A non-2xx answer: its status and the JSON error the daemon sent.
pub struct Refusal {
    /// The HTTP status.
    pub status: StatusCode,
    /// The daemon's `error` message.
    pub message: String,
}

impl DaemonClient {
    /// A client of the daemon at `url` (e.g. `http://127.0.0.1:7878`), with
    /// the token from [`ENV_TOKEN`] if set.
    ///
    /// # Errors
    ///
    /// A usage failure if `url` is not an `http://` or `https://` URL.
    pub fn new(url: &str) -> Result<DaemonClient, Failure> {
        let base = url.trim_end_matches('/').to_string();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(Failure::usage(format!(
                "--daemon `{url}`: give the daemon's URL, e.g. http://127.0.0.1:7878"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| Failure::failed(format!("cannot build an HTTP client: {e}")))?;
        let token = std::env::var(ENV_TOKEN)
            .ok()
            .filter(|t| !t.is_empty())
            .map(Secret::new);
        Ok(DaemonClient { base, token, http })
    }

    /// The daemon's URL, as given.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// `GET path`; a non-2xx answer is a [`Refusal`].
    pub async fn get(&self, path: &str) -> Result<Result<Value, Refusal>, Failure> {
        self.send(self.http.get(format!("{}{path}", self.base)))
            .await
    }

    /// `POST path` with a JSON body; a non-2xx answer is a [`Refusal`].
    pub async fn post(&self, path: &str, body: &Value) -> Result<Result<Value, Refusal>, Failure> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    async fn send(
        &self,
        mut request: reqwest::RequestBuilder,
    ) -> Result<Result<Value, Refusal>, Failure> {
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        let response = request.send().await.map_err(|e| Failure {
            exit: Exit::StoreUnusable,
            // reqwest's error names the URL, never a header.
            message: format!(
                "cannot reach the adsync daemon at {}: {}",
                self.base,
                std::error::Error::source(&e)
                    .map(ToString::to_string)
                    .unwrap_or_else(|| e.to_string())
            ),
        })?;
        let status = response.status();
        let text = response.text().await.map_err(|e| {
            Failure::failed(format!("the daemon at {} sent no answer: {e}", self.base))
        })?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if status.is_success() {
            return Ok(Ok(value));
        }
        let message = value
            .get("error")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| format!("{status}: {value}"));
        Ok(Err(Refusal { status, message }))
    }
}

impl Refusal {
    /// The failure a command reports for a refusal it has no better word
    /// for: bad input and conflicts are usage errors (nothing was written),
    /// a missing token says how to give one.
    pub fn into_failure(self) -> Failure {
        let exit = match self.status {
            StatusCode::UNAUTHORIZED => {
                return Failure::usage(format!(
                    "the daemon refused the request: {} (set {ENV_TOKEN} to its token)",
                    self.message
                ))
            }
            s if s.is_client_error() => Exit::BadInput,
            _ => Exit::SyncFailed,
        };
        Failure {
            exit,
            message: self.message,
        }
    }
}
