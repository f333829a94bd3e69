//! `adsync drift`: where the platform no longer holds what adsync last
//! wrote, for every campaign adsync manages on an account; no set file, and
//! nothing written anywhere.

use std::path::Path;
use std::sync::Arc;

use adsync::{Pusher, SystemClock};

use crate::endpoint::{open_adapter, Endpoint};
use crate::exit::Exit;
use crate::failure::Failure;
use crate::opened::Opened;
use crate::platform_args::PlatformArgs;
use crate::store_url::StoreUrl;

/// Arguments of `adsync drift`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The ad account whose managed campaigns are compared.
    #[arg(long)]
    pub(crate) account: String,
    #[command(flatten)]
    pub(crate) platform: PlatformArgs,
    /// Print JSON: per campaign, the drifted entities with each field's
    /// written and platform values, or `"drift": "gone"`.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `adsync drift`: exit 0 when the platform holds what adsync wrote, 7 when
/// something drifted.
pub async fn run(db: &Path, shared: Option<&StoreUrl>, args: Args) -> Result<Exit, Failure> {
    if args.account.trim().is_empty() {
        return Err(Failure::usage(
            "--account must name an ad account, not be empty",
        ));
    }
    let endpoint = Endpoint::of_flags(db, &args.platform);
    let adapter = open_adapter(&args.platform, &endpoint)?;
    // Drift is measured against what adsync wrote: a store must exist.
    let store = Opened::existing(db, shared).await?.store;
    let pusher = Pusher::new(store, adapter, Arc::new(SystemClock));
    let drifts = pusher.drift(&args.account).await?;
    let drifted = drifts.iter().map(|d| d.entities.len()).sum::<usize>();
    if args.json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&drifts).unwrap_or_default()
        );
    } else {
        for campaign in &drifts {
            for entity in &campaign.entities {
                outln!("{entity}");
            }
        }
        outln!(
            "{} campaign(s) managed on {}; {drifted} entit{} drifted",
            drifts.len(),
            args.account,
            if drifted == 1 { "y" } else { "ies" }
        );
    }
    Ok(if drifted == 0 {
        Exit::Ok
    } else {
        Exit::ChangesPending
    })
}
