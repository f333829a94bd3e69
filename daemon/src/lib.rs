//! # adsync-daemon
//!
//! The control API of `adsync daemon`: an HTTP service (axum, JSON in and
//! out, versioned paths under `/v1`) over one [`adsync::Worker`].
//!
//! ## The flow
//!
//! ```text
//!   HTTP request ──▶ auth (bearer token, constant-time) ──▶ body limit ──▶ handler
//!        handler ──▶ parse + validate everything (400, nothing written)
//!                ──▶ Worker::submit_push / submit_pull / cancel / resolve_push / schedules
//!                    (durable before the answer) ──▶ 202 / 200 with JSON
//!   Worker::run ──▶ runs what was submitted, resumes what a previous process left
//! ```
//!
//! 1. [`serve`] checks the [`Config`] (a non-loopback address needs a token),
//!    binds the listen address (an address in use is
//!    [`DaemonError::Bind`], naming it), then runs the HTTP server and
//!    [`adsync::Worker::run`] side by side.
//! 2. Every request passes the bearer-token check first (when a token is
//!    configured), so an unauthenticated client learns nothing, not even
//!    whether a sync exists; then the body limit ([`Config::body_limit`]):
//!    a larger body is refused with 413 before it is parsed.
//! 3. A handler parses and validates its whole input before it calls the
//!    worker: malformed JSON, unknown fields and invalid campaign sets are
//!    400 with the same `origin:line:column: at `path`: message` text as
//!    `adsync validate`, and nothing is written. A submission is answered
//!    (202) only after the commit that creates its syncs.
//! 4. When the shutdown future completes, the server stops accepting, the
//!    worker stops gracefully (no new effect; effects in flight get the
//!    worker's shutdown timeout), and [`serve`] returns what the worker
//!    returned ([`adsync::Stopped`]).
//!
//! Every error answer is a JSON object `{"error": "..."}` (plus fields that
//! locate bad input); none ever carries a token.
//!
//! The routes, bodies and errors are described in `docs/openapi.yaml`; a test
//! checks that the router and that file list the same routes.

#![warn(missing_docs)]

mod announce;
mod api;
mod auth;
mod body;
mod error;

use std::collections::BTreeMap;
use std::future::{Future, IntoFuture as _};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use adsync::{PushAdapter, Secret, Stopped, Worker, WorkerError};

pub use announce::{announce, announced, Announced, Announcement};
pub use api::{router, ROUTES};
pub use error::ApiError;

/// Where `adsync daemon` listens unless told otherwise: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7878";

/// The largest request body accepted by default (1 MiB): a campaign set of a
/// few thousand entities fits; a larger body is answered 413.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The environment variable that holds the bearer token (`adsync daemon`).
pub const ENV_TOKEN: &str = "ADSYNC_DAEMON_TOKEN";

/// How long [`serve`] waits, once the worker has stopped, for HTTP requests
/// still being answered before it returns anyway.
const HTTP_DRAIN: Duration = Duration::from_secs(5);

/// The settings of the control API.
#[derive(Clone)]
pub struct Config {
    /// Where to listen. A non-loopback address requires [`Config::token`].
    pub listen: SocketAddr,
    /// When set, every request must carry `Authorization: Bearer <token>`
    /// (compared in constant time); others get 401.
    pub token: Option<Secret>,
    /// The largest request body accepted, in bytes; larger ones get 413.
    pub body_limit: usize,
    /// Adapters that verify an id an operator asks to adopt
    /// (`POST /v1/syncs/{id}/resolve`), by platform. The worker does not
    /// hand out its pushers' adapters, so the daemon keeps its own.
    verifiers: BTreeMap<String, Arc<dyn PushAdapter>>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("token", &self.token)
            .field("body_limit", &self.body_limit)
            .field("verifiers", &self.verifiers.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 7878)),
            token: None,
            body_limit: DEFAULT_BODY_LIMIT,
            verifiers: BTreeMap::new(),
        }
    }
}

impl Config {
    /// Loopback ([`DEFAULT_LISTEN`]), no token, [`DEFAULT_BODY_LIMIT`].
    pub fn new() -> Self {
        Config::default()
    }

    /// Listens on `listen` (port 0: any free port; [`Bound::addr`] says which).
    pub fn listen(mut self, listen: SocketAddr) -> Self {
        self.listen = listen;
        self
    }

    /// Requires `Authorization: Bearer <token>` on every request.
    pub fn token(mut self, token: Option<Secret>) -> Self {
        self.token = token;
        self
    }

    /// Refuses request bodies larger than `bytes` with 413.
    pub fn body_limit(mut self, bytes: usize) -> Self {
        self.body_limit = bytes;
        self
    }

    /// Verifies ids adopted on `adapter`'s platform through it (see
    /// [`adsync::verify_adoption`]). Without one for a platform, an adoption
    /// on it is refused (the id could not be checked); `absent` still works.
    pub fn verifier(mut self, adapter: Arc<dyn PushAdapter>) -> Self {
        self.verifiers
            .insert(adapter.platform().to_string(), adapter);
        self
    }

    /// Whether the settings can be served: a non-loopback address needs a
    /// token, since anyone who reaches the port could otherwise push.
    ///
    /// # Errors
    ///
    /// [`DaemonError::TokenRequired`].
    pub fn check(&self) -> Result<(), DaemonError> {
        if !self.listen.ip().is_loopback() && self.token.is_none() {
            return Err(DaemonError::TokenRequired { addr: self.listen });
        }
        Ok(())
    }
}

/// Why [`serve`] could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// A non-loopback address without a token.
    #[error(
        "listening on {addr}, which is not a loopback address, needs a bearer token: \
         set {ENV_TOKEN} (or listen on 127.0.0.1)"
    )]
    TokenRequired {
        /// The address asked for.
        addr: SocketAddr,
    },
    /// The address could not be bound (in use, not local, not permitted).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP server failed while serving.
    #[error("the HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
    /// The worker failed (its store could not be read).
    #[error(transparent)]
    Worker(#[from] WorkerError),
}

/// A listener bound by [`bind`]: the address is known (port 0 resolved) before
/// serving starts.
#[derive(Debug)]
pub struct Bound {
    listener: tokio::net::TcpListener,
    config: Config,
}

impl Bound {
    /// Serves with `config` instead of the one bound with (its listen
    /// address is ignored: the socket is bound already). For settings that
    /// are known only after the address is, such as verifiers.
    pub fn with_config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// The address the daemon listens on.
    pub fn addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.config.listen)
    }
}

/// Checks `config` and binds its address, without serving yet.
///
/// # Errors
///
/// [`DaemonError::TokenRequired`], [`DaemonError::Bind`].
pub async fn bind(config: Config) -> Result<Bound, DaemonError> {
    config.check()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| DaemonError::Bind {
            addr: config.listen,
            source,
        })?;
    Ok(Bound { listener, config })
}

/// Binds `config.listen` and serves the control API over `worker`, running
/// the worker, until `shutdown` completes; then stops both gracefully and
/// returns what the worker's stop reported.
///
/// # Errors
///
/// As [`bind`]; [`DaemonError::Worker`] if the worker could not resume the
/// store's work; [`DaemonError::Serve`] if the server failed.
pub async fn serve(
    worker: Worker,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Stopped, DaemonError> {
    bind(config).await?.serve(worker, shutdown).await
}

impl Bound {
    /// Serves the control API over `worker` and runs the worker until
    /// `shutdown` completes (see [`serve`]).
    ///
    /// # Errors
    ///
    /// As [`serve`].
    pub async fn serve(
        self,
        worker: Worker,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<Stopped, DaemonError> {
        let Bound { listener, config } = self;
        let app = router(worker.clone(), config);
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            // An error means the sender is gone: stop as well.
            let _ = rx.wait_for(|s| *s).await;
        };
        let server = tokio::spawn(
            axum::serve(listener, app)
                .with_graceful_shutdown(stopped(stopping.clone()))
                .into_future(),
        );
        let abort_server = server.abort_handle();
        // A server that fails on its own stops the worker too.
        let server = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let result = server.await;
                let _ = stop.send(true);
                result
            })
        };
        let trigger = {
            let stop = stop.clone();
            tokio::spawn(async move {
                shutdown.await;
                tracing::info!(
                    "stopping: no new effect starts; effects in flight get the shutdown timeout"
                );
                let _ = stop.send(true);
            })
        };
        let ran = worker.run(stopped(stopping)).await;
        trigger.abort();
        // The worker returned (stopped, or failed to resume): the server stops too.
        let _ = stop.send(true);
        let served = tokio::time::timeout(HTTP_DRAIN, server).await;
        if served.is_err() {
            tracing::warn!("HTTP requests still open after the worker stopped; closing them");
            abort_server.abort();
        }
        let ran = ran?;
        match served {
            Ok(Ok(Ok(Err(e)))) => Err(DaemonError::Serve(e)),
            Ok(Ok(Err(join)) | Ok(Err(join))) if join.is_panic() => Err(DaemonError::Serve(
                std::io::Error::other(format!("the HTTP server panicked: {join}")),
            )),
            _ => Ok(ran),
        }
    }
}
