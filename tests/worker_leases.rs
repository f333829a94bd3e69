//! Several workers on one shared store (lease mode), in one process: the
//! store is sled's, wrapped with an in-memory lease table that claims,
//! renews and fences the way a shared database does (`adsync-postgres`
//! runs the same rules in PostgreSQL, across processes).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;

use adsync::memory::MemoryPlatform;
use adsync::{
    AdapterError, CampaignSet, CheckpointStore, Claim, Commit, EntityKind, EntitySpec, FoundEntity,
    Keyword, KeywordModel, LeaseView, Leases, Limits, Parent, PushAdapter, Pusher, Reads, Status,
    Store, StoreError, SystemClock, Timestamp, Worker, WriterStats,
};
use adsync_fakes::fixtures::{campaign, Shape};

/// One sync's lease.
struct Lease {
    owner: Option<String>,
    expires: Instant,
    fence: u64,
}

/// sled's store plus a lease table: claims skip held syncs, every claim
/// moves the fencing token on, a fenced commit with an old token is refused.
struct Shared {
    store: Store,
    table: Mutex<HashMap<String, Lease>>,
    /// Every claim, in order: (owner, sync, fence).
    claims: Mutex<Vec<(String, String, u64)>>,
}

impl Shared {
    fn new() -> Arc<Self> {
        Arc::new(Shared {
            store: Store::temporary().unwrap(),
            table: Mutex::new(HashMap::new()),
            claims: Mutex::new(Vec::new()),
        })
    }

    /// The lease on `sync` runs out now (its owner was paused past it).
    fn expire(&self, sync: &str) {
        if let Some(lease) = self.table.lock().get_mut(sync) {
            lease.expires = Instant::now() - Duration::from_millis(1);
        }
    }

    fn owners_of(&self, sync: &str) -> Vec<String> {
        self.claims
            .lock()
            .iter()
            .filter(|(_, s, _)| s == sync)
            .map(|(o, _, _)| o.clone())
            .collect()
    }
}

#[async_trait]
impl CheckpointStore for Shared {
    fn location(&self) -> String {
        self.store.location()
    }
    async fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        if let Some((sync, fence)) = commit.fence() {
            let current = self.table.lock().get(sync).map(|l| l.fence);
            if current != Some(fence) {
                return Err(StoreError::LeaseLost {
                    sync: sync.to_string(),
                    fence,
                });
            }
        }
        CheckpointStore::commit(&self.store, commit).await
    }
    fn commit_blocking(&self, commit: Commit) -> Result<(), StoreError> {
        self.store.commit_blocking(commit)
    }
    async fn read_with(&self, reads: Reads) -> Result<(), StoreError> {
        self.store.read_with(reads).await
    }
    fn writer_stats(&self) -> WriterStats {
        self.store.writer_stats()
    }
    fn leases(&self) -> Option<&dyn Leases> {
        Some(self)
    }
}

#[async_trait]
impl Leases for Shared {
    async fn claim(
        &self,
        owner: &str,
        ttl: Duration,
        limit: usize,
    ) -> Result<Vec<Claim>, StoreError> {
        let now = time::OffsetDateTime::now_utc();
        // Scanned under the table's lock, so a claim is atomic with releases
        // and other claims (as one statement is in PostgreSQL). A test may
        // block its runtime thread for that.
        let mut table = self.table.lock();
        let running: Vec<String> = self
            .store
            .records(false)
            .flatten()
            .filter(|r| r.status == Status::Running)
            .filter(|r| r.not_before.is_none_or(|t| t <= now))
            .map(|r| r.id)
            .collect();
        let mut claims = Vec::new();
        for id in running {
            if claims.len() == limit {
                break;
            }
            let lease = table.entry(id.clone()).or_insert(Lease {
                owner: None,
                expires: Instant::now(),
                fence: 0,
            });
            if lease.owner.is_some() && lease.expires > Instant::now() {
                continue;
            }
            lease.owner = Some(owner.to_string());
            lease.expires = Instant::now() + ttl;
            lease.fence += 1;
            self.claims
                .lock()
                .push((owner.to_string(), id.clone(), lease.fence));
            claims.push(Claim {
                sync: id,
                fence: lease.fence,
            });
        }
        Ok(claims)
    }

    async fn renew(
        &self,
        owner: &str,
        held: &[Claim],
        ttl: Duration,
    ) -> Result<Vec<String>, StoreError> {
        let mut table = self.table.lock();
        let mut still = Vec::new();
        for claim in held {
            if let Some(lease) = table.get_mut(&claim.sync) {
                if lease.fence == claim.fence && lease.owner.as_deref() == Some(owner) {
                    lease.expires = Instant::now() + ttl;
                    still.push(claim.sync.clone());
                }
            }
        }
        Ok(still)
    }

    async fn release(&self, claim: &Claim) -> Result<bool, StoreError> {
        let mut table = self.table.lock();
        match table.get_mut(&claim.sync) {
            Some(lease) if lease.fence == claim.fence => {
                lease.owner = None;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn leases(&self) -> Result<Vec<LeaseView>, StoreError> {
        Ok(Vec::new())
    }

    async fn lead(&self, _role: &str) -> Result<bool, StoreError> {
        // One process here: it leads.
        Ok(true)
    }
}

/// The memory platform behind a per-worker log of calls, each call taking
/// `delay` after it reached the platform; the first create can be held
/// (after it reached the platform) until the test lets it go.
struct Logged {
    inner: Arc<MemoryPlatform>,
    delay: Duration,
    calls: Mutex<Vec<(Instant, &'static str)>>,
    hold_first_create: Option<Arc<tokio::sync::Semaphore>>,
    held: tokio::sync::Notify,
}

impl Logged {
    fn new(inner: Arc<MemoryPlatform>, delay: Duration) -> Arc<Self> {
        Arc::new(Logged {
            inner,
            delay,
            calls: Mutex::new(Vec::new()),
            hold_first_create: None,
            held: tokio::sync::Notify::new(),
        })
    }

    async fn log<T>(&self, what: &'static str, f: impl std::future::Future<Output = T>) -> T {
        self.calls.lock().push((Instant::now(), what));
        let out = f.await;
        tokio::time::sleep(self.delay).await;
        out
    }

    fn calls_since(&self, t: Instant) -> Vec<&'static str> {
        self.calls
            .lock()
            .iter()
            .filter(|(at, _)| *at >= t)
            .map(|(_, w)| *w)
            .collect()
    }
}

#[async_trait]
impl PushAdapter for Logged {
    fn platform(&self) -> &str {
        "memory"
    }
    fn keyword_model(&self) -> KeywordModel {
        self.inner.keyword_model()
    }
    async fn create(&self, parent: &Parent, spec: &EntitySpec) -> Result<String, AdapterError> {
        let out = self.log("create", self.inner.create(parent, spec)).await;
        if let Some(gate) = &self.hold_first_create {
            self.held.notify_one();
            gate.acquire().await.expect("open").forget();
        }
        out
    }
    async fn update(
        &self,
        parent: &Parent,
        id: &str,
        spec: &EntitySpec,
    ) -> Result<(), AdapterError> {
        self.log("update", self.inner.update(parent, id, spec))
            .await
    }
    async fn find(
        &self,
        parent: &Parent,
        kind: EntityKind,
        name: &str,
        created_after: Timestamp,
    ) -> Result<Vec<FoundEntity>, AdapterError> {
        self.log("find", self.inner.find(parent, kind, name, created_after))
            .await
    }
    async fn set_ad_group_keywords(
        &self,
        parent: &Parent,
        ad_group_id: &str,
        keywords: &[Keyword],
    ) -> Result<(), AdapterError> {
        self.log(
            "keywords",
            self.inner
                .set_ad_group_keywords(parent, ad_group_id, keywords),
        )
        .await
    }
}

fn worker(store: &Arc<Shared>, adapter: Arc<Logged>, owner: &str, ttl: Duration) -> Worker {
    let shared: Arc<dyn CheckpointStore> = store.clone();
    let clock = Arc::new(SystemClock);
    Worker::builder(shared.clone())
        .pusher(Pusher::new(shared, adapter, clock))
        .limits(Limits {
            max_running: 3,
            max_per_account: 3,
        })
        .owner(owner)
        .lease_ttl(ttl)
        .claim_every(Duration::from_millis(20))
        .build()
}

fn one_campaign_set(n: usize) -> CampaignSet {
    let shape = Shape {
        ad_groups: 1,
        ads: 1,
        keywords: 2,
    };
    let json = serde_json::json!({"name": format!("set{n}"), "campaigns": [campaign(n, shape)]});
    CampaignSet::from_json(&json.to_string(), "set").expect("fixture parses")
}

fn run(
    worker: &Worker,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = worker.clone();
    let task = tokio::spawn(async move {
        worker
            .run(async {
                let _ = stopped.await;
            })
            .await
            .expect("runs");
    });
    (stop, task)
}

async fn settled(store: &Arc<Shared>, ids: &[String]) -> BTreeMap<String, Status> {
    let ids = ids.to_vec();
    let sled: &dyn CheckpointStore = &store.store;
    sled.read(move |s| {
        ids.iter()
            .map(|id| {
                let record = s.record(id).unwrap().expect("the sync exists");
                (id.clone(), record.status)
            })
            .collect()
    })
    .await
    .unwrap()
}

async fn wait_until_settled(store: &Arc<Shared>, ids: &[String]) -> BTreeMap<String, Status> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let statuses = settled(store, ids).await;
        if statuses.values().all(|s| s.is_settled()) {
            return statuses;
        }
        assert!(
            Instant::now() < deadline,
            "not settled in time: {statuses:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_the_work_and_no_sync_runs_twice() {
    let store = Shared::new();
    let platform = Arc::new(MemoryPlatform::new(Arc::new(SystemClock)));
    let a_calls = Logged::new(platform.clone(), Duration::from_millis(5));
    let b_calls = Logged::new(platform.clone(), Duration::from_millis(5));
    let a = worker(&store, a_calls.clone(), "a", Duration::from_secs(30));
    let b = worker(&store, b_calls.clone(), "b", Duration::from_secs(30));

    // Every submission goes to worker a; both workers claim.
    let mut ids = Vec::new();
    for n in 0..12 {
        ids.extend(
            a.submit_push(&one_campaign_set(n), &format!("acct{n}"), "memory")
                .await
                .expect("submitted"),
        );
    }
    let (stop_a, run_a) = run(&a);
    let (stop_b, run_b) = run(&b);
    let statuses = wait_until_settled(&store, &ids).await;
    let _ = (stop_a.send(()), stop_b.send(()));
    run_a.await.unwrap();
    run_b.await.unwrap();

    assert!(
        statuses.values().all(|s| *s == Status::Succeeded),
        "{statuses:?}"
    );

    assert!(
        platform.duplicates().is_empty(),
        "{:?}",
        platform.duplicates()
    );
    assert_eq!(
        platform.creations(),
        12 * 5,
        "5 entities per campaign, each once"
    );
    for id in &ids {
        assert_eq!(
            store.owners_of(id).len(),
            1,
            "sync {id} was claimed once and run by one worker"
        );
    }
    let by_a = ids.iter().filter(|id| store.owners_of(id) == ["a"]).count();
    assert!(
        (1..12).contains(&by_a),
        "both workers took syncs ({by_a} of 12 by a)"
    );
    assert!(
        !a_calls
            .calls_since(Instant::now() - Duration::from_secs(60))
            .is_empty()
            && !b_calls
                .calls_since(Instant::now() - Duration::from_secs(60))
                .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_lease_was_taken_over_sends_nothing_more_and_the_new_owner_adopts() {
    let store = Shared::new();
    let platform = Arc::new(MemoryPlatform::new(Arc::new(SystemClock)));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let a_calls = Arc::new(Logged {
        inner: platform.clone(),
        delay: Duration::ZERO,
        calls: Mutex::new(Vec::new()),
        hold_first_create: Some(gate.clone()),
        held: tokio::sync::Notify::new(),
    });
    let b_calls = Logged::new(platform.clone(), Duration::ZERO);
    let a = worker(&store, a_calls.clone(), "a", Duration::from_secs(30));
    let ids = a
        .submit_push(&one_campaign_set(1), "acct", "memory")
        .await
        .unwrap();
    let (stop_a, run_a) = run(&a);

    // a's campaign create reached the platform; a stalls before recording it.
    a_calls.held.notified().await;
    // a's lease runs out (it was paused past it) and b takes the sync over.
    store.expire(&ids[0]);
    let takeover = Instant::now();
    let b = worker(&store, b_calls.clone(), "b", Duration::from_secs(30));
    let (stop_b, run_b) = run(&b);
    let statuses = wait_until_settled(&store, &ids).await;
    assert_eq!(statuses[&ids[0]], Status::Succeeded);

    // a wakes up: its commit is refused and it sends nothing more.
    gate.add_permits(100);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = (stop_a.send(()), stop_b.send(()));
    run_a.await.unwrap();
    run_b.await.unwrap();

    assert_eq!(store.owners_of(&ids[0]), ["a", "b"]);
    assert!(
        a_calls.calls_since(takeover).is_empty(),
        "a sent nothing after its lease was taken over: {:?}",
        a_calls.calls_since(takeover)
    );
    assert!(
        platform.duplicates().is_empty(),
        "{:?}",
        platform.duplicates()
    );
    assert_eq!(
        b_calls.calls_since(takeover).first(),
        Some(&"find"),
        "b looked up the campaign a may have created, and adopted it"
    );
    assert_eq!(platform.creations(), 5, "each entity created once");
    let sled: &dyn CheckpointStore = &store.store;
    let record = sled
        .read({
            let id = ids[0].clone();
            move |s| s.record(&id)
        })
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(record.status, Status::Succeeded);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_through_one_worker_lands_in_the_worker_that_holds_the_sync() {
    let store = Shared::new();
    let platform = Arc::new(MemoryPlatform::new(Arc::new(SystemClock)));
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    let a_calls = Arc::new(Logged {
        inner: platform.clone(),
        delay: Duration::ZERO,
        calls: Mutex::new(Vec::new()),
        hold_first_create: Some(gate.clone()),
        held: tokio::sync::Notify::new(),
    });
    let a = worker(&store, a_calls.clone(), "a", Duration::from_secs(30));
    let b = worker(
        &store,
        Logged::new(platform.clone(), Duration::ZERO),
        "b",
        Duration::from_secs(30),
    );
    let ids = b
        .submit_push(&one_campaign_set(1), "acct", "memory")
        .await
        .unwrap();
    let (stop_a, run_a) = run(&a);
    a_calls.held.notified().await;

    // b does not hold the sync: it only makes the request durable.
    let cancelled = b.cancel(&ids[0]).await.expect("cancel");
    assert_eq!(cancelled, adsync::Cancelled::Requested);
    gate.add_permits(100);
    let statuses = wait_until_settled(&store, &ids).await;
    let _ = stop_a.send(());
    run_a.await.unwrap();

    assert_eq!(statuses[&ids[0]], Status::Cancelled);
    assert_eq!(
        platform.creations(),
        1,
        "the create in flight completed and was recorded; nothing else was created"
    );
    assert_eq!(store.owners_of(&ids[0]), ["a"]);
}
