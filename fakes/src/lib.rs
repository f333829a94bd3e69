//! Fakes of the ad platforms adsync talks to, for adsync's tests, benches,
//! `adsync demo` and `adsync fake-server` — not for production (`publish = false`).
//!
//! | module        | what                                                        | follows                      |
//! |---------------|-------------------------------------------------------------|------------------------------|
//! | [`reddit`]    | [`FakeReddit`]: Reddit Ads API v3 (create/update/list, pagination with absolute `next_url`, `X-Ratelimit-*` windows), faults via [`reddit::RedditFault`] | `docs/platforms/reddit.md` |
//! | [`amazon`]    | [`FakeAmazon`]: Sponsored Products v3 list endpoints (vendor media types, three auth headers, opaque `nextToken`, token-bucket 429s), faults via [`amazon::AmazonFault`]; its own wire types in [`amazon::wire`] | `docs/platforms/amazon.md` |
//! | [`generator`] | [`Generator`]: deterministic Amazon profiles of any size for [`FakeAmazon`] to serve | —                            |
//! | [`fixtures`]  | the campaign sets (and the small Amazon profile) tests, benches and the demo share | `examples/campaign_set.json` |
//! | [`blocking`]  | [`blocking::FakeRedditServer`]: a fake Reddit on its own runtime, for plain `#[test]`s | —              |
//!
//! Each fake follows the platform notes in `docs/platforms/`, not adsync's client
//! code: it validates requests on its own terms, so a client that drifts from
//! the documented API fails against it instead of being mirrored by it.
//!
//! # Starting and stopping one
//!
//! A fake only ever binds 127.0.0.1. Port 0 (the default) picks a free port, so
//! tests run in parallel; the handle says where it listens. `shutdown` stops it
//! and waits for its task; dropping the handle stops it without waiting.
//!
//! ```
//! use adsync_fakes::{FakeAmazon, FakeAmazonConfig, FakeReddit, FakeRedditConfig, Generator};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let reddit = FakeReddit::start(FakeRedditConfig::default()).await?;
//! let api = reddit.base_url(); // http://127.0.0.1:PORT/api/v3 — give it to a RedditAdapter
//! assert!(api.starts_with("http://127.0.0.1:"));
//! reddit.shutdown().await;
//!
//! let profile = Generator { campaigns: 2, ad_groups_per_campaign: 1, keywords_per_ad_group: 3, seed: 1 };
//! let amazon =
//!     FakeAmazon::start(FakeAmazonConfig::default().with_profile("1", profile.generate())).await?;
//! let host = amazon.base_url(); // http://127.0.0.1:PORT — an AmazonClient's host
//! assert!(host.starts_with("http://127.0.0.1:"));
//! amazon.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Plain (non-async) tests use [`blocking::FakeRedditServer`], which brings its
//! own runtime. Both fakes also have admin endpoints (fault injection, request
//! log, what they hold) documented in their modules; `adsync fake-server
//! reddit|amazon` runs them as a process.
//!
//! `adsync-fakes` depends on `adsync` (for the push model the Reddit fake and
//! the fixtures speak), never the other way round: the `adsync` library does
//! not link axum, hyper's server or tower. The Amazon fake and the generator use
//! none of adsync's types.
#![warn(missing_docs)]

pub mod amazon;
pub mod bench;
pub mod blocking;
pub mod fixtures;
pub mod generator;
pub mod postgres;
pub mod reddit;

pub use amazon::{FakeAmazon, FakeAmazonConfig, FakeAmazonHandle};
pub use generator::{Generator, ProfileData};
pub use reddit::{FakeReddit, FakeRedditConfig, FakeRedditHandle};
