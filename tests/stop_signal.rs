//! The runner's StopSignal, as an embedder uses it: no effect starts after
//! the signal, and a later run finishes the syncs with nothing duplicated.

mod common;

use std::sync::Arc;

use adsync::runner::RunError;
use common::{small_set, Harness, ACCOUNT};

#[tokio::test]
async fn a_stopped_runner_starts_no_effect_and_a_new_one_finishes_the_set() {
    let h = Harness::temporary();
    let ids = h.pusher.start(&small_set(), ACCOUNT).await.expect("starts");
    h.runner().stop_signal().stop();
    let report = h.pusher.run_all(&ids).await;
    assert_eq!(h.platform.creations(), 0, "no effect after the signal");
    assert_eq!(report.errors.len(), ids.len(), "{:?}", report.errors);
    assert!(report.errors[0].contains("stopped"), "{:?}", report.errors);
    match h.runner().step(&ids[0]).await {
        Err(RunError::Stopped(id)) => assert_eq!(id, ids[0]),
        other => panic!("{other:?}"),
    }

    let again = Harness::new(h.store.clone(), h.platform.clone(), h.clock.clone());
    let report = again.pusher.run_all(&ids).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert!(h.platform.duplicates().is_empty());
    assert_eq!(h.platform.entities().len(), small_set().entity_count());
}

#[tokio::test]
async fn a_stop_during_a_run_lets_the_effect_in_flight_finish_then_stops() {
    let h = Harness::temporary();
    let ids = h.pusher.start(&small_set(), ACCOUNT).await.expect("starts");
    let stop = h.runner().stop_signal().clone();
    // Stop as soon as the first effect's outcome is durable.
    let report = h
        .pusher
        .run_all_observed(&ids, Arc::new(move |_| stop.stop()))
        .await;
    assert_eq!(h.platform.creations(), 1, "only the effect in flight ran");
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
