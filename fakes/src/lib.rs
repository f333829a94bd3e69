//! Fakes of the ad platforms adsync talks to, for adsync's tests, benches and
//! `adsync demo` / `adsync fake-server` — not for production (`publish = false`).
//!
//! * [`reddit`] — [`FakeReddit`], the Reddit Ads API v3 as `docs/platforms/reddit.md`
//!   describes it, with injected faults.
//! * [`amazon`] — [`FakeAmazon`], the Amazon Ads Sponsored Products v3 list endpoints
//!   as `docs/platforms/amazon.md` describes them, with throttling and faults.
//! * [`generator`] — deterministic Amazon profiles of any size for the fake to serve.
//! * [`fixtures`] — the campaign sets that tests, benches and the demo share.
//! * [`blocking`] — a fake Reddit server on its own runtime, for plain `#[test]`s.
//!
//! `adsync-fakes` depends on `adsync` (for the model types), never the other way
//! round: the `adsync` library does not link axum, hyper's server or tower.
#![warn(missing_docs)]

pub mod amazon;
pub mod blocking;
pub mod fixtures;
pub mod generator;
pub mod reddit;

pub use amazon::{FakeAmazon, FakeAmazonConfig, FakeAmazonHandle};
pub use generator::{Generator, ProfileData};
pub use reddit::{FakeReddit, FakeRedditConfig, FakeRedditHandle};
