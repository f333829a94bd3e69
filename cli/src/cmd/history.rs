//! `adsync history`: the transitions of one sync.

use std::path::Path;

use crate::exit::Exit;
use crate::failure::Failure;
use crate::format::rfc3339;
use crate::opened::Opened;
use crate::store_url::StoreUrl;

/// Arguments of `adsync history`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The sync.
    pub(crate) sync: String,
    /// Print JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `adsync history`.
pub async fn run(db: &Path, shared: Option<&StoreUrl>, args: Args) -> Result<Exit, Failure> {
    let Args { sync, json } = args;
    let opened = Opened::existing(db, shared).await?;
    let entries = {
        let sync = sync.clone();
        opened
            .store
            .read(move |store| store.history(&sync))
            .await??
    };
    if entries.is_empty() {
        return Err(Failure::usage(format!(
            "no sync `{sync}` in {}",
            opened.location()
        )));
    }
    print_history(&entries, json);
    Ok(Exit::Ok)
}

/// Prints `entries` as `history` does, here or through a daemon.
pub(crate) fn print_history(entries: &[adsync::HistoryEntry], json: bool) {
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&entries).unwrap_or_default()
        );
    } else {
        for e in entries {
            outln!(
                "#{:<3} {}  {:<16} → {:<16} {} ⇒ {}",
                e.seq,
                rfc3339(e.at),
                e.from,
                e.to,
                e.effect.as_deref().unwrap_or("(no effect run)"),
                e.outcome
            );
        }
    }
}
