//! A PostgreSQL checkpoint store for adsync's engine: [`PgStore`].
//!
//! Several workers on several machines share one database. Every key of the
//! store lives in one table, `adsync_kv`, in exactly the layout of the
//! engine's sled store, so the engine's [`LayoutReader`](adsync_engine::LayoutReader)
//! decodes it and copying a store is copying its keys. A second table,
//! `adsync_syncs`, holds one row per sync (its status and `not_before`, kept
//! up to date by every commit of its record) and the sync's *lease*: owner,
//! expiry and a fencing token that grows at every [`claim`](PgStore::claim).
//! A commit carrying a fence ([`Commit::fenced`](adsync_engine::Commit::fenced))
//! lands only while the token still equals the row's: a worker whose lease
//! was taken over cannot write (`StoreError::LeaseLost`).
//!
//! Schema migrations are the SQL files of the repository's `migrations/`,
//! compiled in; [`PgStore::connect`] applies the pending ones and refuses a
//! database whose schema is newer than this build (`StoreError::SchemaTooNew`).
//!
//! [`PgStore::import`] moves a sled store over: every key byte for byte, in
//! one transaction, into an empty database, then reads it all back to
//! compare (`adsync store copy`).
//!
//! The design, the SQL and what CockroachDB would need: `docs/design/postgres.md`.
#![warn(missing_docs)]

mod copy;
mod leader;
mod lease;
mod location;
mod migrate;
mod read;
mod store;
mod writer;

pub use copy::{CopyError, Imported};
pub use lease::{Claim, LeaseView};
pub use migrate::{Migrated, SCHEMA_VERSION};
pub use store::PgStore;
