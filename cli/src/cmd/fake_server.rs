//! `adsync fake-server reddit|amazon`: a local fake of a platform's API on
//! 127.0.0.1, for trying adsync out and for scripted tests.

use std::net::SocketAddr;
use std::time::Duration;

use adsync::reddit::{ENV_BASE_URL, ENV_TOKEN};
use adsync_fakes::reddit::{FakeReddit, FakeRedditConfig, RedditFault, RedditFaultKind};
use adsync_fakes::{FakeAmazon, FakeAmazonConfig, Generator};

use crate::exit::Exit;
use crate::failure::Failure;

/// Arguments of `adsync fake-server`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    platform: Platform,
}

#[derive(Debug, clap::Subcommand)]
enum Platform {
    /// A local Reddit Ads API v3 on 127.0.0.1, with fault injection.
    Reddit(RedditArgs),
    /// A local Amazon Ads Sponsored Products v3 (list endpoints, `/_admin`).
    Amazon(AmazonArgs),
}

/// `adsync fake-server`: serves until Ctrl-C.
pub async fn run(args: Args) -> Result<Exit, Failure> {
    match args.platform {
        Platform::Reddit(args) => args.run().await,
        Platform::Amazon(args) => amazon(args).await,
    }
}

/// `adsync fake-server reddit`: a local Reddit Ads API on 127.0.0.1 for trying
/// adsync out and for scripted tests. Faults can also be added while it runs
/// through `POST /__admin/faults`; `GET /__admin/entities` lists what it holds.
#[derive(Debug, clap::Args)]
pub struct RedditArgs {
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

impl RedditArgs {
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
    async fn run(self) -> Result<Exit, Failure> {
        let config = self.config();
        let listener = tokio::net::TcpListener::bind(config.bind)
            .await
            .map_err(|e| Failure::failed(format!("cannot listen on {}: {e}", config.bind)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Failure::failed(e.to_string()))?;
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
        .map_err(|e| Failure::failed(format!("fake Reddit server: {e}")))?;
        Ok(Exit::Ok)
    }
}

/// Arguments of `adsync fake-server amazon`.
#[derive(Debug, clap::Args)]
pub struct AmazonArgs {
    /// Port on 127.0.0.1 (0 picks a free one; the URL is printed).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Accepted bearer token.
    #[arg(long, default_value = "fake-token")]
    token: String,
    /// Accepted client id.
    #[arg(long, default_value = "fake-client-id")]
    client_id: String,
    /// Profile to serve (repeat for several; each gets the same generated data).
    #[arg(long = "profile", default_value = "1")]
    profiles: Vec<String>,
    /// Generated campaigns per profile.
    #[arg(long, default_value_t = 20)]
    campaigns: usize,
    /// Generated ad groups per campaign.
    #[arg(long, default_value_t = 5)]
    ad_groups_per_campaign: usize,
    /// Generated keywords per ad group.
    #[arg(long, default_value_t = 10)]
    keywords_per_ad_group: usize,
    /// Generator seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// `adsync fake-server amazon`: serves until interrupted (Ctrl-C / SIGTERM).
async fn amazon(args: AmazonArgs) -> Result<Exit, Failure> {
    let data = Generator {
        campaigns: args.campaigns,
        ad_groups_per_campaign: args.ad_groups_per_campaign,
        keywords_per_ad_group: args.keywords_per_ad_group,
        seed: args.seed,
    }
    .generate();
    let mut config = FakeAmazonConfig {
        port: args.port,
        token: args.token,
        client_id: args.client_id,
        ..FakeAmazonConfig::default()
    };
    for profile in &args.profiles {
        config = config.with_profile(profile.clone(), data.clone());
    }
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port))
        .await
        .map_err(|e| Failure::usage(format!("cannot bind 127.0.0.1:{}: {e}", args.port)))?;
    let addr = listener
        .local_addr()
        .map_err(|e| Failure::usage(e.to_string()))?;
    let counts = data.campaigns.len() + data.ad_groups.len() + data.keywords.len();
    outln!("http://{addr}");
    errln!(
        "fake Amazon Ads on http://{addr}: profiles {:?}, {counts} entities each ({} keywords); admin API under /_admin; Ctrl-C stops",
        args.profiles,
        data.keywords.len()
    );
    let fake = FakeAmazon::new(config);
    adsync_fakes::amazon::serve(listener, fake, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .map_err(|e| Failure::failed(format!("fake server: {e}")))?;
    Ok(Exit::Ok)
}
