//! [`Failure`]: an error on its way to stderr, with the exit it maps to, and
//! the mapping of the library's errors onto exits.

use adsync::PullError;
use adsync::PushError;
use adsync::RunError;
use adsync::StoreError;

use crate::exit::Exit;

/// An error with the exit code it maps to.
pub struct Failure {
    /// How the process ends.
    pub exit: Exit,
    /// What went wrong, printed after `error: ` (never a secret).
    pub message: String,
}

impl Failure {
    /// Bad input or usage (exit 2): the message says what and where.
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            exit: Exit::BadInput,
            message: message.into(),
        }
    }

    /// The command itself failed (exit 1), not because of its input.
    pub fn failed(message: impl Into<String>) -> Self {
        Failure {
            exit: Exit::SyncFailed,
            message: message.into(),
        }
    }
}

impl From<RunError> for Failure {
    fn from(e: RunError) -> Self {
        let exit = match &e {
            RunError::Store(_) | RunError::CorruptState { .. } | RunError::StateVersion { .. } => {
                Exit::StoreUnusable
            }
            RunError::UnknownSync(_) | RunError::WrongKind { .. } => Exit::BadInput,
            // An operator must decide first (`adsync resolve`).
            RunError::NotCancellable { .. } => Exit::NeedsAttention,
            _ => Exit::SyncFailed,
        };
        Failure {
            exit,
            message: e.to_string(),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        // No store at the path given is a mistyped --db: a usage error, not
        // a store that cannot be used.
        let exit = match e {
            StoreError::NotFound { .. } => Exit::BadInput,
            _ => Exit::StoreUnusable,
        };
        let mut message = e.to_string();
        if let StoreError::Locked { path, .. } = &e {
            if let Some(daemon) = adsync_daemon::announced(path) {
                message = format!(
                    "the store {} is in use by another process, `adsync daemon` (pid {}) \
                     listening on {}: add `--daemon {}` (or set ADSYNC_DAEMON_URL) to send this \
                     command to it",
                    path.display(),
                    daemon.pid,
                    daemon.url,
                    daemon.url
                );
            }
        }
        Failure { exit, message }
    }
}

impl From<PushError> for Failure {
    fn from(e: PushError) -> Self {
        match e {
            PushError::Run(e) => e.into(),
            // Nothing failed: the push was refused before it started.
            PushError::Unfinished { .. } | PushError::OwnedByAnotherSet { .. } => {
                Failure::usage(e.to_string())
            }
            PushError::NeedsAttention { .. } => Failure {
                exit: Exit::NeedsAttention,
                message: e.to_string(),
            },
            // A read a plan needed failed; nothing was written. The platform
            // may answer later (5), or it refused what was asked (an unknown
            // account: 2; anything else it refuses: 1).
            PushError::Platform { ref source, .. } => Failure {
                exit: match source {
                    adsync::AdapterError::Transient { .. }
                    | adsync::AdapterError::Unknown { .. } => Exit::Deferred,
                    adsync::AdapterError::NotFound { .. } => Exit::BadInput,
                    adsync::AdapterError::Permanent { .. } => Exit::SyncFailed,
                },
                message: e.to_string(),
            },
        }
    }
}

impl From<PullError> for Failure {
    fn from(e: PullError) -> Self {
        match e {
            PullError::Run(e) => e.into(),
            PullError::InvalidProfile(_) => Failure::usage(e.to_string()),
            PullError::Snapshot(_) => Failure {
                exit: Exit::StoreUnusable,
                message: e.to_string(),
            },
        }
    }
}

/// A push refused because the set's campaigns have unfinished syncs started
/// with other content, with the command that finishes them (`db` as the user
/// gave it, so the command works when pasted); other errors as usual.
pub fn push_refused(e: PushError, db: &std::path::Path) -> Failure {
    let PushError::Unfinished {
        set,
        changed,
        syncs,
    } = &e
    else {
        return e.into();
    };
    let quoted = |items: &[String]| {
        items
            .iter()
            .map(|i| format!("`{i}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Failure::usage(format!(
        "set `{set}`: campaign(s) {} differ from what their unfinished syncs were started with; \
         unfinished syncs of the set: {}. Finish them first with `{}`, then push again",
        quoted(changed),
        quoted(syncs),
        crate::suggest::resume_many(db, syncs),
    ))
}
