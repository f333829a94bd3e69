//! The store's errors.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The error underneath a [`StoreError`] (sled's, the operating system's, a
/// task's). Shared, not owned: [`StoreError`] is `Clone` because one result
/// answers every committer of a group.
pub type Cause = Arc<dyn std::error::Error + Send + Sync>;

/// Errors of the store. Each names the file or the sync concerned.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Another process has the store open.
    #[error("the store {path} is in use by another process (sled holds an exclusive lock on it)")]
    Locked {
        /// The store's directory.
        path: PathBuf,
        /// sled's error, which reports the held lock.
        #[source]
        source: Arc<sled::Error>,
    },
    /// sled, the log's file or a store thread failed.
    #[error("store {path}: {message}")]
    Io {
        /// The store's directory.
        path: PathBuf,
        /// What failed, with the cause's own text (so the message reads
        /// whole without walking [`std::error::Error::source`]).
        message: String,
        /// The cause, when there is an error value to keep.
        #[source]
        source: Option<Cause>,
    },
    /// A store other than sled's (a database) failed.
    #[error("store {store}: {message}")]
    Backend {
        /// Where the store is, its password replaced (see
        /// [`CheckpointStore::location`](crate::CheckpointStore::location)).
        store: String,
        /// What failed, with the cause's own text.
        message: String,
        /// The cause, when there is an error value to keep.
        #[source]
        source: Option<Cause>,
    },
    /// A fenced commit was refused: the sync's lease passed to another owner
    /// (this worker was paused, partitioned or too slow to renew it). Nothing
    /// of the commit was written; the new owner resumes the sync from its
    /// last checkpoint.
    #[error("sync `{sync}`: this worker's lease (fencing token {fence}) was taken over; it no longer writes this sync")]
    LeaseLost {
        /// The sync.
        sync: String,
        /// The fencing token the refused commit carried.
        fence: u64,
    },
    /// The store's schema is newer than this build understands.
    #[error("store {store} has schema version {found}, newer than this adsync understands ({supported}); upgrade adsync")]
    SchemaTooNew {
        /// Where the store is, its password replaced.
        store: String,
        /// The store's schema version.
        found: i64,
        /// The newest version this build applies.
        supported: i64,
    },
    /// A store that must be empty to receive a copy of another
    /// (`adsync store copy`) already holds something; nothing was written.
    #[error("store {store} is not empty ({keys} keys, {syncs} syncs): a store is copied only into an empty one, so nothing was written")]
    NotEmpty {
        /// Where the store is, its password replaced.
        store: String,
        /// Keys it holds (records, history, data, …).
        keys: u64,
        /// Syncs it has rows for.
        syncs: u64,
    },
    /// A record does not decode.
    #[error("sync `{sync}` has a corrupt checkpoint: {detail}")]
    Corrupt {
        /// The sync (or key) concerned.
        sync: String,
        /// The decoder's message: what does not fit.
        detail: String,
    },
    /// A record was written by another version of adsync.
    #[error("sync `{sync}` has checkpoint format {found}; this adsync reads format {supported}")]
    UnsupportedFormat {
        /// The sync concerned.
        sync: String,
        /// The record's `format`.
        found: u64,
        /// The newest format this build reads ([`RECORD_FORMAT`](super::RECORD_FORMAT)).
        supported: u64,
    },
    /// The writer thread is gone (the store is shutting down).
    #[error("the store's writer has stopped")]
    WriterStopped,
    /// There is no store at the path a command that only reads was given.
    #[error("there is no adsync store at {path}: check --db (or ADSYNC_DB); a store is created by the first push or pull")]
    NotFound {
        /// The path given.
        path: PathBuf,
    },
    /// A record in the middle of the write-ahead log is damaged: intact
    /// records follow it, so it is not a torn last write.
    #[error("the write-ahead log {log} is damaged: the record at byte offset {offset} fails its checks, and the intact record at byte offset {later} shows it was acknowledged. Replaying around it would lose commits, so the store was not opened and nothing was changed. Restore the store directory {path} from a backup; do not delete {log}")]
    LogDamaged {
        /// The store's directory.
        path: PathBuf,
        /// The log file.
        log: PathBuf,
        /// Where the damaged record starts, in bytes from the start of the file.
        offset: u64,
        /// Where the first intact record after it starts.
        later: u64,
    },
    /// sled's data says a write-ahead log holds commits, and there is none.
    #[error("the write-ahead log {log} of store {path} is missing: it may hold acknowledged commits that are not in sled, so the store was not opened. Put the file back, or restore the store directory from a backup")]
    LogMissing {
        /// The store's directory.
        path: PathBuf,
        /// The log file expected.
        log: PathBuf,
    },
    /// The log's store id is not the one sled's data has.
    #[error("the write-ahead log {log} does not belong to store {path} ({}), so the store was not opened. Put the store's own log back, or restore the store directory from a backup", describe_ids(expected, found))]
    LogMismatch {
        /// The store's directory.
        path: PathBuf,
        /// The log file.
        log: PathBuf,
        /// The store id sled holds (hex), if any.
        expected: Option<String>,
        /// The store id the log's header holds (hex), if any.
        found: Option<String>,
    },
    /// sled reports damage in its own files.
    #[error("store {path}: sled's data is corrupt{at}, in one of its files ({files}); adsync cannot repair it. Restore the store directory from a backup, and keep the damaged copy")]
    SledCorrupt {
        /// The store's directory.
        path: PathBuf,
        /// sled's files in it, where the damage is.
        files: String,
        /// Where sled found it, when it says.
        at: String,
        /// sled's corruption error.
        #[source]
        source: Arc<sled::Error>,
    },
}

impl StoreError {
    /// The error underneath, itself rather than behind its shared handle:
    /// `source()` gives the `Arc` that holds it (so a whole commit group can
    /// share one cause), which reads the same but downcasts only to the `Arc`;
    /// this one downcasts to `std::io::Error`, `sled::Error` and so on.
    pub fn cause(&self) -> Option<&(dyn std::error::Error + Send + Sync + 'static)> {
        match self {
            StoreError::Locked { source, .. } | StoreError::SledCorrupt { source, .. } => {
                Some(source.as_ref())
            }
            StoreError::Io { source, .. } => source.as_deref(),
            _ => None,
        }
    }
}

/// The two ids of [`StoreError::LogMismatch`], in words.
fn describe_ids(expected: &Option<String>, found: &Option<String>) -> String {
    match (expected, found) {
        (Some(e), Some(f)) => format!("the log is of store id {f}, sled's data of {e}"),
        (Some(e), None) => {
            format!("sled's data is of store id {e}; the log has none")
        }
        (None, Some(f)) => format!(
            "the log holds commits of store id {f}, and sled's data has no store id: it was replaced or lost"
        ),
        (None, None) => "neither has a store id".to_string(),
    }
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn log_error(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io {
        path: path.to_path_buf(),
        message: format!("write-ahead log: {e}"),
        source: Some(Arc::new(e)),
    }
}

pub(super) fn open_error(path: &Path, e: sled::Error) -> StoreError {
    if let sled::Error::Corruption { .. } = e {
        return io_error(path, e);
    }
    let message = e.to_string();
    // sled reports a held `flock` as an I/O error mentioning the lock.
    if message.contains("lock")
        || message.contains("WouldBlock")
        || message.contains("Resource temporarily unavailable")
    {
        StoreError::Locked {
            path: path.to_path_buf(),
            source: Arc::new(e),
        }
    } else {
        StoreError::Io {
            path: path.to_path_buf(),
            message,
            source: Some(Arc::new(e)),
        }
    }
}

pub(super) fn io_error(path: &Path, e: sled::Error) -> StoreError {
    match e {
        // sled says "Read corrupted data at file offset None backtrace ()":
        // name the store and its files instead.
        sled::Error::Corruption { at, .. } => StoreError::SledCorrupt {
            path: path.to_path_buf(),
            files: sled_files(path),
            at: at.map(|at| format!(" at {at}")).unwrap_or_default(),
            source: Arc::new(e),
        },
        e => StoreError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
            source: Some(Arc::new(e)),
        },
    }
}

/// The files sled keeps in the store at `path` (not the log), for messages.
fn sled_files(path: &Path) -> String {
    let mut names: Vec<String> = std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n == "conf" || n == "db" || n == "blobs" || n.starts_with("snap."))
        .collect();
    names.sort();
    if names.is_empty() {
        return "its files".to_string();
    }
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;
    use std::path::Path;

    use super::{io_error, log_error};

    /// An I/O failure keeps its cause for `source()`, and its message reads
    /// as it did before the cause was kept.
    #[test]
    fn an_io_failure_keeps_its_cause_and_its_message() {
        let path = Path::new("/stores/a");
        let disk = || std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left");

        let error = log_error(path, disk());
        assert_eq!(
            error.to_string(),
            "store /stores/a: write-ahead log: no space left"
        );
        let source = error.source().expect("the I/O error is the source");
        assert_eq!(source.to_string(), "no space left");
        let io = error
            .cause()
            .and_then(|c| c.downcast_ref::<std::io::Error>())
            .expect("an io::Error");
        assert_eq!(io.kind(), std::io::ErrorKind::StorageFull);
        // A clone (one per committer of a group) keeps the same cause.
        assert!(error.clone().source().is_some());

        let error = io_error(path, sled::Error::Io(disk()));
        assert_eq!(
            error.to_string(),
            format!("store /stores/a: {}", sled::Error::Io(disk()))
        );
        assert!(error.source().is_some(), "sled's error is the source");
        let sled = error.cause().and_then(|c| c.downcast_ref::<sled::Error>());
        assert!(matches!(sled, Some(sled::Error::Io(_))), "{sled:?}");
    }
}
