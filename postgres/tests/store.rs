//! The store seam's contract, run against sled's `Store` and `PgStore` alike
//! (each scenario is one function taking the backend), then what only the
//! PostgreSQL store has: fencing, leases, migrations, connection errors and
//! a server restart.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use adsync_engine::{
    CheckpointStore, Commit, HistoryEntry, Record, SharedStore, Status, Store, StoreError,
    RECORD_FORMAT,
};
use adsync_fakes::postgres::TestServer;
use adsync_postgres::{PgStore, SCHEMA_VERSION};
use serde_json::value::RawValue;
use time::OffsetDateTime;

#[derive(Clone, Copy, Debug)]
enum Backend {
    Sled,
    Postgres,
}

/// A store of either backend, and what a test needs to damage it.
struct Harness {
    store: SharedStore,
    sled: Option<Store>,
    pg: Option<PgStore>,
    server: Option<TestServer>,
}

impl Harness {
    async fn open(backend: Backend) -> Harness {
        match backend {
            Backend::Sled => {
                let store = Store::temporary().expect("a temporary sled store");
                Harness {
                    store: Arc::new(store.clone()),
                    sled: Some(store),
                    pg: None,
                    server: None,
                }
            }
            Backend::Postgres => {
                let server = TestServer::start();
                let store = PgStore::connect(&server.url()).await.expect("connects");
                Harness {
                    store: Arc::new(store.clone()),
                    sled: None,
                    pg: Some(store),
                    server: Some(server),
                }
            }
        }
    }

    /// Writes `value` at `key` behind the store's back (a corrupt row).
    async fn put_raw(&self, key: &[u8], value: &[u8]) {
        if let Some(sled) = &self.sled {
            sled.raw_tree().unwrap().insert(key, value).unwrap();
        } else {
            let url = self.server.as_ref().unwrap().url();
            sql(&url, |c| {
                let (key, value) = (key.to_vec(), value.to_vec());
                async move {
                    c.execute(
                        "INSERT INTO adsync_kv (key, value) VALUES ($1, $2) \
                         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        &[&key, &value],
                    )
                    .await
                    .unwrap();
                }
            })
            .await;
        }
    }

    fn pg(&self) -> &PgStore {
        self.pg.as_ref().expect("a PostgreSQL store")
    }
}

/// Runs `f` on a connection of its own to `url`.
async fn sql<F, Fut>(url: &str, f: F)
where
    F: FnOnce(Arc<tokio_postgres::Client>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("a direct connection");
    let task = tokio::spawn(connection);
    f(Arc::new(client)).await;
    task.abort();
}

fn record(id: &str, seq: u64, status: Status) -> Record {
    Record {
        format: RECORD_FORMAT,
        id: id.to_string(),
        kind: "push".to_string(),
        state_version: 1,
        seq,
        phase: "creating".to_string(),
        status,
        effects_run: seq,
        failed_effects: 0,
        last_error: None,
        not_before: None,
        created_at: OffsetDateTime::UNIX_EPOCH,
        updated_at: OffsetDateTime::UNIX_EPOCH + Duration::from_secs(seq),
        labels: BTreeMap::from([("campaign".to_string(), "c1".to_string())]),
        state: RawValue::from_string(format!(r#"{{"step":{seq}}}"#)).unwrap(),
        plan: None,
        segments: Vec::new(),
    }
}

fn entry(seq: u64) -> HistoryEntry {
    HistoryEntry {
        seq,
        at: OffsetDateTime::UNIX_EPOCH,
        from: format!("s{seq}"),
        effect: Some("create".to_string()),
        outcome: "created".to_string(),
        to: format!("s{}", seq + 1),
    }
}

/// A sync's checkpoint `seq`: its record and its history entry.
fn checkpoint(id: &str, seq: u64, status: Status) -> Commit {
    Commit::new()
        .record(&record(id, seq, status))
        .unwrap()
        .history(id, &entry(seq))
        .unwrap()
}

/// Runs each scenario against both backends.
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sled_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Sled).await
                }
            )*
        }
        mod postgres_store {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::Postgres).await
                }
            )*
        }
    };
}

on_both_backends!(
    a_commit_is_read_back_whole,
    a_long_scan_pages_through_every_key_in_order,
    a_corrupt_record_is_named_and_the_others_are_listed,
    concurrent_commits_share_durable_writes,
);

async fn a_commit_is_read_back_whole(backend: Backend) {
    let h = Harness::open(backend).await;
    let plan = RawValue::from_string(r#"{"entities":[1,2]}"#.to_string()).unwrap();
    let segment = RawValue::from_string(r#"["done"]"#.to_string()).unwrap();
    h.store
        .commit(
            checkpoint("sync-a", 0, Status::Running)
                .plan("sync-a", &plan)
                .segment("sync-a", 0, &segment)
                .index("campaign/c1", "sync-a")
                .data(b"page/1", b"one".to_vec())
                .data(b"page/2", b"two".to_vec())
                .data(b"other", b"x".to_vec()),
        )
        .await
        .unwrap();
    h.store
        .commit(
            checkpoint("sync-a", 1, Status::Succeeded)
                .delete_data(b"other")
                .data(b"page/\xff", vec![0xff]),
        )
        .await
        .unwrap();

    let (found, history, index, data, gone, scan) = h
        .store
        .read(|s| {
            (
                s.record("sync-a").unwrap(),
                s.history("sync-a").unwrap(),
                s.index("campaign/c1").unwrap(),
                s.data(b"page/1").unwrap(),
                s.data(b"other").unwrap(),
                s.scan_data(b"page/")
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
            )
        })
        .await
        .unwrap();
    let found = found.expect("the record");
    let mut expected = record("sync-a", 1, Status::Succeeded);
    expected.plan = found.plan.clone();
    expected.segments = found.segments.clone();
    assert_eq!(found, expected);
    assert_eq!(found.labels["campaign"], "c1");
    assert_eq!(found.plan.as_deref().map(RawValue::get), Some(plan.get()));
    assert_eq!(found.segments.len(), 1);
    assert_eq!(found.segments[0].1.get(), segment.get());
    assert_eq!(history, vec![entry(0), entry(1)]);
    assert_eq!(index.as_deref(), Some("sync-a"));
    assert_eq!(data, Some(b"one".to_vec()));
    assert_eq!(gone, None, "a deleted key is gone");
    assert_eq!(
        scan,
        vec![
            (b"page/1".to_vec(), b"one".to_vec()),
            (b"page/2".to_vec(), b"two".to_vec()),
            (b"page/\xff".to_vec(), vec![0xff]),
        ]
    );
    let missing = h.store.read(|s| s.record("nope").unwrap()).await.unwrap();
    assert!(missing.is_none());
}

async fn a_long_scan_pages_through_every_key_in_order(backend: Backend) {
    let h = Harness::open(backend).await;
    let mut commit = Commit::new();
    for n in 0u32..1234 {
        commit = commit.data(
            &[b"big/".as_slice(), &n.to_be_bytes()].concat(),
            n.to_le_bytes().to_vec(),
        );
    }
    // Neighbours on both sides of the prefix stay out of the scan.
    commit = commit.data(b"bif", vec![1]).data(b"bih", vec![1]);
    h.store.commit(commit).await.unwrap();
    let scan = h
        .store
        .read(|s| s.scan_data(b"big/").collect::<Result<Vec<_>, _>>().unwrap())
        .await
        .unwrap();
    assert_eq!(scan.len(), 1234);
    for (n, (key, value)) in scan.iter().enumerate() {
        let n = n as u32;
        assert_eq!(key, &[b"big/".as_slice(), &n.to_be_bytes()].concat());
        assert_eq!(value, &n.to_le_bytes().to_vec());
    }
}

async fn a_corrupt_record_is_named_and_the_others_are_listed(backend: Backend) {
    let h = Harness::open(backend).await;
    for id in ["a", "b", "c"] {
        h.store
            .commit(checkpoint(id, 0, Status::Running))
            .await
            .unwrap();
    }
    h.put_raw(b"r/b", b"{not json").await;
    let listed = h.store.read(|s| s.list()).await.unwrap();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert_eq!(listed[0].as_ref().unwrap().id, "a");
    assert_eq!(listed[2].as_ref().unwrap().id, "c");
    match &listed[1] {
        Err(e @ StoreError::Corrupt { sync, .. }) => {
            assert_eq!(sync, "b");
            assert!(e.to_string().contains("`b`"), "{e}");
        }
        other => panic!("expected b to be corrupt: {other:?}"),
    }
    // The others still read one by one.
    let c = h.store.read(|s| s.record("c")).await.unwrap().unwrap();
    assert!(c.is_some());
}

async fn concurrent_commits_share_durable_writes(backend: Backend) {
    let h = Harness::open(backend).await;
    let before = h.store.writer_stats();
    let tasks: Vec<_> = (0..64)
        .map(|n| {
            let store = h.store.clone();
            tokio::spawn(async move {
                let id = format!("sync-{n:02}");
                for seq in 0..4 {
                    store
                        .commit(checkpoint(&id, seq, Status::Running))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let after = h.store.writer_stats();
    let commits = after.commits - before.commits;
    let flushes = after.flushes - before.flushes;
    assert_eq!(commits, 256);
    assert!(
        flushes < commits,
        "{backend:?}: {commits} commits took {flushes} durable writes: no group commit"
    );
    let listed = h.store.read(|s| s.list()).await.unwrap();
    assert_eq!(listed.len(), 64);
    for record in listed {
        assert_eq!(record.unwrap().seq, 3);
    }
}

// ---- PostgreSQL only ------------------------------------------------------

/// The fencing token of `sync` after a claim by `owner` with a lease that
/// has already run out (so the next claimer takes it over at once).
async fn claim_expired(store: &PgStore, owner: &str, sync: &str) -> u64 {
    let claims = store.claim(owner, Duration::ZERO, 100).await.unwrap();
    let claim = claims
        .into_iter()
        .find(|c| c.sync == sync)
        .unwrap_or_else(|| panic!("{owner} claims {sync}"));
    tokio::time::sleep(Duration::from_millis(5)).await;
    claim.fence
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_fencing_token_writes_nothing_while_the_rest_of_its_group_lands() {
    let h = Harness::open(Backend::Postgres).await;
    let pg = h.pg();
    h.store
        .commit(checkpoint("fenced", 0, Status::Running))
        .await
        .unwrap();
    let old = claim_expired(pg, "worker-a", "fenced").await;
    let new = claim_expired(pg, "worker-b", "fenced").await;
    assert!(
        new > old,
        "every claim increases the token ({old} then {new})"
    );

    // Many rounds of three concurrent commits: a stale one, the owner's, and
    // one of another sync; most rounds share one transaction.
    let before = h.store.writer_stats();
    for round in 0..20u64 {
        // Odd rounds also write one key from all three commits: such a group
        // goes commit by commit, and the stale commit must not win the key.
        let shared = |c: Commit, who: &str| {
            if round % 2 == 1 {
                c.index("shared", who)
            } else {
                c
            }
        };
        let stale = h.store.commit(
            shared(
                checkpoint("fenced", 100 + round, Status::Running)
                    .data(format!("stale/{round}").as_bytes(), vec![1]),
                "stale",
            )
            .fenced("fenced", old),
        );
        let owner = h.store.commit(
            shared(
                Commit::new().data(format!("owner/{round}").as_bytes(), vec![2]),
                "owner",
            )
            .fenced("fenced", new),
        );
        let other = h
            .store
            .commit(shared(checkpoint("other", round, Status::Running), "other"));
        let (stale, owner, other) = tokio::join!(stale, owner, other);
        match stale {
            Err(StoreError::LeaseLost { sync, fence }) => {
                assert_eq!((sync.as_str(), fence), ("fenced", old));
            }
            other => panic!("a stale token must be refused: {other:?}"),
        }
        owner.unwrap();
        other.unwrap();
    }
    let after = h.store.writer_stats();
    assert_eq!(
        after.commits - before.commits,
        40,
        "refused commits are not counted"
    );
    assert!(
        after.flushes - before.flushes < 60,
        "the rounds were grouped"
    );

    let shared = h.store.read(|s| s.index("shared").unwrap()).await.unwrap();
    assert!(
        matches!(shared.as_deref(), Some("owner" | "other")),
        "{shared:?}"
    );
    let (record, stale, owner, other, history) = h
        .store
        .read(|s| {
            (
                s.record("fenced").unwrap().unwrap(),
                s.scan_data(b"stale/").count(),
                s.scan_data(b"owner/").count(),
                s.record("other").unwrap().unwrap(),
                s.history("fenced").unwrap(),
            )
        })
        .await
        .unwrap();
    assert_eq!(record.seq, 0, "no stale checkpoint landed");
    assert_eq!(history.len(), 1);
    assert_eq!(stale, 0, "no stale data landed");
    assert_eq!(owner, 20);
    assert_eq!(other.seq, 19);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_owners_claim_renew_and_release_without_sharing_a_sync() {
    let h = Harness::open(Backend::Postgres).await;
    let pg = h.pg();
    for id in ["s1", "s2", "s3", "s4"] {
        h.store
            .commit(checkpoint(id, 0, Status::Running))
            .await
            .unwrap();
    }
    h.store
        .commit(checkpoint("done", 0, Status::Succeeded))
        .await
        .unwrap();
    let mut later = record("later", 0, Status::Running);
    later.not_before = Some(OffsetDateTime::now_utc() + Duration::from_secs(3600));
    h.store
        .commit(Commit::new().record(&later).unwrap())
        .await
        .unwrap();

    let ttl = Duration::from_secs(60);
    // Two claimers at once: SKIP LOCKED hands each a different pair.
    let (a, b) = tokio::join!(pg.claim("a", ttl, 2), pg.claim("b", ttl, 2));
    let (a, b) = (a.unwrap(), b.unwrap());
    let mut all: Vec<&str> = a.iter().chain(&b).map(|c| c.sync.as_str()).collect();
    all.sort();
    let before = all.len();
    all.dedup();
    assert_eq!(before, all.len(), "a sync claimed twice: {a:?} {b:?}");
    // Whatever the first round left (SKIP LOCKED may skip rows), a second
    // round takes; a settled sync and one not due yet are never claimed.
    let rest = pg.claim("b", ttl, 10).await.unwrap();
    let mut b: Vec<_> = b.into_iter().chain(rest).collect();
    let mut claimed: Vec<&str> = a.iter().chain(&b).map(|c| c.sync.as_str()).collect();
    claimed.sort();
    assert_eq!(claimed, ["s1", "s2", "s3", "s4"]);
    assert!(
        pg.claim("c", ttl, 10).await.unwrap().is_empty(),
        "all are held"
    );
    assert!(!a.is_empty() && !b.is_empty(), "{a:?} {b:?}");

    // Renewing: only the owner, with the current token.
    let held_a: Vec<(String, u64)> = a.iter().map(|c| (c.sync.clone(), c.fence)).collect();
    let mut renewed = pg.renew("a", &held_a, ttl).await.unwrap();
    renewed.sort();
    let mut expected: Vec<String> = a.iter().map(|c| c.sync.clone()).collect();
    expected.sort();
    assert_eq!(renewed, expected);
    assert!(pg.renew("b", &held_a, ttl).await.unwrap().is_empty());

    let leases = pg.leases().await.unwrap();
    assert_eq!(leases.len(), 4);
    assert!(leases.iter().all(|l| !l.expired && l.status == "running"));
    let owner_of = |sync: &str| {
        leases
            .iter()
            .find(|l| l.sync == sync)
            .unwrap()
            .owner
            .clone()
    };
    assert_eq!(owner_of(&a[0].sync), "a");

    // Released: the next claimer takes it at once, with a new token; the old
    // owner can neither renew nor write it any more.
    let released = a[0].clone();
    assert!(pg.release(&released.sync, released.fence).await.unwrap());
    let taken = pg.claim("b", ttl, 10).await.unwrap();
    assert_eq!(taken.len(), 1);
    assert_eq!(taken[0].sync, released.sync);
    assert_eq!(taken[0].fence, released.fence + 1);
    assert!(!pg.release(&released.sync, released.fence).await.unwrap());
    let held = vec![(released.sync.clone(), released.fence)];
    assert!(pg.renew("a", &held, ttl).await.unwrap().is_empty());
    let stale = h
        .store
        .commit(
            checkpoint(&released.sync, 1, Status::Running).fenced(&released.sync, released.fence),
        )
        .await;
    assert!(
        matches!(stale, Err(StoreError::LeaseLost { .. })),
        "{stale:?}"
    );
    h.store
        .commit(
            checkpoint(&released.sync, 1, Status::Succeeded).fenced(&released.sync, taken[0].fence),
        )
        .await
        .unwrap();
    b.extend(taken);
    // A sync that settled is not claimed again, even once its lease runs out.
    let leases = pg.leases().await.unwrap();
    let settled = leases.iter().find(|l| l.sync == released.sync).unwrap();
    assert_eq!(settled.status, "succeeded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_database_with_a_newer_schema_is_refused() {
    let server = TestServer::start();
    let store = PgStore::connect(&server.url()).await.unwrap();
    let again = store.migrate().await.unwrap();
    assert_eq!((again.from, again.to), (SCHEMA_VERSION, SCHEMA_VERSION));
    drop(store);
    sql(&server.url(), |c| async move {
        c.execute("INSERT INTO adsync_schema (version) VALUES (99)", &[])
            .await
            .unwrap();
    })
    .await;
    let error = PgStore::connect(&server.url()).await.unwrap_err();
    match &error {
        StoreError::SchemaTooNew {
            store,
            found,
            supported,
        } => {
            assert_eq!((*found, *supported), (99, SCHEMA_VERSION));
            assert!(store.contains("***"), "{store}");
        }
        other => panic!("expected SchemaTooNew: {other:?}"),
    }
    assert!(error.to_string().contains("upgrade adsync"), "{error}");
}

/// The password of a `postgres://user:password@host` URL.
fn password_of(url: &str) -> &str {
    let rest = &url["postgres://".len()..];
    let at = rest.rfind('@').unwrap();
    let colon = rest.find(':').unwrap();
    &rest[colon + 1..at]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_failures_name_the_store_and_never_the_password() {
    let server = TestServer::start();
    let url = server.url();
    let password = password_of(&url).to_string();
    assert!(
        password.len() >= 8,
        "the test server must use password authentication (set {} to a URL with a password)",
        adsync_fakes::postgres::URL_VARIABLE
    );

    let store = PgStore::connect(&url).await.unwrap();
    let shown = [store.location(), format!("{store:?}")];
    for text in &shown {
        assert!(!text.contains(&password), "{text}");
        assert!(text.contains(":***@"), "{text}");
    }
    drop(store);

    let wrong_password = "wrong-Pa55word";
    let wrong = url.replacen(&password, wrong_password, 1);
    let error = PgStore::connect(&wrong).await.unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(matches!(error, StoreError::Backend { .. }), "{text}");
    assert!(text.contains("password authentication failed"), "{text}");
    assert!(text.contains(":***@"), "the store is named: {text}");
    assert!(
        !text.contains(wrong_password) && !text.contains(&password),
        "{text}"
    );

    let secret = "un-Reachable-5ecret";
    let unreachable = format!("postgres://adsync:{secret}@127.0.0.1:1/adsync?connect_timeout=2");
    let error = PgStore::connect(&unreachable).await.unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(text.contains("127.0.0.1:1"), "{text}");
    assert!(text.contains("cannot connect"), "{text}");
    assert!(!text.contains(secret), "{text}");

    let error = PgStore::connect(&format!("postgres://adsync:{secret}@127.0.0.1:notaport/x"))
        .await
        .unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(text.contains("does not parse"), "{text}");
    assert!(!text.contains(secret), "{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_go_on_after_the_server_restarts() {
    let server = TestServer::dedicated();
    let store: SharedStore = Arc::new(PgStore::connect(&server.url()).await.unwrap());
    store
        .commit(checkpoint("r", 0, Status::Running))
        .await
        .unwrap();
    let read = store.read(|s| s.record("r").unwrap()).await.unwrap();
    assert!(read.is_some());

    server.restart();

    for seq in 1..=3 {
        store
            .commit(checkpoint("r", seq, Status::Running))
            .await
            .unwrap();
    }
    let record = store
        .read(|s| s.record("r").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.seq, 3);
    assert_eq!(
        store.read(|s| s.history("r").unwrap()).await.unwrap().len(),
        4
    );
}

/// Reads block on the runtime's handle from tokio's blocking pool: that must
/// work on a current-thread runtime too (plain `#[tokio::test]`).
#[tokio::test]
async fn reads_and_commits_work_on_a_current_thread_runtime() {
    let h = Harness::open(Backend::Postgres).await;
    for seq in 0..3 {
        h.store
            .commit(checkpoint("ct", seq, Status::Running))
            .await
            .unwrap();
    }
    let (record, history) = h
        .store
        .read(|s| (s.record("ct").unwrap().unwrap(), s.history("ct").unwrap()))
        .await
        .unwrap();
    assert_eq!((record.seq, history.len()), (2, 3));
}

/// A panic inside a group of reads fails that read only; the connection it
/// held is not handed out again inside its transaction.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_read_leaves_the_store_usable() {
    let h = Harness::open(Backend::Postgres).await;
    h.store
        .commit(checkpoint("p", 0, Status::Running))
        .await
        .unwrap();
    for _ in 0..20 {
        let failed = h
            .store
            .read(|s| {
                let _ = s.record("p");
                panic!("a reader bug");
            })
            .await;
        assert!(failed.is_err());
    }
    h.store
        .commit(checkpoint("p", 1, Status::Running))
        .await
        .unwrap();
    let record = h
        .store
        .read(|s| s.record("p").unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.seq, 1, "a later read sees the later commit");
}

/// A worker keeps committing while another takes its sync over: no commit
/// started after the takeover lands, and what is stored is exactly what
/// was acknowledged (a refused commit leaves nothing, even one that raced
/// the claim).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_racing_a_takeover_land_all_or_nothing_and_never_after_it() {
    let h = Harness::open(Backend::Postgres).await;
    let pg = h.pg().clone();
    for round in 0..5u64 {
        let sync = format!("race-{round}");
        h.store
            .commit(checkpoint(&sync, 0, Status::Running))
            .await
            .unwrap();
        let old = claim_expired(&pg, "slow", &sync).await;
        let taken = Arc::new(std::sync::atomic::AtomicBool::new(false));
        // The old owner: several committers at once, so its commits share
        // groups with the others' and race the claim inside them.
        let committers: Vec<_> = (0..4u64)
            .map(|c| {
                let (store, sync, taken) = (h.store.clone(), sync.clone(), taken.clone());
                tokio::spawn(async move {
                    let mut results = Vec::new();
                    for n in 0..40u64 {
                        let started_after = taken.load(std::sync::atomic::Ordering::SeqCst);
                        let key = format!("{sync}/{c}/{n}");
                        let result = store
                            .commit(
                                Commit::new()
                                    .data(key.as_bytes(), vec![1])
                                    .index(&key, "x")
                                    .fenced(&sync, old),
                            )
                            .await;
                        results.push((key, started_after, result));
                    }
                    results
                })
            })
            .collect();
        // Others' unfenced commits in the same groups.
        let bystander = {
            let store = h.store.clone();
            tokio::spawn(async move {
                for n in 0..40u64 {
                    store
                        .commit(Commit::new().data(format!("by/{round}/{n}").as_bytes(), vec![3]))
                        .await
                        .unwrap();
                }
            })
        };
        tokio::time::sleep(Duration::from_millis(3 + round * 4)).await;
        // SKIP LOCKED passes over the row while a group of the old owner
        // holds it: try again until the claim gets it.
        let mut tries = 0;
        loop {
            let new = pg.claim("fast", Duration::from_secs(60), 10).await.unwrap();
            if new.iter().any(|c| c.sync == sync) {
                break;
            }
            tries += 1;
            assert!(tries < 1000, "{sync} was never claimed");
            tokio::task::yield_now().await;
        }
        taken.store(true, std::sync::atomic::Ordering::SeqCst);
        let mut acknowledged = Vec::new();
        for committer in committers {
            for (key, started_after, result) in committer.await.unwrap() {
                match result {
                    Ok(()) => {
                        assert!(!started_after, "{key} landed after the takeover");
                        acknowledged.push(key);
                    }
                    Err(StoreError::LeaseLost { .. }) => {}
                    Err(e) => panic!("{key}: {e}"),
                }
            }
        }
        bystander.await.unwrap();
        eprintln!(
            "round {round}: {} of 160 commits landed before the takeover",
            acknowledged.len()
        );
        acknowledged.sort();
        let prefix = format!("{sync}/");
        let (mut stored, indexed) = h
            .store
            .read(move |s| {
                let stored: Vec<String> = s
                    .scan_data(prefix.as_bytes())
                    .map(|e| String::from_utf8(e.unwrap().0).unwrap())
                    .collect();
                let indexed = stored
                    .iter()
                    .filter(|k| s.index(k).unwrap().is_some())
                    .count();
                (stored, indexed)
            })
            .await
            .unwrap();
        stored.sort();
        assert_eq!(stored, acknowledged, "round {round}");
        assert_eq!(indexed, stored.len(), "each landed commit landed whole");
    }
}
