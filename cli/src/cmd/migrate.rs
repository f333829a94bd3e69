//! `adsync migrate`: brings a shared store's schema up to this adsync's.

use adsync::CheckpointStore;

use crate::exit::Exit;
use crate::failure::Failure;
use crate::store_url::StoreUrl;

/// `adsync migrate`.
pub async fn run(store: Option<&StoreUrl>) -> Result<Exit, Failure> {
    let Some(url) = store else {
        return Err(Failure::usage(
            "`adsync migrate` migrates a shared store: pass --store postgres://… (or set \
             ADSYNC_STORE_URL); a sled store (--db) needs no migration",
        ));
    };
    let (store, migrated) = url.open().await?;
    if migrated.from == migrated.to {
        outln!(
            "{}: schema version {} already (nothing to apply)",
            store.location(),
            migrated.to
        );
    } else {
        outln!(
            "{}: schema version {} → {}",
            store.location(),
            migrated.from,
            migrated.to
        );
    }
    Ok(Exit::Ok)
}
