//! Moving a sled store to PostgreSQL: [`PgStore::import`].
//!
//! Both stores keep the same key layout, so a copy is every key of the sled
//! store, byte for byte, into `adsync_kv`, plus the `adsync_syncs` row of
//! every record, derived exactly as a commit derives it (`RecordRow`): the
//! copied syncs are then claimed, leased and listed as if they had been
//! committed through [`PgStore`].

use std::collections::BTreeMap;

use adsync_engine::{CheckpointStore, RawRead, Status, Store, StoreError, StoreRead};
use serde::Serialize;
use time::OffsetDateTime;
use tokio::sync::mpsc;

use crate::read::read_raw;
use crate::store::PgStore;
use crate::writer::RecordRow;

/// Rows per `INSERT` at most: one round trip carries this many keys.
const CHUNK_ROWS: usize = 2000;

/// Bytes of keys and values per `INSERT` at most, so that one statement's
/// parameters stay small for the server however large the values are.
const CHUNK_BYTES: usize = 4 << 20;

/// Chunks read ahead of the inserts (each at most `CHUNK_BYTES`).
const READ_AHEAD: usize = 2;

/// Plain `INSERT`s, no `ON CONFLICT`: the target was found empty under a
/// lock, so a conflict would be a bug, and it fails the whole copy.
const PUT: &str = "INSERT INTO adsync_kv (key, value) \
     SELECT k, v FROM unnest($1::bytea[], $2::bytea[]) AS w(k, v)";
/// Each row with fencing token [`COPIED_FENCE`], not the 0 of a sync never
/// claimed: see there.
const SYNCS: &str = "INSERT INTO adsync_syncs (id, status, not_before, fence) \
     SELECT i, s, n, $4 FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS w(i, s, n)";

/// The fencing token of a copied sync: as if claimed once, by the process
/// that ran it on sled. A worker takes the first claim of a sync (token 1)
/// as proof that nobody ran it yet, and skips the restart look-up of its
/// stored state's effect; a sync that sled's process ran may have had that
/// effect in flight when it stopped (even at seq 0), so its first claim here
/// must be token 2: its create is looked up, never sent again blindly.
pub(crate) const COPIED_FENCE: i64 = 1;

/// What [`PgStore::import`] copied (and then read back identical).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Imported {
    /// Syncs copied, by the status their record says (a sync that was
    /// running is `running`: claimable by the first worker on the database).
    pub syncs: BTreeMap<Status, u64>,
    /// Keys copied: records, heads, plans, segments, history, index entries
    /// and machine data (staged pages, snapshots, schedules, submissions,
    /// cancel requests) alike.
    pub keys: u64,
    /// Bytes of those keys and their values.
    pub bytes: u64,
}

impl Imported {
    /// Syncs copied, whatever their status.
    pub fn sync_count(&self) -> u64 {
        self.syncs.values().sum()
    }
}

/// Why [`PgStore::import`] copied nothing, or what its check found.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CopyError {
    /// Either store failed, or the target is not empty
    /// ([`StoreError::NotEmpty`]); nothing was written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Records of the source do not decode; nothing was written.
    #[error("the source store {from} has {} sync(s) that do not decode, so nothing was copied: {}", .syncs.len(), list(.syncs))]
    CorruptSource {
        /// The source's directory.
        from: String,
        /// Each corrupt sync's error ([`StoreError::Corrupt`] or
        /// [`StoreError::UnsupportedFormat`]), naming it and what is wrong.
        syncs: Vec<StoreError>,
    },
    /// The copy was committed but does not read back as the source. Not
    /// expected ever: the target's tables must be emptied before trying
    /// again.
    #[error("the copy in {target} does not read back as its source {from}: {detail}; empty the target (its tables adsync_kv and adsync_syncs) before copying again")]
    Mismatch {
        /// The source's directory.
        from: String,
        /// The target, its password replaced.
        target: String,
        /// The first difference found.
        detail: String,
    },
}

fn list(errors: &[StoreError]) -> String {
    errors
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// One `INSERT`'s worth of the source.
#[derive(Default)]
struct Chunk {
    keys: Vec<Vec<u8>>,
    values: Vec<Vec<u8>>,
    bytes: usize,
    sync_ids: Vec<String>,
    sync_statuses: Vec<String>,
    sync_not_before: Vec<Option<OffsetDateTime>>,
}

impl Chunk {
    fn push(&mut self, key: Vec<u8>, value: Vec<u8>) {
        if let Some(row) = RecordRow::of(&key, &value) {
            self.sync_ids.push(row.id);
            self.sync_statuses.push(row.status);
            self.sync_not_before.push(row.not_before);
        }
        self.bytes += key.len() + value.len();
        self.keys.push(key);
        self.values.push(value);
    }

    fn full(&self) -> bool {
        self.keys.len() >= CHUNK_ROWS || self.bytes >= CHUNK_BYTES
    }
}

impl PgStore {
    /// Copies every key of the sled store `source` into this store, which
    /// must be empty, in **one transaction**, then reads everything back and
    /// compares it with the source.
    ///
    /// Open `source` the usual way ([`Store::open_existing`]), which replays
    /// its write-ahead log first, and keep it from other writers meanwhile
    /// (an open sled store is locked to its process). Records, heads, plans,
    /// segments, history, index entries and machine data (staged pull pages,
    /// snapshot generations, schedules, submissions, cancel requests) are
    /// copied byte for byte; each record's row in `adsync_syncs` is derived
    /// as a commit through this store derives it, with no lease: running
    /// syncs are there for the first worker to claim. Their fencing token is
    /// 1, as if claimed once already (by the process that ran them on sled),
    /// so that a worker looks up the effect a sync may have had in flight
    /// instead of taking the sync for one nobody ran.
    ///
    /// Before anything is written, every record of the source is decoded
    /// (with its plan, segments and history); the target's tables are locked
    /// against writers and must hold no row. The keys then go in batched
    /// `INSERT`s; the row and byte counts are checked before `COMMIT`. After
    /// it, every key and every sync's record and history are read back
    /// through this store and compared with the source.
    ///
    /// # Errors
    ///
    /// - [`CopyError::CorruptSource`] naming every sync of the source that
    ///   does not decode, and why; nothing was written.
    /// - [`CopyError::Store`] with [`StoreError::NotEmpty`] (how many keys
    ///   and syncs the target holds), or either store's failure; nothing was
    ///   written.
    /// - [`CopyError::Mismatch`]: the committed copy does not read back as
    ///   the source.
    pub async fn import(&self, source: &Store) -> Result<Imported, CopyError> {
        let from = source.path().display().to_string();
        let (found, syncs) = {
            let source = source.clone();
            blocking(&from, move || validate(&source)).await??
        };
        if !found.corrupt.is_empty() {
            return Err(CopyError::CorruptSource {
                from,
                syncs: found.corrupt,
            });
        }
        let (keys, bytes) = self.write(source, &from).await?;
        let imported = Imported { syncs, keys, bytes };
        self.verify(source, &from, found.ids, &imported).await?;
        tracing::info!(
            from = %from,
            to = %self.location_text(),
            keys,
            bytes,
            syncs = imported.sync_count(),
            "copied a sled store"
        );
        Ok(imported)
    }

    /// The transaction: lock, check empty, insert, count, commit. Returns
    /// the keys and bytes written.
    async fn write(&self, source: &Store, from: &str) -> Result<(u64, u64), CopyError> {
        let mut client = self.client().await?;
        let fail = |what: &str, e: tokio_postgres::Error| self.db_error(what, e);
        let tx = client
            .transaction()
            .await
            .map_err(|e| fail("starting the copy", e))?;
        // Writers wait until the copy commits or rolls back (readers do not),
        // so the target cannot fill up between the check and the inserts.
        tx.batch_execute("LOCK TABLE adsync_kv, adsync_syncs IN EXCLUSIVE MODE")
            .await
            .map_err(|e| fail("locking the target's tables", e))?;
        let (keys, syncs) = counts(&tx)
            .await
            .map_err(|e| fail("counting the target's rows", e))?;
        if keys > 0 || syncs > 0 {
            return Err(StoreError::NotEmpty {
                store: self.location_text(),
                keys,
                syncs,
            }
            .into());
        }
        let put = tx
            .prepare(PUT)
            .await
            .map_err(|e| fail("preparing the copy", e))?;
        let put_syncs = tx
            .prepare(SYNCS)
            .await
            .map_err(|e| fail("preparing the copy", e))?;

        // sled's scan blocks: it runs on the blocking pool, a few chunks
        // ahead of the inserts.
        let (chunks, mut received) = mpsc::channel::<Result<Chunk, StoreError>>(READ_AHEAD);
        let reader = {
            let source = source.clone();
            tokio::task::spawn_blocking(move || {
                let mut chunk = Chunk::default();
                for item in RawRead::scan(&source, b"") {
                    let (key, value) = match item {
                        Ok(kv) => kv,
                        Err(e) => {
                            let _ = chunks.blocking_send(Err(e));
                            return;
                        }
                    };
                    chunk.push(key, value);
                    if chunk.full()
                        && chunks
                            .blocking_send(Ok(std::mem::take(&mut chunk)))
                            .is_err()
                    {
                        // The copy failed: nobody reads any more.
                        return;
                    }
                }
                let _ = chunks.blocking_send(Ok(chunk));
            })
        };
        let (mut sent_keys, mut sent_bytes, mut sent_syncs) = (0u64, 0u64, 0u64);
        while let Some(chunk) = received.recv().await {
            let chunk = chunk?;
            if !chunk.keys.is_empty() {
                tx.execute(&put, &[&chunk.keys, &chunk.values])
                    .await
                    .map_err(|e| fail("copying keys", e))?;
            }
            if !chunk.sync_ids.is_empty() {
                tx.execute(
                    &put_syncs,
                    &[
                        &chunk.sync_ids,
                        &chunk.sync_statuses,
                        &chunk.sync_not_before,
                        &COPIED_FENCE,
                    ],
                )
                .await
                .map_err(|e| fail("copying sync rows", e))?;
            }
            sent_keys += chunk.keys.len() as u64;
            sent_bytes += chunk.bytes as u64;
            sent_syncs += chunk.sync_ids.len() as u64;
        }
        reader.await.map_err(|e| task_failed(from, &e))?;

        // Everything sent is there, before it is made durable.
        let (keys, syncs) = counts(&tx)
            .await
            .map_err(|e| fail("counting the copied rows", e))?;
        let bytes: i64 = tx
            .query_one(
                "SELECT coalesce(sum(octet_length(key) + octet_length(value)), 0)::bigint \
                 FROM adsync_kv",
                &[],
            )
            .await
            .map_err(|e| fail("counting the copied bytes", e))?
            .get(0);
        if (keys, syncs, bytes) != (sent_keys, sent_syncs, sent_bytes as i64) {
            return Err(StoreError::Backend {
                store: self.location_text(),
                message: format!(
                    "the copy holds {keys} keys ({bytes} bytes) and {syncs} sync rows, not the \
                     {sent_keys} keys ({sent_bytes} bytes) and {sent_syncs} sync rows sent; \
                     rolled back, nothing was written"
                ),
                source: None,
            }
            .into());
        }
        tx.commit()
            .await
            .map_err(|e| fail("committing the copy", e))?;
        Ok((sent_keys, sent_bytes))
    }

    /// Reads everything back through this store and compares it with the
    /// source: every key byte for byte, then every sync's record (plan and
    /// segments included) and history as the engine decodes them.
    async fn verify(
        &self,
        source: &Store,
        from: &str,
        ids: Vec<String>,
        imported: &Imported,
    ) -> Result<(), CopyError> {
        let mismatch = |detail: String| CopyError::Mismatch {
            from: from.to_string(),
            target: self.location_text(),
            detail,
        };
        let (tx, rx) = tokio::sync::oneshot::channel();
        let src = source.clone();
        read_raw(self, move |copy| {
            let _ = tx.send(compare_raw(&src, &copy));
        })
        .await?;
        let (keys, bytes) = rx
            .await
            .map_err(|_| mismatch("the comparison ended without an answer".into()))?
            .map_err(mismatch)?;
        if (keys, bytes) != (imported.keys, imported.bytes) {
            return Err(mismatch(format!(
                "{keys} keys ({bytes} bytes) read back, {} ({} bytes) copied",
                imported.keys, imported.bytes
            )));
        }
        let src = source.clone();
        let target: &dyn CheckpointStore = self;
        let decoded = target
            .read(move |copy| compare_decoded(&src, copy, &ids))
            .await?;
        decoded.map_err(mismatch)
    }
}

/// The syncs of a source store: their ids, and the errors of those that do
/// not decode.
struct Syncs {
    ids: Vec<String>,
    corrupt: Vec<StoreError>,
}

/// Decodes every record of `source` with its plan, segments and history.
fn validate(source: &Store) -> Result<(Syncs, BTreeMap<Status, u64>), StoreError> {
    let mut syncs = Syncs {
        ids: Vec::new(),
        corrupt: Vec::new(),
    };
    let mut statuses = BTreeMap::new();
    for item in RawRead::scan(source, b"r/") {
        let (key, _) = item?;
        let id = String::from_utf8_lossy(&key[2..]).into_owned();
        let decoded = StoreRead::record(source, &id)
            .and_then(|record| Ok((record, StoreRead::history(source, &id)?)));
        match decoded {
            Ok((Some(record), _)) => *statuses.entry(record.status).or_insert(0) += 1,
            Ok((None, _)) => {}
            Err(e @ (StoreError::Corrupt { .. } | StoreError::UnsupportedFormat { .. })) => {
                syncs.corrupt.push(e);
            }
            Err(e) => return Err(e),
        }
        syncs.ids.push(id);
    }
    Ok((syncs, statuses))
}

/// Both stores' keys in order, side by side: `(keys, bytes)` when equal,
/// else the first difference.
fn compare_raw(source: &Store, copy: &dyn RawRead) -> Result<(u64, u64), String> {
    let mut ours = RawRead::scan(source, b"");
    let mut theirs = copy.scan(b"");
    let (mut keys, mut bytes) = (0u64, 0u64);
    loop {
        match (ours.next(), theirs.next()) {
            (None, None) => return Ok((keys, bytes)),
            (Some(Err(e)), _) => return Err(format!("reading the source: {e}")),
            (_, Some(Err(e))) => return Err(format!("reading the copy: {e}")),
            (Some(Ok((key, _))), None) => {
                return Err(format!("key {} is missing from the copy", shown(&key)))
            }
            (None, Some(Ok((key, _)))) => {
                return Err(format!("key {} is not in the source", shown(&key)))
            }
            (Some(Ok((k1, v1))), Some(Ok((k2, v2)))) => {
                if k1 != k2 {
                    let first = k1.min(k2);
                    return Err(format!("key {} is in one store only", shown(&first)));
                }
                if v1 != v2 {
                    return Err(format!(
                        "key {}: {} bytes in the source, {} differing bytes in the copy",
                        shown(&k1),
                        v1.len(),
                        v2.len()
                    ));
                }
                keys += 1;
                bytes += (k1.len() + v1.len()) as u64;
            }
        }
    }
}

/// Every sync's record and history as each store decodes them.
fn compare_decoded(source: &Store, copy: &dyn StoreRead, ids: &[String]) -> Result<(), String> {
    for id in ids {
        let read = |store: &dyn StoreRead, what: &str| -> Result<String, String> {
            let text = if what == "record" {
                store.record(id).map(|r| record_text(r.as_ref()))
            } else {
                store.history(id).map(|h| serde_json::to_string(&h))
            };
            text.map_err(|e| format!("sync `{id}`: reading its {what}: {e}"))?
                .map_err(|e| format!("sync `{id}`: encoding its {what}: {e}"))
        };
        for what in ["record", "history"] {
            if read(source, what)? != read(copy, what)? {
                return Err(format!("sync `{id}`: its {what} reads differently"));
            }
        }
    }
    Ok(())
}

/// A record as JSON text, with its plan and segments (which its
/// `Serialize` leaves out).
fn record_text(record: Option<&adsync_engine::Record>) -> Result<String, serde_json::Error> {
    let parts = record.map(|r| {
        (
            r.plan.as_ref().map(|p| p.get()),
            r.segments
                .iter()
                .map(|(n, s)| (*n, s.get()))
                .collect::<Vec<_>>(),
        )
    });
    serde_json::to_string(&(record, parts))
}

/// A key for a message: text where it is text, escaped bytes elsewhere
/// (history and segment keys end in binary numbers).
fn shown(key: &[u8]) -> String {
    format!("`{}`", key.escape_ascii())
}

/// Runs `f` (which blocks on sled) on tokio's blocking pool.
async fn blocking<T: Send + 'static>(
    from: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| task_failed(from, &e))
}

fn task_failed(from: &str, e: &tokio::task::JoinError) -> StoreError {
    StoreError::Io {
        path: from.into(),
        message: format!("reading the source failed: {e}"),
        source: None,
    }
}

/// Rows of `adsync_kv` and `adsync_syncs`.
async fn counts(tx: &tokio_postgres::Transaction<'_>) -> Result<(u64, u64), tokio_postgres::Error> {
    let row = tx
        .query_one(
            "SELECT (SELECT count(*) FROM adsync_kv), (SELECT count(*) FROM adsync_syncs)",
            &[],
        )
        .await?;
    let count = |i: usize| u64::try_from(row.get::<_, i64>(i)).unwrap_or_default();
    Ok((count(0), count(1)))
}
