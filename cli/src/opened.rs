//! The store a command opens: the sled directory (`--db`), or a shared
//! store (`--store postgres://…`) that daemons work on at the same time.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use adsync::{SharedStore, Store};
use adsync_postgres::PgStore;

use crate::activity::Watch;
use crate::failure::Failure;
use crate::store_url::StoreUrl;

/// An open store, whichever its kind.
pub struct Opened {
    /// The store, for reads and commits.
    pub store: SharedStore,
    /// The shared store, whose leases say which daemon works on what.
    shared: Option<PgStore>,
}

impl Opened {
    /// Opens the store a command that reads or settles existing syncs
    /// needs: the shared store when `shared` is given (connecting, applying
    /// pending migrations as a daemon does), else the sled store at `db`,
    /// which must exist (a mistyped `--db` is a usage error, not a new store).
    ///
    /// # Errors
    ///
    /// The store cannot be opened: its message names it (never a password).
    pub async fn existing(db: &Path, shared: Option<&StoreUrl>) -> Result<Opened, Failure> {
        match shared {
            Some(url) => {
                let (store, _) = url.open().await?;
                Ok(Opened {
                    store: Arc::new(store.clone()),
                    shared: Some(store),
                })
            }
            None => Ok(Opened {
                store: Arc::new(Store::open_existing_from_async(db).await?),
                shared: None,
            }),
        }
    }

    /// Who works on the store's syncs: this process alone (sled), or the
    /// daemons holding leases now (a shared store).
    ///
    /// # Errors
    ///
    /// The shared store's leases cannot be read.
    pub async fn watch(&self) -> Result<Watch, Failure> {
        let Some(shared) = &self.shared else {
            return Ok(Watch::Alone);
        };
        let leases = shared.leases().await?;
        Ok(Watch::Leases(
            leases
                .into_iter()
                .map(|l| (l.sync.clone(), l))
                .collect::<BTreeMap<_, _>>(),
        ))
    }

    /// Whether daemons share this store (it has leases).
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// The store as messages name it (a shared store's password replaced).
    pub fn location(&self) -> String {
        self.store.location()
    }
}
