//! The push runners the commands build: one that performs effects through an
//! adapter, one that only applies an operator's outcome.

use std::sync::Arc;

use adsync::PushAdapter;
use adsync::Runner;
use adsync::{Clock, SystemClock};
use adsync::{PushMachine, Pusher};

use crate::crash_hook::crash_hook_from_env;

/// A pusher through `adapter` that stops at the next step once `stop` is
/// given (and, with `test-hooks`, crashes where `ADSYNC_TEST_CRASH_AT` says).
pub fn open_pusher(
    store: impl adsync::IntoStore,
    adapter: Arc<dyn PushAdapter>,
    stop: &adsync::StopSignal,
) -> Pusher {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Pusher::new(store, adapter, clock).with_runner(|mut runner| {
        if let Some(hook) = crash_hook_from_env() {
            runner = runner.with_hook(hook);
        }
        runner.with_stop(stop.clone())
    })
}

/// A runner for commands that apply outcomes but never perform effects.
pub fn read_only_runner(store: impl adsync::IntoStore) -> Runner<PushMachine> {
    Runner::new(store, Arc::new(SystemClock))
}
