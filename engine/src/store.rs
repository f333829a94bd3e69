//! The checkpoint store: sled, written by one thread that group-commits.
//!
//! ## Layout
//! One sled tree, `checkpoints`, with prefixed keys:
//!
//! | key                     | value                                        |
//! |-------------------------|----------------------------------------------|
//! | `r/<sync id>`           | the sync's [`Record`] (JSON; from format 2 without the fields of its head) |
//! | `m/<sync id>`           | the head of a format-2 record: kind, start time, labels, written once |
//! | `p/<sync id>`           | the sync's plan, written once (see [`Record::plan`]) |
//! | `s/<sync id>\0<n BE>`   | segment `n` of the sync's progress (see [`Record::segments`]) |
//! | `h/<sync id>\0<seq BE>` | the [`HistoryEntry`] of transition `seq` (a JSON tuple, see `StoredEntry`), or a JSON array of consecutive entries from `seq` on |
//! | `i/<key>`               | small index values (e.g. latest sync of a campaign) |
//! | `x/<anything>`          | machine-owned data (staged pages, snapshots)  |
//!
//! A [`Commit`] is a list of writes that become durable and visible together:
//! a record, its history entry and any data it carries land together or not at all.
//!
//! ## Durability and group commit
//! [`Store::commit`] returns only once the commit is durable. Commits queue up;
//! one *leader* at a time takes everything queued, appends it as **one record
//! to the write-ahead log** (`adsync.wal` in the store's directory), makes that
//! durable with **one durable write** (`O_DIRECT | O_DSYNC`; a `pwrite` +
//! `fdatasync` where the filesystem refuses direct I/O, see `src/store/wal.rs`),
//! and answers all its committers. Many
//! concurrent syncs thus share one disk flush (group commit). The leader is the
//! store's writer thread, or the committing thread itself when the store is
//! idle: always for [`Store::commit_blocking`], and for [`Store::commit`] on a
//! multi-thread runtime while commits come one at a time (inside
//! `block_in_place`). Leading saves two thread hand-offs per commit. No async
//! worker thread ever blocks on disk.
//!
//! Making a group *visible* in sled is the applier thread's job: it applies
//! durable groups, in log order, while leaders sync the next ones (sled
//! inserts cost as much CPU as the sync's wait, so doing both in one thread
//! halved group-commit throughput). It is woken once per 256 groups, or by a
//! reader, not per group: each wake-up cost the committer more than the
//! inserts themselves, and a batch writes less to sled (only the last write
//! to each key; each sync's consecutive history entries as one value).
//! Reads first wake it and wait until every group acknowledged so far is
//! applied, so a committer always reads its own writes, and a read never sees
//! part of a group.
//!
//! sled itself is flushed (with the blocking `Db::flush`) when the log is full
//! and when the store closes, after the applier has caught up; opening a store
//! replays the log into sled first. Why a log beside sled (`src/store/wal.rs`):
//! sled 0.34 makes each batch durable on its own with `sync_file_range`, which
//! cost about three raw `fdatasync`s per commit here and does not flush the
//! drive's cache.
//!
//! sled's `flush_async` is never used: in sled 0.34.7 it deadlocks when several
//! tasks await it at once (sled issue #1308).
//!
//! What "durable" means, honestly: an acknowledged commit survives a killed
//! process (SIGKILL, panic, OOM) — the crash tests prove it at every checkpoint
//! boundary. It survives a power cut when the device honours the FUA writes or
//! cache flushes that `O_DSYNC` and `fdatasync` issue (most do; some consumer drives and virtual disks
//! configured as "unsafe" cache do not). sled's own files are only guaranteed up
//! to its last flush, which is why the log is replayed on open.
//!
//! ## Errors
//! A store already open in another process, a record with an unknown format
//! version, or a corrupt record each give an error naming the file or the sync;
//! listing skips nothing silently and other syncs keep working.
//!
//! Opening refuses a store that would silently lose acknowledged commits, and
//! changes nothing in it: a damaged log record followed by intact ones
//! ([`StoreError::LogDamaged`], with its byte offset; only a torn *last*
//! record is dropped), a missing log or one of another store
//! ([`StoreError::LogMissing`], [`StoreError::LogMismatch`]: sled's data and
//! the log's header share a store id), damage sled itself detects
//! ([`StoreError::SledCorrupt`]). Commands that only read open with
//! [`Store::open_existing`], which never creates a store.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard, TryLockError};
use std::thread::JoinHandle;

use serde::{Deserialize, Serialize};

mod wal;

use wal::{Wal, WriteRef};

use crate::clock::Timestamp;
use crate::machine::Status;

/// Layout version of [`Record`] that this adsync writes; bumped on
/// incompatible changes.
///
/// Format 2 writes the fields fixed when a sync starts (kind, start time,
/// labels: a few hundred bytes, as labels hold paths and URLs) once, as the
/// record's *head* under `m/<sync id>`, instead of with every checkpoint.
/// Format-1 records (every field under `r/<sync id>`) still read, and a sync
/// started with format 1 keeps it: [`Commit::record`] writes a record in its
/// own `format`.
pub const RECORD_FORMAT: u32 = 2;

/// The oldest record format this adsync reads.
const OLDEST_RECORD_FORMAT: u32 = 1;

/// The fields of a format-2 record that are written with every checkpoint.
#[derive(Serialize, Deserialize)]
struct RecordBody<'a> {
    format: u32,
    #[serde(borrow)]
    id: std::borrow::Cow<'a, str>,
    state_version: u32,
    seq: u64,
    #[serde(borrow)]
    phase: std::borrow::Cow<'a, str>,
    status: Status,
    effects_run: u64,
    failed_effects: u64,
    last_error: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    updated_at: Timestamp,
    #[serde(borrow)]
    state: std::borrow::Cow<'a, serde_json::value::RawValue>,
}

/// The fields of a format-2 record written once, when its sync starts.
#[derive(Serialize, Deserialize)]
struct RecordHead<'a> {
    #[serde(borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(with = "time::serde::rfc3339")]
    created_at: Timestamp,
    labels: std::borrow::Cow<'a, BTreeMap<String, String>>,
}

/// The latest checkpoint of one sync.
#[derive(Debug, Clone, Serialize, Deserialize)]
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
    /// The machine state, as the JSON text the machine's serde encoding gave.
    ///
    /// Kept as raw JSON, not a `serde_json::Value`: building and dropping a
    /// value tree for every checkpoint was most of a step's CPU time.
    pub state: Box<serde_json::value::RawValue>,
    /// The part of the state fixed when the sync started (a push's entity specs
    /// and work plan), if the machine splits one out
    /// ([`crate::machine::Machine::encode_plan`]). Stored once under its own key
    /// (`p/<sync id>`), not in every checkpoint: checkpoints then carry only
    /// progress, so their size does not grow with the campaign. The store fills
    /// it in when it reads a record; [`Commit::plan`] writes it.
    #[serde(skip)]
    pub plan: Option<Arc<serde_json::value::RawValue>>,
    /// Segments of the sync's progress that the machine wrote under their own
    /// keys (`s/<sync id>\0<n BE>`, [`Commit::segment`]), in segment order:
    /// parts of its state that no longer change, so each is written once
    /// instead of with every later checkpoint
    /// ([`crate::machine::Machine::encode_segments`]). Like the plan, filled
    /// in by the store when it reads a record.
    #[serde(skip)]
    pub segments: Vec<(u32, Arc<serde_json::value::RawValue>)>,
}

impl PartialEq for Record {
    fn eq(&self, other: &Self) -> bool {
        // Field by field; the state compares as JSON text.
        let key = |r: &Record| {
            (
                r.format,
                r.state_version,
                r.seq,
                r.effects_run,
                r.failed_effects,
            )
        };
        let text = |r: &Record| {
            (
                r.id.clone(),
                r.kind.clone(),
                r.phase.clone(),
                r.last_error.clone(),
                r.state.get().to_string(),
                r.plan.as_ref().map(|p| p.get().to_string()),
                r.segments
                    .iter()
                    .map(|(n, s)| (*n, s.get().to_string()))
                    .collect::<Vec<_>>(),
            )
        };
        key(self) == key(other)
            && text(self) == text(other)
            && self.status == other.status
            && (self.created_at, self.updated_at) == (other.created_at, other.updated_at)
            && self.labels == other.labels
    }
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

/// A [`HistoryEntry`] as the store writes it: the tuple
/// `[at, from, effect, outcome]`, or `[at, from, effect, outcome, to]` when
/// the phase changed. `at` is unix nanoseconds (exact, so the entry reads back
/// equal); the seq is the key's (a run's entries follow it one by one). A
/// transition is written for every effect, so field names, an RFC 3339 time
/// and a repeated phase were most of the history's bytes.
struct StoredEntryOut<'a>(&'a HistoryEntry);

impl Serialize for StoredEntryOut<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeTuple};
        let e = self.0;
        let at = i64::try_from(e.at.unix_timestamp_nanos())
            .map_err(|_| S::Error::custom(format!("time {} is out of range", e.at)))?;
        let changed = e.to != e.from;
        let mut t = serializer.serialize_tuple(if changed { 5 } else { 4 })?;
        t.serialize_element(&at)?;
        t.serialize_element(&e.from)?;
        t.serialize_element(&e.effect)?;
        t.serialize_element(&e.outcome)?;
        if changed {
            t.serialize_element(&e.to)?;
        }
        t.end()
    }
}

/// A history entry as read: a tuple (see [`StoredEntryOut`]), or the object
/// earlier versions wrote, which carries its own seq.
enum StoredEntry {
    Tuple {
        at: Timestamp,
        from: String,
        effect: Option<String>,
        outcome: String,
        to: Option<String>,
    },
    Object(HistoryEntry),
    /// An entry after the first of a run, as the applier joins them:
    /// `[effect, outcome, nanoseconds since the entry before(, to)]`, its
    /// phase before being the entry before's phase after.
    FollowOn {
        effect: Option<String>,
        outcome: String,
        after: i64,
        to: Option<String>,
    },
}

impl StoredEntry {
    /// The entry, `seq` being where its key and its place in a run put it,
    /// `before` the entry before it in the same run.
    fn into_entry(self, seq: u64, before: Option<&HistoryEntry>) -> Result<HistoryEntry, String> {
        Ok(match self {
            StoredEntry::Tuple {
                at,
                from,
                effect,
                outcome,
                to,
            } => HistoryEntry {
                seq,
                at,
                to: to.unwrap_or_else(|| from.clone()),
                from,
                effect,
                outcome,
            },
            StoredEntry::Object(entry) => entry,
            StoredEntry::FollowOn {
                effect,
                outcome,
                after,
                to,
            } => {
                let before = before.ok_or("a run's first entry is not a whole entry")?;
                let at = before
                    .at
                    .checked_add(time::Duration::nanoseconds(after))
                    .ok_or_else(|| {
                        format!("time {after} ns after {} is out of range", before.at)
                    })?;
                HistoryEntry {
                    seq,
                    at,
                    from: before.to.clone(),
                    to: to.unwrap_or_else(|| before.to.clone()),
                    effect,
                    outcome,
                }
            }
        })
    }
}

/// The first element of a stored tuple: a whole entry's time, or a
/// follow-on's effect.
#[derive(Deserialize)]
#[serde(untagged)]
enum TupleHead {
    Time(i64),
    Effect(Option<String>),
}

impl<'de> Deserialize<'de> for StoredEntry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = StoredEntry;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a history entry: [time, from, effect, outcome(, to)] or an object")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<StoredEntry, A::Error> {
                use serde::de::Error;
                let missing = |i: usize| A::Error::invalid_length(i, &self);
                let nanos = match seq.next_element()?.ok_or_else(|| missing(0))? {
                    TupleHead::Time(nanos) => nanos,
                    TupleHead::Effect(effect) => {
                        let outcome = seq.next_element()?.ok_or_else(|| missing(1))?;
                        let after = seq.next_element()?.ok_or_else(|| missing(2))?;
                        let to = seq.next_element()?;
                        if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                            return Err(A::Error::invalid_length(5, &self));
                        }
                        return Ok(StoredEntry::FollowOn {
                            effect,
                            outcome,
                            after,
                            to,
                        });
                    }
                };
                let at = Timestamp::from_unix_timestamp_nanos(nanos.into())
                    .map_err(|e| A::Error::custom(format!("time {nanos}: {e}")))?;
                let from = seq.next_element()?.ok_or_else(|| missing(1))?;
                let effect = seq.next_element()?.ok_or_else(|| missing(2))?;
                let outcome = seq.next_element()?.ok_or_else(|| missing(3))?;
                let to = seq.next_element()?;
                if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(A::Error::invalid_length(6, &self));
                }
                Ok(StoredEntry::Tuple {
                    at,
                    from,
                    effect,
                    outcome,
                    to,
                })
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<StoredEntry, A::Error> {
                HistoryEntry::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(StoredEntry::Object)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Whether a history value is a run of entries (`[[…],…]` or, as earlier
/// versions joined objects, `[{…},…]`) rather than one entry (`[time,…]` or
/// `{…}`).
fn is_history_run(bytes: &[u8]) -> bool {
    let mut rest = bytes.iter().filter(|b| !b.is_ascii_whitespace());
    rest.next() == Some(&b'[') && matches!(rest.next(), Some(b'[' | b'{'))
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
    /// There is no store at the path a command that only reads was given.
    #[error("there is no adsync store at {path}: check --db (or ADSYNC_DB); a store is created by the first push or pull")]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// A record in the middle of the write-ahead log is damaged: intact
    /// records follow it, so it is not a torn last write.
    #[error("the write-ahead log {log} is damaged: the record at byte offset {offset} fails its checks, and the intact record at byte offset {later} shows it was acknowledged. Replaying around it would lose commits, so the store was not opened and nothing was changed. Restore the store directory {path} from a backup; do not delete {log}")]
    LogDamaged {
        /// The store's directory.
        path: PathBuf,
        /// The log file.
        log: PathBuf,
        /// Where the damaged record starts, in bytes from the start of the file.
        offset: u64,
        /// Where the first intact record after it starts.
        later: u64,
    },
    /// sled's data says a write-ahead log holds commits, and there is none.
    #[error("the write-ahead log {log} of store {path} is missing: it may hold acknowledged commits that are not in sled, so the store was not opened. Put the file back, or restore the store directory from a backup")]
    LogMissing {
        /// The store's directory.
        path: PathBuf,
        /// The log file expected.
        log: PathBuf,
    },
    /// The log's store id is not the one sled's data has.
    #[error("the write-ahead log {log} does not belong to store {path} ({}), so the store was not opened. Put the store's own log back, or restore the store directory from a backup", describe_ids(expected, found))]
    LogMismatch {
        /// The store's directory.
        path: PathBuf,
        /// The log file.
        log: PathBuf,
        /// The store id sled holds (hex), if any.
        expected: Option<String>,
        /// The store id the log's header holds (hex), if any.
        found: Option<String>,
    },
    /// sled reports damage in its own files.
    #[error("store {path}: sled's data is corrupt{at}, in one of its files ({files}); adsync cannot repair it. Restore the store directory from a backup, and keep the damaged copy")]
    SledCorrupt {
        /// The store's directory.
        path: PathBuf,
        /// sled's files in it, where the damage is.
        files: String,
        /// Where sled found it, when it says.
        at: String,
    },
}

/// The two ids of [`StoreError::LogMismatch`], in words.
fn describe_ids(expected: &Option<String>, found: &Option<String>) -> String {
    match (expected, found) {
        (Some(e), Some(f)) => format!("the log is of store id {f}, sled's data of {e}"),
        (Some(e), None) => {
            format!("sled's data is of store id {e}; the log has none")
        }
        (None, Some(f)) => format!(
            "the log holds commits of store id {f}, and sled's data has no store id: it was replaced or lost"
        ),
        (None, None) => "neither has a store id".to_string(),
    }
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

    /// Writes `record` (and remembers that its seq is durable once committed),
    /// in the layout of its `format` (see [`RECORD_FORMAT`]); the head of a
    /// format-2 record is written with its first checkpoint (seq 0).
    pub fn record(mut self, record: &Record) -> Result<Self, StoreError> {
        let corrupt = |e: serde_json::Error| StoreError::Corrupt {
            sync: record.id.clone(),
            detail: format!("cannot encode record: {e}"),
        };
        // Sized for the state plus the other fields, so the buffer is not
        // regrown (and copied) several times on the way.
        let mut bytes = Vec::with_capacity(record.state.get().len() + 512);
        if record.format == OLDEST_RECORD_FORMAT {
            serde_json::to_writer(&mut bytes, record).map_err(corrupt)?;
        } else {
            serde_json::to_writer(
                &mut bytes,
                &RecordBody {
                    format: record.format,
                    id: record.id.as_str().into(),
                    state_version: record.state_version,
                    seq: record.seq,
                    phase: record.phase.as_str().into(),
                    status: record.status,
                    effects_run: record.effects_run,
                    failed_effects: record.failed_effects,
                    last_error: record.last_error.clone(),
                    updated_at: record.updated_at,
                    state: std::borrow::Cow::Borrowed(&record.state),
                },
            )
            .map_err(corrupt)?;
            if record.seq == 0 {
                let head = serde_json::to_vec(&RecordHead {
                    kind: record.kind.as_str().into(),
                    created_at: record.created_at,
                    labels: std::borrow::Cow::Borrowed(&record.labels),
                })
                .map_err(corrupt)?;
                self.writes.push(Write::Put(head_key(&record.id), head));
            }
        }
        self.writes.push(Write::Put(record_key(&record.id), bytes));
        self.marks.push((record.id.clone(), record.seq));
        Ok(self)
    }

    /// Writes the plan of sync `id` (see [`Record::plan`]); once, when it starts.
    pub fn plan(mut self, id: &str, plan: &serde_json::value::RawValue) -> Self {
        self.writes
            .push(Write::Put(plan_key(id), plan.get().as_bytes().to_vec()));
        self
    }

    /// Writes segment `n` of sync `id`'s progress (see [`Record::segments`]),
    /// replacing any segment `n` it had.
    pub fn segment(mut self, id: &str, n: u32, segment: &serde_json::value::RawValue) -> Self {
        self.writes.push(Write::Put(
            segment_key(id, n),
            segment.get().as_bytes().to_vec(),
        ));
        self
    }

    /// Appends a history entry of sync `id`, in the compact layout of
    /// [`StoredEntry`] (its seq is the key's).
    pub fn history(mut self, id: &str, entry: &HistoryEntry) -> Result<Self, StoreError> {
        let mut bytes = Vec::with_capacity(128);
        serde_json::to_writer(&mut bytes, &StoredEntryOut(entry)).map_err(|e| {
            StoreError::Corrupt {
                sync: id.to_string(),
                detail: format!("cannot encode history: {e}"),
            }
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

    /// Appends the writes of `other` (applied after this commit's own, in the
    /// same atomic batch).
    pub fn merge(mut self, other: Commit) -> Self {
        self.writes.extend(other.writes);
        self.marks.extend(other.marks);
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

fn head_key(id: &str) -> Vec<u8> {
    [b"m/".as_slice(), id.as_bytes()].concat()
}

fn plan_key(id: &str) -> Vec<u8> {
    [b"p/".as_slice(), id.as_bytes()].concat()
}

fn segment_prefix(id: &str) -> Vec<u8> {
    [b"s/".as_slice(), id.as_bytes(), b"\0"].concat()
}

fn segment_key(id: &str, n: u32) -> Vec<u8> {
    [segment_prefix(id).as_slice(), &n.to_be_bytes()].concat()
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
    /// Held for writing while the writer applies a group to sled, and for
    /// reading by point reads and short listings: they see whole commits.
    visibility: RwLock<()>,
    /// Commits waiting for a leader to write them.
    queue: Mutex<Queue>,
    /// Signalled when a commit is queued or the store closes (wakes the
    /// writer thread).
    queued: Condvar,
    /// The log and sled: whoever holds this lock is the leader and writes the
    /// next group — the writer thread, or a committer that found it idle.
    writer: Mutex<Writer>,
    /// How many commits the last group held. 1 means commits come one at a
    /// time: then an async committer may lead its own group.
    last_group: std::sync::atomic::AtomicUsize,
    /// Groups durable in the log, waiting for the applier thread to put them
    /// into sled.
    apply: Mutex<Applying>,
    /// Signalled when a group is handed over or the store closes (wakes the
    /// applier thread).
    to_apply: Condvar,
    /// Signalled when a group has been applied (wakes readers and checkpoints).
    applied: Condvar,
    /// sled's tree, for the applier.
    tree: sled::Tree,
    /// The store's directory, for errors.
    path: PathBuf,
}

/// The hand-over between leaders (who make groups durable) and the applier
/// (who makes them visible in sled).
///
/// A group goes over as a copy of its log record's payload, not as its
/// commits: the commits are dropped by the leader that wrote them, on the
/// thread that built them. Freed on the applier thread instead, their few
/// dozen buffers per step defeated glibc's per-thread caches (the sync's
/// thread kept allocating from its arena's slow path, and the large record
/// buffers set off fastbin consolidations). The copies are recycled through
/// `spare`, so a steady stream of commits hands over without allocating.
#[derive(Default)]
struct Applying {
    /// Payloads of durable groups, oldest first.
    pending: std::collections::VecDeque<Vec<u8>>,
    /// Applied payloads' buffers, for the next hand-overs.
    spare: Vec<Vec<u8>>,
    /// Groups made durable so far.
    logged: u64,
    /// Groups applied to sled so far.
    applied: u64,
    /// Set when applying failed: sled no longer matches the log, so reads
    /// and commits are refused (the log replays on the next open).
    failed: Option<StoreError>,
    closed: bool,
    /// Whether the applier sleeps on `to_apply` (wake it only then).
    applier_waiting: bool,
    /// Readers and checkpoints sleeping on `applied`.
    waiters: usize,
}

/// How many durable groups wait before the applier is woken, when nobody is
/// reading. Readers and checkpoints wake it at once (they need every
/// acknowledged group applied). Why wait at all, measured on the 2-core VM
/// this was built on:
/// - each wake-up costs a futex call and a context switch on the other core:
///   waking it for every group made a lone committer's commit cost 1.23× a
///   raw `fdatasync`, against 1.12× applying inline and 1.00× not applying;
/// - a batch is applied with only the last write per key and each sync's
///   history entries joined into one value (see [`apply`]), so sled logs far
///   less, and sled's log writes compete with the log's syncs for the disk:
///   a one-campaign push loop went from 8.6 KB to 5.1 KB written per commit
///   (4 KiB of it the log's page) and from 1.47× to 1.30× a raw `fdatasync`
///   per side effect.
///
/// 256 bounds what a reader may have to wait for (a few milliseconds of
/// sled inserts); batches larger than that did not write less.
const APPLY_BATCH: usize = 256;

/// The largest hand-over buffer kept for reuse (see [`Applying`]): a
/// one-commit group's payload is 1–2 KB; a large group's buffer is rare
/// enough to allocate each time, and not worth holding on to.
const SPARE_CAPACITY: usize = 8 * 1024;

impl Applying {
    /// Whether the applier has work that should not wait any longer: a full
    /// batch, someone waiting to read, or a closing store.
    fn due(&self) -> bool {
        !self.pending.is_empty()
            && (self.pending.len() >= APPLY_BATCH || self.waiters > 0 || self.closed)
    }
}

#[derive(Default)]
struct Queue {
    jobs: Vec<Job>,
    closed: bool,
    /// Whether the writer thread sleeps on `queued`: only then is a wake-up
    /// (a futex call) worth making. Under load it never sleeps.
    writer_waiting: bool,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn applying(&self) -> MutexGuard<'_, Applying> {
        self.apply.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Hands a durable group (its log record's payload) to the applier.
    /// Counted as logged before any of its committers is answered, so their
    /// next read waits for it. Returns whether the applier sleeps and has a
    /// batch due: the leader wakes it *after* answering, so the futex call is
    /// not on the committers' path.
    fn hand_over(&self, payload: &[u8]) -> bool {
        let mut applying = self.applying();
        let mut copy = applying.spare.pop().unwrap_or_default();
        copy.clear();
        copy.extend_from_slice(payload);
        applying.logged += 1;
        applying.pending.push_back(copy);
        applying.applier_waiting && applying.due()
    }

    /// Waits until every group logged so far is applied: what a read needs to
    /// see every acknowledged commit.
    fn wait_applied(&self) -> Result<(), StoreError> {
        let mut applying = self.applying();
        let target = applying.logged;
        while applying.applied < target && applying.failed.is_none() {
            applying.waiters += 1;
            if applying.applier_waiting {
                // It may be holding back a batch that is not full yet.
                self.to_apply.notify_one();
            }
            applying = self
                .applied
                .wait(applying)
                .unwrap_or_else(|p| p.into_inner());
            applying.waiters -= 1;
        }
        match &applying.failed {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }

    /// The writer, for an async committer to lead its own group: only while
    /// commits come one at a time.
    fn try_lead_alone(&self) -> Option<MutexGuard<'_, Writer>> {
        if self.last_group.load(std::sync::atomic::Ordering::Relaxed) > 1 {
            return None;
        }
        self.try_lead()
    }

    /// The writer, if no other leader holds it right now.
    fn try_lead(&self) -> Option<MutexGuard<'_, Writer>> {
        match self.writer.try_lock() {
            Ok(writer) => Some(writer),
            Err(TryLockError::Poisoned(p)) => Some(p.into_inner()),
            Err(TryLockError::WouldBlock) => None,
        }
    }
}

/// The sled-backed checkpoint store. Cheap to share behind an `Arc`.
pub struct Store {
    path: PathBuf,
    db: sled::Db,
    tree: sled::Tree,
    threads: Mutex<Vec<JoinHandle<()>>>,
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

/// The write-ahead log's file, inside the sled directory.
const WAL_FILE: &str = "adsync.wal";

/// Log size; a group that does not fit makes the writer checkpoint sled instead.
///
/// Preallocated, so it counts in the store's size whatever the store holds;
/// but each time it fills, the writer waits for sled to be flushed, and with
/// many syncs committing at once a smaller log made those waits frequent
/// enough to halve group-commit throughput (docs/performance.md has the runs).
const WAL_CAPACITY: u64 = 8 << 20;

/// sled's page cache. With sled's default (1 GiB) the cache grew with the
/// store during a large push: a push rewrites each sync's record at every
/// step and sled keeps the pages it writes cached until the cache is full.
/// The store is read little (a resume reads each record once; the runner
/// keeps the states it wrote), so a small cache costs no time
/// (docs/performance.md).
const SLED_CACHE_BYTES: u64 = 32 << 20;

impl Store {
    /// Opens (or creates) the store in directory `path`, replaying its
    /// write-ahead log. Refuses a store whose log is damaged, missing or not
    /// its own (see the module docs on errors).
    ///
    /// ```
    /// let dir = tempfile::tempdir().unwrap();
    /// let store = adsync_engine::store::Store::open(dir.path().join("adsync.db")).unwrap();
    /// assert!(store.list().is_empty());
    /// ```
    pub fn open(path: impl AsRef<Path>) -> Result<Arc<Self>, StoreError> {
        let path = path.as_ref().to_path_buf();
        // sled releases its directory lock when its last internal reference goes,
        // which can be a moment after a store in this process was dropped (its
        // I/O threads finish first). So a lock is retried briefly before it is
        // reported as another process's.
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(500);
        let mut cleaned = false;
        let db = loop {
            // No background flushes: the log makes commits durable, and sled is
            // flushed at checkpoints. sled's timer flush only competed with the
            // log's fdatasync for the disk.
            match sled::Config::new()
                .path(&path)
                .flush_every_ms(None)
                .cache_capacity(SLED_CACHE_BYTES)
                .open()
            {
                Ok(db) => break db,
                Err(e) => match open_error(&path, e) {
                    StoreError::Locked { .. } if std::time::Instant::now() < deadline => {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    error @ StoreError::Locked { .. } => return Err(error),
                    error if !cleaned => {
                        cleaned = true;
                        if !remove_torn_snapshots(&path) {
                            return Err(error);
                        }
                    }
                    error => return Err(error),
                },
            }
        };
        Self::from_db(path, db, WAL_CAPACITY)
    }

    /// Opens the store in directory `path` only if there is one: for commands
    /// that read, so that a mistyped path is an error naming it
    /// ([`StoreError::NotFound`]), not a new empty store.
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Arc<Self>, StoreError> {
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
    pub async fn open_existing_from_async(path: impl AsRef<Path>) -> Result<Arc<Self>, StoreError> {
        Self::open_on_blocking_pool(path.as_ref(), Store::open_existing).await
    }

    /// [`Store::open`] from async code. Opening blocks (sled's open, the log's
    /// replay or preallocation), so it runs on tokio's blocking pool.
    pub async fn open_from_async(path: impl AsRef<Path>) -> Result<Arc<Self>, StoreError> {
        Self::open_on_blocking_pool(path.as_ref(), Store::open).await
    }

    /// Runs `open` (which blocks on sled) on tokio's blocking pool.
    async fn open_on_blocking_pool(
        path: &Path,
        open: fn(PathBuf) -> Result<Arc<Self>, StoreError>,
    ) -> Result<Arc<Self>, StoreError> {
        let owned = path.to_path_buf();
        tokio::task::spawn_blocking(move || open(owned))
            .await
            .map_err(|e| StoreError::Io {
                path: path.to_path_buf(),
                message: format!("opening task failed: {e}"),
            })?
    }

    /// A store in a temporary directory that disappears when dropped (tests).
    pub fn temporary() -> Result<Arc<Self>, StoreError> {
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
            .map_err(|e| open_error(&path, e))?;
        // Small: tests open hundreds of these, and a full log just checkpoints.
        Self::from_db(path, db, 256 * 1024)
    }

    fn from_db(path: PathBuf, db: sled::Db, wal_capacity: u64) -> Result<Arc<Self>, StoreError> {
        let tree = db
            .open_tree("checkpoints")
            .map_err(|e| io_error(&path, e))?;
        // sled's directory lock is held now, so the log is ours alone.
        let (mut wal, replay) = open_log(&path, &db, wal_capacity)?;
        if !replay.is_empty() || wal.found_id().is_none() {
            // Commits acknowledged before a crash that sled had not flushed yet.
            apply_payloads(&tree, replay.iter().map(Vec::as_slice))
                .map_err(|e| io_error(&path, e))?;
            db.flush().map_err(|e| io_error(&path, e))?;
            // Also writes the store id into a header of an earlier version.
            wal.reset().map_err(|e| log_error(&path, e))?;
        }
        stamp_store_id(&path, &db, &wal)?;
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
                })
        };
        // The writer closes the applier when it is done with it.
        let threads = vec![
            spawn("adsync-store-applier", applier_thread)?,
            spawn("adsync-store-writer", writer_thread)?,
        ];
        Ok(Arc::new(Store {
            path,
            db,
            tree,
            threads: Mutex::new(threads),
            shared,
        }))
    }

    /// The store's directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Queues `commit` for the writer thread (or the next leader).
    fn enqueue(
        &self,
        commit: Commit,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<(), StoreError>>, StoreError> {
        let (reply, receiver) = tokio::sync::oneshot::channel();
        let mut queue = self.shared.queue();
        if queue.closed {
            return Err(StoreError::WriterStopped);
        }
        queue.jobs.push(Job { commit, reply });
        let wake = queue.writer_waiting;
        drop(queue);
        if wake {
            self.shared.queued.notify_one();
        }
        Ok(receiver)
    }

    /// Writes `commit`, and everything queued, as the leader of one group.
    fn lead(&self, mut writer: MutexGuard<'_, Writer>, commit: Commit) -> Result<(), StoreError> {
        let jobs = {
            let mut queue = self.shared.queue();
            if queue.closed {
                return Err(StoreError::WriterStopped);
            }
            take_group(&mut queue)
        };
        writer.commit_group(&self.shared, Some(commit), jobs)
    }

    /// Applies `commit` atomically and returns once it is flushed to disk.
    ///
    /// Never blocks an async worker thread on disk. While commits come one at
    /// a time (the last group held one) and the runtime is tokio's multi-thread
    /// one, the calling task leads: it writes its commit itself inside
    /// [`tokio::task::block_in_place`], which first hands the worker's other
    /// tasks to another thread. That saves two thread hand-offs per commit (to
    /// the writer thread and back): one sync went from 1.90–1.96× to 1.82× a raw
    /// `fdatasync` per side effect (A/B in one process). Under concurrent load,
    /// when another leader is writing, or on a current-thread runtime, the
    /// commit queues for the writer thread and shares the next group's flush;
    /// leading there too gave the worker's core away on every group for no gain.
    pub async fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        // block_in_place panics on a current-thread runtime: there the commit
        // always goes to the writer thread.
        let on_multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if on_multi_thread {
            if let Some(writer) = self.shared.try_lead_alone() {
                return tokio::task::block_in_place(move || self.lead(writer, commit));
            }
        }
        self.enqueue(commit)?
            .await
            .map_err(|_| StoreError::WriterStopped)?
    }

    /// Runs `f` with this store on tokio's blocking pool: sled calls may block on
    /// I/O and must stay off the async worker threads. The outer error is the
    /// blocking task itself failing (it panicked or the runtime is shutting down).
    pub async fn blocking<T, E>(
        self: &Arc<Self>,
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
                path: self.path.clone(),
                message: format!("store task failed: {e}"),
            })
    }

    /// [`Store::commit`] for blocking code (not inside an async task). Leads
    /// the group itself when the store is idle.
    pub fn commit_blocking(&self, commit: Commit) -> Result<(), StoreError> {
        if let Some(writer) = self.shared.try_lead() {
            return self.lead(writer, commit);
        }
        self.enqueue(commit)?
            .blocking_recv()
            .map_err(|_| StoreError::WriterStopped)?
    }

    /// The latest record of sync `id`, if it exists.
    pub fn record(&self, id: &str) -> Result<Option<Record>, StoreError> {
        let _visible = self.visible()?;
        match self
            .tree
            .get(record_key(id))
            .map_err(|e| io_error(&self.path, e))?
        {
            None => Ok(None),
            Some(bytes) => self.with_plan(self.decode_record(id, &bytes)?).map(Some),
        }
    }

    /// Fills in `record.plan` and `record.segments` from their keys (the
    /// caller holds the visibility lock).
    fn with_plan(&self, mut record: Record) -> Result<Record, StoreError> {
        let raw = |what: &str, bytes: &[u8]| {
            let corrupt = |detail: String| StoreError::Corrupt {
                sync: record.id.clone(),
                detail: format!("{what}: {detail}"),
            };
            let text = String::from_utf8(bytes.to_vec()).map_err(|e| corrupt(e.to_string()))?;
            serde_json::value::RawValue::from_string(text)
                .map(Arc::from)
                .map_err(|e| corrupt(e.to_string()))
        };
        let plan = self
            .tree
            .get(plan_key(&record.id))
            .map_err(|e| io_error(&self.path, e))?;
        let plan = plan.map(|bytes| raw("plan", &bytes)).transpose()?;
        let prefix = segment_prefix(&record.id);
        let mut segments = Vec::new();
        for item in self.tree.scan_prefix(&prefix) {
            let (key, bytes) = item.map_err(|e| io_error(&self.path, e))?;
            let n = <[u8; 4]>::try_from(&key[prefix.len()..])
                .map(u32::from_be_bytes)
                .map_err(|_| StoreError::Corrupt {
                    sync: record.id.clone(),
                    detail: format!("a segment key of {} bytes", key.len()),
                })?;
            segments.push((n, raw(&format!("segment {n}"), &bytes)?));
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
        self.tree
            .scan_prefix(b"r/")
            .map(|item| {
                let (key, bytes) = item.map_err(|e| io_error(&self.path, e))?;
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
            self.tree.scan_prefix(b"r/").map(move |item| {
                let _visible = &guard;
                let (key, bytes) = item.map_err(|e| io_error(&self.path, e))?;
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
        Ok(&self.tree)
    }

    /// Decodes record `bytes` of sync `id`, with its head for format 2 (the
    /// caller holds the visibility lock).
    fn decode_record(&self, id: &str, bytes: &[u8]) -> Result<Record, StoreError> {
        decode_record(id, bytes, || {
            self.tree
                .get(head_key(id))
                .map_err(|e| io_error(&self.path, e))
        })
    }

    /// The transitions of sync `id`, oldest first.
    pub fn history(&self, id: &str) -> Result<Vec<HistoryEntry>, StoreError> {
        let _visible = self.visible()?;
        let mut entries: Vec<HistoryEntry> = Vec::new();
        for item in self.tree.scan_prefix(history_prefix(id)) {
            let (key, bytes) = item.map_err(|e| io_error(&self.path, e))?;
            let corrupt = |detail: String| StoreError::Corrupt {
                sync: id.to_string(),
                detail: format!("history entry: {detail}"),
            };
            let first_seq = split_history_key(&key)
                .map(|(_, seq)| seq)
                .ok_or_else(|| corrupt("its key has no sequence number".into()))?;
            let json = |e: serde_json::Error| corrupt(e.to_string());
            // One entry, or a run of consecutive entries (see `apply`); each
            // entry an object (earlier versions) or a tuple (see `StoredEntry`).
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

    /// Reads index entry `key`.
    pub fn index(&self, key: &str) -> Result<Option<String>, StoreError> {
        let _visible = self.visible()?;
        Ok(self
            .tree
            .get(index_key(key))
            .map_err(|e| io_error(&self.path, e))?
            .map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    /// Reads machine-owned data `x/<key>`.
    pub fn data(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let _visible = self.visible()?;
        Ok(self
            .tree
            .get(data_key(key))
            .map_err(|e| io_error(&self.path, e))?
            .map(|v| v.to_vec()))
    }

    /// Waits for every acknowledged commit to be in sled, then holds off the
    /// applier so the read sees whole groups.
    fn visible(&self) -> Result<RwLockReadGuard<'_, ()>, StoreError> {
        self.shared.wait_applied()?;
        Ok(self
            .shared
            .visibility
            .read()
            .unwrap_or_else(|p| p.into_inner()))
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
        let waited = self.shared.wait_applied();
        let failed = waited.err().map(Err).into_iter();
        failed.chain(self.tree.scan_prefix(data_key(prefix)).map(move |item| {
            item.map(|(k, v)| (k[2..].to_vec(), v.to_vec()))
                .map_err(|e| io_error(&self.path, e))
        }))
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
        self.shared.queue().closed = true;
        self.shared.queued.notify_all();
        let threads = std::mem::take(&mut *self.threads.lock().unwrap_or_else(|p| p.into_inner()));
        for handle in threads.into_iter().rev() {
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

/// Takes the next group's jobs off the queue.
fn take_group(queue: &mut Queue) -> Vec<Job> {
    let n = queue.jobs.len().min(MAX_GROUP);
    queue.jobs.drain(..n).collect()
}

/// The writer thread: leads a group whenever commits are queued and no
/// committer is leading one itself. Everything that queued up while the last
/// group was written joins the next log record and the next `fdatasync`.
fn writer_thread(shared: &Shared) {
    loop {
        {
            let mut queue = shared.queue();
            while queue.jobs.is_empty() && !queue.closed {
                queue.writer_waiting = true;
                queue = shared.queued.wait(queue).unwrap_or_else(|p| p.into_inner());
                queue.writer_waiting = false;
            }
            if queue.jobs.is_empty() {
                break;
            }
        }
        // Wait out a leading committer: it may take these jobs with its own.
        let mut writer = shared.writer.lock().unwrap_or_else(|p| p.into_inner());
        let jobs = take_group(&mut shared.queue());
        if !jobs.is_empty() {
            let _ = writer.commit_group(shared, None, jobs);
        }
    }
    // Closing: make sled hold everything, so the next open replays nothing.
    let mut writer = shared.writer.lock().unwrap_or_else(|p| p.into_inner());
    if writer.failed.is_none() && writer.checkpoint(shared).is_err() {
        tracing::warn!(
            store = %shared.path.display(),
            "final checkpoint failed; the log will be replayed on the next open"
        );
    }
    shared.applying().closed = true;
    shared.to_apply.notify_all();
}

/// The applier thread: puts durable groups into sled, in log order, a batch
/// at a time (see [`APPLY_BATCH`]), while leaders sync the next groups.
/// Readers wake it and wait for it (see [`Shared::wait_applied`]), so they
/// still see every acknowledged commit.
fn applier_thread(shared: &Shared) {
    loop {
        let batch = {
            let mut applying = shared.applying();
            while !applying.due() {
                if applying.closed {
                    return; // and nothing is pending
                }
                applying.applier_waiting = true;
                applying = shared
                    .to_apply
                    .wait(applying)
                    .unwrap_or_else(|p| p.into_inner());
                applying.applier_waiting = false;
            }
            std::mem::take(&mut applying.pending)
        };
        let result = {
            // One lock for the batch: a reader sees none or all of it.
            let _visible = shared.visibility.write().unwrap_or_else(|p| p.into_inner());
            apply_payloads(&shared.tree, batch.iter().map(Vec::as_slice))
        };
        let mut applying = shared.applying();
        if let Err(e) = result {
            applying.failed = Some(io_error(&shared.path, e));
        }
        applying.applied += batch.len() as u64;
        // Small buffers are kept for the next hand-overs; the count is bounded
        // by what one batch holds, the size by SPARE_CAPACITY.
        let room = APPLY_BATCH.saturating_sub(applying.spare.len());
        let reusable = batch.into_iter().filter(|b| b.capacity() <= SPARE_CAPACITY);
        applying.spare.extend(reusable.take(room));
        let wake = applying.waiters > 0;
        drop(applying);
        if wake {
            shared.applied.notify_all();
        }
    }
}

/// The log and sled, held by the group's leader: the only code that writes
/// to either.
struct Writer {
    db: sled::Db,
    wal: Wal,
    /// Set once a write failed: after a failed `fdatasync` nothing about the
    /// file is certain any more, so every later commit is refused.
    failed: Option<StoreError>,
}

impl Writer {
    /// Writes the leader's own commit (if any) and `jobs` as one group with one
    /// `fdatasync`, answers the jobs, and returns the group's result.
    fn commit_group(
        &mut self,
        shared: &Shared,
        own: Option<Commit>,
        jobs: Vec<Job>,
    ) -> Result<(), StoreError> {
        let mut replies = Vec::with_capacity(jobs.len());
        let mut commits: Vec<Commit> = own.into_iter().collect();
        for job in jobs {
            commits.push(job.commit);
            replies.push(job.reply);
        }
        let marks: Vec<(String, u64)> = commits
            .iter_mut()
            .flat_map(|c| std::mem::take(&mut c.marks))
            .collect();
        let count = commits.len();
        shared
            .last_group
            .store(count, std::sync::atomic::Ordering::Relaxed);
        if self.failed.is_none() {
            self.failed = shared.applying().failed.clone();
        }
        let result = match &self.failed {
            Some(error) => Err(error.clone()),
            None => self.write_group(shared, commits),
        };
        let wake_applier = matches!(result, Ok(true));
        let result = result.map(|_| ());
        if let Err(error) = &result {
            self.failed = Some(error.clone());
        } else {
            let mut durable = shared.durable.lock().unwrap_or_else(|p| p.into_inner());
            for (id, seq) in marks {
                durable.insert(id, seq);
            }
            let mut stats = shared.stats.lock().unwrap_or_else(|p| p.into_inner());
            stats.commits += count as u64;
            stats.flushes += 1;
        }
        for reply in replies {
            let _ = reply.send(result.clone());
        }
        if wake_applier {
            shared.to_apply.notify_one();
        }
        result
    }

    /// Makes `commits` durable (one log write; when the log is full, a sled
    /// flush empties it first) and hands them to the applier, which makes them
    /// visible in sled while the next group is being synced.
    /// Returns whether the applier must be woken.
    fn write_group(&mut self, shared: &Shared, commits: Vec<Commit>) -> Result<bool, StoreError> {
        let groups = || commits.iter().map(|c| c.writes.as_slice());
        let len: usize = groups().map(Wal::encoded_len).sum();
        if !self.wal.fits(len) {
            // Empty the log first (sled's flush makes what it holds durable), so
            // the group still goes through the log and stays atomic on a crash.
            self.checkpoint(shared)?;
        }
        if self.wal.fits(len) {
            // Durable first, then visible: readers never see an unacknowledged write.
            let payload = self
                .wal
                .append(groups())
                .map_err(|e| log_error(&shared.path, e))?;
            Ok(shared.hand_over(payload))
        } else {
            // Larger than the whole log: one sled batch (atomic in sled's own
            // log) made durable by sled's flush.
            shared.wait_applied()?;
            {
                let _visible = shared.visibility.write().unwrap_or_else(|p| p.into_inner());
                let mut batch = sled::Batch::default();
                for write in groups().flatten() {
                    match write {
                        Write::Put(k, v) => batch.insert(k.as_slice(), v.as_slice()),
                        Write::Delete(k) => batch.remove(k.as_slice()),
                    }
                }
                shared
                    .tree
                    .apply_batch(batch)
                    .map_err(|e| io_error(&shared.path, e))?;
            }
            self.checkpoint(shared).map(|()| false)
        }
    }

    /// Makes sled hold everything the log holds, then empties the log.
    fn checkpoint(&mut self, shared: &Shared) -> Result<(), StoreError> {
        shared.wait_applied()?;
        self.db.flush().map_err(|e| io_error(&shared.path, e))?;
        self.wal.reset().map_err(|e| log_error(&shared.path, e))
    }
}

/// sled's key (in its default tree) for the store id the log's header shares.
const STORE_ID_KEY: &[u8] = b"adsync/store-id";

/// The store id sled holds, if it has one yet.
fn sled_store_id(path: &Path, db: &sled::Db) -> Result<Option<wal::StoreId>, StoreError> {
    let Some(bytes) = db.get(STORE_ID_KEY).map_err(|e| io_error(path, e))? else {
        return Ok(None);
    };
    let id = wal::StoreId::try_from(bytes.as_ref()).map_err(|_| StoreError::Corrupt {
        sync: String::from_utf8_lossy(STORE_ID_KEY).into_owned(),
        detail: format!("a store id of {} bytes, not 16", bytes.len()),
    })?;
    Ok(Some(id))
}

/// Opens the store's log and checks that it is the one sled's data expects.
///
/// A store is created log first (under a temporary name, renamed into place),
/// sled's copy of the id second, and nothing is committed before both exist.
/// So a process killed while creating a store leaves one of: no log and no id
/// in sled (creates both), or a log whose id sled does not have yet, and no
/// record in it (sled adopts the log's id). Neither makes the store unopenable.
/// A store of an earlier version (sled data, a log without id) is given one
/// the same way, log first. Anything else is refused.
fn open_log(path: &Path, db: &sled::Db, capacity: u64) -> Result<(Wal, Vec<Vec<u8>>), StoreError> {
    let log = path.join(WAL_FILE);
    let expected = sled_store_id(path, db)?;
    if expected.is_some() && !log.exists() {
        return Err(StoreError::LogMissing {
            path: path.to_path_buf(),
            log,
        });
    }
    let new_id = match expected {
        Some(id) => id,
        None => rand::random(),
    };
    // A blank log is one an older version's creation left, before any
    // commit; but once sled has an id, its log held commits.
    let may_recreate = expected.is_none();
    let (wal, replay) = Wal::open(&log, capacity, new_id, may_recreate).map_err(|e| match e {
        wal::WalError::Damaged { offset, later, .. } => StoreError::LogDamaged {
            path: path.to_path_buf(),
            log: log.clone(),
            offset,
            later,
        },
        wal::WalError::Blank { .. } => StoreError::LogMismatch {
            path: path.to_path_buf(),
            log: log.clone(),
            expected: expected.map(|id| hex(&id)),
            found: None,
        },
        e => StoreError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        },
    })?;
    let mismatch = |found: Option<wal::StoreId>| StoreError::LogMismatch {
        path: path.to_path_buf(),
        log: log.clone(),
        expected: expected.map(|id| hex(&id)),
        found: found.map(|id| hex(&id)),
    };
    match (expected, wal.found_id()) {
        (Some(expected), found) if found != Some(expected) => return Err(mismatch(found)),
        // sled lost its id (and with it, likely, its data) since the log was
        // written: replaying would rebuild a partial store.
        (None, Some(found)) if !replay.is_empty() => return Err(mismatch(Some(found))),
        _ => {}
    }
    Ok((wal, replay))
}

/// Writes the log's store id into sled, durably, if sled does not have it
/// yet: after the log's header has it, before any commit.
fn stamp_store_id(path: &Path, db: &sled::Db, wal: &Wal) -> Result<(), StoreError> {
    let Some(id) = wal.found_id() else {
        return Ok(()); // not reached: the log's header was written on open
    };
    if sled_store_id(path, db)? != Some(id) {
        db.insert(STORE_ID_KEY, id.as_slice())
            .map_err(|e| io_error(path, e))?;
        db.flush().map_err(|e| io_error(path, e))?;
    }
    Ok(())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn log_error(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        message: format!("write-ahead log: {e}"),
    }
}

/// Applies writes to sled, one key at a time, and for each key only the last
/// write among `groups`.
///
/// Not as a `sled::Batch`: sled 0.34 makes every batch durable on its own (one
/// more `sync_file_range` per commit), which the log already did. Atomicity
/// comes from the log instead: a group is in the log before its first key is
/// applied, so after a crash the replay completes any group cut short; readers
/// in this process see whole groups because they hold the visibility lock.
///
/// Only the last write per key: readers never see the groups of a batch one
/// by one, so the writes before it are invisible anyway — and a sync rewrites
/// its record in every group. Skipping them saves sled's CPU and, above all,
/// its disk writes: sled logs every insert and writes its log buffers out
/// with `sync_file_range` as they fill, which competed with the log's own
/// syncs (see the README's performance notes).
fn apply<'a>(tree: &sled::Tree, writes: impl Iterator<Item = WriteRef<'a>>) -> sled::Result<()> {
    let mut last: BTreeMap<&[u8], Option<&[u8]>> = BTreeMap::new();
    for (key, value) in writes {
        last.insert(key, value);
    }
    let mut run: Option<HistoryRun<'_>> = None;
    for (key, value) in last {
        if let (Some(value), Some((prefix, seq))) = (value, split_history_key(key)) {
            match &mut run {
                Some(r) if r.prefix == prefix && r.next == seq => r.push(value),
                _ => {
                    if let Some(done) = run.take() {
                        done.put(tree)?;
                    }
                    run = Some(HistoryRun::new(key, prefix, seq, value));
                }
            }
            continue;
        }
        if let Some(done) = run.take() {
            done.put(tree)?;
        }
        match value {
            Some(value) => {
                tree.insert(key, value)?;
            }
            None => {
                tree.remove(key)?;
            }
        }
    }
    if let Some(done) = run {
        done.put(tree)?;
    }
    Ok(())
}

/// [`apply`] for log records' payloads (what the applier is handed, and what
/// a replay reads back). A payload that does not decode is refused whole
/// before anything is applied; the log's checksums make that a bug, not a
/// disk error.
fn apply_payloads<'a>(
    tree: &sled::Tree,
    payloads: impl Iterator<Item = &'a [u8]>,
) -> sled::Result<()> {
    let mut writes = Vec::new();
    for payload in payloads {
        writes.extend(wal::writes(payload).ok_or_else(|| {
            sled::Error::Unsupported("a write-ahead log record does not decode".into())
        })?);
    }
    apply(tree, writes.into_iter())
}

/// `(prefix up to and including the NUL, seq)` of a history key.
fn split_history_key(key: &[u8]) -> Option<(&[u8], u64)> {
    if !key.starts_with(b"h/") || key.len() < 2 + 1 + 8 {
        return None;
    }
    let (prefix, seq) = key.split_at(key.len() - 8);
    if prefix.last() != Some(&0) {
        return None;
    }
    Some((prefix, u64::from_be_bytes(seq.try_into().ok()?)))
}

/// Consecutive history entries of one sync, stored as one sled value (a
/// JSON array under the first entry's key) instead of one key each. The
/// first is stored whole; an entry that starts in the phase the one before
/// ended in, nearly all of them, joins as a follow-on (see
/// [`StoredEntry::FollowOn`]): no phase before, and its time as an offset.
struct HistoryRun<'a> {
    key: &'a [u8],
    prefix: &'a [u8],
    next: u64,
    first: &'a [u8],
    /// `[first,second,…` once a second entry joins; empty while there is one.
    joined: Vec<u8>,
    /// The last entry's time (unix ns) and phase after, when it decoded.
    last: Option<(i64, String)>,
}

impl<'a> HistoryRun<'a> {
    fn new(key: &'a [u8], prefix: &'a [u8], seq: u64, value: &'a [u8]) -> Self {
        HistoryRun {
            key,
            prefix,
            next: seq + 1,
            first: value,
            joined: Vec::new(),
            last: Self::time_and_phase(value),
        }
    }

    /// The time and phase after of a whole stored entry.
    fn time_and_phase(value: &[u8]) -> Option<(i64, String)> {
        match serde_json::from_slice::<StoredEntry>(value).ok()? {
            StoredEntry::Tuple { at, from, to, .. } => Some((
                i64::try_from(at.unix_timestamp_nanos()).ok()?,
                to.unwrap_or(from),
            )),
            StoredEntry::Object(e) => {
                Some((i64::try_from(e.at.unix_timestamp_nanos()).ok()?, e.to))
            }
            StoredEntry::FollowOn { .. } => None,
        }
    }

    fn push(&mut self, value: &[u8]) {
        if self.joined.is_empty() {
            self.joined.push(b'[');
            self.joined.extend_from_slice(self.first);
        }
        self.joined.push(b',');
        let entry = serde_json::from_slice::<StoredEntry>(value).ok();
        match (entry, self.last.take()) {
            (
                Some(StoredEntry::Tuple {
                    at,
                    from,
                    effect,
                    outcome,
                    to,
                }),
                Some((before, phase)),
            ) if from == phase => {
                let at = i64::try_from(at.unix_timestamp_nanos()).unwrap_or(i64::MAX);
                let to = to.filter(|to| *to != from);
                let after = at.wrapping_sub(before);
                let written = match &to {
                    Some(to) => serde_json::to_vec(&(&effect, &outcome, after, to)),
                    None => serde_json::to_vec(&(&effect, &outcome, after)),
                };
                match written {
                    Ok(bytes) => {
                        self.joined.extend_from_slice(&bytes);
                        self.last = Some((at, to.unwrap_or(from)));
                    }
                    // Not reached (strings and integers always encode); the
                    // entry is then kept whole.
                    Err(_) => {
                        self.joined.extend_from_slice(value);
                        self.last = Self::time_and_phase(value);
                    }
                }
            }
            _ => {
                self.joined.extend_from_slice(value);
                self.last = Self::time_and_phase(value);
            }
        }
        self.next += 1;
    }

    fn put(mut self, tree: &sled::Tree) -> sled::Result<()> {
        if self.joined.is_empty() {
            tree.insert(self.key, self.first)?;
        } else {
            self.joined.push(b']');
            tree.insert(self.key, self.joined)?;
        }
        Ok(())
    }
}

/// Decodes a record of either format; `head` reads a format-2 record's head.
fn decode_record(
    id: &str,
    bytes: &[u8],
    head: impl FnOnce() -> Result<Option<sled::IVec>, StoreError>,
) -> Result<Record, StoreError> {
    /// Only the format field: checked before the rest is trusted to mean
    /// what this version thinks it means. Skipping the other fields is much
    /// cheaper than building a value tree of the whole record.
    #[derive(Deserialize)]
    struct Probe {
        format: Option<serde_json::Value>,
    }
    let corrupt = |detail: String| StoreError::Corrupt {
        sync: id.to_string(),
        detail,
    };
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| corrupt(format!("not a JSON record: {e}")))?;
    let format = match probe.format.as_ref().map(|f| f.as_u64()) {
        Some(Some(f))
            if (u64::from(OLDEST_RECORD_FORMAT)..=u64::from(RECORD_FORMAT)).contains(&f) =>
        {
            f
        }
        Some(Some(found)) => {
            return Err(StoreError::UnsupportedFormat {
                sync: id.to_string(),
                found,
                supported: u64::from(RECORD_FORMAT),
            })
        }
        Some(None) => return Err(corrupt("the format field is not a number".into())),
        None => return Err(corrupt("no format field".into())),
    };
    if format == u64::from(OLDEST_RECORD_FORMAT) {
        return serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()));
    }
    let body: RecordBody = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    let head = head()?.ok_or_else(|| {
        corrupt(format!(
            "its head (kind, start time, labels; key `m/{id}`) is missing"
        ))
    })?;
    let head: RecordHead =
        serde_json::from_slice(&head).map_err(|e| corrupt(format!("its head: {e}")))?;
    Ok(Record {
        format: body.format,
        id: body.id.into_owned(),
        kind: head.kind.into_owned(),
        state_version: body.state_version,
        seq: body.seq,
        phase: body.phase.into_owned(),
        status: body.status,
        effects_run: body.effects_run,
        failed_effects: body.failed_effects,
        last_error: body.last_error,
        created_at: head.created_at,
        updated_at: body.updated_at,
        labels: head.labels.into_owned(),
        state: body.state.into_owned(),
        plan: None,
        segments: Vec::new(),
    })
}

/// Removes the snapshot files sled left half-written in the store at `path`;
/// returns whether there were any.
///
/// sled 0.34 writes a new snapshot while it opens a store (after recovering
/// its log): into `snap.<lsn>.generating`, synced, then renamed to
/// `snap.<lsn>`. But when it opens, it also reads `.generating` files as
/// snapshots, so a process killed while writing one leaves a store that
/// every later open refuses ("Read corrupted data at file offset None"). The
/// crash test over HTTP failed twice with exactly that error after a SIGKILL;
/// a hand-made torn `.generating` file reproduces it.
/// Such a file was never renamed, so it never was sled's snapshot: the
/// previous snapshot and sled's log still hold everything, and removing it
/// restores the state sled had before that open.
///
/// Only called after sled refused to open the store for another reason than
/// its lock, so no live process is writing a snapshot here.
fn remove_torn_snapshots(path: &Path) -> bool {
    let Ok(entries) = std::fs::read_dir(path) else {
        return false;
    };
    let mut removed = false;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.") && name.ends_with(".generating") {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::warn!(
                        store = %path.display(),
                        file = %name,
                        "removed a snapshot file sled left half-written (killed while opening)"
                    );
                    removed = true;
                }
                Err(e) => tracing::warn!(
                    store = %path.display(),
                    file = %name,
                    error = %e,
                    "cannot remove a half-written sled snapshot"
                ),
            }
        }
    }
    removed
}

fn open_error(path: &Path, e: sled::Error) -> StoreError {
    if let sled::Error::Corruption { .. } = e {
        return io_error(path, e);
    }
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
    match e {
        // sled says "Read corrupted data at file offset None backtrace ()":
        // name the store and its files instead.
        sled::Error::Corruption { at, .. } => StoreError::SledCorrupt {
            path: path.to_path_buf(),
            files: sled_files(path),
            at: at.map(|at| format!(" at {at}")).unwrap_or_default(),
        },
        e => StoreError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        },
    }
}

/// The files sled keeps in the store at `path` (not the log), for messages.
fn sled_files(path: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n == "conf" || n == "db" || n == "blobs" || n.starts_with("snap."))
        .collect();
    names.sort();
    if names.is_empty() {
        return "its files".to_string();
    }
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open_small(path: &Path) -> Arc<Store> {
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

    fn entry(seq: u64) -> HistoryEntry {
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

    /// Applying keeps only the last write to each key, and its result is the
    /// same as applying every write in order.
    #[test]
    fn applying_a_batch_keeps_the_last_write_to_each_key() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        tree.insert(b"gone", b"old".as_slice()).unwrap();
        tree.insert(b"back", b"old".as_slice()).unwrap();
        let put = |k: &str, v: &str| Write::Put(k.as_bytes().to_vec(), v.as_bytes().to_vec());
        let delete = |k: &str| Write::Delete(k.as_bytes().to_vec());
        let groups = [
            vec![put("r/a", "1"), put("h/a1", "x"), delete("back")],
            vec![put("r/a", "2"), put("gone", "new")],
            vec![put("r/a", "3"), delete("gone"), put("back", "again")],
        ];
        let writes = groups.iter().flatten().map(|w| match w {
            Write::Put(k, v) => (k.as_slice(), Some(v.as_slice())),
            Write::Delete(k) => (k.as_slice(), None),
        });
        apply(&tree, writes).unwrap();
        let read = |k: &str| {
            tree.get(k)
                .unwrap()
                .map(|v| String::from_utf8(v.to_vec()).unwrap())
        };
        assert_eq!(read("r/a").as_deref(), Some("3"));
        assert_eq!(read("h/a1").as_deref(), Some("x"));
        assert_eq!(read("gone"), None);
        assert_eq!(read("back").as_deref(), Some("again"));
    }

    /// A batch stores each sync's consecutive history entries as one value;
    /// reading gives every entry once, in order, whether entries are stored
    /// alone (as by earlier versions), joined, or joined twice over (a replay
    /// after a crash re-applies groups sled may already hold).
    #[test]
    fn history_entries_are_joined_per_batch_and_read_back_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_small(&dir.path().join("db"));
        for seq in 1..=5 {
            let commit = Commit::new()
                .history("a", &entry(seq))
                .unwrap()
                .history("b", &entry(seq))
                .unwrap();
            store.commit_blocking(commit).unwrap();
        }
        let seqs =
            |id: &str| -> Vec<u64> { store.history(id).unwrap().iter().map(|e| e.seq).collect() };
        assert_eq!(seqs("a"), [1, 2, 3, 4, 5]);
        assert_eq!(seqs("b"), [1, 2, 3, 4, 5]);
        let keys = store.tree.scan_prefix(history_prefix("a")).count();
        assert_eq!(keys, 1, "five entries applied in one batch share one key");

        // What a replay can leave: a single entry, then a run overlapping it
        // and a later run, all for sync "c".
        let json = |seqs: &[u64]| -> Vec<u8> {
            let entries: Vec<_> = seqs.iter().map(|s| entry(*s)).collect();
            serde_json::to_vec(&entries).unwrap()
        };
        let tree = &store.tree;
        tree.insert(history_key("c", 1), serde_json::to_vec(&entry(1)).unwrap())
            .unwrap();
        tree.insert(history_key("c", 2), json(&[2, 3, 4])).unwrap();
        tree.insert(history_key("c", 3), json(&[3, 4, 5, 6]))
            .unwrap();
        assert_eq!(seqs("c"), [1, 2, 3, 4, 5, 6]);

        tree.insert(history_key("c", 7), b"[{\"seq\": 7".to_vec())
            .unwrap();
        let err = store.history("c").unwrap_err().to_string();
        assert!(err.contains("history entry") && err.contains('c'), "{err}");
    }

    /// An entry is stored as a tuple without field names, its time in unix
    /// nanoseconds and `to` only when the phase changed, and reads back
    /// equal; entries of the earlier layout (an object alone, or objects
    /// joined in a run, here mixed with tuples as a replay across an upgrade
    /// can join them) still read.
    #[test]
    fn history_entries_are_compact_tuples_and_old_objects_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_small(&dir.path().join("db"));
        let at = time::macros::datetime!(2026-12-01 18:44:01.123456789 UTC);
        let same = HistoryEntry {
            seq: 1,
            at,
            from: "AdGroupsCreated".into(),
            effect: Some("create ad `a1` under t2_g".into()),
            outcome: "created t2_a".into(),
            to: "AdGroupsCreated".into(),
        };
        let changed = HistoryEntry {
            seq: 2,
            effect: None,
            to: "AdsCreated".into(),
            ..same.clone()
        };
        let commit = Commit::new()
            .history("a", &same)
            .unwrap()
            .history("a", &changed)
            .unwrap();
        let bytes = |c: &Commit| -> Vec<Vec<u8>> {
            c.writes
                .iter()
                .filter_map(|w| match w {
                    Write::Put(_, v) => Some(v.clone()),
                    _ => None,
                })
                .collect()
        };
        let written = bytes(&commit);
        assert_eq!(
            String::from_utf8_lossy(&written[0]),
            r#"[1796150641123456789,"AdGroupsCreated","create ad `a1` under t2_g","created t2_a"]"#
        );
        assert_eq!(
            String::from_utf8_lossy(&written[1]),
            r#"[1796150641123456789,"AdGroupsCreated",null,"created t2_a","AdsCreated"]"#
        );
        store.commit_blocking(commit).unwrap();
        assert_eq!(store.history("a").unwrap(), [same.clone(), changed.clone()]);

        // Written by hand in the earlier layout: an object alone, then a run
        // of objects, then a run mixing an object and a tuple.
        let old = |seq: u64| {
            serde_json::json!({
                "seq": seq, "at": "2026-12-01T18:44:01.123456789Z", "from": "Pending",
                "effect": "create campaign `c` \"Spring\" in account a2", "outcome": "created t2_c",
                "to": "CampaignCreated"
            })
        };
        let tree = &store.tree;
        tree.insert(history_key("b", 1), old(1).to_string().as_bytes())
            .unwrap();
        tree.insert(
            history_key("b", 2),
            serde_json::json!([old(2), old(3)]).to_string().as_bytes(),
        )
        .unwrap();
        let tuple = String::from_utf8(written[1].clone()).unwrap();
        tree.insert(
            history_key("b", 4),
            format!("[ {},{tuple}]", old(4)).as_bytes(),
        )
        .unwrap();
        let read = store.history("b").unwrap();
        assert_eq!(
            read.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(read[0].at, at);
        assert_eq!(read[0].to, "CampaignCreated");
        assert_eq!(
            read[3].effect.as_deref(),
            Some("create campaign `c` \"Spring\" in account a2")
        );
        assert_eq!(read[4], HistoryEntry { seq: 5, ..changed });

        tree.insert(history_key("b", 6), b"[1,\"x\"]".to_vec())
            .unwrap();
        let err = store.history("b").unwrap_err().to_string();
        assert!(err.contains("history entry") && err.contains('b'), "{err}");
    }

    /// A run stores its first entry whole and each later one that starts
    /// where the one before ended as `[effect, outcome, ns after(, to)]`;
    /// every entry reads back equal, times to the nanosecond, phases and
    /// all, including one that does not start where the one before ended.
    #[test]
    fn a_run_stores_later_entries_as_follow_ons_and_reads_them_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_small(&dir.path().join("db"));
        let t0 = time::macros::datetime!(2026-12-01 18:44:01.123456789 UTC);
        let step = |seq: u64, ns: i64, from: &str, to: &str, effect: Option<&str>| HistoryEntry {
            seq,
            at: t0 + time::Duration::nanoseconds(ns),
            from: from.into(),
            effect: effect.map(Into::into),
            outcome: format!("outcome {seq}"),
            to: to.into(),
        };
        let entries = [
            step(0, 0, "", "Pending", None),
            step(
                1,
                1_000_001,
                "Pending",
                "CampaignCreated",
                Some("create campaign `c`"),
            ),
            step(
                2,
                2_500_000,
                "CampaignCreated",
                "CampaignCreated",
                Some("create ad_group `g`"),
            ),
            // The clock went back, and a phase that is not the last one's.
            step(3, -7, "Elsewhere", "Elsewhere", Some("odd")),
            step(4, 9_000_000_000, "Elsewhere", "Synced", None),
        ];
        let mut commit = Commit::new();
        for e in &entries {
            commit = commit.history("a", e).unwrap();
        }
        store.commit_blocking(commit).unwrap();
        assert_eq!(store.history("a").unwrap(), entries);

        let (_, value) = store
            .tree
            .scan_prefix(history_prefix("a"))
            .next()
            .unwrap()
            .unwrap();
        let run: serde_json::Value = serde_json::from_slice(&value).unwrap();
        assert_eq!(
            run,
            serde_json::json!([
                [1796150641123456789_i64, "", null, "outcome 0", "Pending"],
                [
                    "create campaign `c`",
                    "outcome 1",
                    1_000_001,
                    "CampaignCreated"
                ],
                ["create ad_group `g`", "outcome 2", 1_499_999],
                [1796150641123456782_i64, "Elsewhere", "odd", "outcome 3"],
                [null, "outcome 4", 9_000_000_007_i64, "Synced"],
            ])
        );

        // A follow-on with no whole entry before it is corrupt, not a panic.
        store
            .tree
            .insert(
                history_key("b", 1),
                br#"[["x","y",1],["x","y",1]]"#.to_vec(),
            )
            .unwrap();
        let err = store.history("b").unwrap_err().to_string();
        assert!(err.contains("history entry") && err.contains('b'), "{err}");
    }

    /// A process killed while sled wrote its snapshot during an open leaves
    /// `snap.<lsn>.generating`, which sled would then read as a snapshot and
    /// refuse the store. The store opens again, with its data; a damaged
    /// snapshot that sled did finish is still an error naming the store.
    #[test]
    fn a_snapshot_torn_by_a_kill_during_open_does_not_make_the_store_unopenable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db");
        let store = Store::open(&path).unwrap();
        store
            .commit_blocking(Commit::new().data(b"k", b"v".to_vec()))
            .unwrap();
        drop(store);
        let torn = path.join("snap.00000000000FFFFF.generating");
        std::fs::write(&torn, b"half a snapshot").unwrap();

        let store = Store::open(&path).unwrap();
        assert_eq!(store.data(b"k").unwrap(), Some(b"v".to_vec()));
        assert!(!torn.exists());
        drop(store);

        let other = dir.path().join("other");
        drop(Store::open(&other).unwrap());
        std::fs::write(other.join("snap.00000000000FFFFF"), b"damaged").unwrap();
        let err = Store::open(&other).unwrap_err().to_string();
        assert!(err.contains("other") && err.contains("corrupt"), "{err}");
    }

    /// The applier is woken once per APPLY_BATCH groups; a read in between
    /// must wake it and see every acknowledged group.
    #[test]
    fn a_read_sees_groups_that_did_not_fill_a_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_small(&dir.path().join("db"));
        for k in 0..3u8 {
            store
                .commit_blocking(Commit::new().data(&[b'k', k], vec![k]))
                .unwrap();
        }
        const { assert!(3 < APPLY_BATCH) };
        for k in 0..3u8 {
            assert_eq!(store.data(&[b'k', k]).unwrap(), Some(vec![k]));
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
