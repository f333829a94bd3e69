//! # adsync
//!
//! Workflow state machines with persistent checkpoints, used to keep advertising
//! campaigns in sync with ad platforms without ever losing or duplicating work.
#![warn(missing_docs)]

pub mod adapter;
pub mod backoff;
pub mod clock;
pub mod machine;
pub mod model;
pub mod platform;
pub mod push;
pub mod ratelimit;
pub mod runner;
pub mod store;
