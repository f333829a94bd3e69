//! `adsync validate`: checks a campaign-set file without touching the store.

use std::path::PathBuf;

use adsync::CampaignSet;

use crate::exit::Exit;
use crate::failure::Failure;

/// Arguments of `adsync validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The campaign-set JSON file.
    set: PathBuf,
}

/// `adsync validate`.
pub fn run(args: Args) -> Result<Exit, Failure> {
    let set = CampaignSet::from_file(&args.set).map_err(|e| Failure::usage(e.to_string()))?;
    let entities = set.entity_count();
    outln!(
        "ok: `{}`: {} campaigns, {entities} entities",
        set.name,
        set.campaigns.len()
    );
    Ok(Exit::Ok)
}
