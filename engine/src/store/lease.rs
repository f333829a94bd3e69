//! Leases: which worker runs which sync, when several share one store.
//!
//! A store that many processes share (PostgreSQL) hands each unfinished sync
//! to one worker at a time. The worker *claims* it and receives a fencing
//! token that grows with every claim; every commit it makes for that sync
//! carries the token ([`Commit::fenced`](crate::Commit::fenced)), and the
//! store refuses it ([`StoreError::LeaseLost`](crate::StoreError::LeaseLost))
//! once another worker has claimed the sync since. A paused or partitioned
//! worker thus cannot write over the new owner's progress; the new owner
//! resumes from the last checkpoint under the machine's restart rules, so an
//! effect the old owner may have started is looked up, never repeated.
//!
//! sled's store is one process's alone and has no leases
//! ([`CheckpointStore::leases`](crate::CheckpointStore::leases) is `None`).

use std::time::Duration;

use async_trait::async_trait;

use super::StoreError;
use crate::Timestamp;

/// A sync this worker now owns, and the fencing token its commits must carry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Claim {
    /// The sync.
    pub sync: String,
    /// The token; every claim of the sync, by anyone, increases it.
    pub fence: u64,
}

/// A sync's lease, as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseView {
    /// The sync.
    pub sync: String,
    /// The sync's status as its last record gave it (`running`, …).
    pub status: String,
    /// The worker that claimed it last.
    pub owner: String,
    /// When the lease runs out unless renewed (the store's clock).
    pub expires_at: Timestamp,
    /// Whether it ran out already, by the store's clock (so workers' clocks
    /// do not matter): a running sync whose lease expired waits for a new
    /// owner.
    pub expired: bool,
    /// The current fencing token.
    pub fence: u64,
}

/// The leases of a store that several workers share.
#[async_trait]
pub trait Leases: Send + Sync {
    /// Takes up to `limit` running syncs that are due and that nobody holds
    /// (no owner, or a lease that ran out), for `ttl`: each gets `owner` and
    /// a new fencing token. Concurrent claimers never get the same sync.
    ///
    /// # Errors
    ///
    /// The store's failure, naming it.
    async fn claim(
        &self,
        owner: &str,
        ttl: Duration,
        limit: usize,
    ) -> Result<Vec<Claim>, StoreError>;

    /// Extends `owner`'s leases on `held` by `ttl` from now and returns the
    /// syncs still held: one missing from the answer was claimed by another
    /// worker, so stop running it.
    ///
    /// # Errors
    ///
    /// The store's failure, naming it.
    async fn renew(
        &self,
        owner: &str,
        held: &[Claim],
        ttl: Duration,
    ) -> Result<Vec<String>, StoreError>;

    /// Gives up the lease `claim` if its token is still current (a worker
    /// stopping, or done with a settled sync), so another worker may claim
    /// it at once. Returns whether it was.
    ///
    /// # Errors
    ///
    /// The store's failure, naming it.
    async fn release(&self, claim: &Claim) -> Result<bool, StoreError>;

    /// Every sync that has (or had) an owner, by id.
    ///
    /// # Errors
    ///
    /// The store's failure, naming it.
    async fn leases(&self) -> Result<Vec<LeaseView>, StoreError>;

    /// Whether this process leads `role` among the store's workers (at most
    /// one process at a time does; asked again at every round, it stays the
    /// leader while it lives and its connection holds). What runs once
    /// across workers, such as firing pull schedules, runs in the leader.
    ///
    /// # Errors
    ///
    /// The store's failure, naming it (then this process does not lead).
    async fn lead(&self, role: &str) -> Result<bool, StoreError>;
}
