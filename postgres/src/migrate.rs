//! Schema migrations: the SQL files of `migrations/`, applied in order.

use adsync_engine::StoreError;

use crate::store::PgStore;

/// The migrations, in order: `(version, SQL)`.
const MIGRATIONS: &[(i64, &str)] = &[(1, include_str!("../../migrations/0001_init.sql"))];

/// The newest schema version this build applies (and understands).
pub const SCHEMA_VERSION: i64 = 1;

/// An arbitrary, fixed key of the advisory lock that serializes migrations
/// (two workers starting at once on a new database).
const MIGRATION_LOCK: i64 = 0x6164_7379_6e63_0001;

/// What [`PgStore::migrate`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// The schema version before (0: a new database).
    pub from: i64,
    /// The schema version now ([`SCHEMA_VERSION`]).
    pub to: i64,
}

impl PgStore {
    /// Applies the pending migrations, all in one transaction under an
    /// advisory lock, so that workers starting together apply each once and
    /// a failed migration leaves the database as it was. [`PgStore::connect`]
    /// calls it; `adsync migrate` is this alone.
    ///
    /// # Errors
    ///
    /// [`StoreError::SchemaTooNew`] when the database's schema is newer than
    /// [`SCHEMA_VERSION`] (nothing is changed); [`StoreError::Backend`]
    /// naming the store when a statement fails.
    pub async fn migrate(&self) -> Result<Migrated, StoreError> {
        let mut client = self.client().await?;
        let fail = |what: &str, e: tokio_postgres::Error| self.db_error(what, e);
        let tx = client
            .transaction()
            .await
            .map_err(|e| fail("starting the migration", e))?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .await
            .map_err(|e| fail("taking the migration lock", e))?;
        tx.batch_execute(
            "CREATE TABLE IF NOT EXISTS adsync_schema (
                version bigint NOT NULL PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now())",
        )
        .await
        .map_err(|e| fail("creating the version table", e))?;
        let from: i64 = tx
            .query_one(
                "SELECT coalesce(max(version), 0)::bigint FROM adsync_schema",
                &[],
            )
            .await
            .map_err(|e| fail("reading the schema version", e))?
            .get(0);
        if from > SCHEMA_VERSION {
            return Err(StoreError::SchemaTooNew {
                store: self.location_text(),
                found: from,
                supported: SCHEMA_VERSION,
            });
        }
        for (version, sql) in MIGRATIONS.iter().filter(|(v, _)| *v > from) {
            tx.batch_execute(sql)
                .await
                .map_err(|e| fail(&format!("applying migration {version}"), e))?;
            tx.execute(
                "INSERT INTO adsync_schema (version) VALUES ($1)",
                &[version],
            )
            .await
            .map_err(|e| fail(&format!("recording migration {version}"), e))?;
        }
        tx.commit()
            .await
            .map_err(|e| fail("committing the migration", e))?;
        if from < SCHEMA_VERSION {
            tracing::info!(store = %self.location_text(), from, to = SCHEMA_VERSION, "migrated the store's schema");
        }
        Ok(Migrated {
            from,
            to: SCHEMA_VERSION,
        })
    }
}
