//! Fixtures of the CLI tests: the library tests' fixtures (one copy, in the
//! root package's `tests/common`), plus running the `adsync` binary.
#![allow(dead_code)]

use std::path::Path;

pub mod fake_amazon;
pub mod shared_store;

#[path = "../../../tests/common/mod.rs"]
mod shared;
#[allow(unused_imports)]
pub use shared::*;

/// Runs the `adsync` binary on store `db` with `args`, in an environment
/// without adsync's own variables (store, crash hook, platform settings and
/// credentials), so that nothing from the developer's shell leaks in.
pub fn adsync(db: &Path, args: &[&str]) -> std::process::Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_adsync"));
    command.arg("--db").arg(db).args(args);
    for var in [
        "ADSYNC_DB",
        "ADSYNC_TEST_CRASH_AT",
        "ADSYNC_REDDIT_TOKEN",
        "ADSYNC_REDDIT_USER_AGENT",
        "ADSYNC_REDDIT_BASE_URL",
        "ADSYNC_AMAZON_TOKEN",
        "ADSYNC_AMAZON_CLIENT_ID",
        "ADSYNC_AMAZON_HOST",
    ] {
        command.env_remove(var);
    }
    command.output().expect("adsync runs")
}
