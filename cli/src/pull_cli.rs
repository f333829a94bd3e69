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
use adsync::pull::{PullError, PullMachine, PullMode, PullPolicy, PullStatus, Puller, SyncState};
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
    /// Access token. Prefer the environment variable ADSYNC_AMAZON_TOKEN: a
    /// flag shows in the process list.
    #[arg(long, env = "ADSYNC_AMAZON_TOKEN", hide_env_values = true)]
    token: Option<String>,
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
    Ok(Puller::new(store, client, clock))
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
    // Checked here rather than by clap, whose message names only the flag: the
    // variable is the way to pass a token that `ps` does not show.
    let token = args.token.filter(|t| !t.trim().is_empty()).ok_or_else(|| {
        Failure::usage(
            "no Amazon Ads access token: set ADSYNC_AMAZON_TOKEN (or pass --token, which shows in the process list)",
        )
    })?;
    let config = AmazonConfig::new(args.client_id.clone(), token)
        .with_host(args.host.clone())
        .with_throttle(throttle)
        .with_timeout(Duration::from_secs(30));
    let client = AmazonClient::new(config).map_err(|e| Failure::usage(e.to_string()))?;
    let store = Store::open_from_async(db).await.map_err(store_failure)?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let policy = PullPolicy {
        page_size: args.page_size,
        ..PullPolicy::default()
    };
    let host = client_host(&args.host);
    let puller = Puller::new(store, client, clock)
        .with_runner(|runner| match crate::crash_hook_from_env() {
            Some(hook) => runner.with_hook(hook),
            None => runner,
        })
        .with_policy(policy)
        .with_labels(std::collections::BTreeMap::from([(
            "host".to_string(),
            host,
        )]));
    let mode = if args.restart {
        PullMode::Restart
    } else {
        PullMode::ResumeOrStart
    };
    let db = crate::absolute(db);
    let hint = crate::signals::command_line([
        "adsync",
        "--db",
        db.as_str(),
        "pull",
        "--profile",
        args.profile.as_str(),
        "--host",
        args.host.as_str(),
        "--client-id",
        args.client_id.as_str(),
    ]);
    // No --token: it would be printed; the command reads ADSYNC_AMAZON_TOKEN.
    let interrupts =
        crate::signals::Interrupts::install(puller.runner().stop_signal().clone(), hint);
    let code = run_pull(&puller, &args.profile, mode, args.json, &interrupts).await?;
    Ok(interrupts.finish().unwrap_or(code))
}

/// The host as the client uses it (no trailing slash).
fn client_host(host: &str) -> String {
    host.trim_end_matches('/').to_string()
}

/// `adsync resume` of pull sync `id`: host and profile from its checkpoint,
/// credentials from the environment only. Missing credentials are a usage
/// error (exit 2) naming the variables.
///
/// The pull stops at the next step boundary once `interrupts` has seen a signal;
/// the caller prints how to continue.
pub async fn resume(
    store: Arc<Store>,
    id: &str,
    json: bool,
    interrupts: &crate::signals::Interrupts,
) -> Result<u8, Failure> {
    let key = id.to_string();
    let record = store
        .blocking(move |store| store.record(&key))
        .await
        .map_err(store_failure)?
        .map_err(store_failure)?
        .ok_or_else(|| Failure::usage(format!("no sync `{id}` in {}", store.path().display())))?;
    let Some(profile) = record.labels.get("profile").cloned() else {
        return Err(Failure::usage(format!("pull `{id}` names no profile")));
    };
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let (Some(client_id), Some(token)) =
        (env("ADSYNC_AMAZON_CLIENT_ID"), env("ADSYNC_AMAZON_TOKEN"))
    else {
        return Err(Failure::usage(
            "needs Amazon credentials: set ADSYNC_AMAZON_TOKEN and ADSYNC_AMAZON_CLIENT_ID",
        ));
    };
    let host = match (record.labels.get("host"), env("ADSYNC_AMAZON_HOST")) {
        (Some(recorded), Some(given)) if client_host(&given) != *recorded => {
            return Err(Failure {
                code: 2,
                message: format!(
                    "pull `{id}` was made from {recorded}, but ADSYNC_AMAZON_HOST is {given}: unset it or set it to {recorded}"
                ),
            })
        }
        (Some(recorded), _) => recorded.clone(),
        (None, Some(given)) => given,
        (None, None) => DEFAULT_HOST.to_string(),
    };
    let config = AmazonConfig::new(client_id, token)
        .with_host(host)
        .with_timeout(Duration::from_secs(30));
    let client = AmazonClient::new(config).map_err(|e| Failure::usage(e.to_string()))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let stop = interrupts.stop_signal().clone();
    let puller = Puller::new(store, client, clock).with_runner(|mut runner| {
        if let Some(hook) = crate::crash_hook_from_env() {
            runner = runner.with_hook(hook);
        }
        runner.with_stop(stop)
    });
    run_pull(&puller, &profile, PullMode::ResumeOrStart, json, interrupts).await
}

async fn run_pull(
    puller: &Puller,
    profile: &str,
    mode: PullMode,
    json: bool,
    interrupts: &crate::signals::Interrupts,
) -> Result<u8, Failure> {
    let status = puller
        .pull_observed(profile, mode, &move |t| {
            // Phase changes, failures, and every 100th page as progress.
            if !json && (t.from != t.to || PullMachine::is_failure(&t.outcome) || t.seq % 100 == 0)
            {
                outln!(
                    "[{}] #{} {} → {}: {}",
                    t.sync,
                    t.seq,
                    t.from,
                    t.to,
                    PullMachine::describe_outcome(&t.outcome)
                );
            }
        })
        .await;
    let status = match status {
        Ok(status) => status,
        Err(e) => {
            // A stop surfaces as the run's error; the signal decides the code.
            return match interrupts.signalled() {
                Some(code) => Ok(code),
                None => Err(e.into()),
            };
        }
    };
    print_statuses(std::slice::from_ref(&status), json);
    let code = match status.state {
        SyncState::Completed => 0,
        _ => 1,
    };
    Ok(interrupts.signalled().unwrap_or(code))
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
        outln!(
            "{}",
            serde_json::to_string_pretty(statuses).unwrap_or_default()
        );
        return;
    }
    for s in statuses {
        outln!(
            "{} ({} profile {}): {} (phase {}, pull #{})",
            s.sync,
            s.platform,
            s.profile_id,
            s.state,
            s.phase,
            s.run
        );
        outln!(
            "  started {}  finished {}  last success {}",
            fmt_time(Some(s.started_at)),
            fmt_time(s.finished_at),
            fmt_time(s.last_success_at)
        );
        match &s.counts {
            Some(c) => outln!("  persisted: {c}"),
            None => outln!("  persisted: nothing yet"),
        }
        outln!(
            "  this pull: {} pages, {} entities staged",
            s.pages.total(),
            s.fetched.total()
        );
        if let Some(e) = &s.last_error {
            outln!("  last error: {e}");
        }
    }
}

/// The pull syncs among a store's readable records, for `adsync status`.
pub fn pull_statuses(records: &[Record]) -> Vec<PullStatus> {
    records
        .iter()
        .filter(|r| r.kind == PullMachine::KIND)
        .filter_map(|r| adsync::runner::Checkpoint::<PullMachine>::try_from(r.clone()).ok())
        .map(|c| PullStatus::from_checkpoint(&c))
        .collect()
}

/// The pull section of `adsync status` (human output).
pub fn print_pull_section(records: &[Record]) {
    let statuses = pull_statuses(records);
    if !statuses.is_empty() {
        outln!("\npull syncs:");
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
        outln!(
            "{}",
            serde_json::to_string_pretty(items).unwrap_or_default()
        );
    } else {
        for item in items {
            outln!("{}", line(item));
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
    outln!("http://{addr}");
    errln!(
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
