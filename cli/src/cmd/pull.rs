//! `adsync pull`: a profile's campaigns, ad groups and keywords into the store.

use std::path::Path;

use adsync::amazon::{
    check_page_size, AmazonConfig, ThrottleConfig, DEFAULT_HOST, DEFAULT_MAX_RESULTS,
};
use adsync::StopSignal;
use adsync::Store;
use adsync::{PullMode, PullPolicy};

use crate::exit::Exit;
use crate::failure::Failure;
use crate::platform_args::{ProfileArgs, PullPlatform};
use crate::pulling::{open_puller, run_pull};

/// Arguments of `adsync pull`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub(crate) pulled: ProfileArgs,
    /// API host (NA, -eu, -fe, or a fake server).
    #[arg(long, env = "ADSYNC_AMAZON_HOST", default_value = DEFAULT_HOST)]
    host: String,
    /// Login with Amazon client id.
    /// (Required unless the pull goes through a daemon, which has its own.)
    #[arg(long, env = "ADSYNC_AMAZON_CLIENT_ID")]
    client_id: Option<String>,
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
    pub(crate) restart: bool,
    /// Print the final status as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `adsync pull`.
pub async fn run(db: &Path, args: Args) -> Result<Exit, Failure> {
    let PullPlatform::Amazon = args.pulled.platform;
    let profile = args.pulled.profile;
    check_page_size(args.page_size).map_err(|e| Failure::usage(format!("--page-size: {e}")))?;
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
    let client_id = args
        .client_id
        .filter(|c| !c.trim().is_empty())
        .ok_or_else(|| {
            Failure::usage(
                "no Amazon Ads client id: set ADSYNC_AMAZON_CLIENT_ID or pass --client-id",
            )
        })?;
    let config = AmazonConfig::new(client_id.clone(), token)
        .with_host(args.host.clone())
        .with_throttle(throttle);
    let stop = StopSignal::new();
    let store = async { Store::open_from_async(db).await.map_err(Failure::from) };
    let policy = PullPolicy {
        page_size: args.page_size,
        ..PullPolicy::default()
    };
    let (puller, client) = open_puller(config, store, &stop).await?;
    let puller = puller.with_policy(policy);
    let mode = if args.restart {
        PullMode::Restart
    } else {
        PullMode::ResumeOrStart
    };
    let db = crate::suggest::absolute(db);
    let hint = crate::suggest::command_line([
        "adsync",
        "--db",
        db.as_str(),
        "pull",
        "--profile",
        profile.as_str(),
        "--host",
        args.host.as_str(),
        "--client-id",
        client_id.as_str(),
    ]);
    // No --token: it would be printed; the command reads ADSYNC_AMAZON_TOKEN.
    let interrupts = crate::signals::Interrupts::install(stop, hint);
    let code = run_pull(&puller, &client, &profile, mode, args.json, &interrupts).await?;
    Ok(interrupts.finish().unwrap_or(code))
}
