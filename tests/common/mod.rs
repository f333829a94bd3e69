//! Shared test fixtures: a store, a scriptable in-memory platform, paused time.
//! The campaign sets are `adsync_fakes::fixtures`, shared with benches and the demo.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use adsync::memory::MemoryPlatform;
use adsync::KeywordModel;
use adsync::ManualClock;
use adsync::{Checkpoint, Runner};
use adsync::{HistoryEntry, Store};
use adsync::{PushMachine, Pusher, SetReport};

#[allow(unused_imports)]
pub use adsync_fakes::fixtures::{example_set, small_set, TWO_CAMPAIGNS};

pub const ACCOUNT: &str = "a2_test";

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
    pub store: Store,
    pub platform: Arc<MemoryPlatform>,
    pub clock: Arc<ManualClock>,
    pub pusher: Pusher,
}

impl Harness {
    pub fn new(store: Store, platform: Arc<MemoryPlatform>, clock: Arc<ManualClock>) -> Self {
        let pusher = Pusher::new(store.clone(), platform.clone(), clock.clone())
            .with_runner(|runner| runner.with_seed(7));
        Harness {
            store,
            platform,
            clock,
            pusher,
        }
    }

    /// A fresh temporary store and an empty platform with entity keywords.
    pub fn temporary() -> Self {
        Self::with_model(KeywordModel::Entities)
    }

    pub fn with_model(model: KeywordModel) -> Self {
        let clock = Arc::new(ManualClock::new(start_time()));
        let platform = Arc::new(MemoryPlatform::new(clock.clone()).with_keyword_model(model));
        Self::new(
            Store::temporary().expect("temporary store"),
            platform,
            clock,
        )
    }

    pub fn runner(&self) -> &Runner<PushMachine> {
        self.pusher.runner()
    }

    pub fn history(&self, sync: &str) -> Vec<HistoryEntry> {
        self.store.history(sync).expect("history")
    }
}

/// A readable trace of a sync: its transitions, then every entity's id and result,
/// then what the platform holds.
pub fn trace(h: &Harness, sync: &str) -> String {
    let mut out = String::new();
    for e in h.history(sync) {
        let effect = e.effect.as_deref().unwrap_or("(no effect run)");
        let _ = writeln!(
            out,
            "{:>2}. {:<16} | {effect}\n    {:<16} | => {} → {}",
            e.seq, e.from, "", e.outcome, e.to
        );
    }
    let record = h.store.record(sync).expect("read").expect("record exists");
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

/// Asserts a snapshot stored in the top-level `snapshots/` directory.
#[macro_export]
macro_rules! snap {
    ($name:expr, $value:expr) => {
        insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false, omit_expression => true }, {
            insta::assert_snapshot!($name, $value);
        })
    };
}
