//! Time as a seam: the runner asks a [`Clock`] for "now" and for backoff sleeps, so
//! tests replace wall time with a [`ManualClock`] that advances only when asked to.

use parking_lot::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

/// A point in time, UTC. Serialized as RFC 3339 in checkpoints.
pub type Timestamp = OffsetDateTime;

/// Where the engine gets the time from: the runner reads every timestamp it
/// records and sleeps every backoff through one, so a test can swap in a
/// [`ManualClock`] and run backoffs instantly.
#[async_trait]
pub trait Clock: Send + Sync + 'static {
    /// The current time, UTC. Called once per transition; must not block.
    fn now(&self) -> Timestamp;
    /// Waits until `deadline` (returns at once when it has passed).
    async fn sleep_until(&self, deadline: Timestamp);
}

/// Wall-clock time and real sleeps (tokio timers).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        OffsetDateTime::now_utc()
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        let wait = deadline - self.now();
        if wait.is_positive() {
            tokio::time::sleep(wait.try_into().unwrap_or(Duration::ZERO)).await;
        }
    }
}

/// A clock for tests: time stands still until a sleep moves it forward, so
/// backoff waits cost nothing and every timestamp in a trace is deterministic.
///
/// ```
/// use adsync_engine::{Clock, ManualClock};
/// use time::macros::datetime;
///
/// let clock = ManualClock::new(datetime!(2026-01-01 00:00 UTC));
/// clock.advance(std::time::Duration::from_secs(90));
/// assert_eq!(clock.now(), datetime!(2026-01-01 00:01:30 UTC));
/// ```
#[derive(Debug)]
pub struct ManualClock {
    now: Mutex<Timestamp>,
    slept: Mutex<Duration>,
}

impl ManualClock {
    /// A clock standing at `start`.
    pub fn new(start: Timestamp) -> Self {
        Self {
            now: Mutex::new(start),
            slept: Mutex::new(Duration::ZERO),
        }
    }

    /// Moves time forward by `by` without counting it as slept (see
    /// [`ManualClock::total_slept`]): time passing outside the machine.
    pub fn advance(&self, by: Duration) {
        let mut now = self.now.lock();
        *now += by;
    }

    /// Total time spent in [`Clock::sleep_until`] so far.
    pub fn total_slept(&self) -> Duration {
        *self.slept.lock()
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.now.lock()
    }

    async fn sleep_until(&self, deadline: Timestamp) {
        let mut now = self.now.lock();
        if deadline > *now {
            let wait: Duration = (deadline - *now).try_into().unwrap_or(Duration::ZERO);
            *self.slept.lock() += wait;
            *now = deadline;
        }
    }
}
