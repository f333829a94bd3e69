//! Reddit Ads API v3: the push adapter and a faithful local fake.
//!
//! * [`RedditAdapter`] implements [`crate::adapter::PushAdapter`] over HTTP;
//!   build it from a [`RedditConfig`] (see [`RedditConfig::from_env`]).
//! * [`fake_server`] serves the same API on 127.0.0.1 with fault injection, for
//!   tests, the demo and users' own testing.
//! * [`api`] holds the wire types; [`token`] the bearer-token plumbing.
//!
//! Both sides follow `docs/platforms/reddit.md` (the API facts adsync relies on),
//! not each other: the fake validates requests on its own terms.

mod adapter;
pub mod api;
pub mod fake_server;
pub mod token;

pub use adapter::{
    ConfigError, RatePolicy, RedditAdapter, RedditConfig, DEFAULT_BASE_URL, ENV_BASE_URL,
    ENV_TOKEN, ENV_USER_AGENT,
};
pub use fake_server::{FakeReddit, FakeRedditConfig, FakeRedditHandle};
pub use token::{AccessToken, StaticToken, TokenSource};
