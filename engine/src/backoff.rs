//! Exponential backoff with full jitter, shared by the engine (retrying transient
//! effect failures) and the HTTP adapters (waiting out throttling).

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Backoff settings: the n-th retry waits a random time in
/// `[base·2ⁿ / 2, base·2ⁿ]`, capped at `max`, for at most `max_attempts` attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backoff {
    /// Wait before the first retry (upper bound before jitter).
    #[serde(with = "duration_ms")]
    pub base: Duration,
    /// Longest single wait.
    #[serde(with = "duration_ms")]
    pub max: Duration,
    /// Attempts in all, the first included; after the last the operation fails.
    pub max_attempts: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(500),
            max: Duration::from_secs(60),
            max_attempts: 6,
        }
    }
}

impl Backoff {
    /// The deterministic upper bound of the wait after failed attempt `attempt` (1-based).
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let exp = attempt.saturating_sub(1).min(30);
        self.base.saturating_mul(1u32 << exp).min(self.max)
    }

    /// A jittered wait after failed attempt `attempt` (1-based): "equal jitter",
    /// half fixed and half random, so retries of many syncs spread out but
    /// never collapse to zero.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with_jitter(attempt, rand::rng().random::<f64>())
    }

    /// [`Backoff::delay`] with the random part given as `unit` in `[0, 1)`, so a
    /// pure state machine can compute waits from a sample the runner drew.
    pub fn delay_with_jitter(&self, attempt: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling(attempt);
        let half = ceiling / 2;
        half + ceiling.saturating_sub(half).mul_f64(unit.clamp(0.0, 1.0))
    }

    /// Whether another attempt is allowed after `attempts` have failed.
    pub fn allows_retry(&self, attempts: u32) -> bool {
        attempts < self.max_attempts
    }
}

mod duration_ms {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_exponentially_within_jitter_bounds_and_cap() {
        let b = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            max_attempts: 5,
        };
        for attempt in 1..=8 {
            let ceiling = b.ceiling(attempt);
            assert_eq!(
                ceiling,
                Duration::from_millis(100 * (1 << (attempt - 1))).min(Duration::from_secs(1))
            );
            for _ in 0..50 {
                let d = b.delay(attempt);
                assert!(
                    d >= ceiling / 2 && d <= ceiling,
                    "attempt {attempt}: {d:?} outside [{:?}, {ceiling:?}]",
                    ceiling / 2
                );
            }
        }
        assert!(b.allows_retry(4));
        assert!(!b.allows_retry(5));
    }
}
