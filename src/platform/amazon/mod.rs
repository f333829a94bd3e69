//! Amazon Ads, Sponsored Products v3: the pull side.
//!
//! The pull machine fetches a profile **one page at a time** with
//! [`AmazonClient::list_page`], stages each [`Page`] durably together with its
//! `next_token`, and resumes from the last staged token after a crash. This module
//! does the HTTP side only:
//!
//! * [`api`] — strict wire types (`SpCampaign`, `SpAdGroup`, `SpKeyword`, enums);
//!   unknown enum values and missing fields are [`AmazonError::Decode`] errors
//!   naming the endpoint, the page and the JSON path.
//! * [`client`] — [`AmazonClient`]: `POST /sp/{campaigns,adGroups,keywords}/list`
//!   with the vendor media types and the three auth headers; bounded retries.
//! * [`throttle`] — one shared [`RateLimiter`](crate::ratelimit::RateLimiter) per
//!   client with AIMD: 429 halves the rate and pauses everyone for `Retry-After`
//!   (or a jittered exponential backoff when the header is absent); sustained
//!   success raises it again step by step.
//!
//! The fake server that tests run this client against, and the profile
//! generator, live in the `adsync-fakes` crate (`fakes/`), with wire types of
//! their own.
//!
//! Follows `docs/platforms/amazon.md`, the API facts adsync relies on.

pub mod api;
pub mod client;
pub mod throttle;

pub use api::{
    Budget, BudgetType, Items, ListKind, ListRequest, MatchType, Page, SpAdGroup, SpCampaign,
    SpEntity, SpKeyword, State, TargetingType,
};
pub use client::{
    AmazonClient, AmazonConfig, AmazonError, PageRef, PlatformMessage, DEFAULT_HOST,
    DEFAULT_MAX_RESULTS,
};
pub use throttle::{Throttle, ThrottleConfig};
