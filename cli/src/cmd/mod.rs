//! One module per subcommand: its clap arguments and the function that runs it.

pub mod cancel;
pub mod daemon;
pub mod demo;
pub mod drift;
pub mod fake_server;
pub mod history;
pub mod machines;
pub mod migrate;
pub mod plan;
pub mod pull;
pub mod push;
pub mod resolve;
pub mod resume;
pub mod show;
pub mod status;
pub mod store_copy;
pub mod validate;
pub mod via_daemon;
