//! The worker as an embedder sees it: durable submissions, limits, durable
//! backoff waits across a restart, schedules on a manual clock, cancellation,
//! graceful stop, metrics. On sled and on PostgreSQL (where the worker holds
//! a lease on each sync it runs).

mod common;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;

use adsync::amazon::{AmazonClient, AmazonConfig, ThrottleConfig};
use adsync::memory::{Fault, MemoryPlatform, Op};
use adsync::{
    AdapterError, Backoff, Cadence, Cancelled, Clock, EntityKind, EntitySpec, FoundEntity, Keyword,
    KeywordModel, Limits, ManualClock, Parent, PlatformEntity, PullPolicy, Puller, PushAdapter,
    Pusher, Status, SystemClock, Timestamp, Worker,
};
use adsync_fakes::{FakeAmazon, FakeAmazonConfig, FakeAmazonHandle, Generator};
use common::{start_time, Backend, TestDb, TestStore, TWO_CAMPAIGNS};

on_both_stores!(
    a_submission_is_durable_when_acknowledged_and_the_worker_runs_it_to_the_end,
    the_global_and_per_account_limits_hold_while_every_sync_runs,
    #[sled_only]
    a_backoff_wait_survives_a_restart_and_the_sync_resumes_at_its_due_time,
    a_sync_cancelled_before_it_runs_is_cancelled_at_once_and_sends_nothing,
    a_graceful_stop_starts_no_new_effect_and_a_restart_finishes_without_duplicates,
    a_create_cut_off_at_the_shutdown_deadline_is_looked_up_at_the_next_start,
    schedules_fire_on_time_missed_runs_collapse_and_a_busy_profile_is_skipped,
    bad_schedules_are_refused_and_nothing_is_stored,
    metrics_count_transitions_effects_and_durable_writes,
    #[multi_thread]
    concurrent_submissions_of_one_set_start_each_campaign_once,
    a_cancel_while_an_effect_is_in_flight_lands_after_it_is_recorded,
);

fn two_campaigns() -> adsync::CampaignSet {
    adsync::CampaignSet::from_json(TWO_CAMPAIGNS, "TWO_CAMPAIGNS").expect("fixture parses")
}

/// What a process exit leaves behind: the worker gone, the store closed
/// (flushed, its lock let go), so the next `open` is a new process's.
fn end_process(worker: Worker, store: TestStore) {
    drop(worker);
    store.close();
    drop(store);
}

/// A push adapter in front of the memory platform that takes `delay` (real
/// time) per call and records how many calls were in flight at once, in all
/// and per account.
struct Metered {
    inner: Arc<MemoryPlatform>,
    delay: Duration,
    /// Applied first, then the delay: a create cut off mid-delay has happened.
    state: Mutex<Flight>,
}

#[derive(Default)]
struct Flight {
    now: usize,
    max: usize,
    per_account: HashMap<String, usize>,
    max_per_account: usize,
    started: usize,
}

impl Metered {
    fn new(inner: Arc<MemoryPlatform>, delay: Duration) -> Arc<Self> {
        Arc::new(Metered {
            inner,
            delay,
            state: Mutex::new(Flight::default()),
        })
    }

    async fn call<T>(&self, parent: &Parent, f: impl std::future::Future<Output = T>) -> T {
        {
            let mut s = self.state.lock();
            s.now += 1;
            s.started += 1;
            s.max = s.max.max(s.now);
            let n = s.per_account.entry(parent.account_id.clone()).or_default();
            *n += 1;
            let n = *n;
            s.max_per_account = s.max_per_account.max(n);
        }
        let out = f.await;
        tokio::time::sleep(self.delay).await;
        let mut s = self.state.lock();
        s.now -= 1;
        *s.per_account.entry(parent.account_id.clone()).or_default() -= 1;
        out
    }

    fn started(&self) -> usize {
        self.state.lock().started
    }
}

#[async_trait]
impl PushAdapter for Metered {
    fn platform(&self) -> &str {
        "memory"
    }
    fn keyword_model(&self) -> KeywordModel {
        self.inner.keyword_model()
    }
    async fn create(&self, parent: &Parent, spec: &EntitySpec) -> Result<String, AdapterError> {
        self.call(parent, self.inner.create(parent, spec)).await
    }
    async fn update(
        &self,
        parent: &Parent,
        id: &str,
        spec: &EntitySpec,
    ) -> Result<(), AdapterError> {
        self.call(parent, self.inner.update(parent, id, spec)).await
    }
    async fn find(
        &self,
        parent: &Parent,
        kind: EntityKind,
        name: &str,
        created_after: Timestamp,
    ) -> Result<Vec<FoundEntity>, AdapterError> {
        self.call(parent, self.inner.find(parent, kind, name, created_after))
            .await
    }
    async fn get(
        &self,
        parent: &Parent,
        kind: EntityKind,
        id: &str,
    ) -> Result<Option<PlatformEntity>, AdapterError> {
        self.inner.get(parent, kind, id).await
    }
    async fn set_ad_group_keywords(
        &self,
        parent: &Parent,
        ad_group_id: &str,
        keywords: &[Keyword],
    ) -> Result<(), AdapterError> {
        self.call(
            parent,
            self.inner
                .set_ad_group_keywords(parent, ad_group_id, keywords),
        )
        .await
    }
}

/// Runs `worker` in a task until `stop` is sent (or dropped).
fn run_in_background(
    worker: &Worker,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<adsync::Stopped, adsync::WorkerError>>,
) {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = worker.clone();
    let running = tokio::spawn(async move {
        worker
            .run(async {
                let _ = stopped.await;
            })
            .await
    });
    (stop, running)
}

fn manual_clock() -> Arc<ManualClock> {
    Arc::new(ManualClock::new(start_time()))
}

fn worker_over(store: &TestStore, adapter: Arc<dyn PushAdapter>, clock: Arc<dyn Clock>) -> Worker {
    Worker::builder(store.clone())
        .clock(clock.clone())
        .pusher(Pusher::new(store.clone(), adapter, clock).with_runner(|r| r.with_seed(5)))
        .build()
}

async fn statuses(worker: &Worker, ids: &[String]) -> Vec<Status> {
    let runner = worker.pusher("memory").expect("pusher").runner();
    let mut out = Vec::new();
    for id in ids {
        out.push(runner.get(id).await.expect("sync").record.status);
    }
    out
}

async fn a_submission_is_durable_when_acknowledged_and_the_worker_runs_it_to_the_end(
    backend: Backend,
) {
    let db = TestDb::new(backend);
    let clock = manual_clock();
    let platform = Arc::new(MemoryPlatform::new(clock.clone()));
    let store = db.open().await;
    let worker = worker_over(&store, platform.clone(), clock.clone());
    let ids = worker
        .submit_push(&two_campaigns(), "acct", "memory")
        .await
        .expect("submitted");
    assert_eq!(ids.len(), 2);
    // Acknowledged means durable: a fresh process (here: the store reopened
    // without the worker) finds both syncs, unfinished, nothing sent yet.
    end_process(worker, store);
    let store = db.open().await;
    for id in &ids {
        let record = store.record(id).await;
        assert_eq!(record.status, Status::Running);
    }
    assert_eq!(platform.creations(), 0);
    let worker = worker_over(&store, platform.clone(), clock.clone());
    let depth = worker.run_due().await.expect("runs");
    assert_eq!((depth.ready, depth.waiting, depth.running), (0, 0, 0));
    assert_eq!(statuses(&worker, &ids).await, [Status::Succeeded; 2]);
    assert!(platform.duplicates().is_empty());
    assert_eq!(platform.creations() as usize, platform.entities().len());
}

async fn the_global_and_per_account_limits_hold_while_every_sync_runs(backend: Backend) {
    let clock = manual_clock();
    let platform = Metered::new(
        Arc::new(MemoryPlatform::new(clock.clone())),
        Duration::from_millis(3),
    );
    let store = TestStore::temporary(backend).await;
    let worker = Worker::builder(store.clone())
        .clock(clock.clone())
        .pusher(Pusher::new(store.clone(), platform.clone(), clock.clone()))
        .limits(Limits {
            max_running: 3,
            max_per_account: 1,
        })
        .build();
    let mut ids = Vec::new();
    for account in ["a1", "a2", "a3", "a4"] {
        ids.extend(
            worker
                .submit_push(&two_campaigns(), account, "memory")
                .await
                .expect("submitted"),
        );
    }
    // sled: all eight wait in this worker's queue. PostgreSQL: in the store,
    // for whichever worker claims them, as many at a time as it has room for
    // (one claim round per `run_due` on a manual clock).
    let queued = if backend == Backend::Sled { 8 } else { 0 };
    assert_eq!(worker.depth().ready, queued);
    let mut rounds = 0;
    while statuses(&worker, &ids).await != [Status::Succeeded; 8] {
        rounds += 1;
        assert!(rounds <= 8, "{:?}", statuses(&worker, &ids).await);
        worker.run_due().await.expect("runs");
    }
    let flight = platform.state.lock();
    assert_eq!(flight.max_per_account, 1, "one sync per account at a time");
    assert!(flight.max <= 3, "at most three at once, saw {}", flight.max);
    assert!(
        flight.max >= 2,
        "the limit allows concurrency: saw {}",
        flight.max
    );
}

/// sled only: on a shared store a waiting sync's due time is compared with
/// the database server's clock when workers claim it, not with the worker's
/// (manual) clock this test moves.
async fn a_backoff_wait_survives_a_restart_and_the_sync_resumes_at_its_due_time(backend: Backend) {
    let db = TestDb::new(backend);
    let clock = manual_clock();
    let platform = Arc::new(MemoryPlatform::new(clock.clone()));
    platform.fail_next(Op::Create, Some(EntityKind::Campaign), Fault::Transient);
    let store = db.open().await;
    let worker = worker_over(&store, platform.clone(), clock.clone());
    let mut set = two_campaigns();
    set.campaigns.truncate(1);
    let ids = worker
        .submit_push(&set, "acct", "memory")
        .await
        .expect("submitted");
    let depth = worker.run_due().await.expect("runs");
    assert_eq!(
        depth.waiting, 1,
        "the transient failure left it backing off"
    );
    let due = worker
        .pusher("memory")
        .expect("pusher")
        .runner()
        .get(&ids[0])
        .await
        .expect("sync")
        .state
        .retry_at()
        .expect("a retry time is in the checkpoint");
    assert!(due > clock.now());
    let calls_before = platform.calls().len();

    // Restart: the wait is in the checkpoint, so the new worker waits too.
    end_process(worker, store);
    let store = db.open().await;
    let worker = worker_over(&store, platform.clone(), clock.clone());
    let depth = worker.run_due().await.expect("runs");
    assert_eq!(depth.waiting, 1, "not resumed before its time");
    assert_eq!(platform.calls().len(), calls_before, "nothing sent early");
    let just_before: Duration = (due - clock.now() - time::Duration::milliseconds(1))
        .try_into()
        .expect("due is ahead");
    clock.advance(just_before);
    worker.run_due().await.expect("runs");
    assert_eq!(platform.calls().len(), calls_before, "still waiting");
    clock.advance(Duration::from_millis(1));
    let depth = worker.run_due().await.expect("runs");
    assert_eq!(depth.waiting + depth.ready + depth.running, 0);
    assert_eq!(statuses(&worker, &ids).await, [Status::Succeeded]);
    assert!(platform.duplicates().is_empty());
}

async fn a_sync_cancelled_before_it_runs_is_cancelled_at_once_and_sends_nothing(backend: Backend) {
    let clock = manual_clock();
    let platform = Arc::new(MemoryPlatform::new(clock.clone()));
    let store = TestStore::temporary(backend).await;
    let worker = worker_over(&store, platform.clone(), clock.clone());
    let ids = worker
        .submit_push(&two_campaigns(), "acct", "memory")
        .await
        .expect("submitted");
    // On a shared store (PostgreSQL) only the sync's lease holder writes its
    // states, and nobody holds it yet: the request is durable and lands at
    // the sync's first step boundary, before any effect.
    let expected = match backend {
        Backend::Sled => Cancelled::Now,
        Backend::Postgres => Cancelled::Requested,
    };
    assert_eq!(worker.cancel(&ids[0]).await.expect("cancels"), expected);
    worker.run_due().await.expect("runs");
    assert_eq!(
        statuses(&worker, &ids).await,
        [Status::Cancelled, Status::Succeeded]
    );
    assert_eq!(
        worker.cancel(&ids[0]).await.expect("answers"),
        Cancelled::AlreadySettled(Status::Cancelled)
    );
    let cancelled_campaign = &two_campaigns().campaigns[0].name;
    assert!(
        platform
            .entities()
            .iter()
            .all(|e| &e.name != cancelled_campaign),
        "the cancelled campaign was never created"
    );
    assert!(matches!(
        worker.cancel("no-such-sync").await,
        Err(adsync::WorkerError::Run(adsync::RunError::UnknownSync(_)))
    ));
}

async fn a_graceful_stop_starts_no_new_effect_and_a_restart_finishes_without_duplicates(
    backend: Backend,
) {
    let db = TestDb::new(backend);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let memory = Arc::new(MemoryPlatform::new(clock.clone()));
    let slow = Metered::new(memory.clone(), Duration::from_millis(150));
    let store = db.open().await;
    let worker = Worker::builder(store.clone())
        .clock(clock.clone())
        .pusher(Pusher::new(store.clone(), slow.clone(), clock.clone()))
        .shutdown_timeout(Duration::from_secs(10))
        .build();
    let (stop, running) = run_in_background(&worker);
    let ids = worker
        .submit_push(&two_campaigns(), "acct", "memory")
        .await
        .expect("submitted");
    while slow.started() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let at_signal = slow.state.lock().now;
    let started_at_signal = slow.started();
    stop.send(()).expect("worker listens");
    let result = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .expect("stops within the timeout")
        .expect("task")
        .expect("stopped cleanly");
    assert!(
        result.cut_off.is_empty(),
        "in-flight effects finished: {result:?}"
    );
    assert_eq!(
        slow.started(),
        started_at_signal,
        "no effect started after the signal ({at_signal} were in flight)"
    );
    assert!(
        statuses(&worker, &ids).await.contains(&Status::Running),
        "the push was stopped partway"
    );
    end_process(worker, store);

    let store = db.open().await;
    let worker = worker_over(&store, memory.clone(), clock.clone());
    worker.run_due().await.expect("runs");
    assert_eq!(statuses(&worker, &ids).await, [Status::Succeeded; 2]);
    assert!(memory.duplicates().is_empty());
}

async fn a_create_cut_off_at_the_shutdown_deadline_is_looked_up_at_the_next_start(
    backend: Backend,
) {
    let db = TestDb::new(backend);
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let memory = Arc::new(MemoryPlatform::new(clock.clone()));
    // The create is applied at once; its answer takes ten seconds.
    let slow = Metered::new(memory.clone(), Duration::from_secs(10));
    let store = db.open().await;
    let worker = Worker::builder(store.clone())
        .clock(clock.clone())
        .pusher(Pusher::new(store.clone(), slow.clone(), clock.clone()))
        .shutdown_timeout(Duration::from_millis(100))
        // On PostgreSQL the cut-off sync stays leased to this worker after it
        // stops (its create's outcome is unknown): a short lease lets the
        // next worker take it over soon.
        .lease_ttl(Duration::from_secs(1))
        .build();
    let mut set = two_campaigns();
    set.campaigns.truncate(1);
    let ids = worker
        .submit_push(&set, "acct", "memory")
        .await
        .expect("submitted");
    let running = tokio::spawn({
        let worker = worker.clone();
        async move {
            worker
                .run(async {
                    while slow.started() == 0 {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
                .await
        }
    });
    let stopped = running.await.expect("task").expect("stopped");
    assert_eq!(stopped.cut_off, ids, "the create in flight was cut off");
    assert_eq!(memory.creations(), 1, "the platform applied it");
    end_process(worker, store);

    let store = db.open().await;
    let worker = worker_over(&store, memory.clone(), clock.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while statuses(&worker, &ids).await != [Status::Succeeded] {
        assert!(
            std::time::Instant::now() < deadline,
            "the sync was never taken up again"
        );
        worker.run_due().await.expect("runs");
        if backend == Backend::Postgres {
            // Until the dead worker's lease runs out.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    assert!(
        memory.duplicates().is_empty(),
        "looked up and adopted, not re-sent"
    );
    let outcomes: Vec<String> = store
        .history(&ids[0])
        .await
        .into_iter()
        .map(|e| e.outcome)
        .collect();
    assert!(
        outcomes[1].starts_with("interrupted: the create may have been sent")
            && outcomes[2].starts_with("found "),
        "the restart looked the campaign up and adopted it: {outcomes:#?}"
    );
}

const PROFILE: &str = "2718281828";

async fn amazon() -> FakeAmazonHandle {
    let generator = Generator {
        campaigns: 2,
        ad_groups_per_campaign: 2,
        keywords_per_ad_group: 3,
        seed: 5,
    };
    let config = FakeAmazonConfig::default().with_profile(PROFILE, generator.generate());
    FakeAmazon::start(config).await.expect("fake Amazon starts")
}

fn pull_worker(store: &TestStore, server: &FakeAmazonHandle, clock: Arc<ManualClock>) -> Worker {
    let client = AmazonClient::new(
        AmazonConfig::new("fake-client-id", "fake-token")
            .with_host(server.base_url())
            .with_throttle(ThrottleConfig {
                initial_rate: 1000.0,
                max_rate: 1000.0,
                burst: 100.0,
                ..ThrottleConfig::default()
            }),
    )
    .expect("client");
    let puller = Puller::new(store.clone(), client, clock.clone()).with_policy(PullPolicy {
        page_size: 5,
        backoff: Backoff::default(),
    });
    Worker::builder(store.clone())
        .clock(clock)
        .puller(puller)
        .build()
}

async fn schedule_counts(worker: &Worker) -> (u64, u64, Timestamp) {
    let schedules = worker.schedules().await.expect("schedules");
    let s = &schedules[0];
    (s.runs, s.skips, s.next_run)
}

async fn schedules_fire_on_time_missed_runs_collapse_and_a_busy_profile_is_skipped(
    backend: Backend,
) {
    let server = amazon().await;
    let db = TestDb::new(backend);
    let clock = manual_clock();
    let t0 = clock.now();
    let store = db.open().await;
    let worker = pull_worker(&store, &server, clock.clone());
    let hour = Duration::from_secs(3600);
    worker
        .create_schedule("amazon", PROFILE, Cadence::every(hour).expect("cadence"))
        .await
        .expect("stored");

    // An interval schedule fires when created.
    worker.run_due().await.expect("runs");
    assert_eq!(schedule_counts(&worker).await, (1, 0, t0 + hour));
    let status = worker
        .puller("amazon")
        .expect("puller")
        .status(PROFILE)
        .await
        .expect("status")
        .expect("pulled");
    assert_eq!(status.state, adsync::SyncState::Completed);
    let requests = server.requests().len();

    // Not yet due: nothing fires, nothing is requested.
    clock.advance(Duration::from_secs(1800));
    worker.run_due().await.expect("runs");
    assert_eq!(schedule_counts(&worker).await.0, 1);
    assert_eq!(server.requests().len(), requests);

    // Down for five hours (a new worker on the same store): ONE run, and the
    // next an hour after it.
    end_process(worker, store);
    clock.advance(Duration::from_secs(5 * 3600));
    let store = db.open().await;
    let worker = pull_worker(&store, &server, clock.clone());
    worker.run_due().await.expect("runs");
    let back = clock.now();
    assert_eq!(schedule_counts(&worker).await, (2, 0, back + hour));
    assert!(server.requests().len() > requests);

    // A pull of the profile is already queued (in this worker's queue, or on
    // a shared store waiting for a claim) when the schedule fires: skipped.
    worker
        .submit_pull(PROFILE, "amazon")
        .await
        .expect("submitted");
    clock.advance(hour);
    worker.run_due().await.expect("runs");
    let (runs, skips, _) = schedule_counts(&worker).await;
    assert_eq!((runs, skips), (2, 1), "fired once more, and skipped");
    let metrics = worker.render_metrics().await.expect("metrics");
    assert!(
        metrics.contains("adsync_schedule_skips_total{platform=\"amazon\"} 1"),
        "{metrics}"
    );
}

async fn bad_schedules_are_refused_and_nothing_is_stored(backend: Backend) {
    let server = amazon().await;
    let store = TestStore::temporary(backend).await;
    let worker = pull_worker(&store, &server, manual_clock());
    let zero = serde_json::from_str::<Cadence>(r#"{"every": {"seconds": 0}}"#).expect("shape");
    assert!(matches!(
        worker.create_schedule("amazon", PROFILE, zero).await,
        Err(adsync::WorkerError::Schedule(
            adsync::ScheduleError::ZeroInterval
        ))
    ));
    let cron = Cadence::Cron {
        expr: "not cron".into(),
    };
    assert!(worker
        .create_schedule("amazon", PROFILE, cron)
        .await
        .is_err());
    let hourly = Cadence::cron("@hourly").expect("valid");
    let unknown = worker
        .create_schedule("reddit", PROFILE, hourly.clone())
        .await;
    assert!(
        matches!(&unknown, Err(adsync::WorkerError::UnknownPlatform { .. })),
        "{unknown:?}"
    );
    assert!(worker
        .create_schedule("amazon", "bad/profile", hourly)
        .await
        .is_err());
    assert!(worker.schedules().await.expect("listed").is_empty());
}

async fn metrics_count_transitions_effects_and_durable_writes(backend: Backend) {
    let clock = manual_clock();
    let platform = Arc::new(MemoryPlatform::new(clock.clone()));
    let store = TestStore::temporary(backend).await;
    let worker = worker_over(&store, platform, clock);
    worker
        .submit_push(&two_campaigns(), "acct", "memory")
        .await
        .expect("submitted");
    worker.run_due().await.expect("runs");
    let text = worker.render_metrics().await.expect("metrics");
    let value = |prefix: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(prefix))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no `{prefix}` in:\n{text}"))
    };
    let transitions = worker.metrics().transitions() as f64;
    assert!(transitions > 2.0);
    assert_eq!(
        value("adsync_transitions_total{machine=\"push\",platform=\"memory\"}"),
        transitions
    );
    assert!(
        value(
            "adsync_effect_seconds_count{machine=\"push\",platform=\"memory\",effect=\"create\"}"
        ) >= 2.0
    );
    assert_eq!(
        value("adsync_syncs{machine=\"push\",status=\"succeeded\"}"),
        2.0
    );
    assert_eq!(
        value("adsync_syncs_settled_total{machine=\"push\",status=\"succeeded\"}"),
        2.0
    );
    assert_eq!(value("adsync_submissions_total{machine=\"push\"}"), 2.0);
    assert!(value("adsync_store_commits_total") >= transitions);
    assert!(value("adsync_store_durable_writes_total") >= 1.0);
    assert_eq!(value("adsync_queue{place=\"running\"}"), 0.0);
}

async fn concurrent_submissions_of_one_set_start_each_campaign_once(backend: Backend) {
    let clock = manual_clock();
    let platform = Arc::new(MemoryPlatform::new(clock.clone()));
    let store = TestStore::temporary(backend).await;
    let worker = worker_over(&store, platform.clone(), clock.clone());
    let submits: Vec<_> = (0..8)
        .map(|_| {
            let worker = worker.clone();
            tokio::spawn(async move {
                worker
                    .submit_push(&two_campaigns(), "acct", "memory")
                    .await
                    .expect("submitted")
            })
        })
        .collect();
    let mut answers = Vec::new();
    for submit in submits {
        answers.push(submit.await.expect("task"));
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "every submission names the same two syncs: {answers:?}"
    );
    let records = store.list().await;
    assert_eq!(
        records.len(),
        2,
        "one sync per campaign, not one per submission"
    );
    // On a shared store the syncs wait in the store for whichever worker
    // claims them, not in this worker's queue.
    let queued = (backend == Backend::Sled).then_some(adsync::Queued::Ready);
    assert_eq!(worker.queued(&answers[0][0]), queued);
    worker.run_due().await.expect("runs");
    assert_eq!(worker.queued(&answers[0][0]), None);
    assert_eq!(statuses(&worker, &answers[0]).await, [Status::Succeeded; 2]);
    assert!(platform.duplicates().is_empty());
}

async fn a_cancel_while_an_effect_is_in_flight_lands_after_it_is_recorded(backend: Backend) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let memory = Arc::new(MemoryPlatform::new(clock.clone()));
    let slow = Metered::new(memory.clone(), Duration::from_millis(200));
    let store = TestStore::temporary(backend).await;
    let worker = Worker::builder(store.clone())
        .clock(clock.clone())
        .pusher(Pusher::new(store.clone(), slow.clone(), clock.clone()))
        .build();
    let mut set = two_campaigns();
    set.campaigns.truncate(1);
    let ids = worker
        .submit_push(&set, "acct", "memory")
        .await
        .expect("submitted");
    let (stop, running) = run_in_background(&worker);
    while slow.started() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(worker.queued(&ids[0]), Some(adsync::Queued::Running));
    assert_eq!(
        worker.cancel(&ids[0]).await.expect("requested"),
        Cancelled::Requested,
        "an effect is in flight: the cancel waits for its boundary"
    );
    while worker.queued(&ids[0]).is_some() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let checkpoint = worker
        .pusher("memory")
        .expect("pusher")
        .runner()
        .get(&ids[0])
        .await
        .expect("sync");
    assert_eq!(checkpoint.record.status, Status::Cancelled);
    assert_eq!(slow.started(), 1, "no effect started after the cancel");
    assert_eq!(memory.creations(), 1, "the campaign created in flight...");
    let campaign_id = checkpoint
        .state
        .entities()
        .first()
        .and_then(|e| e.platform_id().map(str::to_string));
    assert!(campaign_id.is_some(), "...has its id recorded");
    stop.send(()).expect("worker listens");
    running.await.expect("task").expect("stopped");
}
