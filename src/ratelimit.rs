//! A client-side rate limiter shared by every request to one account or profile.

use parking_lot::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Tokens closer to a whole one than this count as whole (float rounding).
const TOKEN_EPSILON: f64 = 1e-9;

/// The shortest wait for a token: a wait that rounds to zero would not move
/// a paused clock.
const MIN_WAIT: Duration = Duration::from_micros(1);

/// A client-side rate limiter shared by every request to one account or profile.
///
/// A token bucket refilled at `rate` per second, plus two ways for the platform
/// to steer it: [`RateLimiter::pause_until`] (a 429 said "come back later") and
/// [`RateLimiter::observe_remaining`] (rate-limit headers say fewer requests are
/// left than we thought). [`RateLimiter::set_rate`] lets an adaptive policy
/// (Amazon's dynamic throttling) lower and raise the rate at run time.
///
/// Time comes from `tokio::time::Instant`, so tests with paused tokio time run
/// instantly and deterministically.
///
/// An async token bucket shared by every request to one platform budget
/// (`&self` methods; put it in an `Arc`). Waits use tokio's clock, so tests
/// with paused tokio time run instantly.
///
/// ```
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// use adsync::RateLimiter;
/// let limiter = RateLimiter::new(10.0, 1.0); // 10 per second, no burst
/// let start = tokio::time::Instant::now();
/// for _ in 0..11 { limiter.acquire().await; }
/// assert!(start.elapsed() >= std::time::Duration::from_secs(1));
/// # }
/// ```
#[derive(Debug)]
pub struct RateLimiter {
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    refilled_at: Instant,
    paused_until: Option<Instant>,
}

impl Bucket {
    fn refill(&mut self, now: Instant) {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.refilled_at = now;
    }
}

impl RateLimiter {
    /// A limiter allowing `per_second` requests per second with bursts of up to
    /// `burst` requests (at least 1). It starts full.
    pub fn new(per_second: f64, burst: f64) -> Self {
        let burst = burst.max(1.0);
        RateLimiter {
            state: Mutex::new(Bucket {
                rate: per_second.max(f64::MIN_POSITIVE),
                burst,
                tokens: burst,
                refilled_at: Instant::now(),
                paused_until: None,
            }),
        }
    }

    /// A limiter for a platform policy of `requests` per `window` (e.g. 200 per 60 s),
    /// spreading them evenly with a small burst allowance.
    pub fn per_window(requests: u32, window: Duration) -> Self {
        let rate = f64::from(requests) / window.as_secs_f64();
        Self::new(rate, (f64::from(requests) / 20.0).clamp(1.0, 10.0))
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, Bucket> {
        self.state.lock()
    }

    /// Waits until one request may be sent, and takes its token.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut b = self.lock();
                let now = Instant::now();
                match b.paused_until {
                    Some(until) if until > now => until - now,
                    _ => {
                        b.paused_until = None;
                        b.refill(now);
                        // A token short by a rounding error is a token: its wait
                        // would round to zero, and a sleep of zero does not
                        // move a paused (test) clock, so this would spin.
                        if b.tokens >= 1.0 - TOKEN_EPSILON {
                            b.tokens = (b.tokens - 1.0).max(0.0);
                            return;
                        }
                        Duration::from_secs_f64((1.0 - b.tokens) / b.rate).max(MIN_WAIT)
                    }
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Stops all requests until `deadline` (a 429's `Retry-After`); later deadlines win.
    pub fn pause_until(&self, deadline: Instant) {
        let mut b = self.lock();
        if b.paused_until.is_none_or(|p| p < deadline) {
            b.paused_until = Some(deadline);
        }
        // Whatever was saved up before the platform pushed back is not ours to spend.
        b.tokens = b.tokens.min(0.0);
        b.refilled_at = b.refilled_at.max(deadline);
    }

    /// Aligns with the platform's own count: `remaining` requests are left in a
    /// window that resets in `reset`. When none remain, waits for the reset.
    pub fn observe_remaining(&self, remaining: u32, reset: Duration) {
        if remaining == 0 {
            self.pause_until(Instant::now() + reset);
            return;
        }
        let mut b = self.lock();
        b.refill(Instant::now());
        b.tokens = b.tokens.min(f64::from(remaining));
    }

    /// Changes the steady rate (requests per second).
    pub fn set_rate(&self, per_second: f64) {
        let mut b = self.lock();
        b.refill(Instant::now());
        b.rate = per_second.max(f64::MIN_POSITIVE);
    }

    /// The current steady rate (requests per second).
    pub fn rate(&self) -> f64 {
        self.lock().rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn never_exceeds_the_rate_and_honours_pauses() {
        let limiter = RateLimiter::new(5.0, 1.0);
        let start = Instant::now();
        for _ in 0..6 {
            limiter.acquire().await;
        }
        // 1 token at start, then 5 more at 5/s: one second.
        assert_eq!(start.elapsed().as_millis(), 1000);

        limiter.pause_until(Instant::now() + Duration::from_secs(3));
        let before = Instant::now();
        limiter.acquire().await;
        assert!(before.elapsed() >= Duration::from_secs(3));

        limiter.observe_remaining(0, Duration::from_secs(7));
        let before = Instant::now();
        limiter.acquire().await;
        assert!(before.elapsed() >= Duration::from_secs(7));
    }
}
