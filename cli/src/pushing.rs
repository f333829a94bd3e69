//! The push runners the commands build: one that performs effects through an
//! adapter, one that only applies an operator's outcome.

use std::sync::Arc;

use adsync::adapter::PushAdapter;
use adsync::clock::{Clock, SystemClock};
use adsync::push::{AdapterEffects, PushMachine, PushOutcome, Pusher};
use adsync::runner::Runner;
use adsync::store::Store;

use crate::crash_hook::crash_hook_from_env;

/// A pusher through `adapter` that stops at the next step once `stop` is
/// given (and, with `test-hooks`, crashes where `ADSYNC_TEST_CRASH_AT` says).
pub fn open_pusher(
    store: Store,
    adapter: Arc<dyn PushAdapter>,
    stop: &adsync::runner::StopSignal,
) -> Pusher {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let mut runner = Runner::new(
        store,
        Arc::new(AdapterEffects::new(adapter.clone())),
        clock.clone(),
    );
    if let Some(hook) = crash_hook_from_env() {
        runner = runner.with_hook(hook);
    }
    let runner = runner.with_stop(stop.clone());
    Pusher::new(Arc::new(runner), adapter.as_ref(), clock)
}

/// A runner for commands that apply outcomes but never perform effects.
pub fn read_only_runner(store: Store) -> Runner<PushMachine> {
    struct NoEffects;
    #[async_trait::async_trait]
    impl adsync::runner::Effects<PushMachine> for NoEffects {
        async fn perform(&self, _sync: &str, _effect: &adsync::push::PushEffect) -> PushOutcome {
            PushOutcome::Failed {
                error: adsync::adapter::AdapterError::Transient {
                    message: "no platform configured".into(),
                    retry_after: None,
                },
            }
        }
    }
    Runner::new(store, Arc::new(NoEffects), Arc::new(SystemClock))
}
