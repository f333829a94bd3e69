//! Test-only crash points: `ADSYNC_TEST_CRASH_AT=<n>:<before|after>` kills this
//! process with SIGKILL at the n-th checkpoint write (1-based, all syncs),
//! just before it or just after it is durable. Used by the crash tests, which
//! build the binary with the `test-hooks` feature; release builds have no such
//! hook, so no environment variable can make a user's push kill itself.

/// Without `test-hooks`: never a hook, and the variable's name is not even in
/// the binary.
#[cfg(not(feature = "test-hooks"))]
pub fn crash_hook_from_env() -> Option<adsync::Hook> {
    None
}

/// See the other `crash_hook_from_env`: this one is compiled in with the
/// `test-hooks` feature.
#[cfg(feature = "test-hooks")]
pub fn crash_hook_from_env() -> Option<adsync::Hook> {
    use adsync::{HookPoint, HookWhen};

    let spec = std::env::var("ADSYNC_TEST_CRASH_AT").ok()?;
    let (n, when) = spec.split_once(':')?;
    let n: u64 = n.parse().ok()?;
    let when = match when {
        "before" => HookWhen::BeforeCommit,
        "after" => HookWhen::AfterCommit,
        _ => return None,
    };
    // Concurrent syncs interleave their boundaries, so the n-th "before" is
    // remembered by (sync, seq) and its own "after" is the one that kills.
    let seen = std::sync::atomic::AtomicU64::new(0);
    let target = parking_lot::Mutex::new(None::<(String, u64)>);
    Some(std::sync::Arc::new(move |point: &HookPoint| {
        let kill = || {
            // SAFETY: raising a signal on our own process has no memory-safety preconditions.
            unsafe {
                libc::raise(libc::SIGKILL);
            }
        };
        match point.when {
            HookWhen::BeforeCommit => {
                if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == n {
                    if when == HookWhen::BeforeCommit {
                        kill();
                    }
                    *target.lock() = Some((point.sync.clone(), point.seq));
                }
            }
            HookWhen::AfterCommit => {
                let target = target.lock();
                if target.as_ref() == Some(&(point.sync.clone(), point.seq)) {
                    kill();
                }
            }
        }
    }))
}
