//! Leases: which worker runs which sync, with fencing tokens.

use std::time::Duration;

use adsync_engine::{Leases, StoreError};
use async_trait::async_trait;
use time::OffsetDateTime;

use crate::store::PgStore;

pub use adsync_engine::{Claim, LeaseView};

const CLAIM: &str = "UPDATE adsync_syncs \
     SET owner = $1, lease_expires_at = now() + $2::float8 * interval '1 second', fence = fence + 1 \
     WHERE id IN (SELECT id FROM adsync_syncs \
         WHERE status = 'running' \
           AND (owner IS NULL OR lease_expires_at < now()) \
           AND (not_before IS NULL OR not_before <= now()) \
         ORDER BY not_before NULLS FIRST, id \
         LIMIT $3 \
         FOR UPDATE SKIP LOCKED) \
     RETURNING id, fence";

const RENEW: &str = "UPDATE adsync_syncs AS s \
     SET lease_expires_at = now() + $2::float8 * interval '1 second' \
     FROM unnest($3::text[], $4::bigint[]) AS h(id, fence) \
     WHERE s.id = h.id AND s.fence = h.fence AND s.owner = $1 \
     RETURNING s.id";

const RELEASE: &str = "UPDATE adsync_syncs SET owner = NULL, lease_expires_at = NULL \
     WHERE id = $1 AND fence = $2";

const LEASES: &str = "SELECT id, status, owner, lease_expires_at, lease_expires_at < now(), fence \
     FROM adsync_syncs WHERE owner IS NOT NULL ORDER BY id";

/// Tries of a lease statement the server aborted for a deadlock or a
/// serialization conflict (with a commit group locking the same rows).
const CONFLICT_TRIES: usize = 5;

fn conflict(e: &tokio_postgres::Error) -> bool {
    e.code().is_some_and(|c| {
        *c == tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED
            || *c == tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
    })
}

/// Runs `query` until it succeeds, fails otherwise than by a conflict, or
/// has conflicted `CONFLICT_TRIES` times.
async fn retrying<T, F, Fut>(mut query: F) -> Result<T, tokio_postgres::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, tokio_postgres::Error>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match query().await {
            Err(e) if conflict(&e) && tries < CONFLICT_TRIES => continue,
            other => return other,
        }
    }
}

fn token(fence: u64) -> i64 {
    i64::try_from(fence).unwrap_or(i64::MAX)
}

impl PgStore {
    /// Takes up to `limit` running syncs that are due (`not_before` passed)
    /// and that nobody holds (no owner, or a lease that ran out), for `ttl`:
    /// each gets `owner` and a new fencing token. Rows another claimer is
    /// taking at the same moment are skipped (`FOR UPDATE SKIP LOCKED`), so
    /// concurrent claimers never get the same sync. The sync with the
    /// earliest `not_before` comes first.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] naming the store.
    pub async fn claim(
        &self,
        owner: &str,
        ttl: Duration,
        limit: usize,
    ) -> Result<Vec<Claim>, StoreError> {
        let client = &self.client().await?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let ttl = ttl.as_secs_f64();
        let rows = retrying(|| async move { client.query(CLAIM, &[&owner, &ttl, &limit]).await })
            .await
            .map_err(|e| self.db_error("claiming syncs", e))?;
        Ok(rows
            .into_iter()
            .map(|row| Claim {
                sync: row.get(0),
                fence: u64::try_from(row.get::<_, i64>(1)).unwrap_or_default(),
            })
            .collect())
    }

    /// Extends `owner`'s leases on `held` (`(sync, fencing token)`) by `ttl`
    /// from now; returns the syncs still held. A sync missing from the answer
    /// was claimed by another worker (its token moved): stop running it. A
    /// lease that ran out but that nobody claimed yet is renewed.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] naming the store.
    pub async fn renew(
        &self,
        owner: &str,
        held: &[(String, u64)],
        ttl: Duration,
    ) -> Result<Vec<String>, StoreError> {
        if held.is_empty() {
            return Ok(Vec::new());
        }
        let client = &self.client().await?;
        // In id order, as commit groups lock rows: fewer deadlocks with them.
        let mut held: Vec<&(String, u64)> = held.iter().collect();
        held.sort();
        let ids: Vec<&str> = held.iter().map(|(s, _)| s.as_str()).collect();
        let fences: Vec<i64> = held.iter().map(|(_, f)| token(*f)).collect();
        let ttl = ttl.as_secs_f64();
        let (ids, fences) = (&ids, &fences);
        let rows =
            retrying(|| async move { client.query(RENEW, &[&owner, &ttl, ids, fences]).await })
                .await
                .map_err(|e| self.db_error("renewing leases", e))?;
        Ok(rows.into_iter().map(|row| row.get(0)).collect())
    }

    /// Gives up the lease on `sync` if `fence` is still its token (a worker
    /// shutting down, or done with a sync that settled): another worker may
    /// claim it at once instead of waiting for the expiry. Returns whether
    /// the lease was still this one.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] naming the store.
    pub async fn release(&self, sync: &str, fence: u64) -> Result<bool, StoreError> {
        let client = &self.client().await?;
        let fence = token(fence);
        let n = retrying(|| async move { client.execute(RELEASE, &[&sync, &fence]).await })
            .await
            .map_err(|e| self.db_error("releasing a lease", e))?;
        Ok(n == 1)
    }

    /// Every sync that has (or had) an owner, by id, with its lease.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] naming the store.
    pub async fn leases(&self) -> Result<Vec<LeaseView>, StoreError> {
        let client = &self.client().await?;
        let rows = client
            .query(LEASES, &[])
            .await
            .map_err(|e| self.db_error("listing leases", e))?;
        Ok(rows
            .into_iter()
            .map(|row| LeaseView {
                sync: row.get(0),
                status: row.get(1),
                owner: row.get(2),
                expires_at: row
                    .get::<_, Option<OffsetDateTime>>(3)
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH),
                expired: row.get::<_, Option<bool>>(4).unwrap_or(true),
                fence: u64::try_from(row.get::<_, i64>(5)).unwrap_or_default(),
            })
            .collect())
    }
}

/// The engine's view of the same leases, for the `Worker` (lease mode).
#[async_trait]
impl Leases for PgStore {
    async fn claim(
        &self,
        owner: &str,
        ttl: Duration,
        limit: usize,
    ) -> Result<Vec<Claim>, StoreError> {
        PgStore::claim(self, owner, ttl, limit).await
    }

    async fn renew(
        &self,
        owner: &str,
        held: &[Claim],
        ttl: Duration,
    ) -> Result<Vec<String>, StoreError> {
        let held: Vec<(String, u64)> = held.iter().map(|c| (c.sync.clone(), c.fence)).collect();
        PgStore::renew(self, owner, &held, ttl).await
    }

    async fn release(&self, claim: &Claim) -> Result<bool, StoreError> {
        PgStore::release(self, &claim.sync, claim.fence).await
    }

    async fn leases(&self) -> Result<Vec<LeaseView>, StoreError> {
        PgStore::leases(self).await
    }

    async fn lead(&self, role: &str) -> Result<bool, StoreError> {
        PgStore::lead(self, role).await
    }
}
