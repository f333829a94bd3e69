//! `adsync plan`: what `adsync push` of a set would do, entity by entity,
//! from what the platform lists now; writes nothing anywhere.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use adsync::converge::{Plan, PlanOptions};
use adsync::{CampaignSet, Pusher, SharedStore, Store, SystemClock};

use crate::endpoint::{open_adapter, Endpoint};
use crate::exit::Exit;
use crate::failure::Failure;
use crate::opened::Opened;
use crate::platform_args::PlatformArgs;
use crate::store_url::StoreUrl;

/// Arguments of `adsync plan`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The campaign-set JSON file.
    pub(crate) set: PathBuf,
    /// The ad account the set would be pushed to.
    #[arg(long)]
    pub(crate) account: String,
    #[command(flatten)]
    pub(crate) platform: PlatformArgs,
    /// Plan to adopt entities that exist on the platform by exact name under
    /// the right parent but that adsync did not create (otherwise listed as
    /// refused).
    #[arg(long)]
    pub(crate) adopt_existing: bool,
    /// Plan to archive entities adsync created that the set no longer names,
    /// and to replace entities that cannot change in place (an ad moved to
    /// another ad group).
    #[arg(long)]
    pub(crate) prune: bool,
    /// Plan to take over campaigns that another set pushed last (as `push
    /// --take-over`); otherwise their campaign is listed as refused.
    #[arg(long)]
    pub(crate) take_over: bool,
    /// Also list the entities with nothing to write.
    #[arg(long)]
    pub(crate) all: bool,
    /// Print the plans as JSON (every entry, with each field's platform,
    /// last written and desired values, and a summary).
    #[arg(long)]
    pub(crate) json: bool,
}

/// `adsync plan`: exit 0 when the push would write nothing, 7 when it
/// would write, 3 when it would refuse (a flag must be chosen first).
pub async fn run(db: &Path, shared: Option<&StoreUrl>, args: Args) -> Result<Exit, Failure> {
    let parsed = CampaignSet::from_file(&args.set).map_err(|e| Failure::usage(e.to_string()))?;
    if args.account.trim().is_empty() {
        return Err(Failure::usage(
            "--account must name an ad account, not be empty",
        ));
    }
    let endpoint = Endpoint::of_flags(db, &args.platform);
    let adapter = open_adapter(&args.platform, &endpoint)?;
    // A plan writes nothing: an existing store is only read, and a missing
    // sled store is not created (adsync then knows no entity at all).
    let store: SharedStore = if shared.is_some() || db.exists() {
        Opened::existing(db, shared).await?.store
    } else {
        Arc::new(Store::temporary()?)
    };
    let pusher = Pusher::new(store, adapter, Arc::new(SystemClock));
    let options = PlanOptions {
        adopt_existing: args.adopt_existing,
        prune: args.prune,
        take_over: args.take_over,
    };
    let plans = pusher.plan(&parsed, &args.account, options).await?;
    if args.json {
        let value: Vec<_> = plans
            .iter()
            .map(|p| {
                serde_json::json!({
                    "campaign": p.campaign, "summary": p.summary(), "entries": p.entries,
                })
            })
            .collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        for plan in &plans {
            print_plan(plan, args.all);
        }
    }
    Ok(exit_of(&plans))
}

/// A plan as text: the entries with something to do (all with `--all`),
/// then its summary line.
fn print_plan(plan: &Plan, all: bool) {
    outln!("{}", plan.display(all));
}

fn exit_of(plans: &[Plan]) -> Exit {
    if plans.iter().any(|p| p.refusals().next().is_some()) {
        Exit::NeedsAttention
    } else if plans.iter().any(Plan::has_changes) {
        Exit::ChangesPending
    } else {
        Exit::Ok
    }
}
