//! `adsync pull`, `adsync show`, `adsync fake-server amazon`, and the pull
//! section of `adsync status`.

use std::sync::Arc;
use std::time::Duration;

use adsync::clock::{Clock, SystemClock};
use adsync::machine::Machine;
use adsync::platform::amazon::{
    AmazonClient, AmazonConfig, FakeAmazon, FakeAmazonConfig, Generator, SpAdGroup, SpCampaign,
    SpKeyword, ThrottleConfig, DEFAULT_HOST, DEFAULT_MAX_RESULTS,
};
use adsync::pull::{
    AmazonPullEffects, PullError, PullMachine, PullMode, PullPolicy, PullStatus, Puller, SyncState,
    AMAZON,
};
use adsync::runner::Runner;
use adsync::store::{Record, Store, StoreError};
use clap::ValueEnum;

use crate::Failure;

/// Platforms that can be pulled from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PullPlatform {
    /// Amazon Ads, Sponsored Products v3.
    Amazon,
}

/// Arguments of `adsync pull`.
#[derive(Debug, clap::Args)]
pub struct PullArgs {
    /// Where to pull from.
    #[arg(long, value_enum, default_value = "amazon")]
    platform: PullPlatform,
    /// The advertising profile (Amazon-Advertising-API-Scope).
    #[arg(long)]
    profile: String,
    /// API host (NA, -eu, -fe, or a fake server).
    #[arg(long, env = "ADSYNC_AMAZON_HOST", default_value = DEFAULT_HOST)]
    host: String,
    /// Login with Amazon client id.
    #[arg(long, env = "ADSYNC_AMAZON_CLIENT_ID")]
    client_id: String,
    /// Access token (prefer the environment variable: flags show in process lists).
    #[arg(long, env = "ADSYNC_AMAZON_TOKEN", hide_env_values = true)]
    token: String,
    /// Entities per page (maxResults).
    #[arg(long, default_value_t = DEFAULT_MAX_RESULTS)]
    page_size: u32,
    /// Starting request rate (requests per second; lowered on 429, raised slowly).
    #[arg(long, default_value_t = ThrottleConfig::default().initial_rate)]
    rate: f64,
    /// Highest request rate.
    #[arg(long, default_value_t = ThrottleConfig::default().max_rate)]
    max_rate: f64,
    /// Discard a failed pull's staged pages and start over (default: resume it).
    #[arg(long)]
    restart: bool,
    /// Print the final status as JSON.
    #[arg(long)]
    json: bool,
}

/// What `adsync show` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShowKind {
    /// Counts and sync status only.
    Summary,
    /// Campaigns.
    Campaigns,
    /// Ad groups.
    AdGroups,
    /// Keywords.
    Keywords,
}

/// Arguments of `adsync show`.
#[derive(Debug, clap::Args)]
pub struct ShowArgs {
    /// Platform of the pulled profile.
    #[arg(long, value_enum, default_value = "amazon")]
    platform: PullPlatform,
    /// The profile.
    #[arg(long)]
    profile: String,
    /// What to print.
    #[arg(long, value_enum, default_value = "summary")]
    kind: ShowKind,
    /// Only the entity with this platform id (with --kind).
    #[arg(long)]
    id: Option<String>,
    /// At most this many entities.
    #[arg(long)]
    limit: Option<usize>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `adsync fake-server amazon`.
#[derive(Debug, clap::Args)]
pub struct FakeAmazonArgs {
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

fn store_failure(e: StoreError) -> Failure {
    e.into()
}

impl From<PullError> for Failure {
    fn from(e: PullError) -> Self {
        match e {
            PullError::Run(e) => e.into(),
            PullError::InvalidProfile(_) => Failure::usage(e.to_string()),
            PullError::Snapshot(_) => Failure {
                code: 4,
                message: e.to_string(),
            },
        }
    }
}

fn reader(store: Arc<Store>) -> Result<Puller, Failure> {
    // Reading needs no platform: the effects are never run.
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let client = AmazonClient::new(AmazonConfig::new("-", "-"))
        .map_err(|e| Failure::usage(e.to_string()))?;
    let effects = AmazonPullEffects::new(client, store.clone(), clock.clone());
    let runner = Runner::<PullMachine>::new(store, Arc::new(effects), clock.clone());
    Ok(Puller::new(Arc::new(runner), AMAZON, clock))
}

/// `adsync pull`.
pub async fn pull(db: &std::path::Path, args: PullArgs) -> Result<u8, Failure> {
    let PullPlatform::Amazon = args.platform;
    if args.page_size == 0 {
        return Err(Failure::usage("--page-size must be at least 1"));
    }
    if !(args.rate > 0.0 && args.max_rate >= args.rate) {
        return Err(Failure::usage("need 0 < --rate <= --max-rate"));
    }
    let throttle = ThrottleConfig {
        initial_rate: args.rate,
        max_rate: args.max_rate,
        min_rate: ThrottleConfig::default().min_rate.min(args.rate),
        ..ThrottleConfig::default()
    };
    let config = AmazonConfig::new(args.client_id, args.token)
        .with_host(args.host)
        .with_throttle(throttle)
        .with_timeout(Duration::from_secs(30));
    let client = AmazonClient::new(config).map_err(|e| Failure::usage(e.to_string()))?;
    let store = Store::open_from_async(db).await.map_err(store_failure)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let effects = AmazonPullEffects::new(client, store.clone(), clock.clone());
    let mut runner = Runner::<PullMachine>::new(store, Arc::new(effects), clock.clone());
    if let Some(hook) = crate::crash_hook_from_env() {
        runner = runner.with_hook(hook);
    }
    let policy = PullPolicy {
        page_size: args.page_size,
        ..PullPolicy::default()
    };
    let puller = Puller::new(Arc::new(runner), AMAZON, clock).with_policy(policy);
    let mode = if args.restart {
        PullMode::Restart
    } else {
        PullMode::ResumeOrStart
    };
    let json = args.json;
    let status = puller
        .pull_observed(&args.profile, mode, &move |t| {
            // Phase changes, failures, and every 100th page as progress.
            if !json && (t.from != t.to || PullMachine::is_failure(&t.outcome) || t.seq % 100 == 0)
            {
                println!(
                    "[{}] #{} {} → {}: {}",
                    t.sync,
                    t.seq,
                    t.from,
                    t.to,
                    PullMachine::describe_outcome(&t.outcome)
                );
            }
        })
        .await?;
    print_statuses(std::slice::from_ref(&status), json);
    Ok(match status.state {
        SyncState::Completed => 0,
        _ => 1,
    })
}

fn fmt_time(t: Option<time::OffsetDateTime>) -> String {
    t.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .unwrap_or_else(|| "-".to_string())
}

fn print_statuses(statuses: &[PullStatus], json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(statuses).unwrap_or_default()
        );
        return;
    }
    for s in statuses {
        println!(
            "{} ({} profile {}): {} (phase {}, pull #{})",
            s.sync, s.platform, s.profile_id, s.state, s.phase, s.run
        );
        println!(
            "  started {}  finished {}  last success {}",
            fmt_time(Some(s.started_at)),
            fmt_time(s.finished_at),
            fmt_time(s.last_success_at)
        );
        match &s.counts {
            Some(c) => println!("  persisted: {c}"),
            None => println!("  persisted: nothing yet"),
        }
        println!(
            "  this pull: {} pages, {} entities staged",
            s.pages.total(),
            s.fetched.total()
        );
        if let Some(e) = &s.last_error {
            println!("  last error: {e}");
        }
    }
}

/// The pull syncs among a store's readable records, for `adsync status`.
pub fn pull_statuses(records: &[Record]) -> Vec<PullStatus> {
    records
        .iter()
        .filter(|r| r.kind == PullMachine::KIND)
        .filter_map(|r| adsync::runner::decode_checkpoint::<PullMachine>(r.clone()).ok())
        .map(|c| PullStatus::from_checkpoint(&c))
        .collect()
}

/// The pull section of `adsync status` (human output).
pub fn print_pull_section(records: &[Record]) {
    let statuses = pull_statuses(records);
    if !statuses.is_empty() {
        println!("\npull syncs:");
        print_statuses(&statuses, false);
    }
}

/// `adsync show`.
pub async fn show(db: &std::path::Path, args: ShowArgs) -> Result<u8, Failure> {
    let PullPlatform::Amazon = args.platform;
    let store = Store::open_existing_from_async(db)
        .await
        .map_err(store_failure)?;
    let puller = reader(store)?;
    let profile = args.profile.as_str();
    let limit = args.limit.unwrap_or(usize::MAX);
    let status = puller.status(profile).await?;
    match args.kind {
        ShowKind::Summary => {
            let Some(status) = status else {
                return Err(Failure::usage(format!(
                    "profile {profile} was never pulled"
                )));
            };
            print_statuses(&[status], args.json);
            Ok(0)
        }
        ShowKind::Campaigns => {
            let items = select::<SpCampaign>(&puller, profile, args.id.as_deref(), limit).await?;
            print_items(&items, args.json, |c| {
                format!(
                    "{:<16} {:<13} {:<7} {:>10.2} {}",
                    c.campaign_id,
                    enum_text(&c.state),
                    enum_text(&c.targeting_type),
                    c.budget.budget,
                    c.name
                )
            });
            Ok(found(args.id.as_deref(), items.len()))
        }
        ShowKind::AdGroups => {
            let items = select::<SpAdGroup>(&puller, profile, args.id.as_deref(), limit).await?;
            print_items(&items, args.json, |g| {
                format!(
                    "{:<16} {:<16} {:<13} {:>8.2} {}",
                    g.ad_group_id,
                    g.campaign_id,
                    enum_text(&g.state),
                    g.default_bid,
                    g.name
                )
            });
            Ok(found(args.id.as_deref(), items.len()))
        }
        ShowKind::Keywords => {
            let items = select::<SpKeyword>(&puller, profile, args.id.as_deref(), limit).await?;
            print_items(&items, args.json, |k| {
                format!(
                    "{:<16} {:<16} {:<13} {:<6} {:>8} {}",
                    k.keyword_id,
                    k.ad_group_id,
                    enum_text(&k.state),
                    enum_text(&k.match_type),
                    k.bid.map_or("default".to_string(), |b| format!("{b:.2}")),
                    k.keyword_text
                )
            });
            Ok(found(args.id.as_deref(), items.len()))
        }
    }
}

fn found(id: Option<&str>, n: usize) -> u8 {
    match (id, n) {
        (Some(_), 0) => 1,
        _ => 0,
    }
}

fn enum_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

async fn select<T: adsync::platform::amazon::SpEntity + Send + 'static>(
    puller: &Puller,
    profile: &str,
    id: Option<&str>,
    limit: usize,
) -> Result<Vec<T>, Failure> {
    Ok(match id {
        Some(id) => puller.find::<T>(profile, id).await?.into_iter().collect(),
        None => {
            let mut items = puller.entities::<T>(profile).await?;
            items.truncate(limit);
            items
        }
    })
}

fn print_items<T: serde::Serialize>(items: &[T], json: bool, line: impl Fn(&T) -> String) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(items).unwrap_or_default()
        );
    } else {
        for item in items {
            println!("{}", line(item));
        }
    }
}

/// `adsync fake-server amazon`: serves until interrupted (Ctrl-C / SIGTERM).
pub async fn fake_server_amazon(args: FakeAmazonArgs) -> Result<u8, Failure> {
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
    println!("http://{addr}");
    eprintln!(
        "fake Amazon Ads on http://{addr}: profiles {:?}, {counts} entities each ({} keywords); admin API under /_admin; Ctrl-C stops",
        args.profiles,
        data.keywords.len()
    );
    let fake = FakeAmazon::new(config);
    adsync::platform::amazon::fake_server::serve(listener, fake, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await
    .map_err(|e| Failure {
        code: 1,
        message: format!("fake server: {e}"),
    })?;
    Ok(0)
}
