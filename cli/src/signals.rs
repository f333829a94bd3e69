//! Ctrl-C and SIGTERM during `push`, `resume` and `pull`.
//!
//! The first signal gives the runner's [`StopSignal`]: no new effect starts,
//! the one in flight finishes and is checkpointed, and the command returns on
//! its own; the caller then prints how to resume and exits 130 (SIGINT) or
//! 143 (SIGTERM). A second signal, or an in-flight effect that outlasts
//! [`GRACE`], exits at once: a create cut off that way is outcome-unknown at
//! the next start, which the machines handle with a look-up.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use adsync::StopSignal;
use tokio::signal::unix::{signal, SignalKind};

use crate::exit::Exit;

/// How long the in-flight effect may take after the first signal.
pub const GRACE: Duration = Duration::from_secs(10);

/// Watches SIGINT and SIGTERM for one long-running command.
pub struct Interrupts {
    received: Arc<AtomicI32>,
    hint: Arc<String>,
    stop: StopSignal,
}

impl Interrupts {
    /// Installs the handlers; `stop` is given on the first signal, and `hint`
    /// (a command that continues the work) is printed whenever we exit early.
    pub fn install(stop: StopSignal, hint: String) -> Self {
        let received = Arc::new(AtomicI32::new(0));
        let hint = Arc::new(hint);
        let (Ok(mut int), Ok(mut term)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            // Without handlers the default (immediate exit) stays in force,
            // which is what happened before; the checkpoints cover it.
            tracing::warn!("cannot install signal handlers; Ctrl-C will exit at once");
            return Interrupts {
                received,
                hint,
                stop,
            };
        };
        let seen = received.clone();
        let resume = hint.clone();
        let stopper = stop.clone();
        tokio::spawn(async move {
            let first = tokio::select! {
                _ = int.recv() => libc::SIGINT,
                _ = term.recv() => libc::SIGTERM,
            };
            seen.store(first, Ordering::SeqCst);
            stopper.stop();
            errln!(
                "adsync: stopping after the request in flight (up to {} s); signal again to exit now",
                GRACE.as_secs()
            );
            let why = tokio::select! {
                _ = int.recv() => "a second signal",
                _ = term.recv() => "a second signal",
                () = tokio::time::sleep(GRACE) => "the request in flight did not finish in time",
            };
            errln!("adsync: exiting at once ({why}); the last checkpoint is durable");
            errln!("{}", resume_message(&resume));
            std::process::exit(i32::from(Exit::Interrupted(first).code()));
        });
        Interrupts {
            received,
            hint,
            stop,
        }
    }

    /// The stop signal the first SIGINT/SIGTERM gives: every runner of the
    /// command shares it (`Runner::with_stop`).
    pub fn stop_signal(&self) -> &StopSignal {
        &self.stop
    }

    /// The exit if a signal arrived, printing nothing.
    pub fn signalled(&self) -> Option<Exit> {
        let signal = self.received.load(Ordering::SeqCst);
        (signal != 0).then_some(Exit::Interrupted(signal))
    }

    /// The exit if a signal arrived, after printing how to resume.
    pub fn finish(&self) -> Option<Exit> {
        let code = self.signalled()?;
        errln!("{}", resume_message(&self.hint));
        Some(code)
    }
}

fn resume_message(hint: &str) -> String {
    format!("interrupted; continue with: {hint}")
}
