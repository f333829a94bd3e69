//! Client-side throttling for Amazon's dynamic rate limits.
//!
//! Every request of one [`AmazonClient`](super::AmazonClient) passes through one
//! [`Throttle`], which wraps the shared [`RateLimiter`] with an AIMD policy:
//!
//! * each 429 **multiplies** the rate by [`ThrottleConfig::decrease_factor`]
//!   (never below [`ThrottleConfig::min_rate`]) and pauses *all* requests of the
//!   client — for `Retry-After` when the platform sent one, otherwise for an
//!   exponential backoff with jitter that grows with the streak of 429s. Like
//!   TCP, one congestion episode lowers the rate once: a 429 for a request that
//!   was already in flight when the rate last dropped only extends the pause;
//! * every [`ThrottleConfig::increase_after`] consecutive successes (a
//!   *window*) raise the rate, never above [`ThrottleConfig::max_rate`]. Until
//!   the client's first 429 this is **slow start**, as in TCP: each half
//!   window doubles the rate, but never beyond twice the rate the window's requests
//!   actually reached, so a client that sends less than it may (one pull
//!   fetching page after page) does not claim a rate it never tried. After the
//!   first 429 (congestion), each window **adds**
//!   [`ThrottleConfig::increase_step`].
//!
//! Amazon publishes no fixed quota, so the rate settles just under what the
//! platform currently grants; slow start gets there in a few windows from a
//! cautious starting rate instead of hundreds.

use parking_lot::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::ratelimit::RateLimiter;
use adsync_engine::Backoff;

/// Rate policy settings (requests per second).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ThrottleConfig {
    /// Rate of a new client, before any 429 or run of successes moves it
    /// (clamped into `[min_rate, max_rate]`).
    pub initial_rate: f64,
    /// Lowest rate a 429 can push the client to.
    pub min_rate: f64,
    /// Highest rate sustained success can raise the client to.
    pub max_rate: f64,
    /// Requests that may be sent back to back (token bucket size, at least 1).
    pub burst: f64,
    /// Rate multiplier on each 429 (in `(0, 1)`).
    pub decrease_factor: f64,
    /// Rate added after `increase_after` consecutive successes, once the
    /// client has been throttled (before that, slow start doubles it).
    pub increase_step: f64,
    /// Consecutive successes needed for one increase (the window of both
    /// slow start and additive increase).
    pub increase_after: u32,
    /// Longest `Retry-After` the client waits out by itself; a longer one ends
    /// the call with [`AmazonError::Throttled`](super::AmazonError::Throttled)
    /// carrying the wait, so the caller can checkpoint and sleep.
    #[serde(with = "secs_f64")]
    pub max_retry_after: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            initial_rate: 5.0,
            min_rate: 0.2,
            max_rate: 20.0,
            burst: 2.0,
            decrease_factor: 0.5,
            increase_step: 0.5,
            increase_after: 10,
            max_retry_after: Duration::from_secs(300),
        }
    }
}

mod secs_f64 {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}

/// What the caller should do after a 429.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThrottleDecision {
    /// The limiter is paused for this long; acquire again and retry.
    Retry(Duration),
    /// `Retry-After` exceeds [`ThrottleConfig::max_retry_after`]: give up now.
    GiveUp(Duration),
}

/// The AIMD throttle shared by all requests of a client.
#[derive(Debug)]
pub struct Throttle {
    limiter: RateLimiter,
    config: ThrottleConfig,
    backoff: Backoff,
    streak: Mutex<Streak>,
}

#[derive(Debug, Default)]
struct Streak {
    successes: u32,
    throttled: u32,
    last_decrease: Option<Instant>,
    /// A 429 was seen: slow start is over for this client.
    congested: bool,
    /// When the current window of successes began (its first success).
    window_started: Option<Instant>,
}

impl Throttle {
    /// A throttle at `config.initial_rate` (clamped into `[min_rate, max_rate]`);
    /// waits without `Retry-After` follow `backoff`.
    pub fn new(config: ThrottleConfig, backoff: Backoff) -> Self {
        let rate = clamp(config.initial_rate, &config);
        Throttle {
            limiter: RateLimiter::new(rate, config.burst),
            config,
            backoff,
            streak: Mutex::new(Streak::default()),
        }
    }

    fn streak(&self) -> parking_lot::MutexGuard<'_, Streak> {
        self.streak.lock()
    }

    /// Waits for permission to send one request: a token of the shared
    /// bucket, after any pause a 429 imposed on every request of the client.
    pub async fn acquire(&self) {
        self.limiter.acquire().await;
    }

    /// The current steady rate (requests per second).
    pub fn rate(&self) -> f64 {
        self.limiter.rate()
    }

    /// The settings it was built with (the current rate is [`Throttle::rate`]).
    pub fn config(&self) -> &ThrottleConfig {
        &self.config
    }

    /// Records a successful response. After a window of successes the rate
    /// rises: doubled (at most to twice the rate the window reached) every
    /// `increase_after / 2` successes until the first 429, by `increase_step`
    /// every `increase_after` after it.
    pub fn on_success(&self) {
        let mut s = self.streak();
        let now = Instant::now();
        s.throttled = 0;
        s.successes += 1;
        let window_started = *s.window_started.get_or_insert(now);
        // Slow start measures over half a window: it doubles twice as often,
        // so a pull from a low rate reaches the allowed one in few pages,
        // and the "twice what the client reached" cap still bounds it.
        let window = if s.congested {
            self.config.increase_after.max(1)
        } else {
            (self.config.increase_after / 2).max(1)
        };
        if s.successes >= window {
            s.successes = 0;
            s.window_started = None;
            let current = self.limiter.rate();
            let raised = if s.congested {
                current + self.config.increase_step
            } else {
                // The window's own rate: `window` successes since its first
                // span `window - 1` intervals.
                let elapsed = now.saturating_duration_since(window_started).as_secs_f64();
                let reached = if elapsed > 0.0 && window > 1 {
                    f64::from(window - 1) / elapsed
                } else {
                    f64::INFINITY
                };
                (current * 2.0).min(reached * 2.0).max(current)
            };
            let rate = clamp(raised, &self.config);
            if rate != current {
                tracing::debug!(
                    rate,
                    slow_start = !s.congested,
                    "amazon throttle: raising rate"
                );
                self.limiter.set_rate(rate);
            }
        }
    }

    /// Whether the rate still grows by doubling (no 429 seen yet).
    pub fn in_slow_start(&self) -> bool {
        !self.streak().congested
    }

    /// Records a 429 for a request sent at `sent_at`: multiplicative decrease
    /// (unless the request was in flight when the rate last dropped), then pauses
    /// every request of the client for `retry_after` or, without it, for a
    /// jittered exponential backoff that grows with the number of 429s in a row.
    pub fn on_throttled(
        &self,
        sent_at: Instant,
        retry_after: Option<Duration>,
    ) -> ThrottleDecision {
        let (streak, decrease) = {
            let mut s = self.streak();
            s.successes = 0;
            s.window_started = None;
            s.congested = true;
            let same_episode = s.last_decrease.is_some_and(|d| sent_at < d);
            if !same_episode {
                s.throttled = s.throttled.saturating_add(1);
                s.last_decrease = Some(Instant::now());
            }
            (s.throttled.max(1), !same_episode)
        };
        let rate = if decrease {
            clamp(
                self.limiter.rate() * self.config.decrease_factor,
                &self.config,
            )
        } else {
            self.limiter.rate()
        };
        self.limiter.set_rate(rate);
        let wait = match retry_after {
            Some(wait) if wait > self.config.max_retry_after => {
                return ThrottleDecision::GiveUp(wait);
            }
            Some(wait) => wait,
            None => self.backoff.delay(streak),
        };
        tracing::debug!(rate, ?wait, streak, "amazon throttle: 429, lowering rate");
        self.limiter.pause_until(Instant::now() + wait);
        ThrottleDecision::Retry(wait)
    }
}

fn clamp(rate: f64, c: &ThrottleConfig) -> f64 {
    let min = c.min_rate.max(f64::MIN_POSITIVE);
    rate.clamp(min, c.max_rate.max(min))
}

/// Parses a `Retry-After` value: seconds (integer or decimal). HTTP dates are not
/// used by Amazon and give `None` (the caller then backs off exponentially).
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    if !secs.is_finite() || secs < 0.0 {
        return None;
    }
    Duration::try_from_secs_f64(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backoff() -> Backoff {
        Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
            max_attempts: 5,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn aimd_lowers_on_429_and_raises_slowly_within_bounds() {
        let t = Throttle::new(
            ThrottleConfig {
                initial_rate: 8.0,
                min_rate: 1.0,
                max_rate: 10.0,
                increase_step: 1.0,
                increase_after: 3,
                ..ThrottleConfig::default()
            },
            backoff(),
        );
        assert!(matches!(
            t.on_throttled(Instant::now(), None),
            ThrottleDecision::Retry(_)
        ));
        assert_eq!(t.rate(), 4.0);
        t.on_throttled(Instant::now(), Some(Duration::from_secs(1)));
        t.on_throttled(Instant::now(), Some(Duration::from_secs(1)));
        t.on_throttled(Instant::now(), Some(Duration::from_secs(1)));
        assert_eq!(t.rate(), 1.0, "never below min_rate");
        for _ in 0..2 {
            t.on_success();
        }
        assert_eq!(t.rate(), 1.0, "no increase before increase_after successes");
        t.on_success();
        assert_eq!(t.rate(), 2.0);
        for _ in 0..100 {
            t.on_success();
        }
        assert_eq!(t.rate(), 10.0, "never above max_rate");
        assert!(matches!(
            t.on_throttled(Instant::now(), Some(Duration::from_secs(301))),
            ThrottleDecision::GiveUp(_)
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn backoff_without_retry_after_grows_with_the_streak_and_pauses_everyone() {
        let t = Throttle::new(ThrottleConfig::default(), backoff());
        let mut waits = Vec::new();
        for _ in 0..4 {
            match t.on_throttled(Instant::now(), None) {
                ThrottleDecision::Retry(w) => waits.push(w),
                other => panic!("{other:?}"),
            }
        }
        for (i, w) in waits.iter().enumerate() {
            let ceiling = backoff().ceiling(i as u32 + 1);
            assert!(*w >= ceiling / 2 && *w <= ceiling, "{i}: {w:?}");
        }
        let start = Instant::now();
        t.acquire().await;
        assert!(start.elapsed() >= waits[3]);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_in_flight_during_a_decrease_do_not_compound_it() {
        let t = Throttle::new(
            ThrottleConfig {
                initial_rate: 8.0,
                min_rate: 1.0,
                ..ThrottleConfig::default()
            },
            backoff(),
        );
        let sent = Instant::now();
        tokio::time::advance(Duration::from_millis(10)).await;
        for _ in 0..3 {
            // Three concurrent requests, all sent before the first 429 came back.
            t.on_throttled(sent, None);
        }
        assert_eq!(t.rate(), 4.0, "one episode, one decrease");
        tokio::time::advance(Duration::from_millis(10)).await;
        t.on_throttled(Instant::now(), None);
        assert_eq!(
            t.rate(),
            2.0,
            "a request sent after the decrease counts again"
        );
    }

    fn ramp(initial_rate: f64) -> ThrottleConfig {
        ThrottleConfig {
            initial_rate,
            min_rate: 1.0,
            max_rate: 1000.0,
            burst: 2.0,
            increase_after: 10,
            increase_step: 0.5,
            ..ThrottleConfig::default()
        }
    }

    /// Sends `n` requests one after another, each taking `latency` at the
    /// server, through `t`; returns the time they took.
    async fn sequential(t: &Throttle, n: usize, latency: Duration) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            t.acquire().await;
            tokio::time::sleep(latency).await;
            t.on_success();
        }
        start.elapsed()
    }

    #[tokio::test(start_paused = true)]
    async fn slow_start_doubles_per_window_until_the_first_429_then_adds() {
        let t = Throttle::new(ramp(5.0), backoff());
        assert!(t.in_slow_start());
        let mut rates = Vec::new();
        for _ in 0..9 {
            // Half of `increase_after` (10): slow start's window.
            sequential(&t, 5, Duration::ZERO).await;
            rates.push(t.rate());
        }
        assert_eq!(
            rates,
            [10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 640.0, 1000.0, 1000.0],
            "doubling, capped at max_rate"
        );
        // Congestion: halved, and from then on additive.
        t.on_throttled(Instant::now(), None);
        assert_eq!(t.rate(), 500.0);
        assert!(!t.in_slow_start());
        tokio::time::advance(Duration::from_secs(5)).await;
        sequential(&t, 10, Duration::ZERO).await;
        assert_eq!(t.rate(), 500.5);
        sequential(&t, 20, Duration::ZERO).await;
        assert_eq!(t.rate(), 501.5);
    }

    #[tokio::test(start_paused = true)]
    async fn slow_start_claims_at_most_twice_the_rate_the_client_reached() {
        // One request at a time, 10 ms each: the client cannot exceed 100/s
        // whatever the limiter allows, so the rate stops near 2 × 100.
        let t = Throttle::new(ramp(50.0), backoff());
        sequential(&t, 500, Duration::from_millis(10)).await;
        assert!(t.in_slow_start());
        let rate = t.rate();
        assert!((200.0..=230.0).contains(&rate), "{rate}");
    }

    #[tokio::test(start_paused = true)]
    async fn slow_start_pull_takes_at_most_1_3x_the_time_of_one_starting_at_max() {
        // The bench's ramp case in miniature: 522 pages (50,000 keywords at
        // 100 per page), ~3.4 ms each, from 50/s vs from the maximum.
        let latency = Duration::from_micros(3400);
        let from_max = sequential(&Throttle::new(ramp(1000.0), backoff()), 522, latency).await;
        let ramped = sequential(&Throttle::new(ramp(50.0), backoff()), 522, latency).await;
        let ratio = ramped.as_secs_f64() / from_max.as_secs_f64();
        assert!(ratio <= 1.3, "{ramped:?} vs {from_max:?}: {ratio:.2}×");
        // Additive increase alone (as before slow start) would not get near.
        let additive = Throttle::new(ramp(50.0), backoff());
        additive.on_throttled(
            Instant::now() - Duration::from_secs(1),
            Some(Duration::ZERO),
        );
        additive.limiter.set_rate(50.0);
        let slow = sequential(&additive, 522, latency).await;
        assert!(
            slow.as_secs_f64() / from_max.as_secs_f64() > 3.0,
            "{slow:?}"
        );
    }

    #[test]
    fn parses_retry_after_seconds() {
        assert_eq!(parse_retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }
}
