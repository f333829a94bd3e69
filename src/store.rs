//! The checkpoint store: sled, written by one thread that group-commits.
//!
//! ## Layout
//! One sled tree, `checkpoints`, with prefixed keys:
//!
//! | key                     | value                                        |
//! |-------------------------|----------------------------------------------|
//! | `r/<sync id>`           | the sync's [`Record`] (JSON)                  |
//! | `h/<sync id>\0<seq BE>` | one [`HistoryEntry`] per transition (JSON)    |
//! | `i/<key>`               | small index values (e.g. latest sync of a campaign) |
//! | `x/<anything>`          | machine-owned data (staged pages, snapshots)  |
//!
//! A [`Commit`] is a list of writes applied as **one sled batch** (atomic), so a
//! record, its history entry and any data it carries land together or not at all.
//!
//! ## Durability and group commit
//! [`Store::commit`] returns only after the batch is applied **and** `Db::flush`
//! returned. Flushing happens on a dedicated writer thread: it drains every
//! commit that queued up while the previous flush ran, applies them as one batch
//! and flushes once, then wakes all their waiters. Many concurrent syncs thus
//! share one flush (group commit), and no async worker thread ever blocks on disk.
//!
//! sled's `flush_async` is never used: in sled 0.34.7 it deadlocks when several
//! tasks await it at once (sled issue #1308).
//!
//! What "durable" means here, honestly: sled 0.34's flush writes its log and
//! syncs it with `sync_file_range`/`fsync` as the platform allows; a killed
//! process (SIGKILL, panic, OOM) loses nothing that a commit acknowledged. Against
//! power loss, `sync_file_range` is weaker than `fdatasync` (it does not flush
//! file metadata or the drive cache), so a power cut may lose the last commits.
//!
//! ## Errors
//! A store already open in another process, a record with an unknown format
//! version, or a corrupt record each give an error naming the file or the sync;
//! listing skips nothing silently and other syncs keep working.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::machine::Status;

/// Layout version of [`Record`]; bumped on incompatible changes.
pub const RECORD_FORMAT: u32 = 1;

/// The latest checkpoint of one sync.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Layout version of this record ([`RECORD_FORMAT`]).
    pub format: u32,
    /// The sync's id.
    pub id: String,
    /// The machine kind (`push`, `pull`).
    pub kind: String,
    /// The machine's state layout version.
    pub state_version: u32,
    /// Transitions applied so far (0 = just started).
    pub seq: u64,
    /// The phase of `state`.
    pub phase: String,
    /// Running / succeeded / failed / needs attention.
    pub status: Status,
    /// Effects run so far, in this sync.
    pub effects_run: u64,
    /// Effects that failed so far, in this sync (each retry counts).
    pub failed_effects: u64,
    /// The error worth showing, if any.
    pub last_error: Option<String>,
    /// When the sync started.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    /// When this checkpoint was written.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
    /// Free-form labels (platform, account, campaign, …) for listing.
    pub labels: BTreeMap<String, String>,
    /// The machine state.
    pub state: serde_json::Value,
}

/// One applied transition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Sequence number of the state this transition produced.
    pub seq: u64,
    /// When it was applied.
    #[serde(with = "time::serde::rfc3339")]
    pub at: Timestamp,
    /// Phase before.
    pub from: String,
    /// The effect that ran (none when the runner applied an outcome without
    /// running the effect, e.g. after a restart).
    pub effect: Option<String>,
    /// What came of it.
    pub outcome: String,
    /// Phase after.
    pub to: String,
}

/// Errors of the store. Each names the file or the sync concerned.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Another process has the store open.
    #[error("the store {path} is in use by another process (sled holds an exclusive lock on it)")]
    Locked {
        /// The store's directory.
        path: PathBuf,
    },
    /// sled failed.
    #[error("store {path}: {message}")]
    Io {
        /// The store's directory.
        path: PathBuf,
        /// sled's error.
        message: String,
    },
    /// A record does not decode.
    #[error("sync `{sync}` has a corrupt checkpoint: {detail}")]
    Corrupt {
        /// The sync (or key) concerned.
        sync: String,
        /// What failed.
        detail: String,
    },
    /// A record was written by another version of adsync.
    #[error("sync `{sync}` has checkpoint format {found}; this adsync reads format {supported}")]
    UnsupportedFormat {
        /// The sync concerned.
        sync: String,
        /// The version found.
        found: u64,
        /// The version understood.
        supported: u64,
    },
    /// The writer thread is gone (the store is shutting down).
    #[error("the store's writer has stopped")]
    WriterStopped,
}

/// One write in a [`Commit`].
#[derive(Debug, Clone)]
pub enum Write {
    /// Set `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Remove `key`.
    Delete(Vec<u8>),
}

/// Writes applied atomically and durably together.
#[derive(Debug, Clone, Default)]
pub struct Commit {
    writes: Vec<Write>,
    marks: Vec<(String, u64)>,
}

impl Commit {
    /// An empty commit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `record` (and remembers that its seq is durable once committed).
    pub fn record(mut self, record: &Record) -> Result<Self, StoreError> {
        let bytes = serde_json::to_vec(record).map_err(|e| StoreError::Corrupt {
            sync: record.id.clone(),
            detail: format!("cannot encode record: {e}"),
        })?;
        self.writes.push(Write::Put(record_key(&record.id), bytes));
        self.marks.push((record.id.clone(), record.seq));
        Ok(self)
    }

    /// Appends a history entry of sync `id`.
    pub fn history(mut self, id: &str, entry: &HistoryEntry) -> Result<Self, StoreError> {
        let bytes = serde_json::to_vec(entry).map_err(|e| StoreError::Corrupt {
            sync: id.to_string(),
            detail: format!("cannot encode history: {e}"),
        })?;
        self.writes
            .push(Write::Put(history_key(id, entry.seq), bytes));
        Ok(self)
    }

    /// Sets index entry `key` to `value`.
    pub fn index(mut self, key: &str, value: &str) -> Self {
        self.writes
            .push(Write::Put(index_key(key), value.as_bytes().to_vec()));
        self
    }

    /// Puts machine-owned data under `x/<key>`.
    pub fn data(mut self, key: &[u8], value: Vec<u8>) -> Self {
        self.writes.push(Write::Put(data_key(key), value));
        self
    }

    /// Removes machine-owned data `x/<key>`.
    pub fn delete_data(mut self, key: &[u8]) -> Self {
        self.writes.push(Write::Delete(data_key(key)));
        self
    }

    /// Number of writes in the commit.
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// Whether the commit writes nothing.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }
}

fn record_key(id: &str) -> Vec<u8> {
    [b"r/".as_slice(), id.as_bytes()].concat()
}

fn history_prefix(id: &str) -> Vec<u8> {
    [b"h/".as_slice(), id.as_bytes(), b"\0"].concat()
}

fn history_key(id: &str, seq: u64) -> Vec<u8> {
    [history_prefix(id).as_slice(), &seq.to_be_bytes()].concat()
}

fn index_key(key: &str) -> Vec<u8> {
    [b"i/".as_slice(), key.as_bytes()].concat()
}

fn data_key(key: &[u8]) -> Vec<u8> {
    [b"x/".as_slice(), key].concat()
}

type Reply = tokio::sync::oneshot::Sender<Result<(), StoreError>>;

struct Job {
    commit: Commit,
    reply: Reply,
}

/// Counters of the writer thread, for benchmarks and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WriterStats {
    /// Commits acknowledged.
    pub commits: u64,
    /// Flushes performed (one per group).
    pub flushes: u64,
}

struct Shared {
    durable: Mutex<HashMap<String, u64>>,
    stats: Mutex<WriterStats>,
}

/// The sled-backed checkpoint store. Cheap to share behind an `Arc`.
pub struct Store {
    path: PathBuf,
    db: sled::Db,
    tree: sled::Tree,
    sender: Mutex<Option<mpsc::Sender<Job>>>,
    writer: Mutex<Option<JoinHandle<()>>>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Most commits the writer folds into one batch and flush.
const MAX_GROUP: usize = 4096;

impl Store {
    /// Opens (or creates) the store in directory `path`.
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = adsync::store::Store::open(dir.path().join("adsync.db")).unwrap();
    /// assert!(store.list().is_empty());
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Arc<Self>, StoreError> {
        let path = path.as_ref().to_path_buf();
        let db = sled::Config::new()
            .path(&path)
            .open()
            .map_err(|e| open_error(&path, e))?;
        Self::from_db(path, db)
    }

    /// A store in a temporary directory that disappears when dropped (tests).
    pub fn temporary() -> Result<Arc<Self>, StoreError> {
        let path = PathBuf::from("<temporary>");
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(|e| open_error(&path, e))?;
        Self::from_db(path, db)
    }

    fn from_db(path: PathBuf, db: sled::Db) -> Result<Arc<Self>, StoreError> {
        let tree = db
            .open_tree("checkpoints")
            .map_err(|e| io_error(&path, e))?;
        let shared = Arc::new(Shared {
            durable: Mutex::new(HashMap::new()),
            stats: Mutex::new(WriterStats::default()),
        });
        let (sender, receiver) = mpsc::channel::<Job>();
        let writer = {
            let (db, tree, shared, writer_path) =
                (db.clone(), tree.clone(), shared.clone(), path.clone());
            std::thread::Builder::new()
                .name("adsync-store-writer".into())
                .spawn(move || writer_loop(&writer_path, &db, &tree, &shared, &receiver))
                .map_err(|e| StoreError::Io {
                    path: path.clone(),
                    message: format!("cannot start writer thread: {e}"),
                })?
        };
        Ok(Arc::new(Store {
            path,
            db,
            tree,
            sender: Mutex::new(Some(sender)),
            writer: Mutex::new(Some(writer)),
            shared,
        }))
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn enqueue(
        &self,
        commit: Commit,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<(), StoreError>>, StoreError> {
        let (reply, receiver) = tokio::sync::oneshot::channel();
        let guard = self.sender.lock().unwrap_or_else(|p| p.into_inner());
        let sender = guard.as_ref().ok_or(StoreError::WriterStopped)?;
        sender
            .send(Job { commit, reply })
            .map_err(|_| StoreError::WriterStopped)?;
        Ok(receiver)
    }

    /// Applies `commit` atomically and returns once it is flushed to disk.
    /// Never blocks the calling async worker: the writer thread does the I/O.
    pub async fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        self.enqueue(commit)?
            .await
            .map_err(|_| StoreError::WriterStopped)?
    }

    /// [`Store::commit`] for blocking code (not inside an async task).
    pub fn commit_blocking(&self, commit: Commit) -> Result<(), StoreError> {
        self.enqueue(commit)?
            .blocking_recv()
            .map_err(|_| StoreError::WriterStopped)?
    }

    /// The latest record of sync `id`, if it exists.
    pub fn record(&self, id: &str) -> Result<Option<Record>, StoreError> {
        match self
            .tree
            .get(record_key(id))
            .map_err(|e| io_error(&self.path, e))?
        {
            None => Ok(None),
            Some(bytes) => decode_record(id, &bytes).map(Some),
        }
    }

    /// Every sync's record, in id order; a record that does not decode is an
    /// `Err` in its place, and the others are still listed.
    pub fn list(&self) -> Vec<Result<Record, StoreError>> {
        self.tree
            .scan_prefix(b"r/")
            .map(|item| {
                let (key, bytes) = item.map_err(|e| io_error(&self.path, e))?;
                let id = String::from_utf8_lossy(&key[2..]).into_owned();
                decode_record(&id, &bytes)
            })
            .collect()
    }

    /// The transitions of sync `id`, oldest first.
    pub fn history(&self, id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        self.tree
            .scan_prefix(history_prefix(id))
            .map(|item| {
                let (_, bytes) = item.map_err(|e| io_error(&self.path, e))?;
                serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                    sync: id.to_string(),
                    detail: format!("history entry: {e}"),
                })
            })
            .collect()
    }

    /// Reads index entry `key`.
    pub fn index(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .tree
            .get(index_key(key))
            .map_err(|e| io_error(&self.path, e))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Reads machine-owned data `x/<key>`.
    pub fn data(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree
            .get(data_key(key))
            .map_err(|e| io_error(&self.path, e))?
            .map(|v| v.to_vec()))
    }

    /// Iterates machine-owned data under `x/<prefix>`, as `(key without "x/", value)`.
    pub fn scan_data(
        &self,
        prefix: &[u8],
    ) -> impl Iterator<Item = Result<(Vec<u8>, Vec<u8>), StoreError>> + '_ {
        self.tree.scan_prefix(data_key(prefix)).map(move |item| {
            item.map(|(k, v)| (k[2..].to_vec(), v.to_vec()))
                .map_err(|e| io_error(&self.path, e))
        })
    }

    /// The highest seq of sync `id` whose commit has been flushed, as seen by
    /// the writer thread (used by the write-ahead tests).
    pub fn durable_seq(&self, id: &str) -> Option<u64> {
        self.shared
            .durable
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .copied()
    }

    /// Commits and flushes counted by the writer so far.
    pub fn writer_stats(&self) -> WriterStats {
        *self.shared.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Stops the writer after it has committed everything queued, and flushes.
    pub fn close(&self) {
        drop(self.sender.lock().unwrap_or_else(|p| p.into_inner()).take());
        if let Some(handle) = self.writer.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = handle.join();
        }
        let _ = self.db.flush();
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}

fn writer_loop(
    path: &Path,
    db: &sled::Db,
    tree: &sled::Tree,
    shared: &Shared,
    receiver: &mpsc::Receiver<Job>,
) {
    // Blocks until the first job of a group arrives; everything that queued up
    // meanwhile joins the same batch and the same flush.
    while let Ok(first) = receiver.recv() {
        let mut jobs = vec![first];
        while jobs.len() < MAX_GROUP {
            match receiver.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let mut batch = sled::Batch::default();
        for job in &jobs {
            for write in &job.commit.writes {
                match write {
                    Write::Put(k, v) => batch.insert(k.as_slice(), v.as_slice()),
                    Write::Delete(k) => batch.remove(k.as_slice()),
                }
            }
        }
        let result = tree
            .apply_batch(batch)
            .and_then(|()| db.flush().map(|_| ()))
            .map_err(|e| io_error(path, e));
        if result.is_ok() {
            let mut durable = shared.durable.lock().unwrap_or_else(|p| p.into_inner());
            for job in &jobs {
                for (id, seq) in &job.commit.marks {
                    durable.insert(id.clone(), *seq);
                }
            }
            let mut stats = shared.stats.lock().unwrap_or_else(|p| p.into_inner());
            stats.commits += jobs.len() as u64;
            stats.flushes += 1;
        }
        for job in jobs {
            let _ = job.reply.send(result.clone());
        }
    }
}

fn decode_record(id: &str, bytes: &[u8]) -> Result<Record, StoreError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt {
            sync: id.to_string(),
            detail: format!("not JSON: {e}"),
        })?;
    let format = value.get("format").and_then(|f| f.as_u64());
    match format {
        Some(f) if f == u64::from(RECORD_FORMAT) => {}
        Some(found) => {
            return Err(StoreError::UnsupportedFormat {
                sync: id.to_string(),
                found,
                supported: u64::from(RECORD_FORMAT),
            })
        }
        None => {
            return Err(StoreError::Corrupt {
                sync: id.to_string(),
                detail: "no format field".into(),
            })
        }
    }
    serde_json::from_value(value).map_err(|e| StoreError::Corrupt {
        sync: id.to_string(),
        detail: e.to_string(),
    })
}

fn open_error(path: &Path, e: sled::Error) -> StoreError {
    let message = e.to_string();
    // sled reports a held `flock` as an I/O error mentioning the lock.
    if message.contains("lock")
        || message.contains("WouldBlock")
        || message.contains("Resource temporarily unavailable")
    {
        StoreError::Locked {
            path: path.to_path_buf(),
        }
    } else {
        StoreError::Io {
            path: path.to_path_buf(),
            message,
        }
    }
}

fn io_error(path: &Path, e: sled::Error) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}
