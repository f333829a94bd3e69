//! The checkpoint store: sled, written by one thread that group-commits.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex, RwLock, RwLockReadGuard};

mod applier;
mod commit;
mod error;
mod lease;
mod record;
mod recovery;
mod seam;
mod wal;
mod writer;

pub use commit::{Commit, Write};
pub use error::{Cause, StoreError};
pub use lease::{Claim, LeaseView, Leases};
pub use record::{HistoryEntry, Record, RECORD_FORMAT};
pub use seam::{
    CheckpointStore, IntoStore, LayoutReader, RawRead, ReadIter, Reads, SharedStore, StoreRead,
};

use applier::{applier_thread, Applying};
use commit::{
    data_key, head_key, history_prefix, index_key, plan_key, record_key, segment_prefix,
    split_history_key,
};
use error::io_error;
use record::{decode_record, is_history_run, StoredEntry};
pub use writer::WriterStats;
use writer::{writer_thread, Queue, Shared, Writer};

/// The checkpoint store: sled, written by one thread that group-commits.
///
/// ## Layout
/// One sled tree, `checkpoints`, with prefixed keys:
///
/// | key                     | value                                        |
/// |-------------------------|----------------------------------------------|
/// | `r/<sync id>`           | the sync's [`Record`] (JSON; from format 2 without the fields of its head) |
/// | `m/<sync id>`           | the head of a format-2 record: kind, start time, labels, written once |
/// | `p/<sync id>`           | the sync's plan, written once (see [`Record::plan`]) |
/// | `s/<sync id>\0<n BE>`   | segment `n` of the sync's progress (see [`Record::segments`]) |
/// | `h/<sync id>\0<seq BE>` | the [`HistoryEntry`] of transition `seq` (a JSON tuple, see `StoredEntry`), or a JSON array of consecutive entries from `seq` on |
/// | `i/<key>`               | small index values (e.g. latest sync of a campaign) |
/// | `x/<anything>`          | machine-owned data (staged pages, snapshots)  |
///
/// A [`Commit`] is a list of writes that become durable and visible together:
/// a record, its history entry and any data it carries land together or not at all.
///
/// ## Durability and group commit
/// [`Store::commit`] returns only once the commit is durable. Commits queue up;
/// one *leader* at a time takes everything queued, appends it as **one record
/// to the write-ahead log** (`adsync.wal` in the store's directory), makes that
/// durable with **one durable write** (`O_DIRECT | O_DSYNC`; a `pwrite` +
/// `fdatasync` where the filesystem refuses direct I/O, see `src/store/wal.rs`),
/// and answers all its committers. Many
/// concurrent syncs thus share one disk flush (group commit). The leader is the
/// store's writer thread, or the committing thread itself when the store is
/// idle: always for [`Store::commit_blocking`], and for [`Store::commit`] on a
/// multi-thread runtime while commits come one at a time (inside
/// `block_in_place`). Leading saves two thread hand-offs per commit. No async
/// worker thread ever blocks on disk.
///
/// Making a group *visible* in sled is the applier thread's job: it applies
/// durable groups, in log order, while leaders sync the next ones (sled
/// inserts cost as much CPU as the sync's wait, so doing both in one thread
/// made every sync wait for the inserts before it). It is woken once per 256 groups, or by a
/// reader, not per group: each wake-up cost the committer more than the
/// inserts themselves, and a batch writes less to sled (only the last write
/// to each key; each sync's consecutive history entries as one value).
/// Reads first wake it and wait until every group acknowledged so far is
/// applied, so a committer always reads its own writes, and a read never sees
/// part of a group.
///
/// sled itself is flushed (with the blocking `Db::flush`) when the log is full
/// and when the store closes, after the applier has caught up; opening a store
/// replays the log into sled first. Why a log beside sled (`src/store/wal.rs`):
/// sled 0.34 makes each batch durable on its own with `sync_file_range`, which
/// costs several raw `fdatasync`s per commit (docs/performance.md) and does
/// not flush the drive's cache.
///
/// sled's `flush_async` is never used: in sled 0.34.7 it deadlocks when several
/// tasks await it at once (sled issue #1308).
///
/// What "durable" means, honestly: an acknowledged commit survives a killed
/// process (SIGKILL, panic, OOM) — the crash tests prove it at every checkpoint
/// boundary. It survives a power cut when the device honours the FUA writes or
/// cache flushes that `O_DSYNC` and `fdatasync` issue (most do; some consumer drives and virtual disks
/// configured as "unsafe" cache do not). sled's own files are only guaranteed up
/// to its last flush, which is why the log is replayed on open.
///
/// ## Errors
/// A store already open in another process, a record with an unknown format
/// version, or a corrupt record each give an error naming the file or the sync;
/// listing skips nothing silently and other syncs keep working.
///
/// Opening refuses a store that would silently lose acknowledged commits, and
/// changes nothing in it: a damaged log record followed by intact ones
/// ([`StoreError::LogDamaged`], with its byte offset; only a torn *last*
/// record is dropped), a missing log or one of another store
/// ([`StoreError::LogMissing`], [`StoreError::LogMismatch`]: sled's data and
/// the log's header share a store id), damage sled itself detects
/// ([`StoreError::SledCorrupt`]). Commands that only read open with
/// [`Store::open_existing`], which never creates a store.
///
/// The sled-backed checkpoint store: a handle, cheap to clone, that every
/// part of a program shares. All clones are the same store; it closes
/// (writes everything queued, flushes sled) when the last one is dropped, or
/// at once with [`Store::close`].
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

/// What the handles of one store share.
struct Inner {
    path: PathBuf,
    db: sled::Db,
    tree: sled::Tree,
    threads: Mutex<Vec<JoinHandle<()>>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish_non_exhaustive()
    }
}

/// Log size; a group that does not fit makes the writer checkpoint sled instead.
///
/// Preallocated, so it counts in the store's size whatever the store holds;
/// but each time it fills, the writer waits for sled to be flushed, and with
/// many syncs committing at once a smaller log made those waits frequent
/// enough to cost group-commit throughput (docs/performance.md has the runs).
const WAL_CAPACITY: u64 = 8 << 20;

impl Store {
    /// Opens (or creates) the store in directory `path`, replaying its
    /// write-ahead log. Refuses a store whose log is damaged, missing or not
    /// its own (see "Errors" above). Blocks on disk: from async
    /// code use [`Store::open_from_async`]. When it returns, every commit
    /// acknowledged before a crash is readable.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = adsync_engine::Store::open(dir.path().join("adsync.db")).unwrap();
    /// assert!(store.list().is_empty());
    /// ```
    ///
    /// # Errors
    ///
    /// - [`StoreError::Locked`]: another process has it open (a lock held by
    ///   a store just dropped in this process is waited for briefly first).
    /// - [`StoreError::LogDamaged`], [`StoreError::LogMissing`],
    ///   [`StoreError::LogMismatch`]: its log cannot be replayed safely;
    ///   nothing was changed on disk.
    /// - [`StoreError::SledCorrupt`]: sled's own files are damaged.
    /// - [`StoreError::Io`]: the directory, the log or a store thread could
    ///   not be created or read.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        let db = recovery::open_sled(&path)?;
        Self::from_db(path, db, WAL_CAPACITY)
    }

    /// Opens the store in directory `path` only if there is one: for commands
    /// that read, so that a mistyped path is an error naming it
    /// ([`StoreError::NotFound`]), not a new empty store.
    ///
    /// # Errors
    ///
    /// [`StoreError::NotFound`] when `path` holds no sled store; otherwise as
    /// [`Store::open`].
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        let path = path.as_ref();
        // sled writes `conf` first when it creates a store, and `db` with it.
        if !(path.join("conf").is_file() || path.join("db").is_file()) {
            return Err(StoreError::NotFound {
                path: path.to_path_buf(),
            });
        }
        Self::open(path)
    }

    /// [`Store::open_existing`] from async code (see [`Store::open_from_async`]).
    ///
    /// # Errors
    ///
    /// As [`Store::open_existing`], and [`StoreError::Io`] if the blocking
    /// task fails.
    pub async fn open_existing_from_async(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_on_blocking_pool(path.as_ref(), Store::open_existing).await
    }

    /// [`Store::open`] from async code. Opening blocks (sled's open, the log's
    /// replay or preallocation), so it runs on tokio's blocking pool.
    ///
    /// # Errors
    ///
    /// As [`Store::open`], and [`StoreError::Io`] if the blocking task fails
    /// (it panicked, or the runtime is shutting down).
    pub async fn open_from_async(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_on_blocking_pool(path.as_ref(), Store::open).await
    }

    /// Runs `open` (which blocks on sled) on tokio's blocking pool.
    async fn open_on_blocking_pool(
        path: &Path,
        open: fn(PathBuf) -> Result<Self, StoreError>,
    ) -> Result<Self, StoreError> {
        let owned = path.to_path_buf();
        tokio::task::spawn_blocking(move || open(owned))
            .await
            .map_err(|e| StoreError::Io {
                path: path.to_path_buf(),
                message: format!("opening task failed: {e}"),
                source: Some(Arc::new(e)),
            })?
    }

    /// A store in a temporary directory that disappears when dropped (tests,
    /// examples). Its log is small, so it checkpoints sled more often than a
    /// store from [`Store::open`]; nothing survives the process.
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`] if sled, the log or a store thread cannot be set up.
    pub fn temporary() -> Result<Self, StoreError> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "adsync-temporary-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let db = sled::Config::new()
            .path(&path)
            .temporary(true)
            .open()
            .map_err(|e| error::open_error(&path, e))?;
        // Small: tests open hundreds of these, and a full log just checkpoints.
        Self::from_db(path, db, 256 * 1024)
    }

    fn from_db(path: PathBuf, db: sled::Db, wal_capacity: u64) -> Result<Self, StoreError> {
        let tree = db
            .open_tree("checkpoints")
            .map_err(|e| io_error(&path, e))?;
        let wal = recovery::recover(&path, &db, &tree, wal_capacity)?;
        let shared = Arc::new(Shared {
            durable: Mutex::new(HashMap::new()),
            stats: Mutex::new(WriterStats::default()),
            visibility: RwLock::new(()),
            queue: Mutex::new(Queue::default()),
            queued: Condvar::new(),
            last_group: std::sync::atomic::AtomicUsize::new(1),
            apply: Mutex::new(Applying::default()),
            to_apply: Condvar::new(),
            applied: Condvar::new(),
            tree: tree.clone(),
            path: path.clone(),
            writer: Mutex::new(Writer {
                db: db.clone(),
                wal,
                failed: None,
            }),
        });
        let spawn = |name: &str, run: fn(&Shared)| {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(name.into())
                .spawn(move || run(&shared))
                .map_err(|e| StoreError::Io {
                    path: path.clone(),
                    message: format!("cannot start thread {name}: {e}"),
                    source: Some(Arc::new(e)),
                })
        };
        // The writer closes the applier when it is done with it.
        let threads = vec![
            spawn("adsync-store-applier", applier_thread)?,
            spawn("adsync-store-writer", writer_thread)?,
        ];
        Ok(Store {
            inner: Arc::new(Inner {
                path,
                db,
                tree,
                threads: Mutex::new(threads),
                shared,
            }),
        })
    }

    /// The directory the store was opened at: sled's files and the log
    /// (`adsync.wal`); what store errors name.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` with this store on tokio's blocking pool: sled calls may block on
    /// I/O and must stay off the async worker threads. The outer error is the
    /// blocking task itself failing (it panicked or the runtime is shutting down).
    pub async fn blocking<T, E>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, E> + Send + 'static,
    ) -> Result<Result<T, E>, StoreError>
    where
        T: Send + 'static,
        E: Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Io {
                path: self.inner.path.clone(),
                message: format!("store task failed: {e}"),
                source: Some(Arc::new(e)),
            })
    }
    /// The latest record of sync `id` (plan and segments filled in), `None`
    /// if there is no such sync. Blocks until every acknowledged commit is
    /// visible: call it off async worker threads ([`Store::blocking`]).
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] or [`StoreError::UnsupportedFormat`] if the
    /// record does not decode; [`StoreError::Io`] if sled fails.
    pub fn record(&self, id: &str) -> Result<Option<Record>, StoreError> {
        let _visible = self.visible()?;
        match self
            .inner
            .tree
            .get(record_key(id))
            .map_err(|e| io_error(&self.inner.path, e))?
        {
            None => Ok(None),
            Some(bytes) => self.with_plan(self.decode_record(id, &bytes)?).map(Some),
        }
    }

    /// Fills in `record.plan` and `record.segments` from their keys (the
    /// caller holds the visibility lock).
    fn with_plan(&self, mut record: Record) -> Result<Record, StoreError> {
        let plan = self
            .inner
            .tree
            .get(plan_key(&record.id))
            .map_err(|e| io_error(&self.inner.path, e))?;
        let plan = plan
            .map(|bytes| raw_part(&record.id, "plan", &bytes))
            .transpose()?;
        let prefix = segment_prefix(&record.id);
        let mut segments = Vec::new();
        for item in self.inner.tree.scan_prefix(&prefix) {
            let (key, bytes) = item.map_err(|e| io_error(&self.inner.path, e))?;
            segments.push(segment_part(&record.id, prefix.len(), &key, &bytes)?);
        }
        record.plan = plan;
        record.segments = segments;
        Ok(record)
    }

    /// Every sync's record, in id order; a record that does not decode is an
    /// `Err` in its place, and the others are still listed.
    pub fn list(&self) -> Vec<Result<Record, StoreError>> {
        let _visible = match self.visible() {
            Ok(guard) => guard,
            Err(error) => return vec![Err(error)],
        };
        self.inner
            .tree
            .scan_prefix(b"r/")
            .map(|item| {
                let (key, bytes) = item.map_err(|e| io_error(&self.inner.path, e))?;
                let id = String::from_utf8_lossy(&key[2..]).into_owned();
                self.with_plan(self.decode_record(&id, &bytes)?)
            })
            .collect()
    }

    /// Every sync's record, in id order, read one at a time as the iterator
    /// advances (memory does not grow with the number of syncs, unlike
    /// [`Store::list`]); plans are read only when `with_plans`. A record that
    /// does not decode is an `Err` in its place. Commits are not made visible
    /// while the iterator is alive, so that it sees whole groups: drop it
    /// promptly, and make no other read of this store from the same thread
    /// until then (a read waits for the commits to become visible).
    pub fn records(
        &self,
        with_plans: bool,
    ) -> impl Iterator<Item = Result<Record, StoreError>> + '_ {
        let (visible, failed) = match self.visible() {
            Ok(guard) => (Some(guard), None),
            Err(error) => (None, Some(Err(error))),
        };
        let scan = visible.map(|guard| {
            self.inner.tree.scan_prefix(b"r/").map(move |item| {
                let _visible = &guard;
                let (key, bytes) = item.map_err(|e| io_error(&self.inner.path, e))?;
                let id = String::from_utf8_lossy(&key[2..]).into_owned();
                let record = self.decode_record(&id, &bytes)?;
                if with_plans {
                    self.with_plan(record)
                } else {
                    Ok(record)
                }
            })
        });
        failed.into_iter().chain(scan.into_iter().flatten())
    }

    /// sled's tree, for tests that look at or damage what is stored.
    #[cfg(any(test, feature = "testing"))]
    pub fn raw_tree(&self) -> Result<&sled::Tree, StoreError> {
        drop(self.visible()?);
        Ok(&self.inner.tree)
    }

    /// Decodes record `bytes` of sync `id`, with its head for format 2 (the
    /// caller holds the visibility lock).
    fn decode_record(&self, id: &str, bytes: &[u8]) -> Result<Record, StoreError> {
        decode_record(id, bytes, || {
            self.inner
                .tree
                .get(head_key(id))
                .map_err(|e| io_error(&self.inner.path, e))
        })
    }

    /// The transitions of sync `id`, oldest first.
    pub fn history(&self, id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let _visible = self.visible()?;
        decode_history(
            id,
            self.inner.tree.scan_prefix(history_prefix(id)).map(|item| {
                item.map(|(k, v)| (k.to_vec(), v.to_vec()))
                    .map_err(|e| io_error(&self.inner.path, e))
            }),
        )
    }

    /// Reads index entry `key`.
    pub fn index(&self, key: &str) -> Result<Option<String>, StoreError> {
        let _visible = self.visible()?;
        Ok(self
            .inner
            .tree
            .get(index_key(key))
            .map_err(|e| io_error(&self.inner.path, e))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Reads machine-owned data `x/<key>`.
    pub fn data(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let _visible = self.visible()?;
        Ok(self
            .inner
            .tree
            .get(data_key(key))
            .map_err(|e| io_error(&self.inner.path, e))?
            .map(|v| v.to_vec()))
    }

    /// Waits for every acknowledged commit to be in sled, then holds off the
    /// applier so the read sees whole groups.
    fn visible(&self) -> Result<RwLockReadGuard<'_, ()>, StoreError> {
        self.inner.shared.wait_applied()?;
        Ok(self.inner.shared.visibility.read())
    }

    /// Iterates machine-owned data under `x/<prefix>`, as `(key without "x/", value)`.
    ///
    /// Unlike the point reads, a long scan does not hold off the writer, so it
    /// may see commits that land while it runs: machines that need a stable view
    /// write each version under new keys and switch to it with one index entry.
    pub fn scan_data(
        &self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + '_ {
        let waited = self.inner.shared.wait_applied();
        let failed = waited.err().map(Err).into_iter();
        failed.chain(
            self.inner
                .tree
                .scan_prefix(data_key(prefix))
                .map(move |item| {
                    item.map(|(k, v)| (k[2..].to_vec(), v.to_vec()))
                        .map_err(|e| io_error(&self.inner.path, e))
                }),
        )
    }

    /// Every key under `prefix` as stored (see "Layout"), with its value:
    /// the raw reads of [`RawRead`], for copying the store to another backend
    /// that keeps the same layout. Like [`Store::scan_data`], it first waits
    /// for every acknowledged commit to be in sled, then does not hold off
    /// the writer.
    fn scan_raw(
        &self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + '_ {
        let waited = self.inner.shared.wait_applied();
        let failed = waited.err().map(Err).into_iter();
        failed.chain(self.inner.tree.scan_prefix(prefix).map(move |item| {
            item.map(|(k, v)| (k.to_vec(), v.to_vec()))
                .map_err(|e| io_error(&self.inner.path, e))
        }))
    }

    /// The value of `key` as stored (see "Layout"): [`RawRead::get`].
    fn get_raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let _visible = self.visible()?;
        Ok(self
            .inner
            .tree
            .get(key)
            .map_err(|e| io_error(&self.inner.path, e))?
            .map(|v| v.to_vec()))
    }

    /// The highest seq of sync `id` whose commit has been flushed, as seen by
    /// the writer thread (used by the write-ahead tests).
    #[cfg(any(test, feature = "testing"))]
    pub fn durable_seq(&self, id: &str) -> Option<u64> {
        self.inner.shared.durable.lock().get(id).copied()
    }

    /// Commits acknowledged and durable writes (flushes) performed by this
    /// store's writer since it was opened: their ratio is how many commits
    /// group commit folds into one durable write (a metric a service exports).
    pub fn writer_stats(&self) -> WriterStats {
        *self.inner.shared.stats.lock()
    }

    /// Stops the writer after it has committed everything queued, and
    /// flushes: for every handle of this store, whose commits then fail with
    /// [`StoreError::WriterStopped`]. Dropping the last handle does the same.
    pub fn close(&self) {
        self.inner.close();
    }
}

impl Inner {
    fn close(&self) {
        self.shared.queue().closed = true;
        self.shared.queued.notify_all();
        let threads = std::mem::take(&mut *self.threads.lock());
        for handle in threads.into_iter().rev() {
            let _ = handle.join();
        }
        let _ = self.db.flush();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.close();
    }
}
/// Segment `(n, JSON)` of sync `id` from its key (`prefix_len` bytes of
/// segment prefix, then `n` big-endian) and value.
pub(crate) fn segment_part(
    id: &str,
    prefix_len: usize,
    key: &[u8],
    bytes: &[u8],
) -> Result<(u32, Arc<serde_json::value::RawValue>), StoreError> {
    let n = <[u8; 4]>::try_from(&key[prefix_len..])
        .map(u32::from_be_bytes)
        .map_err(|_| StoreError::Corrupt {
            sync: id.to_string(),
            detail: format!("a segment key of {} bytes", key.len()),
        })?;
    Ok((n, raw_part(id, &format!("segment {n}"), bytes)?))
}

/// A plan or segment of sync `id` as stored: JSON kept raw.
pub(crate) fn raw_part(
    id: &str,
    what: &str,
    bytes: &[u8],
) -> Result<Arc<serde_json::value::RawValue>, StoreError> {
    let corrupt = |detail: String| StoreError::Corrupt {
        sync: id.to_string(),
        detail: format!("{what}: {detail}"),
    };
    let text = String::from_utf8(bytes.to_vec()).map_err(|e| corrupt(e.to_string()))?;
    serde_json::value::RawValue::from_string(text)
        .map(Arc::from)
        .map_err(|e| corrupt(e.to_string()))
}

/// Decodes the history values of sync `id` (its `h/` keys in order): single
/// entries or runs of consecutive entries, each entry an object (earlier
/// versions) or a tuple (see `StoredEntry`).
pub(crate) fn decode_history(
    id: &str,
    items: impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>>,
) -> Result<Vec<HistoryEntry>, StoreError> {
    let mut entries: Vec<HistoryEntry> = Vec::new();
    for item in items {
        let (key, bytes) = item?;
        let corrupt = |detail: String| StoreError::Corrupt {
            sync: id.to_string(),
            detail: format!("history entry: {detail}"),
        };
        let first_seq = split_history_key(&key)
            .map(|(_, seq)| seq)
            .ok_or_else(|| corrupt("its key has no sequence number".into()))?;
        let json = |e: serde_json::Error| corrupt(e.to_string());
        let run = if is_history_run(&bytes) {
            serde_json::from_slice::<Vec<StoredEntry>>(&bytes).map_err(json)?
        } else {
            vec![serde_json::from_slice::<StoredEntry>(&bytes).map_err(json)?]
        };
        let mut before: Option<HistoryEntry> = None;
        for (offset, stored) in (0..).zip(run) {
            let entry = stored
                .into_entry(first_seq + offset, before.as_ref())
                .map_err(corrupt)?;
            before = Some(entry.clone());
            // A replay after a crash may store a run that overlaps one
            // sled already had: each seq counts once.
            if entries.last().is_none_or(|last| entry.seq > last.seq) {
                entries.push(entry);
            }
        }
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn open_small(path: &Path) -> Store {
        let db = sled::Config::new().path(path).open().unwrap();
        Store::from_db(path.to_path_buf(), db, 64 * 1024).unwrap()
    }

    #[test]
    fn groups_that_overflow_the_log_checkpoint_and_everything_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store");
        let store = open_small(&path);
        // Fills the log past its end several times, then one commit larger
        // than the whole log (applied as one sled batch).
        for i in 0..40u32 {
            let commit = Commit::new().data(format!("k{i:02}").as_bytes(), vec![i as u8; 5000]);
            store.commit_blocking(commit).unwrap();
        }
        let big = Commit::new()
            .data(b"big-a", vec![1; 80 * 1024])
            .data(b"big-b", vec![2; 80 * 1024])
            .delete_data(b"k00");
        store.commit_blocking(big).unwrap();
        assert_eq!(store.writer_stats().commits, 41);
        store.close();
        drop(store);

        let store = open_small(&path);
        assert_eq!(store.data(b"k00").unwrap(), None);
        assert_eq!(store.data(b"k39").unwrap(), Some(vec![39; 5000]));
        assert_eq!(
            store.data(b"big-b").unwrap().map(|v| v.len()),
            Some(80 * 1024)
        );
        assert_eq!(store.scan_data(b"k").count(), 39);
    }

    pub(super) fn entry(seq: u64) -> HistoryEntry {
        HistoryEntry {
            seq,
            at: time::OffsetDateTime::UNIX_EPOCH,
            from: String::new(),
            effect: None,
            outcome: "tested".into(),
            to: String::new(),
        }
    }

    /// Commit `k` of writer `id`: two history entries and its counter `k`.
    fn two_entries(id: &str, k: u64) -> Commit {
        Commit::new()
            .history(id, &entry(2 * k))
            .unwrap()
            .history(id, &entry(2 * k + 1))
            .unwrap()
            .data(id.as_bytes(), k.to_be_bytes().to_vec())
    }

    fn assert_reads_own_write(store: &Store, id: &str, k: u64) {
        let read = store.data(id.as_bytes()).unwrap();
        assert_eq!(
            read,
            Some(k.to_be_bytes().to_vec()),
            "{id} reads its own write"
        );
    }

    /// The applier makes groups visible after they are acknowledged, in
    /// another thread. Committers must still read their own writes at once,
    /// and readers must never see part of a commit.
    #[test]
    fn acknowledged_commits_are_read_back_at_once_and_never_half_visible() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_small(&dir.path().join("db"));
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (store, done) = (store.clone(), done.clone());
            std::thread::spawn(move || {
                let mut reads = 0u64;
                while !done.load(std::sync::atomic::Ordering::Relaxed) {
                    for w in 0..4 {
                        // Each commit adds two entries: an odd count is half a commit.
                        let n = store.history(&format!("w{w}")).unwrap().len();
                        assert_eq!(n % 2, 0, "half a commit visible in w{w}");
                        reads += 1;
                    }
                }
                reads
            })
        };
        let blocking: Vec<_> = (0..2)
            .map(|w| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let id = format!("w{w}");
                    for k in 0..150u64 {
                        store.commit_blocking(two_entries(&id, k)).unwrap();
                        assert_reads_own_write(&store, &id, k);
                    }
                })
            })
            .collect();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        runtime.block_on(async {
            let tasks: Vec<_> = (2..4)
                .map(|w| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        let id = format!("w{w}");
                        for k in 0..150u64 {
                            store.commit(two_entries(&id, k)).await.unwrap();
                            assert_reads_own_write(&store, &id, k);
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
        });
        for thread in blocking {
            thread.join().unwrap();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(reader.join().unwrap() > 0);
        for w in 0..4 {
            assert_eq!(store.history(&format!("w{w}")).unwrap().len(), 300);
        }
        assert_eq!(store.writer_stats().commits, 600);

        // Everything is in sled after a reopen (the close checkpoints).
        let path = store.path().to_path_buf();
        drop(store);
        let store = open_small(&path);
        for w in 0..4 {
            assert_eq!(store.history(&format!("w{w}")).unwrap().len(), 300);
        }
    }

    /// One async committer at a time on a multi-thread runtime leads its own
    /// groups (inside `block_in_place`); on a current-thread runtime the
    /// writer thread does. Both must read their own writes and survive a reopen.
    #[test]
    fn an_async_committer_alone_commits_on_either_runtime_flavor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = open_small(&path);
        let multi = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let single = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for (flavor, runtime) in [("multi", &multi), ("current", &single)] {
            let store = store.clone();
            runtime.block_on(async move {
                let task = tokio::spawn(async move {
                    for k in 0..40u64 {
                        let key = format!("{flavor}-{k}");
                        store
                            .commit(Commit::new().data(key.as_bytes(), k.to_be_bytes().to_vec()))
                            .await
                            .unwrap();
                        assert_eq!(
                            store.data(key.as_bytes()).unwrap(),
                            Some(k.to_be_bytes().to_vec())
                        );
                    }
                });
                task.await.unwrap();
            });
        }
        assert_eq!(store.writer_stats().commits, 80);
        drop(store);
        let store = open_small(&path);
        assert_eq!(store.scan_data(b"multi-").count(), 40);
        assert_eq!(store.scan_data(b"current-").count(), 40);
    }
}
