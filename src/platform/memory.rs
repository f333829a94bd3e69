//! An in-memory ad platform for tests, the demo, and library users' own tests.
//!
//! It behaves like a platform without idempotency keys: every create makes a
//! new entity, even one with a name that already exists. It can be scripted to
//! fail a given call, and it counts creations, so a test can prove that a push
//! never duplicated anything.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! use std::sync::Arc;
//! use adsync::adapter::{EntityKind, PushAdapter};
//! use adsync::clock::SystemClock;
//! use adsync::platform::memory::{Fault, MemoryPlatform, Op};
//!
//! let platform = MemoryPlatform::new(Arc::new(SystemClock));
//! // The first ad group create succeeds on the platform but its response is lost.
//! platform.fail_next(Op::Create, Some(EntityKind::AdGroup), Fault::LoseResponse);
//! assert_eq!(platform.creations(), 0);
//! # }
//! ```
//!
//! [`MemoryPlatform::open_file`] keeps the platform in a JSON file, rewritten
//! atomically after every call, so it outlives a killed process (crash tests).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::adapter::{
    AdapterError, EntityKind, EntitySpec, FieldError, FoundEntity, KeywordModel, Parent,
    PlatformEntity, PushAdapter,
};
use crate::clock::{Clock, Timestamp};
use crate::model::{Keyword, MIN_NAME_LEN};

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
    /// Platform id.
    pub id: String,
    /// Level.
    pub kind: EntityKind,
    /// Account.
    pub account_id: String,
    /// Parent's platform id.
    pub parent_id: Option<String>,
    /// Name (keyword: text).
    pub name: String,
    /// Fields as last written.
    pub spec: EntitySpec,
    /// Keyword targeting (ad groups, targeting model).
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Creation time.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    /// Updates applied.
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
    log: Vec<CallRecord>,
    /// Snapshots taken for the file so far (not itself saved).
    #[serde(skip)]
    version: u64,
}

/// The in-memory platform. See the module docs.
pub struct MemoryPlatform {
    inner: Mutex<Inner>,
    clock: Arc<dyn Clock>,
    keyword_model: KeywordModel,
    file: Option<PlatformFile>,
}

/// The file a file-backed platform is kept in.
#[derive(Debug, Clone)]
struct PlatformFile {
    path: PathBuf,
    /// The version of the last snapshot written: a slower write of an older
    /// snapshot must not overwrite a newer one.
    written: Arc<Mutex<u64>>,
}

impl PlatformFile {
    /// Writes `bytes` (snapshot `version`) atomically, unless a newer one is there.
    fn write(&self, version: u64, bytes: &[u8]) -> std::io::Result<()> {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if version <= *written {
            return Ok(());
        }
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp)?;
        std::io::Write::write_all(&mut f, bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)?;
        *written = version;
        Ok(())
    }
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
    /// An empty platform whose keywords are entities.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        MemoryPlatform {
            inner: Mutex::new(Inner::default()),
            clock,
            keyword_model: KeywordModel::Entities,
            file: None,
        }
    }

    /// Chooses how keywords are stored (entities, or strings on ad groups as on Reddit).
    pub fn with_keyword_model(mut self, model: KeywordModel) -> Self {
        self.keyword_model = model;
        self
    }

    /// A platform kept in `path` (loaded when it exists, rewritten atomically after every call).
    pub fn open_file(
        path: impl AsRef<Path>,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, PlatformFileError> {
        let path = path.as_ref().to_path_buf();
        let inner = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| PlatformFileError {
                path: path.clone(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Inner::default(),
            Err(e) => {
                return Err(PlatformFileError {
                    path,
                    message: e.to_string(),
                })
            }
        };
        Ok(MemoryPlatform {
            inner: Mutex::new(inner),
            clock,
            keyword_model: KeywordModel::Entities,
            file: Some(PlatformFile {
                path,
                written: Arc::new(Mutex::new(0)),
            }),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes call number `n` (1-based, all kinds) fail with `fault`.
    pub fn fail_call(&self, n: u64, fault: Fault) {
        self.lock().faults.push((Trigger::NthCall(n), fault));
        self.save();
    }

    /// Makes the next `op` call on `kind` (or on any kind) fail with `fault`.
    pub fn fail_next(&self, op: Op, kind: Option<EntityKind>, fault: Fault) {
        self.lock().faults.push((Trigger::Next { op, kind }, fault));
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

    /// Every call received so far.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.lock().log.clone()
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
        let removed = self.lock().entities.remove(id).map(|e| *e);
        self.save();
        removed
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
        inner.entities.insert(
            id.clone(),
            Box::new(StoredEntity {
                id: id.clone(),
                kind: spec.kind(),
                account_id: parent.account_id.clone(),
                parent_id: parent.parent_id.clone(),
                name: spec.lookup_name().to_string(),
                spec: spec.clone(),
                keywords: Vec::new(),
                created_at: self.clock.now(),
                updates: 0,
            }),
        );
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
        inner.log.push(CallRecord {
            n,
            op,
            kind,
            subject: subject.to_string(),
            fault: fault.clone(),
        });
        fault
    }

    /// A snapshot of the platform to write, when file-backed: its version
    /// (taken under the same lock, so versions follow the state) and bytes.
    fn snapshot(&self) -> Option<(PlatformFile, u64, std::io::Result<Vec<u8>>)> {
        let file = self.file.clone()?;
        let mut inner = self.lock();
        inner.version += 1;
        let bytes = serde_json::to_vec(&*inner).map_err(std::io::Error::other);
        Some((file, inner.version, bytes))
    }

    /// Persists the platform when file-backed, for the scripting methods (plain
    /// blocking code). A failure here would make the platform lie about what
    /// it holds, so it is fatal for the process.
    fn save(&self) {
        let Some((file, version, bytes)) = self.snapshot() else {
            return;
        };
        if let Err(e) = bytes.and_then(|bytes| file.write(version, &bytes)) {
            panic!("memory platform cannot save {}: {e}", file.path.display());
        }
    }

    /// Persists the platform after an adapter call, with the file I/O on a
    /// blocking thread (never on an async worker). A failure makes the call's
    /// outcome unknown: the change is held in memory but not in the file.
    async fn persist(&self) -> Result<(), AdapterError> {
        let Some((file, version, bytes)) = self.snapshot() else {
            return Ok(());
        };
        let path = file.path.clone();
        let written = tokio::task::spawn_blocking(move || file.write(version, &bytes?))
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
        let result = {
            let mut inner = self.lock();
            match self.begin(&mut inner, Op::Update, spec.kind(), id) {
                fault @ (Some(Fault::LoseResponse) | None) => {
                    let applied =
                        self.check(spec)
                            .and_then(|()| match inner.entities.get_mut(id) {
                                Some(e) if e.kind == spec.kind() => {
                                    e.spec = spec.clone();
                                    e.name = spec.lookup_name().to_string();
                                    e.updates += 1;
                                    Ok(())
                                }
                                _ => Err(AdapterError::NotFound {
                                    message: format!(
                                        "{} {id} no longer exists on the platform",
                                        spec.kind()
                                    ),
                                }),
                            });
                    lose_response(applied, fault.as_ref())
                }
                Some(f) => Err(Self::injected(&f)),
            }
        };
        self.persist().await?;
        result
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
