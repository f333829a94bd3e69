//! Reddit Ads API v3: the push adapter.
//!
//! * [`RedditAdapter`] implements [`crate::adapter::PushAdapter`] over HTTP;
//!   build it from a [`RedditConfig`] (see [`RedditConfig::from_env`]).
//! * A fake serving the same API on 127.0.0.1 with fault injection, for tests
//!   and the demo, is in the `adsync-fakes` crate (`fakes/`).
//! * [`api`] holds the wire types; [`token`] the bearer-token plumbing.
//!
//! Both sides follow `docs/platforms/reddit.md` (the API facts adsync relies on),
//! not each other: the fake validates requests on its own terms.

mod adapter;
pub mod api;
pub mod token;

pub use adapter::{
    ConfigError, RatePolicy, RedditAdapter, RedditConfig, DEFAULT_BASE_URL, ENV_BASE_URL,
    ENV_TOKEN, ENV_USER_AGENT,
};
pub use token::{StaticToken, TokenSource};
