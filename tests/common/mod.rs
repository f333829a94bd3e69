//! Shared test fixtures: a store of either backend, a scriptable in-memory
//! platform, paused time. The campaign sets are `adsync_fakes::fixtures`,
//! shared with benches and the demo.
//!
//! Every behavioural scenario is one `async fn(Backend)`; [`on_both_stores!`]
//! makes it a test on sled (`on_sled::name`) and one on PostgreSQL
//! (`on_postgres::name`). Both assert the same snapshot files: that is the
//! proof the two stores behave alike.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use adsync::memory::MemoryPlatform;
use adsync::KeywordModel;
use adsync::ManualClock;
use adsync::{Checkpoint, Runner};
use adsync::{CheckpointStore, IntoStore, Record, SharedStore, StoreError, StoreRead};
use adsync::{HistoryEntry, Store};
use adsync::{PushMachine, Pusher, SetReport};
use adsync_fakes::postgres::TestServer;
use adsync_postgres::PgStore;

#[allow(unused_imports)]
pub use adsync_fakes::fixtures::{example_set, small_set, TWO_CAMPAIGNS};

pub const ACCOUNT: &str = "a2_test";

/// The checkpoint store a scenario runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// sled in a temporary directory (the embedded default).
    Sled,
    /// A fresh database on the test binary's throwaway PostgreSQL server.
    Postgres,
}

/// Makes each listed `async fn name(backend: Backend)` a test on both
/// stores: `on_sled::name` and `on_postgres::name`. Tests run on tokio's
/// current-thread runtime; `#[multi_thread] name` on two worker threads;
/// `#[sled_only] name` only as `on_sled::name` (say why at the function).
#[macro_export]
macro_rules! on_both_stores {
    (@test Postgres, [sled_only], $name:ident) => {};
    (@test Sled, [sled_only], $name:ident) => {
        $crate::on_both_stores!(@test Sled, [], $name);
    };
    (@test $backend:ident, [], $name:ident) => {
        #[tokio::test]
        async fn $name() {
            super::$name($crate::common::Backend::$backend).await
        }
    };
    (@test $backend:ident, [multi_thread], $name:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            super::$name($crate::common::Backend::$backend).await
        }
    };
    ($($(#[$flavor:ident])? $name:ident),* $(,)?) => {
        mod on_sled {
            $($crate::on_both_stores!(@test Sled, [$($flavor)?], $name);)*
        }
        mod on_postgres {
            $($crate::on_both_stores!(@test Postgres, [$($flavor)?], $name);)*
        }
    };
}

/// Where a scenario's store lives, across the "processes" that open it: a
/// sled directory, or a PostgreSQL database. Cheap to clone; removed when
/// the last clone (and every store opened from it) is gone.
#[derive(Clone)]
pub struct TestDb(Arc<Place>);

enum Place {
    Sled(tempfile::TempDir),
    Postgres(TestServer),
}

impl TestDb {
    /// A new, empty store's place.
    pub fn new(backend: Backend) -> TestDb {
        TestDb(Arc::new(match backend {
            Backend::Sled => Place::Sled(tempfile::tempdir().expect("a temporary directory")),
            Backend::Postgres => Place::Postgres(TestServer::start()),
        }))
    }

    pub fn backend(&self) -> Backend {
        match &*self.0 {
            Place::Sled(_) => Backend::Sled,
            Place::Postgres(_) => Backend::Postgres,
        }
    }

    /// Opens the store as a new process does: sled's `Store::open` on the
    /// directory (waiting for a dropped store to let go of sled's lock), or a
    /// new `PgStore::connect` on the database's URL.
    pub async fn open(&self) -> TestStore {
        match &*self.0 {
            Place::Sled(dir) => {
                let path = dir.path().join("adsync.db");
                let mut tries = 0;
                let store = loop {
                    match Store::open_from_async(&path).await {
                        Ok(store) => break store,
                        Err(e) if tries >= 100 => panic!("sled store reopens: {e}"),
                        Err(_) => tries += 1,
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                };
                TestStore {
                    db: Some(self.clone()),
                    ..TestStore::from(store)
                }
            }
            Place::Postgres(server) => {
                let url = server.url();
                let store = PgStore::connect(&url)
                    .await
                    .expect("PostgreSQL store connects");
                TestStore {
                    shared: Arc::new(store),
                    raw: Raw::Postgres(url),
                    db: Some(self.clone()),
                }
            }
        }
    }
}

impl TestDb {
    /// Where `needle` occurs in what the store keeps, read behind its back:
    /// sled's files (tree and write-ahead log), or the database's rows. For
    /// checking that a secret never reached the store. Call it with no
    /// store open (sled's files are complete once it is closed).
    pub async fn places_holding(&self, needle: &str) -> Vec<String> {
        let needle = needle.as_bytes();
        let mut found = Vec::new();
        match &*self.0 {
            Place::Sled(dir) => {
                let mut stack = vec![dir.path().to_path_buf()];
                while let Some(path) = stack.pop() {
                    if path.is_dir() {
                        for entry in std::fs::read_dir(&path).expect("a store directory") {
                            stack.push(entry.expect("an entry").path());
                        }
                    } else {
                        let bytes = std::fs::read(&path).expect("a store file");
                        if bytes.windows(needle.len()).any(|w| w == needle) {
                            found.push(path.display().to_string());
                        }
                    }
                }
            }
            Place::Postgres(server) => {
                let (client, connection) =
                    tokio_postgres::connect(&server.url(), tokio_postgres::NoTls)
                        .await
                        .expect("a direct connection to the test database");
                let task = tokio::spawn(connection);
                let rows = client
                    .query(
                        "SELECT 'adsync_kv ' || encode(key, 'escape') FROM adsync_kv \
                           WHERE position($1::bytea in key) > 0 OR position($1::bytea in value) > 0 \
                         UNION ALL SELECT 'adsync_syncs ' || id FROM adsync_syncs s \
                           WHERE position(convert_from($1::bytea, 'UTF8') in s::text) > 0",
                        &[&needle],
                    )
                    .await
                    .expect("the search runs");
                found.extend(rows.iter().map(|row| row.get::<_, String>(0)));
                drop(client);
                let _ = task.await;
            }
        }
        found
    }
}

/// A store as one "process" opened it, plus what a test needs to look
/// behind its back. Derefs to the store seam (`commit`, `read`, ...); passes
/// wherever a store is taken (`Pusher::new(store.clone(), ..)`).
#[derive(Clone)]
pub struct TestStore {
    shared: SharedStore,
    raw: Raw,
    /// `None` for a sled store the test opened itself.
    db: Option<TestDb>,
}

/// A sled store opened by the test itself (the CLI tests' own directories).
impl From<Store> for TestStore {
    fn from(store: Store) -> TestStore {
        TestStore {
            shared: Arc::new(store.clone()),
            raw: Raw::Sled(store),
            db: None,
        }
    }
}

#[derive(Clone)]
enum Raw {
    Sled(Store),
    Postgres(String),
}

impl std::ops::Deref for TestStore {
    type Target = dyn CheckpointStore;
    fn deref(&self) -> &Self::Target {
        &*self.shared
    }
}

impl IntoStore for TestStore {
    fn into_store(self) -> SharedStore {
        self.shared
    }
}

impl TestStore {
    /// A fresh store of `backend` (the place lives as long as the store).
    pub async fn temporary(backend: Backend) -> TestStore {
        TestDb::new(backend).open().await
    }

    pub fn backend(&self) -> Backend {
        match self.raw {
            Raw::Sled(_) => Backend::Sled,
            Raw::Postgres(_) => Backend::Postgres,
        }
    }

    /// Where this store lives, to open it again after a "restart".
    pub fn db(&self) -> &TestDb {
        self.db.as_ref().expect("a store opened from a TestDb")
    }

    pub fn shared(&self) -> SharedStore {
        self.shared.clone()
    }

    /// Runs `f` on a read of the store and unwraps its answer.
    pub async fn get<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn StoreRead) -> Result<T, StoreError> + Send + 'static,
    ) -> T {
        self.shared
            .read(f)
            .await
            .expect("the store serves reads")
            .expect("the read succeeds")
    }

    /// Sync `id`'s record, which must exist.
    pub async fn record(&self, id: &str) -> Record {
        let id = id.to_string();
        self.get(move |r| r.record(&id))
            .await
            .expect("the record exists")
    }

    /// Sync `id`'s transitions, oldest first.
    pub async fn history(&self, id: &str) -> Vec<HistoryEntry> {
        let id = id.to_string();
        self.get(move |r| r.history(&id)).await
    }

    /// Every sync's record (an unreadable one as its error).
    pub async fn list(&self) -> Vec<Result<Record, StoreError>> {
        self.shared
            .read(|r| r.list())
            .await
            .expect("the store serves reads")
    }

    /// The highest seq of sync `id` that is durable. sled: flushed by its
    /// writer. PostgreSQL: the record's seq as another client reads it (a
    /// connection of its own), since only committed transactions are
    /// visible and the server commits synchronously (fsync on).
    pub async fn durable_seq(&self, id: &str) -> Option<u64> {
        match &self.raw {
            Raw::Sled(store) => store.durable_seq(id),
            Raw::Postgres(_) => {
                let body = self.raw_get(&format!("r/{id}")).await?;
                let body: serde_json::Value = serde_json::from_slice(&body).expect("record JSON");
                body["seq"].as_u64()
            }
        }
    }

    /// The raw value at `key` of the store's key layout (shared by both
    /// backends), read behind the store's back.
    pub async fn raw_get(&self, key: &str) -> Option<Vec<u8>> {
        match &self.raw {
            Raw::Sled(store) => store
                .raw_tree()
                .expect("tree")
                .get(key)
                .expect("get")
                .map(|v| v.to_vec()),
            Raw::Postgres(url) => {
                let rows = sql(url, "SELECT value FROM adsync_kv WHERE key = $1", key, None).await;
                rows.first().map(|row| row.get::<_, Vec<u8>>(0))
            }
        }
    }

    /// Writes `value` at `key` behind the store's back (a damaged record).
    pub async fn raw_put(&self, key: &str, value: &[u8]) {
        match &self.raw {
            Raw::Sled(store) => {
                store
                    .raw_tree()
                    .expect("tree")
                    .insert(key, value)
                    .expect("insert");
            }
            Raw::Postgres(url) => {
                sql(
                    url,
                    "INSERT INTO adsync_kv (key, value) VALUES ($1, $2) \
                     ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    key,
                    Some(value),
                )
                .await;
            }
        }
    }

    /// Removes `key` behind the store's back.
    pub async fn raw_remove(&self, key: &str) {
        match &self.raw {
            Raw::Sled(store) => {
                store.raw_tree().expect("tree").remove(key).expect("remove");
            }
            Raw::Postgres(url) => {
                sql(url, "DELETE FROM adsync_kv WHERE key = $1", key, None).await;
            }
        }
    }
}

/// Runs one statement with `key` (and `value`) as parameters on a
/// connection of its own.
async fn sql(
    url: &str,
    statement: &str,
    key: &str,
    value: Option<&[u8]>,
) -> Vec<tokio_postgres::Row> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("a direct connection to the test database");
    let task = tokio::spawn(connection);
    let key = key.as_bytes();
    let rows = match value {
        Some(value) => client.query(statement, &[&key, &value]).await,
        None => client.query(statement, &[&key]).await,
    }
    .unwrap_or_else(|e| panic!("{statement}: {e}"));
    drop(client);
    let _ = task.await;
    rows
}

/// The store's sled database opened directly, to damage or change it from
/// outside. sled lets go of its lock a moment after the last store is dropped.
pub fn open_raw_sled(db: &Path) -> sled::Db {
    (0..50)
        .find_map(|_| {
            sled::open(db)
                .map_err(|_| std::thread::sleep(std::time::Duration::from_millis(20)))
                .ok()
        })
        .expect("sled opens once the store is dropped")
}

pub fn start_time() -> time::OffsetDateTime {
    time::macros::datetime!(2026-03-01 09:00 UTC)
}

pub struct Harness {
    pub store: TestStore,
    pub platform: Arc<MemoryPlatform>,
    pub clock: Arc<ManualClock>,
    pub pusher: Pusher,
}

impl Harness {
    pub fn new(
        store: impl Into<TestStore>,
        platform: Arc<MemoryPlatform>,
        clock: Arc<ManualClock>,
    ) -> Self {
        let store = store.into();
        let pusher = Pusher::new(store.clone(), platform.clone(), clock.clone())
            .with_runner(|runner| runner.with_seed(7));
        Harness {
            store,
            platform,
            clock,
            pusher,
        }
    }

    /// A fresh store of `backend` and an empty platform with entity keywords.
    pub async fn temporary(backend: Backend) -> Self {
        Self::with_model(backend, KeywordModel::Entities).await
    }

    /// As [`Harness::temporary`], on a platform that cannot list: pushes do
    /// not converge, so a test sees the step mechanics (look-ups after an
    /// unknown create or a 404) that a converging push's plan would decide
    /// before its first write.
    #[allow(dead_code)]
    pub async fn without_listing(backend: Backend) -> Self {
        let clock = Arc::new(ManualClock::new(start_time()));
        let platform = Arc::new(MemoryPlatform::new(clock.clone()).without_listing());
        Self::new(TestStore::temporary(backend).await, platform, clock)
    }

    pub async fn with_model(backend: Backend, model: KeywordModel) -> Self {
        let clock = Arc::new(ManualClock::new(start_time()));
        let platform = Arc::new(MemoryPlatform::new(clock.clone()).with_keyword_model(model));
        Self::new(TestStore::temporary(backend).await, platform, clock)
    }

    /// A "process" on the store of `db` (opened anew: an earlier harness on
    /// it must be dropped first), on the given platform and clock.
    pub async fn open(db: &TestDb, platform: Arc<MemoryPlatform>, clock: Arc<ManualClock>) -> Self {
        Self::new(db.open().await, platform, clock)
    }

    pub fn runner(&self) -> &Runner<PushMachine> {
        self.pusher.runner()
    }

    pub async fn record(&self, sync: &str) -> Record {
        self.store.record(sync).await
    }

    pub async fn history(&self, sync: &str) -> Vec<HistoryEntry> {
        self.store.history(sync).await
    }
}

/// A readable trace of a sync: its transitions, then every entity's id and result,
/// then what the platform holds.
pub async fn trace(h: &Harness, sync: &str) -> String {
    let mut out = String::new();
    for e in h.history(sync).await {
        let effect = e.effect.as_deref().unwrap_or("(no effect run)");
        let _ = writeln!(
            out,
            "{:>2}. {:<16} | {effect}\n    {:<16} | => {} → {}",
            e.seq, e.from, "", e.outcome, e.to
        );
    }
    let record = h.record(sync).await;
    let _ = writeln!(
        out,
        "\nstatus: {} (last error: {})",
        record.status,
        record.last_error.as_deref().unwrap_or("none")
    );
    let checkpoint = Checkpoint::<PushMachine>::try_from(record).expect("decodes");
    for e in checkpoint.state.entities().iter() {
        let _ = writeln!(
            out,
            "  {:<9} {:<4} id={:<8} {:?}",
            e.kind().to_string(),
            e.local_id(),
            e.platform_id().unwrap_or("-"),
            e.result()
        );
    }
    let _ = writeln!(
        out,
        "platform: {} creations, {} entities, duplicates: {:?}",
        h.platform.creations(),
        h.platform.entities().len(),
        h.platform.duplicates()
    );
    out
}

pub fn report_summary(report: &SetReport) -> String {
    serde_json::to_string_pretty(report).expect("report serializes")
}

/// Asserts a snapshot stored in the top-level `snapshots/` directory. The
/// value is computed first, so it may `.await`.
#[macro_export]
macro_rules! snap {
    ($name:expr, $value:expr) => {{
        let value = $value;
        insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!($name, value);
        })
    }};
}
