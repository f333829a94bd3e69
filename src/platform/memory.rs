//! An in-memory ad platform for tests, the demo, and library users' own tests.

use std::collections::{BTreeMap, VecDeque};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::adapter::{
    AdapterError, EntityKind, EntitySpec, FieldError, FoundEntity, KeywordModel, Parent,
    PlatformEntity, PushAdapter,
};
use crate::converge::{fields_of, Observed};
use crate::model::{ConfiguredStatus, Keyword, MIN_NAME_LEN};
use adsync_engine::{Clock, Timestamp};

/// Kinds of platform calls, for scripting faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// `create`.
    Create,
    /// `update`.
    Update,
    /// `find`.
    Find,
    /// `set_ad_group_keywords`.
    SetKeywords,
    /// `list`.
    List,
    /// `archive`.
    Archive,
}

/// A scripted failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Not applied; reported as a transient error (like a 503).
    Transient,
    /// Not applied; reported as a permanent error with this message.
    Permanent(String),
    /// Applied, but the response is lost: reported as outcome unknown.
    LoseResponse,
    /// Not applied, but reported as outcome unknown (a timeout before the
    /// platform saw the request).
    Timeout,
}

/// When a scripted fault fires.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// The n-th call of any kind (1-based, counting every call since the platform was made).
    NthCall(u64),
    /// The next call of `op` on `kind` (any kind when `None`).
    Next {
        /// The call kind.
        op: Op,
        /// The entity kind, or any.
        kind: Option<EntityKind>,
    },
}

/// An entity held by the platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredEntity {
    /// Platform id, as `create` returned it.
    pub id: String,
    /// Campaign, ad group, ad or keyword.
    pub kind: EntityKind,
    /// The ad account it was created in.
    pub account_id: String,
    /// Parent's platform id; `None` for campaigns.
    pub parent_id: Option<String>,
    /// Name (keyword: text).
    pub name: String,
    /// Fields as last written.
    pub spec: EntitySpec,
    /// Keyword targeting (ad groups, targeting model).
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Creation time, from the platform's clock.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    /// Updates applied to it so far (each `update` that reached it, and each
    /// keyword-targeting update of an ad group).
    pub updates: u64,
}

/// One call the platform received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    /// 1-based call number.
    pub n: u64,
    /// Call kind.
    pub op: Op,
    /// Entity kind.
    pub kind: EntityKind,
    /// Name or id the call was about.
    pub subject: String,
    /// The fault injected, if any.
    pub fault: Option<Fault>,
}

/// How many of the latest calls [`MemoryPlatform::calls`] keeps: the log is
/// for tests to inspect, and a large push must not hold every call it made.
pub const CALL_LOG_LEN: usize = 10_000;

#[derive(Debug, Default, Serialize, Deserialize)]
struct Inner {
    next_id: u64,
    calls: u64,
    creations: u64,
    /// Boxed: a B-tree node holds its values inline with room to spare, and
    /// an entity (its spec inline) is a few hundred bytes, so boxing keeps
    /// the spare room small; the map was the largest allocation of a large
    /// push to this platform.
    entities: BTreeMap<String, Box<StoredEntity>>,
    faults: Vec<(Trigger, Fault)>,
    /// The latest calls, at most [`CALL_LOG_LEN`]. Not kept in the file: a
    /// file written by an earlier version has a `log`, which is ignored.
    #[serde(skip)]
    log: VecDeque<CallRecord>,
}

/// One change to a file-backed platform: a line of its file after the snapshot.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Change {
    /// A call received: the call count after it, and the index (in the
    /// scripted faults) of the fault it consumed.
    Call(u64, Option<usize>),
    /// An entity created (by a call or [`MemoryPlatform::insert`]): the next
    /// id and the count of creations advance, as they did when it was made.
    Created(Box<StoredEntity>),
    /// An entity's state after an update.
    Updated(Box<StoredEntity>),
    /// An entity removed.
    Removed(String),
    /// A fault scripted.
    Fault(Trigger, Fault),
}

impl Inner {
    /// Replays `change`; a change that cannot follow the state read so far is an error.
    fn apply(&mut self, change: Change) -> Result<(), String> {
        match change {
            Change::Call(n, fault) => {
                self.calls = n;
                if let Some(i) = fault {
                    if i >= self.faults.len() {
                        return Err(format!(
                            "call {n} consumed scripted fault {i}, but only {} are scripted",
                            self.faults.len()
                        ));
                    }
                    self.faults.remove(i);
                }
            }
            Change::Created(e) => {
                self.next_id += 1;
                self.creations += 1;
                self.entities.insert(e.id.clone(), e);
            }
            Change::Updated(e) => {
                if !self.entities.contains_key(&e.id) {
                    return Err(format!("update of {}, which was never created", e.id));
                }
                self.entities.insert(e.id.clone(), e);
            }
            Change::Removed(id) => {
                self.entities.remove(&id);
            }
            Change::Fault(trigger, fault) => self.faults.push((trigger, fault)),
        }
        Ok(())
    }
}

/// An in-memory ad platform for tests, the demo, and library users' own tests.
///
/// It behaves like a platform without idempotency keys: every create makes a
/// new entity, even one with a name that already exists. It can be scripted to
/// fail a given call, and it counts creations, so a test can prove that a push
/// never duplicated anything.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::sync::Arc;
/// use adsync::{EntityKind, PushAdapter};
/// use adsync::SystemClock;
/// use adsync::memory::{Fault, MemoryPlatform, Op};
///
/// let platform = MemoryPlatform::new(Arc::new(SystemClock));
/// // The first ad group create succeeds on the platform but its response is lost.
/// platform.fail_next(Op::Create, Some(EntityKind::AdGroup), Fault::LoseResponse);
/// assert_eq!(platform.creations(), 0);
/// # }
/// ```
///
/// [`MemoryPlatform::open_file`] keeps the platform in a file, so it outlives a
/// killed process (crash tests, and the CLI between runs). The file is JSON
/// lines: a snapshot of the platform on the first line, then one line per
/// change (a call counted, an entity created, updated or removed, a fault
/// scripted), appended before the call returns. Opening replays the changes
/// and, when they outgrow the snapshot, compacts them into a new snapshot.
/// A file written by earlier versions (one JSON snapshot) still opens.
///
/// The in-memory platform: a [`PushAdapter`]
/// without idempotency, scriptable faults and duplicate counting. Shared behind an `Arc`: the pusher calls it while the test
/// inspects it.
pub struct MemoryPlatform {
    inner: Mutex<Inner>,
    clock: Arc<dyn Clock>,
    keyword_model: KeywordModel,
    file: Option<Arc<Journal>>,
    /// Whether it offers `list` (see [`MemoryPlatform::without_listing`]).
    listing: bool,
}

/// The file a file-backed platform is kept in, appended to change by change.
///
/// Lines are written with `write`, without `fsync`: the file stands for a
/// remote platform, which must remember what it did when adsync is killed
/// (the kernel keeps what was written), not survive a power cut of this
/// machine. Changes are queued in the order they were made (under the
/// platform's lock) and written in that order by whichever call flushes first.
#[derive(Debug)]
struct Journal {
    path: PathBuf,
    /// Lines not yet written.
    pending: Mutex<Vec<u8>>,
    /// The file, appended to; `Err` once a write failed: later lines would
    /// follow a gap, so nothing more is written.
    file: Mutex<Result<std::fs::File, String>>,
}

impl Journal {
    /// Queues `change` as a line.
    fn record(&self, change: &Change) {
        let mut pending = self.pending.lock();
        // These types always serialize (string keys, no custom serializers).
        if serde_json::to_writer(&mut *pending, change).is_ok() {
            pending.push(b'\n');
        }
    }

    /// Writes every line queued so far (and waits for a write of earlier
    /// lines another call started).
    fn flush(&self) -> std::io::Result<()> {
        let mut file = self.file.lock();
        let bytes = std::mem::take(&mut *self.pending.lock());
        let f = match &mut *file {
            Ok(f) => f,
            Err(e) => return Err(std::io::Error::other(e.clone())),
        };
        if bytes.is_empty() {
            return Ok(());
        }
        if let Err(e) = f.write_all(&bytes) {
            *file = Err(format!("an earlier write failed: {e}"));
            return Err(e);
        }
        Ok(())
    }
}

/// When opening finds at least this many changes after the snapshot, and
/// more bytes of them than of the snapshot, it writes a new snapshot.
const COMPACT_AFTER_LINES: u64 = 1024;

/// What reading a platform's file found.
struct Loaded {
    inner: Inner,
    /// Where the last whole line ends: a torn line after it is cut off.
    good_len: u64,
    /// The file's length.
    len: u64,
    snapshot_bytes: u64,
    changes: u64,
    /// The file is one snapshot without a line end (written by an earlier version).
    old_layout: bool,
}

fn file_error(path: &Path, message: impl std::fmt::Display) -> PlatformFileError {
    PlatformFileError {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Reads a platform's file line by line: the snapshot, then the changes.
fn load(path: &Path, file: std::fs::File) -> Result<Loaded, PlatformFileError> {
    let mut reader = std::io::BufReader::new(file);
    let mut line = Vec::new();
    let n = reader
        .read_until(b'\n', &mut line)
        .map_err(|e| file_error(path, e))?;
    let mut loaded = Loaded {
        inner: Inner::default(),
        good_len: 0,
        len: n as u64,
        snapshot_bytes: n as u64,
        changes: 0,
        old_layout: false,
    };
    if n == 0 {
        return Ok(loaded);
    }
    let whole = line.last() == Some(&b'\n');
    loaded.inner = serde_json::from_slice(&line).map_err(|e| {
        file_error(
            path,
            format_args!("its snapshot (line 1) is not a platform: {e}"),
        )
    })?;
    loaded.old_layout = !whole;
    loaded.good_len = n as u64;
    let mut number = 1u64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(|e| file_error(path, e))?;
        if n == 0 {
            return Ok(loaded);
        }
        number += 1;
        let offset = loaded.len;
        loaded.len += n as u64;
        if line.last() != Some(&b'\n') {
            // The last line, cut short by a kill while it was written: its
            // call never returned, so dropping it is as if it never came.
            return Ok(loaded);
        }
        let change: Change = serde_json::from_slice(&line).map_err(|e| {
            file_error(
                path,
                format_args!("line {number} (byte offset {offset}) is damaged: {e}; only a torn last line is dropped"),
            )
        })?;
        loaded.inner.apply(change).map_err(|e| {
            file_error(
                path,
                format_args!("line {number} (byte offset {offset}) does not follow: {e}"),
            )
        })?;
        loaded.changes += 1;
        loaded.good_len = loaded.len;
    }
}

/// Writes `inner` as the whole file (a snapshot line), streamed to a
/// temporary file that replaces `path` once synced.
fn write_snapshot(path: &Path, inner: &Inner) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let f = std::fs::File::create(&tmp)?;
    let mut w = std::io::BufWriter::new(f);
    serde_json::to_writer(&mut w, inner).map_err(std::io::Error::other)?;
    w.write_all(b"\n")?;
    let f = w.into_inner().map_err(|e| e.into_error())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

impl std::fmt::Debug for MemoryPlatform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryPlatform")
            .field("file", &self.file.as_ref().map(|f| &f.path))
            .finish_non_exhaustive()
    }
}

/// Errors of a file-backed platform.
#[derive(Debug, thiserror::Error)]
#[error("memory platform file {path}: {message}")]
pub struct PlatformFileError {
    path: PathBuf,
    message: String,
}

impl MemoryPlatform {
    /// An empty platform whose keywords are entities, held in memory only.
    /// `clock` dates each entity's creation, which a look-up after a lost
    /// response compares with the time the create was intended.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryPlatform {
            inner: Mutex::new(Inner::default()),
            clock,
            keyword_model: KeywordModel::Entities,
            file: None,
            listing: true,
        }
    }

    /// A platform that does not offer `list`, as a user's own adapter that
    /// cannot list: pushes through it do not converge (they create what has
    /// no id and update the rest). Tests of that path use it.
    pub fn without_listing(mut self) -> Self {
        self.listing = false;
        self
    }

    /// Chooses how keywords are stored (entities, or strings on ad groups as on Reddit).
    pub fn with_keyword_model(mut self, model: KeywordModel) -> Self {
        self.keyword_model = model;
        self
    }

    /// A platform kept in `path`: loaded when it exists (a torn last line,
    /// left by a kill, is dropped; any other damaged line is an error), then
    /// every change appended to it. See [`MemoryPlatform`].
    ///
    /// # Errors
    ///
    /// [`PlatformFileError`] naming the file if it cannot be read, created or
    /// written, or holds a damaged line that is not the last.
    pub fn open_file(
        path: impl AsRef<Path>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, PlatformFileError> {
        let path = path.as_ref().to_path_buf();
        let loaded = match std::fs::File::open(&path) {
            Ok(f) => Some(load(&path, f)?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(file_error(&path, e)),
        };
        let inner = match loaded {
            Some(loaded) => {
                let compact = loaded.old_layout
                    || (loaded.changes >= COMPACT_AFTER_LINES
                        && loaded.len - loaded.snapshot_bytes > loaded.snapshot_bytes);
                if compact {
                    write_snapshot(&path, &loaded.inner).map_err(|e| file_error(&path, e))?;
                } else if loaded.good_len < loaded.len {
                    // Cut the torn line off, or the next line would extend it.
                    std::fs::OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .and_then(|f| f.set_len(loaded.good_len))
                        .map_err(|e| file_error(&path, e))?;
                }
                loaded.inner
            }
            None => {
                let inner = Inner::default();
                write_snapshot(&path, &inner).map_err(|e| file_error(&path, e))?;
                inner
            }
        };
        let file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| file_error(&path, e))?;
        Ok(MemoryPlatform {
            inner: Mutex::new(inner),
            clock,
            keyword_model: KeywordModel::Entities,
            file: Some(Arc::new(Journal {
                path,
                pending: Mutex::new(Vec::new()),
                file: Mutex::new(Ok(file)),
            })),
            listing: true,
        })
    }

    /// Queues `change` for the file, when file-backed (under the platform's
    /// lock, so lines follow the order of the changes).
    fn record(&self, change: impl FnOnce() -> Change) {
        if let Some(journal) = &self.file {
            journal.record(&change());
        }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Inner> {
        self.inner.lock()
    }

    /// Makes call number `n` (1-based, all kinds) fail with `fault`.
    ///
    /// # Panics
    ///
    /// When file-backed and the file cannot be written: the platform would
    /// otherwise hold what its file does not.
    pub fn fail_call(&self, n: u64, fault: Fault) {
        let mut inner = self.lock();
        self.record(|| Change::Fault(Trigger::NthCall(n), fault.clone()));
        inner.faults.push((Trigger::NthCall(n), fault));
        drop(inner);
        self.save();
    }

    /// Makes the next `op` call on `kind` (or on any kind) fail with `fault`.
    ///
    /// # Panics
    ///
    /// When file-backed and the file cannot be written: the platform would
    /// otherwise hold what its file does not.
    pub fn fail_next(&self, op: Op, kind: Option<EntityKind>, fault: Fault) {
        let mut inner = self.lock();
        self.record(|| Change::Fault(Trigger::Next { op, kind }, fault.clone()));
        inner.faults.push((Trigger::Next { op, kind }, fault));
        drop(inner);
        self.save();
    }

    /// Every entity held, in id order.
    pub fn entities(&self) -> Vec<StoredEntity> {
        self.lock()
            .entities
            .values()
            .map(|e| StoredEntity::clone(e))
            .collect()
    }

    /// Creates performed so far (a duplicate counts too).
    pub fn creations(&self) -> u64 {
        self.lock().creations
    }

    /// The calls received by this platform object, the latest
    /// [`CALL_LOG_LEN`] of them (a file-backed platform does not keep them
    /// in its file).
    pub fn calls(&self) -> Vec<CallRecord> {
        self.lock().log.iter().cloned().collect()
    }

    /// Groups of entities with the same kind, parent and name: duplicates.
    pub fn duplicates(&self) -> Vec<Vec<String>> {
        let mut groups: BTreeMap<(EntityKind, String, Option<String>, String), Vec<String>> =
            BTreeMap::new();
        for e in self.lock().entities.values() {
            groups
                .entry((
                    e.kind,
                    e.account_id.clone(),
                    e.parent_id.clone(),
                    e.name.clone(),
                ))
                .or_default()
                .push(e.id.clone());
        }
        groups.into_values().filter(|ids| ids.len() > 1).collect()
    }

    /// Adds an entity directly, as if someone else had created it (tests of ambiguous look-ups).
    pub fn insert(&self, parent: &Parent, spec: &EntitySpec) -> String {
        let id = self.store_entity(&mut self.lock(), parent, spec);
        self.save();
        id
    }

    /// Deletes an entity directly, as if someone had removed it on the
    /// platform (tests of ids gone from the platform); returns it.
    pub fn remove(&self, id: &str) -> Option<StoredEntity> {
        let mut inner = self.lock();
        let removed = inner.entities.remove(id).map(|e| *e);
        if removed.is_some() {
            self.record(|| Change::Removed(id.to_string()));
        }
        drop(inner);
        self.save();
        removed
    }

    /// An update of entity `id` to `spec`: every field, or only `fields`
    /// (the set file's names; one the spec leaves out is cleared).
    async fn write_update(
        &self,
        id: &str,
        spec: &EntitySpec,
        fields: Option<&[String]>,
    ) -> Result<(), AdapterError> {
        let result = {
            let mut inner = self.lock();
            match self.begin(&mut inner, Op::Update, spec.kind(), id) {
                fault @ (Some(Fault::LoseResponse) | None) => {
                    let applied = self.check(spec).and_then(|()| {
                        let Some(e) = inner.entities.get_mut(id).filter(|e| e.kind == spec.kind())
                        else {
                            return Err(AdapterError::NotFound {
                                message: format!(
                                    "{} {id} no longer exists on the platform",
                                    spec.kind()
                                ),
                            });
                        };
                        e.spec = match fields {
                            Some(fields) => with_fields(&e.spec, spec, fields)?,
                            None => spec.clone(),
                        };
                        e.name = e.spec.lookup_name().to_string();
                        e.updates += 1;
                        let e = e.clone();
                        self.record(|| Change::Updated(e));
                        Ok(())
                    });
                    lose_response(applied, fault.as_ref())
                }
                Some(f) => Err(Self::injected(&f)),
            }
        };
        self.persist().await?;
        result
    }

    /// `e` as a listing shows it: its fields as last written, and under
    /// keyword targeting its ad group's keywords as set by
    /// `set_ad_group_keywords` (not the spec's, which creates leave empty).
    fn observed(&self, e: &StoredEntity) -> Observed {
        let mut spec = e.spec.clone();
        if let EntitySpec::AdGroup(group) = &mut spec {
            group.keywords = e
                .keywords
                .iter()
                .map(|text| Keyword {
                    id: String::new(),
                    text: text.clone(),
                })
                .collect();
        }
        Observed {
            kind: e.kind,
            id: e.id.clone(),
            parent_id: e.parent_id.clone(),
            name: e.name.clone(),
            fields: fields_of(&spec, self.keyword_model),
        }
    }

    fn store_entity(&self, inner: &mut Inner, parent: &Parent, spec: &EntitySpec) -> String {
        inner.next_id += 1;
        inner.creations += 1;
        let prefix = match spec.kind() {
            EntityKind::Campaign => "cmp",
            EntityKind::AdGroup => "adg",
            EntityKind::Ad => "ad",
            EntityKind::Keyword => "kw",
        };
        let id = format!("{prefix}_{}", inner.next_id);
        let entity = Box::new(StoredEntity {
            id: id.clone(),
            kind: spec.kind(),
            account_id: parent.account_id.clone(),
            parent_id: parent.parent_id.clone(),
            name: spec.lookup_name().to_string(),
            spec: spec.clone(),
            keywords: Vec::new(),
            created_at: self.clock.now(),
            updates: 0,
        });
        self.record(|| Change::Created(entity.clone()));
        inner.entities.insert(id.clone(), entity);
        id
    }

    /// Records the call and returns the fault scripted for it, if any.
    fn begin(&self, inner: &mut Inner, op: Op, kind: EntityKind, subject: &str) -> Option<Fault> {
        inner.calls += 1;
        let n = inner.calls;
        let hit = inner.faults.iter().position(|(trigger, _)| match trigger {
            Trigger::NthCall(k) => *k == n,
            Trigger::Next { op: o, kind: k } => *o == op && k.is_none_or(|k| k == kind),
        });
        let fault = hit.map(|i| inner.faults.remove(i).1);
        self.record(|| Change::Call(n, hit));
        if inner.log.len() >= CALL_LOG_LEN {
            inner.log.pop_front();
        }
        inner.log.push_back(CallRecord {
            n,
            op,
            kind,
            subject: subject.to_string(),
            fault: fault.clone(),
        });
        fault
    }

    /// Writes the queued changes when file-backed, for the scripting methods
    /// (plain blocking code). A failure here would make the platform lie
    /// about what it holds, so it is fatal for the process.
    fn save(&self) {
        let Some(journal) = &self.file else {
            return;
        };
        if let Err(e) = journal.flush() {
            panic!(
                "memory platform cannot save {}: {e}",
                journal.path.display()
            );
        }
    }

    /// Writes the queued changes after an adapter call, when file-backed,
    /// with the file I/O on a blocking thread (never on an async worker). A
    /// failure makes the call's outcome unknown: the change is held in
    /// memory but not in the file.
    async fn persist(&self) -> Result<(), AdapterError> {
        let Some(journal) = self.file.clone() else {
            return Ok(());
        };
        let path = journal.path.clone();
        let written = tokio::task::spawn_blocking(move || journal.flush())
            .await
            .map_err(std::io::Error::other)
            .and_then(|r| r);
        written.map_err(|e| AdapterError::Unknown {
            message: format!("memory platform cannot save {}: {e}", path.display()),
        })
    }

    fn check(&self, spec: &EntitySpec) -> Result<(), AdapterError> {
        let name = spec.lookup_name();
        let min = if spec.kind() == EntityKind::Keyword {
            1
        } else {
            MIN_NAME_LEN
        };
        if name.chars().count() < min {
            return Err(AdapterError::Permanent {
                message: "Bad Request".into(),
                fields: vec![FieldError {
                    field: "name".into(),
                    message: format!("must be at least {min} characters"),
                }],
            });
        }
        Ok(())
    }

    fn injected(fault: &Fault) -> AdapterError {
        match fault {
            Fault::Transient => AdapterError::Transient {
                message: "503 Service Unavailable (injected)".into(),
                retry_after: None,
            },
            Fault::Permanent(message) => AdapterError::Permanent {
                message: message.clone(),
                fields: vec![],
            },
            Fault::LoseResponse => AdapterError::Unknown {
                message: "connection dropped after the request was sent (injected)".into(),
            },
            Fault::Timeout => AdapterError::Unknown {
                message: "timed out (injected)".into(),
            },
        }
    }
}

/// An applied change whose response was lost reads as "outcome unknown".
fn lose_response(
    applied: Result<(), AdapterError>,
    fault: Option<&Fault>,
) -> Result<(), AdapterError> {
    match (applied, fault) {
        (Ok(()), Some(f @ Fault::LoseResponse)) => Err(MemoryPlatform::injected(f)),
        (result, _) => result,
    }
}

#[async_trait]
impl PushAdapter for MemoryPlatform {
    fn platform(&self) -> &str {
        "memory"
    }

    fn keyword_model(&self) -> KeywordModel {
        self.keyword_model
    }

    async fn create(&self, parent: &Parent, spec: &EntitySpec) -> Result<String, AdapterError> {
        let result = {
            let mut inner = self.lock();
            let fault = self.begin(&mut inner, Op::Create, spec.kind(), spec.lookup_name());
            match fault {
                Some(Fault::LoseResponse) => self.check(spec).and_then(|()| {
                    self.store_entity(&mut inner, parent, spec);
                    Err(Self::injected(&Fault::LoseResponse))
                }),
                Some(f) => Err(Self::injected(&f)),
                None => {
                    if spec.kind() == EntityKind::Keyword
                        && self.keyword_model == KeywordModel::AdGroupTargeting
                    {
                        Err(AdapterError::Permanent {
                            message: "keywords are not entities on this platform".into(),
                            fields: vec![],
                        })
                    } else {
                        self.check(spec)
                            .map(|()| self.store_entity(&mut inner, parent, spec))
                    }
                }
            }
        };
        self.persist().await?;
        result
    }

    async fn update(
        &self,
        _parent: &Parent,
        id: &str,
        spec: &EntitySpec,
    ) -> Result<(), AdapterError> {
        self.write_update(id, spec, None).await
    }

    async fn update_fields(
        &self,
        _parent: &Parent,
        id: &str,
        spec: &EntitySpec,
        fields: &[String],
    ) -> Result<(), AdapterError> {
        self.write_update(id, spec, Some(fields)).await
    }

    async fn archive(
        &self,
        _parent: &Parent,
        kind: EntityKind,
        id: &str,
    ) -> Result<(), AdapterError> {
        let result = {
            let mut inner = self.lock();
            match self.begin(&mut inner, Op::Archive, kind, id) {
                fault @ (Some(Fault::LoseResponse) | None) => {
                    let applied = match inner.entities.get_mut(id).filter(|e| e.kind == kind) {
                        None => Err(AdapterError::NotFound {
                            message: format!("{kind} {id} no longer exists on the platform"),
                        }),
                        // A keyword entity has no status here: archiving it
                        // removes it, as Amazon's keyword archive hides it.
                        Some(_) if kind == EntityKind::Keyword => {
                            inner.entities.remove(id);
                            self.record(|| Change::Removed(id.to_string()));
                            Ok(())
                        }
                        Some(e) => {
                            match &mut e.spec {
                                EntitySpec::Campaign(c) => c.status = ConfiguredStatus::Archived,
                                EntitySpec::AdGroup(g) => g.status = ConfiguredStatus::Archived,
                                EntitySpec::Ad(a) => a.status = ConfiguredStatus::Archived,
                                EntitySpec::Keyword(_) => {}
                            }
                            e.updates += 1;
                            let e = e.clone();
                            self.record(|| Change::Updated(e));
                            Ok(())
                        }
                    };
                    lose_response(applied, fault.as_ref())
                }
                Some(f) => Err(Self::injected(&f)),
            }
        };
        self.persist().await?;
        result
    }

    fn lists(&self) -> bool {
        self.listing
    }

    async fn find(
        &self,
        parent: &Parent,
        kind: EntityKind,
        name: &str,
        created_after: Timestamp,
    ) -> Result<Vec<FoundEntity>, AdapterError> {
        let result = {
            let mut inner = self.lock();
            match self.begin(&mut inner, Op::Find, kind, name) {
                Some(f) => Err(Self::injected(&f)),
                None => Ok(inner
                    .entities
                    .values()
                    .filter(|e| {
                        e.kind == kind
                            && e.account_id == parent.account_id
                            && e.parent_id == parent.parent_id
                            && e.name == name
                            && e.created_at >= created_after
                    })
                    .map(|e| FoundEntity {
                        id: e.id.clone(),
                        name: e.name.clone(),
                        created_at: e.created_at,
                    })
                    .collect()),
            }
        };
        self.persist().await?;
        result
    }

    async fn get(
        &self,
        parent: &Parent,
        kind: EntityKind,
        id: &str,
    ) -> Result<Option<PlatformEntity>, AdapterError> {
        let inner = self.lock();
        Ok(inner
            .entities
            .get(id)
            .filter(|e| e.kind == kind && e.account_id == parent.account_id)
            .map(|e| PlatformEntity {
                id: e.id.clone(),
                kind: e.kind,
                name: e.name.clone(),
                account_id: Some(e.account_id.clone()),
                parent_id: e.parent_id.clone(),
            }))
    }

    async fn list(&self, parent: &Parent, kind: EntityKind) -> Result<Vec<Observed>, AdapterError> {
        let subject = parent.parent_id.as_deref().unwrap_or(&parent.account_id);
        let result = {
            let mut inner = self.lock();
            match self.begin(&mut inner, Op::List, kind, subject) {
                Some(f) => Err(Self::injected(&f)),
                None => Ok(inner
                    .entities
                    .values()
                    .filter(|e| {
                        e.kind == kind
                            && e.account_id == parent.account_id
                            && e.parent_id == parent.parent_id
                    })
                    .map(|e| self.observed(e))
                    .collect()),
            }
        };
        self.persist().await?;
        result
    }

    async fn set_ad_group_keywords(
        &self,
        _parent: &Parent,
        ad_group_id: &str,
        keywords: &[Keyword],
    ) -> Result<(), AdapterError> {
        let result = {
            let mut inner = self.lock();
            match self.begin(
                &mut inner,
                Op::SetKeywords,
                EntityKind::AdGroup,
                ad_group_id,
            ) {
                fault @ (Some(Fault::LoseResponse) | None) => {
                    let applied = match inner.entities.get_mut(ad_group_id) {
                        Some(group) if group.kind == EntityKind::AdGroup => {
                            group.keywords = keywords.iter().map(|k| k.text.clone()).collect();
                            group.updates += 1;
                            let group = group.clone();
                            self.record(|| Change::Updated(group));
                            Ok(())
                        }
                        _ => Err(AdapterError::Permanent {
                            message: format!("ad group {ad_group_id} does not exist"),
                            fields: vec![],
                        }),
                    };
                    lose_response(applied, fault.as_ref())
                }
                Some(f) => Err(Self::injected(&f)),
            }
        };
        self.persist().await?;
        result
    }
}

/// `current` with `fields` (the set file's names) taken from `desired`: a
/// field `desired` leaves out is cleared. Both are the same kind.
fn with_fields(
    current: &EntitySpec,
    desired: &EntitySpec,
    fields: &[String],
) -> Result<EntitySpec, AdapterError> {
    let bad = |e: serde_json::Error| AdapterError::Permanent {
        message: format!("cannot apply fields {fields:?}: {e}"),
        fields: vec![],
    };
    let mut merged = serde_json::to_value(current).map_err(bad)?;
    let from = serde_json::to_value(desired).map_err(bad)?;
    if let (Some(into), Some(from)) = (merged.as_object_mut(), from.as_object()) {
        for field in fields {
            match from.get(field) {
                Some(value) => into.insert(field.clone(), value.clone()),
                None => into.remove(field),
            };
        }
    }
    serde_json::from_value(merged).map_err(bad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use adsync_engine::SystemClock;

    fn keyword(text: &str) -> EntitySpec {
        EntitySpec::Keyword(Keyword {
            id: text.into(),
            text: text.into(),
        })
    }

    fn parent() -> Parent {
        Parent {
            account_id: "a2_test".into(),
            parent_id: Some("adg_1".into()),
        }
    }

    fn open(path: &Path) -> MemoryPlatform {
        MemoryPlatform::open_file(path, Arc::new(SystemClock)).expect("platform file opens")
    }

    /// Entities, creations, calls and faults as a reopened platform sees them.
    fn state(p: &MemoryPlatform) -> (Vec<StoredEntity>, u64, u64, usize) {
        let inner = p.lock();
        (
            inner
                .entities
                .values()
                .map(|e| StoredEntity::clone(e))
                .collect(),
            inner.creations,
            inner.calls,
            inner.faults.len(),
        )
    }

    #[tokio::test]
    async fn every_change_is_appended_and_a_reopened_platform_holds_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("platform.json");
        let p = open(&path);
        let at_open = std::fs::read(&path).unwrap();
        p.fail_next(Op::Create, Some(EntityKind::Keyword), Fault::LoseResponse);
        p.fail_call(5, Fault::Transient);
        let mut ids = Vec::new();
        for i in 0..200 {
            match p.create(&parent(), &keyword(&format!("kw {i}"))).await {
                Ok(id) => ids.push(id),
                Err(AdapterError::Unknown { .. }) => {}
                Err(e) => assert!(matches!(e, AdapterError::Transient { .. }), "{e}"),
            }
        }
        p.update(&parent(), &ids[0], &keyword("renamed"))
            .await
            .unwrap();
        p.remove(&ids[1]).unwrap();
        let found = p
            .find(
                &parent(),
                EntityKind::Keyword,
                "renamed",
                time::OffsetDateTime::UNIX_EPOCH,
            )
            .await
            .unwrap();
        assert_eq!(found.len(), 1);

        // Append-only: what was there at open is still the file's start.
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(&bytes[..at_open.len()], &at_open[..]);
        let lines = bytes
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count();
        assert!(lines > 200, "one line per change, found {lines}");

        let before = state(&p);
        assert_eq!(
            before.1, 199,
            "a lost response created, a transient did not"
        );
        drop(p);
        let reopened = open(&path);
        assert_eq!(state(&reopened), before);
        assert!(
            reopened.calls().is_empty(),
            "the call log is not kept in the file"
        );
    }

    /// A kill while a line was written leaves a torn last line: it is
    /// dropped, cut off, and later changes follow the last whole line.
    #[tokio::test]
    async fn a_torn_last_line_is_dropped_and_the_file_stays_usable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("platform.json");
        let p = open(&path);
        let kept = p.create(&parent(), &keyword("kept")).await.unwrap();
        let whole = state(&p);
        drop(p);
        let full_len = std::fs::metadata(&path).unwrap().len();
        // A change cut short, as a SIGKILL in the middle of its write leaves it.
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(br#"{"created":{"id":"kw_9","kind":"keyw"#)
            .unwrap();
        drop(f);

        let p = open(&path);
        assert_eq!(state(&p), whole);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            full_len,
            "torn line cut off"
        );
        let next = p.create(&parent(), &keyword("next")).await.unwrap();
        drop(p);
        let p = open(&path);
        let ids: Vec<String> = p.entities().into_iter().map(|e| e.id).collect();
        assert_eq!(ids, vec![kept, next]);
    }

    #[tokio::test]
    async fn a_damaged_line_before_the_last_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("platform.json");
        let p = open(&path);
        for name in ["one", "two", "three"] {
            p.create(&parent(), &keyword(name)).await.unwrap();
        }
        drop(p);
        let text = std::fs::read_to_string(&path).unwrap();
        let mut lines: Vec<&str> = text.lines().collect();
        lines[2] = "{\"created\":{\"id\":#garbage";
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let err = MemoryPlatform::open_file(&path, Arc::new(SystemClock)).unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "memory platform file {}: line 3 (byte offset ",
                path.display()
            )),
            "{message}"
        );
        assert!(message.contains("is damaged"), "{message}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            lines.join("\n") + "\n",
            "untouched"
        );
    }

    /// A file written by the previous version: one JSON snapshot, with its call log.
    #[tokio::test]
    async fn a_snapshot_of_the_previous_layout_opens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("platform.json");
        std::fs::write(
            &path,
            r#"{"next_id":3,"calls":4,"creations":3,"entities":{"kw_3":{"id":"kw_3","kind":"keyword","account_id":"a2_test","parent_id":"adg_1","name":"shoes","spec":{"kind":"keyword","id":"k1","text":"shoes"},"keywords":[],"created_at":"2026-12-01T10:00:00Z","updates":0}},"faults":[[{"nth_call":9},"transient"]],"log":[{"n":1,"op":"create","kind":"keyword","subject":"shoes","fault":null}]}"#,
        )
        .unwrap();
        let p = open(&path);
        assert_eq!(p.entities()[0].name, "shoes");
        let (_, creations, calls, faults) = state(&p);
        assert_eq!((creations, calls, faults), (3, 4, 1));
        let id = p.create(&parent(), &keyword("boots")).await.unwrap();
        assert_eq!(id, "kw_4");
        drop(p);
        let p = open(&path);
        let (entities, _, calls, _) = state(&p);
        assert_eq!((entities.len(), calls), (2, 5));
    }

    #[tokio::test]
    async fn a_long_journal_is_compacted_into_a_snapshot_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("platform.json");
        let p = open(&path);
        let id = p.create(&parent(), &keyword("kw")).await.unwrap();
        for _ in 0..COMPACT_AFTER_LINES {
            p.update(&parent(), &id, &keyword("kw")).await.unwrap();
        }
        let before = state(&p);
        drop(p);
        let p = open(&path);
        assert_eq!(state(&p), before);
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 1);
    }
}
