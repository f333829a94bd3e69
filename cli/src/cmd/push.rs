//! `adsync push`: a campaign-set file, one sync per campaign.

use std::path::{Path, PathBuf};

use adsync::CampaignSet;
use adsync::Store;

use crate::endpoint::{open_adapter, Endpoint};
use crate::exit::Exit;
use crate::failure::{push_refused, Failure};
use crate::platform_args::PlatformArgs;
use crate::progress::progress_observer;
use crate::pushing::open_pusher;
use crate::report::finish;
use crate::signals;
use crate::suggest::{absolute, command_line};

/// Arguments of `adsync push`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The campaign-set JSON file.
    pub(crate) set: PathBuf,
    /// The ad account to push to.
    #[arg(long)]
    pub(crate) account: String,
    #[command(flatten)]
    pub(crate) platform: PlatformArgs,
    /// Push campaigns that another set pushed last (same account and
    /// campaign id), renaming and changing them to this set's; refused
    /// otherwise, before anything is written.
    #[arg(long)]
    pub(crate) take_over: bool,
    /// Adopt an entity that exists on the platform by exact name under the
    /// right parent but that adsync does not manage (its id recorded, then
    /// updated to the set); without it the push refuses before any write,
    /// naming it.
    #[arg(long)]
    pub(crate) adopt_existing: bool,
    /// Archive what adsync created or adopted for a campaign of the set and
    /// the set no longer names, and replace what cannot change in place (an
    /// ad moved to another ad group); without it those are left and listed.
    #[arg(long)]
    pub(crate) prune: bool,
    /// Print the final report as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `adsync push`.
pub async fn run(db: &Path, args: Args) -> Result<Exit, Failure> {
    let Args {
        set,
        account,
        platform,
        take_over,
        adopt_existing,
        prune,
        json,
    } = args;
    // Parse and validate everything before the store is even opened:
    // bad input writes nothing.
    let parsed = CampaignSet::from_file(&set).map_err(|e| Failure::usage(e.to_string()))?;
    if account.trim().is_empty() {
        return Err(Failure::usage(
            "--account must name an ad account, not be empty",
        ));
    }
    let endpoint = Endpoint::of_flags(db, &platform);
    let adapter = open_adapter(&platform, &endpoint)?;
    let store = Store::open_from_async(db).await?;
    let set_file = std::path::absolute(&set).unwrap_or(set);
    let opened_at = store.path().to_path_buf();
    // Every sync records its endpoint, so `resume --all` needs no flags.
    let db = absolute(store.path());
    let interrupts = signals::Interrupts::install(
        adsync::StopSignal::new(),
        command_line(["adsync", "--db", db.as_str(), "resume", "--all"]),
    );
    let pusher = open_pusher(store, adapter, interrupts.stop_signal())
        .with_labels(endpoint.labels(&set_file.to_string_lossy()))
        .with_take_over(take_over)
        .with_adopt_existing(adopt_existing)
        .with_prune(prune);
    let ids = pusher
        .start(&parsed, &account)
        .await
        .map_err(|e| push_refused(e, &opened_at))?;
    let observer = progress_observer(&pusher, &ids, json).await;
    let report = pusher.run_all_observed(&ids, observer).await;
    let code = finish(&report, json);
    Ok(interrupts.finish().unwrap_or(code))
}
