//! `--store postgres://…`: a store several daemons share. Its URL holds a
//! password, so it is kept as a [`Secret`] and shown only with the password
//! replaced (by the store itself: [`adsync::CheckpointStore::location`]).

use adsync::Secret;
use adsync_postgres::{Migrated, PgStore};

use crate::failure::Failure;

/// A shared store's connection string.
#[derive(Clone, Debug)]
pub struct StoreUrl(Secret);

impl StoreUrl {
    /// clap's parser: a `postgres://` or `postgresql://` URL.
    pub fn parse(raw: &str) -> Result<StoreUrl, String> {
        let raw = raw.trim();
        if raw.starts_with("postgres://") || raw.starts_with("postgresql://") {
            Ok(StoreUrl(Secret::new(raw)))
        } else {
            // Never echo the value: it may hold a password.
            Err(
                "expected a postgres://user:password@host/database URL (a sled directory is --db)"
                    .to_string(),
            )
        }
    }

    /// Connects and applies pending migrations. Exit 4 when the database
    /// cannot be reached, refuses the credentials or is newer than this
    /// adsync; the message names the store without its password.
    pub async fn open(&self) -> Result<(PgStore, Migrated), Failure> {
        PgStore::connect_migrated(self.0.expose())
            .await
            .map_err(Failure::from)
    }
}
