//! `PgStore::import`: a sled store moved to PostgreSQL. A sled store holding
//! pushes in every state (succeeded, waiting for a retry, needing attention,
//! interrupted with a create in flight, interrupted with a cancel request),
//! a pull with a snapshot and staged pages of its next run, and a schedule is
//! copied; the database then reads exactly as the source, and a worker in
//! lease mode on it finishes what was unfinished without a duplicate. A
//! target that is not empty, and a source with corrupt records, are refused
//! with nothing written.

use std::sync::Arc;
use std::time::{Duration, Instant};

use adsync::amazon::{AmazonClient, AmazonConfig, ThrottleConfig};
use adsync::memory::{Fault, MemoryPlatform, Op};
use adsync::{
    Backoff, Cadence, CampaignSet, Checkpoint, CheckpointStore, EntityKind, EntityResult,
    EntitySpec, Parent, PullMode, PullPolicy, Puller, PushAdapter, PushMachine, PushPolicy, Pusher,
    RawRead, SharedStore, Status, Step, Store, StoreError, SystemClock, Worker,
};
use adsync_fakes::fixtures::{campaign, Shape};
use adsync_fakes::postgres::TestServer;
use adsync_fakes::{FakeAmazon, FakeAmazonConfig, FakeAmazonHandle, Generator};
use adsync_postgres::{CopyError, Imported, PgStore};

const PROFILE: &str = "4242";

/// A directory removed when dropped (the crate has no `tempfile`).
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("adsync-copy-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&path).expect("a temporary directory");
        TempDir(path)
    }

    fn path(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn set(n: usize) -> CampaignSet {
    let shape = Shape {
        ad_groups: 1,
        ads: 1,
        keywords: 2,
    };
    let json = serde_json::json!({"name": format!("set{n}"), "campaigns": [campaign(n, shape)]});
    CampaignSet::from_json(&json.to_string(), "set").expect("fixture parses")
}

/// Retries come quickly, so the worker finishes the waiting push in time.
fn policy() -> PushPolicy {
    PushPolicy {
        backoff: Backoff {
            base: Duration::from_millis(200),
            max: Duration::from_millis(500),
            max_attempts: 6,
        },
        ..PushPolicy::default()
    }
}

fn pusher(store: impl adsync::IntoStore, platform: &Arc<MemoryPlatform>) -> Pusher {
    Pusher::new(store, platform.clone(), Arc::new(SystemClock)).with_policy(policy())
}

fn puller(store: impl adsync::IntoStore, amazon: &FakeAmazonHandle) -> Puller {
    let client = AmazonClient::new(
        AmazonConfig::new("fake-client-id", "fake-token")
            .with_host(amazon.base_url())
            .with_throttle(ThrottleConfig {
                initial_rate: 1000.0,
                max_rate: 1000.0,
                burst: 100.0,
                ..ThrottleConfig::default()
            }),
    )
    .expect("client");
    Puller::new(store, client, Arc::new(SystemClock)).with_policy(PullPolicy {
        page_size: 3,
        ..PullPolicy::default()
    })
}

async fn fake_amazon() -> FakeAmazonHandle {
    let generator = Generator {
        campaigns: 3,
        ad_groups_per_campaign: 2,
        keywords_per_ad_group: 3,
        seed: 16,
    };
    FakeAmazon::start(FakeAmazonConfig::default().with_profile(PROFILE, generator.generate()))
        .await
        .expect("fake Amazon starts")
}

/// The pushes of the source, by what became of them there.
struct Pushes {
    succeeded: String,
    waiting: String,
    attention: String,
    interrupted: String,
    cancel_requested: String,
}

/// Steps `id` once, expecting a transition.
async fn step(pusher: &Pusher, id: &str) {
    match pusher.step(id).await.expect("steps") {
        Step::Transitioned(_) => {}
        Step::Settled(status) => panic!("{id} settled as {status}"),
    }
}

/// The sync `id` of `pusher` as "a process" left it: the campaign created,
/// then the ad group's create reached the platform and the process died
/// before recording it.
async fn interrupt(
    pusher: &Pusher,
    platform: &MemoryPlatform,
    set: &CampaignSet,
    account: &str,
) -> String {
    let id = pusher.start(set, account).await.expect("starts").remove(0);
    step(pusher, &id).await;
    let checkpoint = pusher.runner().get(&id).await.expect("reads");
    let parent = Parent {
        account_id: account.into(),
        parent_id: checkpoint.state.entities()[0]
            .platform_id()
            .map(String::from),
    };
    let group = set.campaigns[0].ad_groups[0].clone();
    platform
        .create(&parent, &EntitySpec::AdGroup(group))
        .await
        .expect("the create lands");
    id
}

/// Fills a sled store at `path` with syncs in every state; returns them.
async fn fill(
    path: &std::path::Path,
    platform: &Arc<MemoryPlatform>,
    amazon: &FakeAmazonHandle,
) -> Pushes {
    let store = Store::open_from_async(path).await.expect("opens");
    let pushing = pusher(store.clone(), platform);

    let succeeded = pushing.push(&set(0), "acct0").await.expect("pushes");
    assert!(succeeded
        .campaigns
        .iter()
        .all(|c| c.status == Status::Succeeded));
    let succeeded = succeeded.campaigns[0].sync.clone();

    platform.fail_next(Op::Create, Some(EntityKind::Campaign), Fault::Transient);
    let waiting = pushing.start(&set(1), "acct1").await.unwrap().remove(0);
    step(&pushing, &waiting).await;

    // The campaign's create loses its response, and the look-up finds two
    // campaigns of its name: an operator must decide.
    platform.fail_next(Op::Create, Some(EntityKind::Campaign), Fault::LoseResponse);
    let attention = pushing.start(&set(2), "acct2").await.unwrap().remove(0);
    step(&pushing, &attention).await;
    platform.insert(
        &Parent {
            account_id: "acct2".into(),
            parent_id: None,
        },
        &EntitySpec::Campaign(set(2).campaigns[0].clone()),
    );
    step(&pushing, &attention).await;

    let interrupted = interrupt(&pushing, platform, &set(3), "acct3").await;
    let cancel_requested = interrupt(&pushing, platform, &set(4), "acct4").await;

    // A pull completed (a snapshot), then the next run stopped after a few
    // pages (staged).
    let pulling = puller(store.clone(), amazon);
    pulling
        .pull(PROFILE, PullMode::ResumeOrStart)
        .await
        .expect("pulls");
    let pull = pulling
        .begin(PROFILE, PullMode::ResumeOrStart)
        .await
        .expect("begins");
    for _ in 0..3 {
        let _ = pulling.step(&pull).await.expect("steps");
    }
    let staged = adsync::testing::stage_prefix("amazon", PROFILE);
    assert!(store.scan_data(&staged).count() > 0, "pages are staged");

    // A schedule, and a cancel request: stored by "another process", which
    // does not know the push's last create and so cannot cancel at once.
    let later = Worker::builder(store.clone())
        .pusher(pusher(store.clone(), platform))
        .puller(puller(store.clone(), amazon))
        .build();
    later
        .create_schedule(
            "amazon",
            PROFILE,
            Cadence::every(Duration::from_secs(3600)).expect("a cadence"),
        )
        .await
        .expect("schedules");
    let cancel = later.cancel(&cancel_requested).await.expect("cancels");
    assert_eq!(cancel, adsync::Cancelled::Requested);
    drop((later, pushing, pulling));
    store.close();

    Pushes {
        succeeded,
        waiting,
        attention,
        interrupted,
        cancel_requested,
    }
}

/// sled lets go of its lock a moment after the last handle is dropped.
async fn reopen(path: &std::path::Path) -> Store {
    for _ in 0..100 {
        if let Ok(store) = Store::open_existing_from_async(path).await {
            return store;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{} does not reopen", path.display());
}

/// Every row of both tables, in order.
async fn dump(url: &str) -> (Vec<(Vec<u8>, Vec<u8>)>, Vec<String>) {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("a direct connection");
    let task = tokio::spawn(connection);
    let kv = client
        .query("SELECT key, value FROM adsync_kv ORDER BY key", &[])
        .await
        .expect("reads adsync_kv")
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let syncs = client
        .query(
            "SELECT id, status, not_before, owner, lease_expires_at, fence FROM adsync_syncs \
             ORDER BY id",
            &[],
        )
        .await
        .expect("reads adsync_syncs")
        .into_iter()
        .map(|row| {
            let not_before: Option<time::OffsetDateTime> = row.get(2);
            let owner: Option<String> = row.get(3);
            let expires: Option<time::OffsetDateTime> = row.get(4);
            let fence: i64 = row.get(5);
            format!(
                "{} {} {not_before:?} {owner:?} {expires:?} {fence}",
                row.get::<_, String>(0),
                row.get::<_, String>(1)
            )
        })
        .collect();
    task.abort();
    (kv, syncs)
}

/// The `adsync_syncs` rows a commit of each of `store`'s records writes
/// (`not_before` as PostgreSQL keeps it: microseconds), no lease, and
/// fencing token 1: held once before, by the process that ran it on sled
/// (token 1 at a first claim would make a worker skip the look-up of an
/// effect in flight).
fn expected_sync_rows(store: &Store) -> Vec<String> {
    store
        .list()
        .into_iter()
        .map(|record| {
            let record = record.expect("decodes");
            let not_before = record
                .not_before
                .map(|t| t.replace_nanosecond(t.nanosecond() / 1000 * 1000).unwrap());
            format!("{} {} {not_before:?} None None 1", record.id, record.status)
        })
        .collect()
}

async fn statuses(store: &dyn CheckpointStore, ids: &[&String]) -> Vec<Status> {
    let ids: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    store
        .read(move |s| {
            ids.iter()
                .map(|id| s.record(id).unwrap().expect("the sync exists").status)
                .collect()
        })
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copied_store_reads_as_its_source_and_a_worker_finishes_what_was_unfinished() {
    let dir = TempDir::new();
    let path = dir.path().join("adsync.db");
    // Its parked push comes from a look-up finding two campaigns of one
    // name: a push that does not converge (one that did would refuse the
    // same-named campaign before writing).
    let platform = Arc::new(MemoryPlatform::new(Arc::new(SystemClock)).without_listing());
    let amazon = fake_amazon().await;
    let pushes = fill(&path, &platform, &amazon).await;
    let duplicates_before = platform.duplicates();
    assert_eq!(
        duplicates_before.len(),
        1,
        "the campaign that needs attention"
    );

    // Opened the usual way: its log replayed first.
    let source = reopen(&path).await;
    let server = TestServer::start();
    let url = server.url();
    let pg = PgStore::connect(&url).await.expect("connects");
    let imported = pg.import(&source).await.expect("copies");

    // Byte for byte, and the sync rows a commit of each record writes.
    let everything: Vec<(Vec<u8>, Vec<u8>)> = RawRead::scan(&source, b"")
        .collect::<Result<_, _>>()
        .unwrap();
    let (kv, sync_rows) = dump(&url).await;
    assert_eq!(kv, everything);
    assert_eq!(sync_rows, expected_sync_rows(&source));
    assert_eq!(
        imported,
        Imported {
            syncs: [
                (Status::Running, 4), // waiting, two interrupted, the pull
                (Status::Succeeded, 1),
                (Status::NeedsAttention, 1),
            ]
            .into(),
            keys: everything.len() as u64,
            bytes: everything
                .iter()
                .map(|(k, v)| (k.len() + v.len()) as u64)
                .sum(),
        }
    );
    // (Segments, `s/`, are written only by pushes of many entities.)
    for prefix in [&b"r/"[..], b"m/", b"p/", b"h/", b"i/", b"x/"] {
        assert!(
            everything.iter().any(|(k, _)| k.starts_with(prefix)),
            "the source has {} keys",
            String::from_utf8_lossy(prefix)
        );
    }

    // And through the store's own reads: records, history, data.
    let copy: SharedStore = Arc::new(pg.clone());
    let ours = source.list();
    let theirs = copy.read(|s| s.list()).await.unwrap();
    assert_eq!(ours.len(), 6);
    for (a, b) in ours.iter().zip(&theirs) {
        let (a, b) = (a.as_ref().unwrap(), b.as_ref().unwrap());
        assert_eq!(
            serde_json::to_string(a).unwrap(),
            serde_json::to_string(b).unwrap()
        );
        assert_eq!(
            a.plan.as_ref().map(|p| p.get()),
            b.plan.as_ref().map(|p| p.get())
        );
        let id = a.id.clone();
        let history = copy.read(move |s| s.history(&id)).await.unwrap().unwrap();
        assert_eq!(source.history(&a.id).unwrap(), history);
    }
    let data = |s: &dyn adsync::StoreRead| {
        s.scan_data(b"")
            .collect::<Result<Vec<_>, _>>()
            .expect("scans")
    };
    assert_eq!(data(&source), copy.read(data).await.unwrap());
    drop(source);

    // A worker in lease mode on the copy finishes the unfinished pushes
    // (the interrupted one adopts its ad group; the one with a cancel
    // request is cancelled after its look-up) and the pull.
    let worker = Worker::builder(copy.clone())
        .pusher(pusher(copy.clone(), &platform))
        .puller(puller(copy.clone(), &amazon))
        .owner("worker-a")
        .claim_every(Duration::from_millis(20))
        .build();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn({
        let worker = worker.clone();
        async move {
            worker
                .run(async {
                    let _ = stopped.await;
                })
                .await
                .expect("runs")
        }
    });
    let ids = [
        &pushes.succeeded,
        &pushes.waiting,
        &pushes.attention,
        &pushes.interrupted,
        &pushes.cancel_requested,
    ];
    let want = [
        Status::Succeeded,
        Status::Succeeded,
        Status::NeedsAttention,
        Status::Succeeded,
        Status::Cancelled,
    ];
    let reader = adsync::PullReader::new(copy.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = statuses(copy.as_ref(), &ids).await;
        let pull = reader.status(PROFILE).await.unwrap().expect("a pull");
        if now == want && pull.run >= 2 && pull.phase == adsync::PullPhase::Completed {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not finished in time: {now:?}, pull {pull:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = stop.send(());
    running.await.unwrap();

    assert_eq!(platform.duplicates(), duplicates_before, "no new duplicate");
    let record = copy
        .read({
            let id = pushes.interrupted.clone();
            move |s| s.record(&id)
        })
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let checkpoint = Checkpoint::<PushMachine>::try_from(record).unwrap();
    assert_eq!(
        checkpoint.state.entities()[1].result(),
        &EntityResult::Adopted,
        "the ad group created before the copy was looked up and adopted"
    );
    assert!(
        pg.leases().await.unwrap().is_empty(),
        "every lease handed back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_is_not_empty_is_refused_and_left_as_it_was() {
    let dir = TempDir::new();
    let path = dir.path().join("adsync.db");
    let platform = Arc::new(MemoryPlatform::new(Arc::new(SystemClock)));
    {
        let store = Store::open_from_async(&path).await.unwrap();
        pusher(store.clone(), &platform)
            .push(&set(0), "acct0")
            .await
            .unwrap();
        store.close();
    }
    let source = reopen(&path).await;
    let server = TestServer::start();
    // It has a password, which no error may show.
    let url = server.url();
    let pg = PgStore::connect(&url).await.unwrap();
    let first = pg.import(&source).await.expect("the first copy");
    let before = dump(&url).await;

    let refused = pg
        .import(&source)
        .await
        .expect_err("a second copy is refused");
    match &refused {
        CopyError::Store(StoreError::NotEmpty { store, keys, syncs }) => {
            assert_eq!(*keys, first.keys);
            assert_eq!(*syncs, 1);
            assert_eq!(store, &pg.location());
        }
        other => panic!("{other:?}"),
    }
    let message = refused.to_string();
    assert!(message.contains("not empty"), "{message}");
    assert!(message.contains(&pg.location()), "{message}");
    let password = password_of(&url).expect("the test server's URL has a password");
    assert!(!message.contains(&password), "{message}");
    assert!(!format!("{refused:?}").contains(&password));
    assert_eq!(dump(&url).await, before, "nothing changed");
}

/// The password of a `postgres://user:password@host/db` URL, if it has one.
fn password_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let userinfo = rest.split_once('@')?.0;
    userinfo
        .split_once(':')
        .map(|(_, p)| p.to_string())
        .filter(|p| p.len() >= 4)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_with_corrupt_records_is_refused_naming_each_and_nothing_is_written() {
    let dir = TempDir::new();
    let path = dir.path().join("adsync.db");
    let platform = Arc::new(MemoryPlatform::new(Arc::new(SystemClock)));
    let ids = {
        let store = Store::open_from_async(&path).await.unwrap();
        let pushing = pusher(store.clone(), &platform);
        let mut ids = Vec::new();
        for n in 0..4 {
            let report = pushing.push(&set(n), &format!("acct{n}")).await.unwrap();
            ids.push(report.campaigns[0].sync.clone());
        }
        store.close();
        ids
    };
    let source = reopen(&path).await;
    // Damaged behind the store's back: two records, and a history entry of
    // a third sync; the second sync is intact.
    let tree = source.raw_tree().unwrap();
    tree.insert(format!("r/{}", ids[0]), &b"{\"format\": 2, \"trunc"[..])
        .unwrap();
    tree.insert(format!("r/{}", ids[2]), &b"[]"[..]).unwrap();
    let (entry, _) = tree
        .scan_prefix(format!("h/{}\0", ids[3]))
        .next()
        .expect("a history entry")
        .unwrap();
    tree.insert(entry, &b"not json"[..]).unwrap();

    let server = TestServer::start();
    let url = server.url();
    let pg = PgStore::connect(&url).await.unwrap();
    let refused = pg.import(&source).await.expect_err("refused");
    let CopyError::CorruptSource { from, syncs } = &refused else {
        panic!("{refused:?}")
    };
    assert_eq!(from, &path.display().to_string());
    let named: Vec<(String, String)> = syncs
        .iter()
        .map(|e| match e {
            StoreError::Corrupt { sync, detail } => (sync.clone(), detail.clone()),
            other => panic!("{other:?}"),
        })
        .collect();
    let named_ids: Vec<&String> = named.iter().map(|(id, _)| id).collect();
    assert_eq!(named_ids, vec![&ids[0], &ids[2], &ids[3]]);
    assert!(named[2].1.starts_with("history entry"), "{named:?}");
    let message = refused.to_string();
    assert!(message.contains("3 sync(s)"), "{message}");
    for id in [&ids[0], &ids[2], &ids[3]] {
        assert!(message.contains(id.as_str()), "{message}");
    }
    assert!(!message.contains(&ids[1]), "{message}");
    assert_eq!(
        dump(&url).await,
        (Vec::new(), Vec::new()),
        "nothing written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_larger_than_one_batch_is_copied_whole() {
    let dir = TempDir::new();
    let path = dir.path().join("adsync.db");
    {
        let store = Store::open_from_async(&path).await.unwrap();
        // More keys than one INSERT carries, and values larger than one
        // INSERT's byte budget: several batches, by count and by size.
        let mut commit = adsync::Commit::new();
        for n in 0..4500u32 {
            commit = commit.data(format!("many/{n:05}").as_bytes(), n.to_be_bytes().to_vec());
        }
        for n in 0..3u8 {
            commit = commit.data(format!("big/{n}").as_bytes(), vec![n; 3 << 20]);
        }
        store.commit(commit).await.unwrap();
        store.close();
    }
    let source = reopen(&path).await;
    let server = TestServer::start();
    let url = server.url();
    let pg = PgStore::connect(&url).await.unwrap();
    let imported = pg.import(&source).await.expect("copies");
    assert_eq!(imported.keys, 4503);
    assert_eq!(imported.sync_count(), 0);
    let everything: Vec<(Vec<u8>, Vec<u8>)> = RawRead::scan(&source, b"")
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(dump(&url).await.0, everything);
}
