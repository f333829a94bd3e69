//! `adsync history`: the transitions of one sync.

use std::path::Path;

use adsync::Store;

use crate::exit::Exit;
use crate::failure::Failure;
use crate::format::rfc3339;

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
pub async fn run(db: &Path, args: Args) -> Result<Exit, Failure> {
    let Args { sync, json } = args;
    let store = Store::open_existing_from_async(db).await?;
    store
        .blocking(move |store| history(store, &sync, json))
        .await?
}

fn history(store: &Store, sync: &str, json: bool) -> Result<Exit, Failure> {
    let entries = store.history(sync)?;
    if entries.is_empty() {
        return Err(Failure::usage(format!(
            "no sync `{sync}` in {}",
            store.path().display()
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
