//! Process-wide counters of what the platforms did to us: 429s received and
//! time spent waiting in rate limiters, per platform.
//!
//! Process-wide because the clients that see them are built before (and
//! apart from) any worker, and a Prometheus counter is per process anyway.
//! The label is the platform's fixed name, never an account or a URL.

use std::collections::BTreeMap;
use std::time::Duration;

use parking_lot::Mutex;

static PLATFORMS: Mutex<BTreeMap<&'static str, (u64, f64)>> = Mutex::new(BTreeMap::new());

/// A platform answered 429.
pub(crate) fn throttled(platform: &'static str) {
    PLATFORMS.lock().entry(platform).or_default().0 += 1;
}

/// A request of `platform` waited `waited` in its rate limiter.
pub(crate) fn waited(platform: &'static str, waited: Duration) {
    if !waited.is_zero() {
        PLATFORMS.lock().entry(platform).or_default().1 += waited.as_secs_f64();
    }
}

/// platform → (429s, seconds waited), so far in this process.
pub(crate) fn platforms() -> BTreeMap<String, (u64, f64)> {
    PLATFORMS
        .lock()
        .iter()
        .map(|(platform, figures)| (platform.to_string(), *figures))
        .collect()
}
