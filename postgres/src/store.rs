//! [`PgStore`]: the handle, connecting, errors, and the seam's trait.

use std::sync::Arc;
use std::time::Duration;

use adsync_engine::{CheckpointStore, Commit, Reads, StoreError, WriterStats};
use async_trait::async_trait;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use crate::location::Location;
use crate::migrate::Migrated;
use crate::writer::{writer_task, Pending};

/// Connections a store keeps open at most: the writers', and the readers'.
const POOL_SIZE: usize = 16;

/// Writer tasks, each with a group in flight at most. More than one, so that
/// the server works on one group while another waits for its durable commit
/// (a single writer left the server idle between groups); few, because each
/// holds a connection and smaller groups cost more per commit.
const WRITERS: usize = 3;

/// A checkpoint store in a PostgreSQL database that many workers share.
///
/// Cheap to clone; all clones are one store with one commit queue. Commits
/// from every task of this process go through it to a few writer tasks; each
/// sends everything queued when its turn comes as **one transaction** (group
/// commit: one durable `COMMIT` for many syncs' checkpoints), pipelined in
/// one round trip. Reads run on tokio's
/// blocking pool, in a `REPEATABLE READ, READ ONLY` transaction per group of
/// reads, so a group sees one consistent state.
///
/// Nothing it prints or returns carries the connection string's password:
/// [`location`](CheckpointStore::location), `Debug` and every error show
/// the URL with `***` in its place.
#[derive(Clone)]
pub struct PgStore {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) location: Location,
    pub(crate) pool: Pool,
    queue: mpsc::UnboundedSender<Pending>,
    pub(crate) stats: Arc<Mutex<WriterStats>>,
    /// The connections holding this process's roles (see `PgStore::lead`).
    pub(crate) leader: crate::leader::Leader,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("location", &self.inner.location)
            .finish_non_exhaustive()
    }
}

impl PgStore {
    /// Connects to the database of `url` (a `postgres://user:password@host/db`
    /// URL, or libpq's `key=value` form), applies pending migrations
    /// ([`PgStore::migrate`]) and starts the store's writer task on the
    /// current tokio runtime. TLS is not supported yet (`sslmode=disable`
    /// is what it speaks).
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] naming the store (password replaced) when the
    /// string does not parse or the server cannot be reached or refuses the
    /// credentials; [`StoreError::SchemaTooNew`] for a database written by a
    /// newer adsync.
    pub async fn connect(url: &str) -> Result<PgStore, StoreError> {
        Ok(Self::connect_migrated(url).await?.0)
    }

    /// [`PgStore::connect`], also saying what the migration did (what
    /// `adsync migrate` reports).
    ///
    /// # Errors
    ///
    /// As [`PgStore::connect`].
    pub async fn connect_migrated(url: &str) -> Result<(PgStore, Migrated), StoreError> {
        let store = Self::open(url)?;
        let migrated = store.migrate().await?;
        Ok((store, migrated))
    }

    /// The pool and the writer, without touching the server.
    fn open(url: &str) -> Result<PgStore, StoreError> {
        let parsed: Result<tokio_postgres::Config, _> = url.parse();
        let location = Location::new(url, parsed.as_ref().ok().and_then(|c| c.get_password()));
        let mut config = parsed.map_err(|e| StoreError::Backend {
            store: location.redacted().to_string(),
            message: location.scrub(&format!("the connection string does not parse: {e}")),
            source: None,
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("adsync");
        }
        let manager = Manager::from_config(
            config,
            tokio_postgres::NoTls,
            ManagerConfig {
                // A closed connection (the server restarted) is noticed by
                // its task; Fast then replaces it without a round trip.
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .create_timeout(Some(Duration::from_secs(15)))
            .build()
            .map_err(|e| StoreError::Backend {
                store: location.redacted().to_string(),
                message: location.scrub(&format!("cannot build the connection pool: {e}")),
                source: None,
            })?;
        let (queue, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(Mutex::new(WriterStats::default()));
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..WRITERS {
            tokio::spawn(writer_task(
                pool.clone(),
                location.clone(),
                stats.clone(),
                rx.clone(),
            ));
        }
        Ok(PgStore {
            inner: Arc::new(Inner {
                location,
                pool,
                queue,
                stats,
                leader: crate::leader::Leader::default(),
            }),
        })
    }

    /// The URL with its password replaced.
    pub(crate) fn location_text(&self) -> String {
        self.inner.location.redacted().to_string()
    }

    /// A pooled connection.
    pub(crate) async fn client(&self) -> Result<deadpool_postgres::Object, StoreError> {
        self.inner
            .pool
            .get()
            .await
            .map_err(|e| pool_error(&self.inner.location, e))
    }

    pub(crate) fn db_error(&self, what: &str, e: tokio_postgres::Error) -> StoreError {
        db_error(&self.inner.location, what, e)
    }
}

/// A driver error as a [`StoreError::Backend`] naming the store: the
/// server's own message (tokio-postgres' `Display` of a server error is only
/// "db error"), scrubbed of the password.
pub(crate) fn db_error(location: &Location, what: &str, e: tokio_postgres::Error) -> StoreError {
    StoreError::Backend {
        store: location.redacted().to_string(),
        message: location.scrub(&format!("{what}: {}", describe(&e))),
        source: Some(Arc::new(e)),
    }
}

pub(crate) fn pool_error(location: &Location, e: deadpool_postgres::PoolError) -> StoreError {
    let message = match &e {
        deadpool_postgres::PoolError::Backend(e) => describe(e),
        deadpool_postgres::PoolError::Timeout(_) => {
            "timed out waiting for a connection (is the server reachable?)".to_string()
        }
        other => other.to_string(),
    };
    StoreError::Backend {
        store: location.redacted().to_string(),
        message: location.scrub(&format!("cannot connect: {message}")),
        source: Some(Arc::new(e)),
    }
}

/// An error and its causes, in one line.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!(
            "{}: {} (SQLSTATE {})",
            db.severity(),
            db.message(),
            db.code().code()
        );
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[async_trait]
impl CheckpointStore for PgStore {
    fn location(&self) -> String {
        self.location_text()
    }

    async fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        let (reply, answer) = oneshot::channel();
        self.inner
            .queue
            .send(Pending { commit, reply })
            .map_err(|_| StoreError::WriterStopped)?;
        answer.await.map_err(|_| StoreError::WriterStopped)?
    }

    async fn read_with(&self, reads: Reads) -> Result<(), StoreError> {
        crate::read::read_with(self, reads).await
    }

    fn writer_stats(&self) -> WriterStats {
        *self.inner.stats.lock()
    }

    fn leases(&self) -> Option<&dyn adsync_engine::Leases> {
        Some(self)
    }
}
