//! The store seam: what the runner, the machines and the worker need from a
//! checkpoint store, so that sled (the embedded default, [`Store`]) and a
//! shared database (crate `adsync-postgres`) can both serve them.
//!
//! Two traits, split by where they run:
//!
//! * [`CheckpointStore`] is async and object safe: durable commits, and
//!   [`read`](CheckpointStore::read), which runs a group of reads off the
//!   async worker threads (sled blocks on disk; a database connection is
//!   checked out once for the whole group instead of once per read).
//! * [`StoreRead`] is the reads themselves, synchronous, called inside
//!   `read`. sled answers them from its tree; another backend can answer them
//!   from any key/value source through [`LayoutReader`], which decodes the
//!   store's key layout (records, heads, plans, segments, history runs) the
//!   same way sled's store does, so both backends share one encoding.
//!
//! Handles are [`SharedStore`] (`Arc<dyn CheckpointStore>`); everything that
//! takes a store accepts anything [`IntoStore`], so `Runner::new(store, ..)`
//! works with a sled [`Store`] as before.

use std::sync::Arc;

use async_trait::async_trait;

use super::commit::{
    data_key, head_key, history_prefix, index_key, plan_key, record_key, segment_prefix,
};
use super::record::decode_record;
use super::WriterStats;
use super::{
    decode_history, raw_part, segment_part, Commit, HistoryEntry, Record, Store, StoreError,
};

/// A shared handle on a checkpoint store of any backend.
pub type SharedStore = Arc<dyn CheckpointStore>;

/// A group of reads handed to [`CheckpointStore::read_with`].
pub type Reads = Box<dyn for<'r> FnOnce(&'r dyn StoreRead) + Send + 'static>;

/// An iterator of a store's reads, boxed so [`StoreRead`] stays object safe.
pub type ReadIter<'a, T> = Box<dyn Iterator<Item = Result<T, StoreError>> + 'a>;

/// A checkpoint store: where syncs' records, history and data become durable.
///
/// Implemented by [`Store`] (sled and a write-ahead log, one process) and by
/// `adsync_postgres::PgStore` (a database many workers share). Every
/// implementation keeps the same contract:
///
/// * [`commit`](Self::commit) returns once the commit is durable, and all of
///   its writes become visible together or not at all; concurrent commits
///   may share one durable write (group commit).
/// * A read sees every commit acknowledged before it started.
/// * A commit carrying a fence ([`Commit::fenced`]) is refused with
///   [`StoreError::LeaseLost`] when the sync's lease has passed to another
///   owner, and writes nothing. A store without leases (sled: one process
///   owns the whole store) accepts it.
#[async_trait]
pub trait CheckpointStore: Send + Sync + 'static {
    /// Where the store is, for messages and `status`: a directory, or a URL
    /// with its password replaced. Never a secret.
    fn location(&self) -> String;

    /// Makes `commit` durable and visible.
    ///
    /// # Errors
    ///
    /// [`StoreError::LeaseLost`] for a fenced commit whose lease is gone;
    /// otherwise the backend's failure, naming the store (nothing of the
    /// commit is visible then).
    async fn commit(&self, commit: Commit) -> Result<(), StoreError>;

    /// Makes `commit` durable from a thread that may block (inside
    /// [`read`](trait.CheckpointStore.html#method.read-1), never on an async
    /// worker thread): for work that reads and writes in one pass, such as a
    /// pull building a snapshot generation chunk by chunk.
    ///
    /// The default blocks on [`commit`](CheckpointStore::commit) through the
    /// current tokio runtime's handle (allowed on its blocking pool).
    ///
    /// # Errors
    ///
    /// As [`CheckpointStore::commit`]; [`StoreError::Backend`] when called
    /// outside a tokio runtime.
    fn commit_blocking(&self, commit: Commit) -> Result<(), StoreError> {
        let handle = tokio::runtime::Handle::try_current().map_err(|e| StoreError::Backend {
            store: self.location(),
            message: format!("a blocking commit needs a tokio runtime: {e}"),
            source: Some(Arc::new(e)),
        })?;
        handle.block_on(self.commit(commit))
    }

    /// Runs `reads` with a [`StoreRead`] of this store, off the async worker
    /// threads. Prefer [`read`](trait.CheckpointStore.html#method.read-1),
    /// which returns a value.
    ///
    /// # Errors
    ///
    /// The store could not serve the reads at all (the task failed, no
    /// connection); errors of single reads are `reads`' own business.
    async fn read_with(&self, reads: Reads) -> Result<(), StoreError>;

    /// Commits acknowledged and durable writes performed since the store was
    /// opened by this process (their ratio is group commit's fold).
    fn writer_stats(&self) -> WriterStats;

    /// Writes everything queued, then refuses further commits (for every
    /// handle of this store). Tests use it to end a "process" without
    /// dropping every handle. The default does nothing.
    fn close(&self) {}

    /// The store's leases, when several workers share it (see
    /// [`Leases`](super::Leases)); `None` for a store one process owns
    /// (sled's).
    fn leases(&self) -> Option<&dyn super::Leases> {
        None
    }
}

impl std::fmt::Debug for dyn CheckpointStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointStore")
            .field("location", &self.location())
            .finish_non_exhaustive()
    }
}

impl dyn CheckpointStore {
    /// Runs a group of reads off the async worker threads and returns what
    /// `reads` returns.
    ///
    /// ```
    /// # tokio_test_block_on(async {
    /// use adsync_engine::{CheckpointStore, SharedStore, Store};
    /// let store: SharedStore = std::sync::Arc::new(Store::temporary().unwrap());
    /// let record = store.read(|s| s.record("nope")).await.unwrap().unwrap();
    /// assert!(record.is_none());
    /// # });
    /// # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
    /// #     tokio::runtime::Runtime::new().unwrap().block_on(f)
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`CheckpointStore::read_with`].
    pub async fn read<T: Send + 'static>(
        &self,
        reads: impl FnOnce(&dyn StoreRead) -> T + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.read_with(Box::new(move |store| {
            let _ = tx.send(reads(store));
        }))
        .await?;
        rx.await.map_err(|_| StoreError::Backend {
            store: self.location(),
            message: "a store read ended without an answer (it panicked)".into(),
            source: None,
        })
    }
}

/// The reads of a checkpoint store, called inside [`CheckpointStore::read`]
/// (they may block).
pub trait StoreRead {
    /// The latest record of sync `id`, its plan and segments filled in.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] or [`StoreError::UnsupportedFormat`] naming
    /// the sync; the backend's failure.
    fn record(&self, id: &str) -> Result<Option<Record>, StoreError>;

    /// Every sync's record in id order, read as the iterator advances; plans
    /// and segments only when `with_plans`. A record that does not decode is
    /// an `Err` in its place and the others are still listed.
    fn records(&self, with_plans: bool) -> ReadIter<'_, Record>;

    /// Every sync's record with its plan (see [`StoreRead::records`]).
    fn list(&self) -> Vec<Result<Record, StoreError>> {
        self.records(true).collect()
    }

    /// The transitions of sync `id`, oldest first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] naming the sync; the backend's failure.
    fn history(&self, id: &str) -> Result<Vec<HistoryEntry>, StoreError>;

    /// Index entry `key` (see [`Commit::index`]).
    ///
    /// # Errors
    ///
    /// The backend's failure.
    fn index(&self, key: &str) -> Result<Option<String>, StoreError>;

    /// Machine-owned data `key` (see [`Commit::data`]).
    ///
    /// # Errors
    ///
    /// The backend's failure.
    fn data(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Machine-owned data under `prefix` in key order, as `(key, value)`.
    /// Commits that land during a long scan may or may not be seen by it:
    /// machines that need a stable view write each version under new keys and
    /// switch to it with one index entry.
    fn scan_data(&self, prefix: &[u8]) -> ReadIter<'_, (Vec<u8>, Vec<u8>)>;
}

/// Raw access to the store's key space, for a backend that keeps the same
/// key layout as sled's [`Store`] (see its "Layout"). Wrap it in a
/// [`LayoutReader`] to get every [`StoreRead`].
///
/// sled's [`Store`] implements it too: `scan(b"")` is every key it holds,
/// byte for byte (what `adsync_postgres::PgStore::import` copies).
pub trait RawRead {
    /// The value of `key`.
    ///
    /// # Errors
    ///
    /// The backend's failure.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Every `(key, value)` whose key starts with `prefix`, in byte order.
    fn scan(&self, prefix: &[u8]) -> ReadIter<'_, (Vec<u8>, Vec<u8>)>;
}

/// [`StoreRead`] over any [`RawRead`]: decodes records, heads, plans,
/// segments and history exactly as sled's [`Store`] does.
pub struct LayoutReader<R>(pub R);

impl<R: RawRead> LayoutReader<R> {
    fn decode(&self, id: &str, bytes: &[u8], with_plans: bool) -> Result<Record, StoreError> {
        let record = decode_record(id, bytes, || self.0.get(&head_key(id)))?;
        if with_plans {
            self.with_plan(record)
        } else {
            Ok(record)
        }
    }

    fn with_plan(&self, mut record: Record) -> Result<Record, StoreError> {
        if let Some(bytes) = self.0.get(&plan_key(&record.id))? {
            record.plan = Some(raw_part(&record.id, "plan", &bytes)?);
        }
        let prefix = segment_prefix(&record.id);
        for item in self.0.scan(&prefix) {
            let (key, bytes) = item?;
            let segment = segment_part(&record.id, prefix.len(), &key, &bytes)?;
            record.segments.push(segment);
        }
        Ok(record)
    }
}

impl<R: RawRead> StoreRead for LayoutReader<R> {
    fn record(&self, id: &str) -> Result<Option<Record>, StoreError> {
        match self.0.get(&record_key(id))? {
            None => Ok(None),
            Some(bytes) => self.decode(id, &bytes, true).map(Some),
        }
    }

    fn records(&self, with_plans: bool) -> ReadIter<'_, Record> {
        Box::new(self.0.scan(b"r/").map(move |item| {
            let (key, bytes) = item?;
            let id = String::from_utf8_lossy(&key[2..]).into_owned();
            self.decode(&id, &bytes, with_plans)
        }))
    }

    fn history(&self, id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        decode_history(id, self.0.scan(&history_prefix(id)))
    }

    fn index(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .0
            .get(&index_key(key))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn data(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.get(&data_key(key))
    }

    fn scan_data(&self, prefix: &[u8]) -> ReadIter<'_, (Vec<u8>, Vec<u8>)> {
        Box::new(
            self.0
                .scan(&data_key(prefix))
                .map(|item| item.map(|(k, v)| (k[2..].to_vec(), v))),
        )
    }
}

/// Anything that can serve as a checkpoint store handle: a [`Store`], any
/// other [`CheckpointStore`], or a [`SharedStore`] already.
pub trait IntoStore {
    /// The shared handle.
    fn into_store(self) -> SharedStore;
}

impl<S: CheckpointStore> IntoStore for S {
    fn into_store(self) -> SharedStore {
        Arc::new(self)
    }
}

impl IntoStore for SharedStore {
    fn into_store(self) -> SharedStore {
        self
    }
}

#[async_trait]
impl CheckpointStore for Store {
    fn location(&self) -> String {
        self.path().display().to_string()
    }

    async fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        Store::commit(self, commit).await
    }

    fn commit_blocking(&self, commit: Commit) -> Result<(), StoreError> {
        Store::commit_blocking(self, commit)
    }

    async fn read_with(&self, reads: Reads) -> Result<(), StoreError> {
        self.blocking(move |store| {
            reads(store);
            Ok::<(), StoreError>(())
        })
        .await?
    }

    fn writer_stats(&self) -> WriterStats {
        Store::writer_stats(self)
    }

    fn close(&self) {
        Store::close(self);
    }
}

impl StoreRead for Store {
    fn record(&self, id: &str) -> Result<Option<Record>, StoreError> {
        Store::record(self, id)
    }

    fn records(&self, with_plans: bool) -> ReadIter<'_, Record> {
        Box::new(Store::records(self, with_plans))
    }

    fn list(&self) -> Vec<Result<Record, StoreError>> {
        Store::list(self)
    }

    fn history(&self, id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        Store::history(self, id)
    }

    fn index(&self, key: &str) -> Result<Option<String>, StoreError> {
        Store::index(self, key)
    }

    fn data(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Store::data(self, key)
    }

    fn scan_data(&self, prefix: &[u8]) -> ReadIter<'_, (Vec<u8>, Vec<u8>)> {
        Box::new(Store::scan_data(self, prefix))
    }
}

/// The store's keys as stored, for copying them elsewhere (the write-ahead
/// log was replayed when the store was opened, so nothing acknowledged is
/// missing). Blocks on sled: call it off async worker threads.
impl RawRead for Store {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.get_raw(key)
    }

    fn scan(&self, prefix: &[u8]) -> ReadIter<'_, (Vec<u8>, Vec<u8>)> {
        Box::new(self.scan_raw(prefix))
    }
}
