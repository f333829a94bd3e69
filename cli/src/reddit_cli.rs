//! Reddit-specific command-line pieces: the `--reddit-*` flags that build the
//! HTTP adapter, and `adsync fake-server reddit`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use adsync::platform::reddit::{
    AccessToken, ConfigError, RatePolicy, RedditAdapter, RedditConfig, DEFAULT_BASE_URL,
    ENV_BASE_URL, ENV_TOKEN, ENV_USER_AGENT,
};
use adsync_fakes::reddit::{FakeReddit, FakeRedditConfig, RedditFault, RedditFaultKind};

use crate::Failure;

/// Parses a token into its redacting wrapper, so that not even `Debug` of the
/// parsed command line shows it.
fn parse_token(raw: &str) -> Result<AccessToken, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("the token must not be empty".into());
    }
    Ok(AccessToken::new(raw))
}

/// Flags of `--platform reddit` (ignored by other platforms).
#[derive(Debug, clap::Args)]
#[command(next_help_heading = "Reddit (--platform reddit)")]
pub struct RedditArgs {
    /// The Reddit Ads API root.
    #[arg(long = "reddit-base-url", env = ENV_BASE_URL, default_value = DEFAULT_BASE_URL)]
    base_url: String,
    /// The OAuth2 bearer token. Prefer the environment variable: a flag shows
    /// in the process list. Never logged or stored.
    #[arg(long = "reddit-token", env = ENV_TOKEN, hide_env_values = true, value_parser = parse_token)]
    token: Option<AccessToken>,
    /// The User-Agent sent with every request (Reddit requires one).
    #[arg(long = "reddit-user-agent", env = ENV_USER_AGENT)]
    user_agent: Option<String>,
    /// Timeout of every HTTP request, in seconds.
    #[arg(long = "reddit-timeout-secs", default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_secs: u64,
    /// Client-side read budget per ad account, per minute.
    #[arg(long = "reddit-reads-per-min", default_value_t = 400, value_parser = clap::value_parser!(u32).range(1..))]
    reads_per_min: u32,
    /// Client-side write budget per ad account, per minute.
    #[arg(long = "reddit-writes-per-min", default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..))]
    writes_per_min: u32,
}

impl RedditArgs {
    /// The API base URL of these flags (never a credential: it is recorded
    /// in checkpoints so that `resume` needs no flags).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The adapter these flags describe, at API base URL `base_url` (the
    /// flag's, or a checkpoint's); a missing token or a bad URL is a usage error.
    pub fn adapter_at(&self, base_url: &str) -> Result<Arc<RedditAdapter>, Failure> {
        let defaults = RedditConfig::default();
        let config = RedditConfig {
            base_url: base_url.to_string(),
            token: Some(self.token.clone().ok_or_else(|| {
                Failure::usage(format!(
                    "--platform reddit needs a token: set {ENV_TOKEN} (or --reddit-token)"
                ))
            })?),
            user_agent: self
                .user_agent
                .clone()
                .unwrap_or_else(|| defaults.user_agent.clone()),
            timeout: Duration::from_secs(self.timeout_secs),
            rate: RatePolicy {
                reads: self.reads_per_min,
                writes: self.writes_per_min,
                window: Duration::from_secs(60),
            },
            ..defaults
        };
        RedditAdapter::new(config)
            .map(Arc::new)
            .map_err(|e| Failure::usage(config_message(&e)))
    }
}

/// A configuration error, naming the flag and variable the bad value came from
/// (never a token's value).
fn config_message(e: &ConfigError) -> String {
    match e {
        ConfigError::BaseUrl { .. } => format!("--reddit-base-url / {ENV_BASE_URL}: {e}"),
        ConfigError::MissingToken => {
            format!("--platform reddit needs a token: set {ENV_TOKEN} (or --reddit-token)")
        }
        ConfigError::EmptyUserAgent | ConfigError::InvalidUserAgent { .. } => {
            format!("--reddit-user-agent / {ENV_USER_AGENT}: {e}")
        }
        ConfigError::InvalidToken => format!(
            "{ENV_TOKEN} / --reddit-token: the token contains a newline or another character \
             not allowed in an HTTP header (its value is not shown)"
        ),
        ConfigError::Client(_) => e.to_string(),
    }
}

/// `adsync fake-server reddit`: a local Reddit Ads API on 127.0.0.1 for trying
/// adsync out and for scripted tests. Faults can also be added while it runs
/// through `POST /__admin/faults`; `GET /__admin/entities` lists what it holds.
#[derive(Debug, clap::Args)]
pub struct FakeServerArgs {
    /// The port on 127.0.0.1 (0: any free port; the address is printed).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The bearer token clients must send.
    #[arg(
        long,
        env = "ADSYNC_FAKE_REDDIT_TOKEN",
        hide_env_values = true,
        default_value = "fake-reddit-token"
    )]
    token: String,
    /// Reads allowed per rate-limit window.
    #[arg(long, default_value_t = 400)]
    reads_per_window: u32,
    /// Writes allowed per rate-limit window.
    #[arg(long, default_value_t = 200)]
    writes_per_window: u32,
    /// The rate-limit window, in seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    window_secs: u64,
    /// Answer 429 without `Retry-After`.
    #[arg(long)]
    no_retry_after: bool,
    /// Send no `X-Ratelimit-*` headers.
    #[arg(long)]
    no_ratelimit_headers: bool,
    /// Answer the next N API requests with 500.
    #[arg(long, value_name = "N")]
    fail_5xx: Option<u32>,
    /// Answer the next N API requests with 429 (with `Retry-After: 1` unless --no-retry-after).
    #[arg(long, value_name = "N")]
    throttle: Option<u32>,
    /// Delay every API request by this many milliseconds.
    #[arg(long, value_name = "MS")]
    latency_ms: Option<u64>,
    /// Close the connection of the next N API requests without answering.
    #[arg(long, value_name = "N")]
    drop_connections: Option<u32>,
    /// Store the next N creates, then lose their responses (connection closed).
    #[arg(long, value_name = "N")]
    lose_create_responses: Option<u32>,
    /// Run the fake's clock this many seconds ahead of this machine's
    /// (negative: behind); it stamps `created_at` and the `Date` header.
    #[arg(long, value_name = "SECS", allow_hyphen_values = true)]
    clock_offset_secs: Option<i64>,
}

impl FakeServerArgs {
    fn config(&self) -> FakeRedditConfig {
        FakeRedditConfig {
            bind: SocketAddr::from(([127, 0, 0, 1], self.port)),
            token: self.token.clone(),
            reads_per_window: self.reads_per_window,
            writes_per_window: self.writes_per_window,
            window: Duration::from_secs(self.window_secs),
            retry_after_header: !self.no_retry_after,
            ratelimit_headers: !self.no_ratelimit_headers,
            clock_offset_secs: self.clock_offset_secs.unwrap_or(0),
            ..FakeRedditConfig::default()
        }
    }

    fn faults(&self) -> Vec<RedditFault> {
        let mut faults = Vec::new();
        if let Some(n) = self.lose_create_responses {
            faults.push(
                RedditFault::new(RedditFaultKind::LoseResponse { withhold_ms: None })
                    .method("POST")
                    .times(n),
            );
        }
        if let Some(n) = self.drop_connections {
            faults.push(RedditFault::new(RedditFaultKind::Drop).times(n));
        }
        if let Some(n) = self.fail_5xx {
            faults.push(
                RedditFault::new(RedditFaultKind::Status {
                    status: 500,
                    after_apply: false,
                    retry_after_secs: None,
                    reset_secs: None,
                })
                .times(n),
            );
        }
        if let Some(n) = self.throttle {
            faults.push(
                RedditFault::new(RedditFaultKind::Status {
                    status: 429,
                    after_apply: false,
                    retry_after_secs: (!self.no_retry_after).then_some(1),
                    reset_secs: None,
                })
                .times(n),
            );
        }
        if let Some(ms) = self.latency_ms {
            faults.push(RedditFault::new(RedditFaultKind::Latency { ms }));
        }
        faults
    }

    /// Serves in the foreground until Ctrl-C.
    pub async fn run(self) -> Result<u8, Failure> {
        let config = self.config();
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|e| Failure {
                code: 1,
                message: format!("cannot listen on {}: {e}", config.bind),
            })?;
        let addr = listener.local_addr().map_err(|e| Failure {
            code: 1,
            message: e.to_string(),
        })?;
        let fake = FakeReddit::new(config);
        for fault in self.faults() {
            fake.inject(fault);
        }
        // One write, errors ignored: a reader that closes our stdout after the
        // address line must not take the server down.
        {
            use std::io::Write as _;
            let _ = write!(
                std::io::stdout().lock(),
                "fake Reddit Ads API listening on http://{addr}/api/v3\n  \
                 try: {ENV_BASE_URL}=http://{addr}/api/v3 {ENV_TOKEN}=<the --token value> \
                 adsync push <set.json> --platform reddit --account a2_demo\n  \
                 admin: http://{addr}/__admin/entities, /__admin/requests, /__admin/faults\n  \
                 Ctrl-C stops it\n"
            );
            let _ = std::io::stdout().lock().flush();
        }
        adsync_fakes::reddit::serve(listener, fake, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await
        .map_err(|e| Failure {
            code: 1,
            message: format!("fake Reddit server: {e}"),
        })?;
        Ok(0)
    }
}
