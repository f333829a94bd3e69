//! The runner's StopSignal, as an embedder uses it: no effect starts after
//! the signal, and a later run finishes the syncs with nothing duplicated.
//! On sled and on PostgreSQL.

mod common;

use std::sync::Arc;

use adsync::RunError;
use common::{small_set, Backend, Harness, TestStore, ACCOUNT};

on_both_stores!(
    a_stopped_runner_starts_no_effect_and_a_new_one_finishes_the_set,
    a_stop_during_a_run_lets_the_effect_in_flight_finish_then_stops,
    a_stop_wakes_a_sync_waiting_out_its_backoff,
);

async fn a_stopped_runner_starts_no_effect_and_a_new_one_finishes_the_set(backend: Backend) {
    let h = Harness::temporary(backend).await;
    let ids = h.pusher.start(&small_set(), ACCOUNT).await.expect("starts");
    h.runner().stop_signal().stop();
    let report = h.pusher.run_all(&ids).await;
    assert_eq!(h.platform.creations(), 0, "no effect after the signal");
    assert_eq!(report.errors.len(), ids.len(), "{:?}", report.errors);
    assert!(report.errors[0].contains("stopped"), "{:?}", report.errors);
    match h.pusher.step(&ids[0]).await {
        Err(RunError::Stopped(id)) => assert_eq!(id, ids[0]),
        other => panic!("{other:?}"),
    }

    let again = Harness::new(h.store.clone(), h.platform.clone(), h.clock.clone());
    let report = again.pusher.run_all(&ids).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(h.platform.duplicates().is_empty());
    assert_eq!(h.platform.entities().len(), small_set().entity_count());
}

async fn a_stop_during_a_run_lets_the_effect_in_flight_finish_then_stops(backend: Backend) {
    let h = Harness::temporary(backend).await;
    let ids = h.pusher.start(&small_set(), ACCOUNT).await.expect("starts");
    let stop = h.runner().stop_signal().clone();
    // Stop as soon as the first effect's outcome is durable.
    let report = h
        .pusher
        .run_all_observed(&ids, Arc::new(move |_| stop.stop()))
        .await;
    // The first effect of a converging push is its listing.
    assert_eq!(h.platform.calls().len(), 1, "only the effect in flight ran");
    assert_eq!(h.platform.creations(), 0);
    assert!(report.errors[0].contains("stopped"), "{:?}", report.errors);

    let again = Harness::new(h.store.clone(), h.platform.clone(), h.clock.clone());
    let report = again.pusher.run_all(&ids).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(
        h.platform.duplicates().is_empty(),
        "{:?}",
        h.platform.duplicates()
    );
    assert_eq!(h.platform.entities().len(), small_set().entity_count());
}

async fn a_stop_wakes_a_sync_waiting_out_its_backoff(backend: Backend) {
    use adsync::memory::{Fault, MemoryPlatform};
    use adsync::Backoff;
    use adsync::{Clock, SystemClock};
    use adsync::{PushPolicy, Pusher};
    use std::time::{Duration, Instant};

    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let platform = Arc::new(MemoryPlatform::new(clock.clone()));
    // The first call fails; its retry waits at least 30 s.
    platform.fail_call(1, Fault::Transient);
    let pusher = Arc::new(
        Pusher::new(TestStore::temporary(backend).await, platform.clone(), clock).with_policy(
            PushPolicy {
                backoff: Backoff {
                    base: Duration::from_secs(60),
                    ..Backoff::default()
                },
                ..PushPolicy::default()
            },
        ),
    );
    let ids = pusher.start(&small_set(), ACCOUNT).await.expect("starts");
    let running = {
        let (pusher, ids) = (pusher.clone(), ids.clone());
        tokio::spawn(async move { pusher.run_all(&ids).await })
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while platform.calls().is_empty() {
        assert!(Instant::now() < deadline, "the first call never came");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // Let the failure be checkpointed and the backoff begin.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = Instant::now();
    pusher.runner().stop_signal().stop();
    let report = tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the stop ends the backoff wait")
        .expect("the task completes");
    assert!(stopped.elapsed() < Duration::from_secs(5));
    assert!(report.errors[0].contains("stopped"), "{:?}", report.errors);
    assert_eq!(platform.creations(), 0);
}
