//! Workers on PostgreSQL (lease mode), in one process but with one store
//! handle each (each its own pool and writer, as separate processes have):
//! pushes and a pull run across two workers, each sync claimed by one worker
//! at a time and every entity created once; a worker whose lease is taken
//! over sends nothing more while the new owner adopts what it created.

use std::sync::Arc;
use std::time::{Duration, Instant};

use adsync::memory::MemoryPlatform;
use adsync::{
    CampaignSet, CheckpointStore, Limits, Pusher, SharedStore, Status, SystemClock, Worker,
};
use adsync_fakes::fixtures::{campaign, Shape};
use adsync_fakes::postgres::TestServer;
use adsync_postgres::PgStore;

fn one_campaign_set(n: usize) -> CampaignSet {
    let shape = Shape {
        ad_groups: 1,
        ads: 1,
        keywords: 2,
    };
    let json = serde_json::json!({"name": format!("set{n}"), "campaigns": [campaign(n, shape)]});
    CampaignSet::from_json(&json.to_string(), "set").expect("fixture parses")
}

async fn worker(url: &str, platform: &Arc<MemoryPlatform>, owner: &str) -> (Worker, PgStore) {
    let pg = PgStore::connect(url).await.expect("connects");
    let store: SharedStore = Arc::new(pg.clone());
    let clock = Arc::new(SystemClock);
    let worker = Worker::builder(store.clone())
        .pusher(Pusher::new(store, platform.clone(), clock))
        .limits(Limits {
            max_running: 4,
            max_per_account: 4,
        })
        .owner(owner)
        .lease_ttl(Duration::from_secs(30))
        .claim_every(Duration::from_millis(20))
        // A sync whose commit failed (the server restarting) is tried again
        // after this, not after the default 5 s.
        .store_retry(Duration::from_millis(300))
        .build();
    (worker, pg)
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

async fn statuses(store: &PgStore, ids: &[String]) -> Vec<Status> {
    let ids = ids.to_vec();
    let store: &dyn CheckpointStore = store;
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
async fn two_workers_on_one_database_share_pushes_and_create_each_entity_once() {
    let server = TestServer::start();
    let url = server.url();
    let platform = Arc::new(MemoryPlatform::new(Arc::new(SystemClock)));
    let (a, pg_a) = worker(&url, &platform, "worker-a").await;
    let (b, pg_b) = worker(&url, &platform, "worker-b").await;

    let mut ids = Vec::new();
    for n in 0..16 {
        let via = if n % 2 == 0 { &a } else { &b };
        ids.extend(
            via.submit_push(&one_campaign_set(n), &format!("acct{n}"), "memory")
                .await
                .expect("submitted"),
        );
    }
    let (stop_a, run_a) = run(&a);
    let (stop_b, run_b) = run(&b);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = statuses(&pg_a, &ids).await;
        if now.iter().all(|s| s.is_settled()) {
            assert!(now.iter().all(|s| *s == Status::Succeeded), "{now:?}");
            break;
        }
        assert!(Instant::now() < deadline, "not settled in time: {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = (stop_a.send(()), stop_b.send(()));
    run_a.await.unwrap();
    run_b.await.unwrap();

    assert!(
        platform.duplicates().is_empty(),
        "{:?}",
        platform.duplicates()
    );
    assert_eq!(
        platform.creations(),
        16 * 5,
        "5 entities per campaign, each once"
    );
    // Every lease was handed back at the end: nothing waits for an expiry.
    let leases = pg_b.leases().await.unwrap();
    assert!(leases.is_empty(), "{leases:?}");
    // Both workers ran syncs: the claims were shared.
    let (ran_a, ran_b) = (transitions(&a).await, transitions(&b).await);
    // The reading phase, then five creates.
    assert_eq!(
        ran_a + ran_b,
        16 * 6,
        "six transitions per push, each run once"
    );
    assert!(ran_a > 0 && ran_b > 0, "a ran {ran_a}, b ran {ran_b}");
}

/// Transitions this worker ran, from its metrics.
async fn transitions(worker: &Worker) -> u64 {
    metric(worker, "adsync_transitions_total").await
}

/// The sum of a counter's samples in this worker's metrics.
async fn metric(worker: &Worker, name: &str) -> u64 {
    worker
        .render_metrics()
        .await
        .unwrap()
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_process_leads_a_role_until_it_goes_away() {
    let server = TestServer::start();
    let url = server.url();
    let a = PgStore::connect(&url).await.unwrap();
    let b = PgStore::connect(&url).await.unwrap();
    assert!(a.lead("schedules").await.unwrap(), "the first to ask leads");
    assert!(!b.lead("schedules").await.unwrap(), "one leader at a time");
    assert!(
        a.lead("schedules").await.unwrap(),
        "and it stays the leader"
    );
    assert!(b.lead("other").await.unwrap(), "roles are separate");
    // The leader goes away (its connections close with it): the other
    // process takes the role at its next try.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !b.lead("schedules").await.unwrap() {
        assert!(Instant::now() < deadline, "the role was never taken over");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_fires_once_across_two_workers() {
    use adsync::amazon::{AmazonClient, AmazonConfig, ThrottleConfig};
    use adsync::{Cadence, Puller};
    use adsync_fakes::{FakeAmazon, FakeAmazonConfig, Generator};

    const PROFILE: &str = "777";
    let generator = Generator {
        campaigns: 2,
        ad_groups_per_campaign: 2,
        keywords_per_ad_group: 3,
        seed: 9,
    };
    let amazon =
        FakeAmazon::start(FakeAmazonConfig::default().with_profile(PROFILE, generator.generate()))
            .await
            .expect("fake Amazon starts");
    let server = TestServer::start();
    let url = server.url();
    let pull_worker = |owner: &'static str| {
        let (url, host) = (url.clone(), amazon.base_url());
        async move {
            let pg = PgStore::connect(&url).await.expect("connects");
            let store: SharedStore = Arc::new(pg.clone());
            let client = AmazonClient::new(
                AmazonConfig::new("fake-client-id", "fake-token")
                    .with_host(host)
                    .with_throttle(ThrottleConfig {
                        initial_rate: 1000.0,
                        max_rate: 1000.0,
                        burst: 100.0,
                        ..ThrottleConfig::default()
                    }),
            )
            .expect("client");
            let puller = Puller::new(store.clone(), client, Arc::new(SystemClock));
            let worker = Worker::builder(store)
                .puller(puller)
                .owner(owner)
                .claim_every(Duration::from_millis(20))
                .build();
            (worker, pg)
        }
    };
    let (a, pg) = pull_worker("worker-a").await;
    let (b, _) = pull_worker("worker-b").await;
    // Created through b; fires at creation, then hourly: once in this test.
    b.create_schedule(
        "amazon",
        PROFILE,
        Cadence::every(Duration::from_secs(3600)).expect("a cadence"),
    )
    .await
    .expect("schedule");
    let (stop_a, run_a) = run(&a);
    let (stop_b, run_b) = run(&b);
    let reader = a.puller("amazon").expect("puller").reader().clone();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let status = reader.status(PROFILE).await.expect("status");
        if status.as_ref().is_some_and(|s| s.counts.is_some()) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the scheduled pull never completed: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Both workers go on running for a while: neither fires it again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let fired = metric(&a, "adsync_schedule_runs_total").await
        + metric(&a, "adsync_schedule_skips_total").await
        + metric(&b, "adsync_schedule_runs_total").await
        + metric(&b, "adsync_schedule_skips_total").await;
    assert_eq!(fired, 1, "the schedule fired once, in one worker");
    let _ = (stop_a.send(()), stop_b.send(()));
    run_a.await.unwrap();
    run_b.await.unwrap();
    let status = reader.status(PROFILE).await.unwrap().expect("pulled");
    assert_eq!(status.run, 1, "one pull: {status:?}");
    let stored = {
        let store: &dyn CheckpointStore = &pg;
        store
            .read(|s| {
                s.scan_data(b"worker/schedule/")
                    .map(|item| item.map(|(_, v)| v))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await
            .unwrap()
            .unwrap()
    };
    assert_eq!(stored.len(), 1);
    let schedule: adsync::Schedule = serde_json::from_slice(&stored[0]).expect("a schedule");
    assert_eq!(schedule.runs, 1, "{schedule:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_reconnect_after_the_server_restarts_and_finish_without_duplicates() {
    let server = TestServer::dedicated();
    let url = server.url();
    // Every platform call takes a while, so the restart lands mid-run.
    let platform = Arc::new(MemoryPlatform::new(Arc::new(SystemClock)));
    let (a, pg_a) = worker(&url, &platform, "worker-a").await;
    let (b, _pg_b) = worker(&url, &platform, "worker-b").await;
    let mut ids = Vec::new();
    for n in 0..24 {
        let via = if n % 2 == 0 { &a } else { &b };
        ids.extend(
            via.submit_push(&one_campaign_set(n), &format!("acct{n}"), "memory")
                .await
                .expect("submitted"),
        );
    }
    let (stop_a, run_a) = run(&a);
    let (stop_b, run_b) = run(&b);
    tokio::time::sleep(Duration::from_millis(30)).await;
    let before = statuses(&pg_a, &ids).await;
    let unsettled = before.iter().filter(|s| !s.is_settled()).count();
    assert!(unsettled > 0, "every push finished before the restart");
    eprintln!(
        "restarting with {unsettled} of {} syncs unfinished",
        ids.len()
    );
    // pg_ctl restart (fast: open connections are closed), off the runtime.
    let restarted = tokio::task::spawn_blocking(move || {
        server.restart();
        server
    })
    .await
    .expect("restarted");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        // Reads may fail while the server comes back: try again.
        let store: &dyn CheckpointStore = &pg_a;
        let ids2 = ids.clone();
        let statuses = store
            .read(move |s| {
                ids2.iter()
                    .map(|id| s.record(id).map(|r| r.map(|r| r.status)))
                    .collect::<Result<Vec<_>, _>>()
            })
            .await;
        if let Ok(Ok(statuses)) = statuses {
            let statuses: Vec<Status> = statuses.into_iter().flatten().collect();
            if statuses.len() == ids.len() && statuses.iter().all(|s| s.is_settled()) {
                assert!(
                    statuses.iter().all(|s| *s == Status::Succeeded),
                    "{statuses:?}"
                );
                break;
            }
        }
        assert!(Instant::now() < deadline, "not settled after the restart");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = (stop_a.send(()), stop_b.send(()));
    run_a.await.unwrap();
    run_b.await.unwrap();
    drop(restarted);
    assert!(
        platform.duplicates().is_empty(),
        "{:?}",
        platform.duplicates()
    );
    assert_eq!(platform.creations(), 24 * 5, "each entity once");
}
