//! Lease mode: several workers on one shared store.
//!
//! When the store has leases ([`CheckpointStore::leases`], PostgreSQL's
//! store), a worker does not take up every unfinished sync at start: it
//! *claims* syncs, as many as it has room for, every claim interval; runs
//! each under its fencing token ([`Runner::hold`]); renews its leases by
//! heartbeat; and releases a lease when the sync settles, must wait (any
//! worker claims it again when it is due), or the worker stops. A sync whose
//! lease was taken over (this worker paused past its expiry) is dropped: its
//! next commit is refused by the store, and the new owner resumes it under
//! the machine's restart rules.
//!
//! sled's store has no leases: one process owns it, and the worker takes up
//! all of its unfinished work at start instead ([`Worker::resume`]).
//!
//! [`CheckpointStore::leases`]: adsync_engine::CheckpointStore::leases
//! [`Runner::hold`]: adsync_engine::Runner::hold

use std::collections::HashMap;
use std::time::{Duration, Instant};

use adsync_engine::{Claim, Leases, Record, StoreError, Timestamp};
use parking_lot::Mutex;

use super::queue::Kind;
use super::{Unfinished, Worker};

/// The lease state of a worker in lease mode.
pub(super) struct Leasing {
    /// Who this worker is, as the store's leases name it.
    pub(super) owner: String,
    /// How long a claim or renewal holds a sync.
    pub(super) ttl: Duration,
    /// How often the worker claims (and, at a third of the ttl, renews).
    pub(super) every: Duration,
    held: Mutex<HashMap<String, Holding>>,
    renewed: Mutex<Instant>,
    /// When the leader last read the schedules from the store.
    schedules_read: Mutex<Option<Instant>>,
    /// Leases to give back that the store could not take at the time (it
    /// was restarting, say): tried again every round, so other workers need
    /// not wait for their expiry.
    to_release: Mutex<Vec<Claim>>,
}

/// A sync this worker holds: its claim, and which runner runs it.
#[derive(Clone)]
struct Holding {
    claim: Claim,
    kind: Kind,
    platform: String,
}

impl Leasing {
    pub(super) fn new(owner: String, ttl: Duration, every: Duration) -> Self {
        Leasing {
            owner,
            ttl,
            // Renewals ride on the claim rounds: run them often enough.
            every: every.min(ttl / 3),
            held: Mutex::new(HashMap::new()),
            renewed: Mutex::new(Instant::now()),
            schedules_read: Mutex::new(None),
            to_release: Mutex::new(Vec::new()),
        }
    }

    pub(super) fn held(&self) -> usize {
        self.held.lock().len()
    }

    pub(super) fn take(&self, id: &str) -> Option<Claim> {
        self.held.lock().remove(id).map(|h| h.claim)
    }

    /// Until when (this process's monotonic clock) a lease asked for at
    /// `asked` surely holds: the store counts its ttl from when it answered,
    /// later than `asked`; a margin covers the store's clock running fast.
    fn valid_until(&self, asked: Instant) -> Instant {
        asked + self.ttl.mul_f64(0.9)
    }
}

/// How often the schedules' leader reads them from the store again.
const SCHEDULES_REREAD: Duration = Duration::from_secs(5);

/// A worker name unique enough among the workers of one database: host,
/// process id and a random suffix (a restarted process is a new owner).
pub(super) fn default_owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "adsync".to_string());
    format!(
        "{host}:{}:{:08x}",
        std::process::id(),
        rand::random::<u32>()
    )
}

impl Worker {
    /// Tells the runner of `holding` its lease's token and deadline.
    fn hold(&self, holding: &Holding, until: Instant) -> bool {
        match holding.kind {
            Kind::Push => self
                .inner
                .pushers
                .get(&holding.platform)
                .map(|p| p.runner().hold(&holding.claim, until))
                .is_some(),
            Kind::Pull => self
                .inner
                .pullers
                .get(&holding.platform)
                .map(|p| p.runner().hold(&holding.claim, until))
                .is_some(),
        }
    }

    fn leases(&self) -> Option<(&Leasing, &dyn Leases)> {
        let leasing = self.inner.leasing.as_ref()?;
        let leases = self.inner.store.leases()?;
        Some((leasing, leases))
    }

    /// One claim round (lease mode only): renews the leases held when a
    /// third of their ttl has passed, then claims as many due syncs as there
    /// is room for, and queues them. Returns when the next round is due.
    pub(super) async fn claim_round(&self, now: Timestamp) -> Option<Timestamp> {
        let (leasing, leases) = self.leases()?;
        self.retry_releases(leasing, leases).await;
        if leasing.renewed.lock().elapsed() >= leasing.ttl / 3 {
            self.renew(leasing, leases).await;
        }
        let room = self.inner.limits.max_running.saturating_sub(leasing.held());
        if room > 0 && !self.inner.stop.is_stopped() {
            let asked = Instant::now();
            match leases.claim(&leasing.owner, leasing.ttl, room).await {
                Ok(claims) if !claims.is_empty() => {
                    // Before anything runs under them: a reader of the logs
                    // (the torture test) orders each effect after its claim.
                    for claim in &claims {
                        tracing::info!(sync = %claim.sync, fence = claim.fence, owner = %leasing.owner, "claimed a sync");
                    }
                    let until = leasing.valid_until(asked);
                    self.take_up(leasing, leases, claims, until, now).await
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "cannot claim syncs; trying again"),
            }
        }
        Some(now + leasing.every)
    }

    async fn renew(&self, leasing: &Leasing, leases: &dyn Leases) {
        let held: Vec<Holding> = leasing.held.lock().values().cloned().collect();
        let asked = Instant::now();
        *leasing.renewed.lock() = asked;
        if held.is_empty() {
            return;
        }
        let claims: Vec<Claim> = held.iter().map(|h| h.claim.clone()).collect();
        let still = match leases.renew(&leasing.owner, &claims, leasing.ttl).await {
            Ok(still) => still,
            Err(e) => {
                // The leases may run out if this goes on: then other workers
                // take the syncs over and this one's commits are refused.
                tracing::error!(error = %e, "cannot renew leases; trying again");
                return;
            }
        };
        let until = leasing.valid_until(asked);
        for holding in held {
            let claim = &holding.claim;
            if still.contains(&claim.sync) {
                // Only if still ours here (its task may have ended meanwhile).
                if leasing.held.lock().contains_key(&claim.sync) {
                    self.hold(&holding, until);
                }
                continue;
            }
            tracing::warn!(sync = %claim.sync, fence = claim.fence, "lease taken over by another worker; dropping the sync");
            leasing.take(&claim.sync);
            // A running task finds out at its next commit (refused); a
            // queued one is simply no longer ours.
            self.inner.queue.lock().forget(&claim.sync);
        }
    }

    /// Queues the claimed syncs this worker serves; gives the others back.
    async fn take_up(
        &self,
        leasing: &Leasing,
        leases: &dyn Leases,
        claims: Vec<Claim>,
        until: Instant,
        now: Timestamp,
    ) {
        let ids: Vec<String> = claims.iter().map(|c| c.sync.clone()).collect();
        let records = self
            .inner
            .store
            .read(move |store| {
                ids.iter()
                    .map(|id| store.record(id))
                    .collect::<Vec<Result<Option<Record>, StoreError>>>()
            })
            .await;
        let records = match records {
            Ok(records) => records,
            Err(e) => {
                tracing::error!(error = %e, "cannot read claimed syncs; giving them back");
                for claim in &claims {
                    self.give_back(leasing, leases, claim.clone()).await;
                }
                return;
            }
        };
        for (claim, record) in claims.into_iter().zip(records) {
            let unfinished = match record {
                Ok(Some(record)) => Unfinished::of(record),
                Ok(None) => {
                    tracing::error!(sync = %claim.sync, "a claimed sync has no record; giving it back");
                    self.give_back(leasing, leases, claim).await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(sync = %claim.sync, error = %e, "a claimed sync does not decode; giving it back");
                    self.give_back(leasing, leases, claim).await;
                    continue;
                }
            };
            let holding = Holding {
                claim,
                kind: unfinished.kind,
                platform: unfinished.platform.clone(),
            };
            if !self.hold(&holding, until) {
                let claim = holding.claim;
                tracing::debug!(sync = %claim.sync, platform = %unfinished.platform, "claimed a sync of a platform this worker does not serve; giving it back");
                self.give_back(leasing, leases, claim).await;
                continue;
            }
            leasing
                .held
                .lock()
                .insert(holding.claim.sync.clone(), holding);
            self.inner.queue.lock().track(
                &unfinished.id,
                unfinished.kind,
                &unfinished.platform,
                &unfinished.account,
                None,
                now,
            );
        }
    }

    /// Whether this worker fires the pull schedules: always on a store of its
    /// own; on a shared store only the leader does (so each schedule fires
    /// once across workers), after reloading them from the store (another
    /// worker may have created, deleted or fired one since).
    pub(super) async fn leads_schedules(&self) -> bool {
        let Some((leasing, leases)) = self.leases() else {
            return true;
        };
        match leases.lead("schedules").await {
            Ok(true) => {}
            Ok(false) => {
                *leasing.schedules_read.lock() = None;
                return false;
            }
            Err(e) => {
                *leasing.schedules_read.lock() = None;
                tracing::error!(error = %e, "cannot tell whether this worker leads the schedules; not firing them this round");
                return false;
            }
        }
        // Read on taking the lead, then every few seconds (schedules created
        // or deleted through another worker).
        let fresh = leasing
            .schedules_read
            .lock()
            .is_some_and(|at| at.elapsed() < SCHEDULES_REREAD);
        if fresh {
            return true;
        }
        let stored = self
            .inner
            .store
            .read(|store| {
                let mut schedules = std::collections::BTreeMap::new();
                for item in store.scan_data(super::schedule::PREFIX.as_bytes()) {
                    let (key, value) = item?;
                    match serde_json::from_slice::<super::Schedule>(&value) {
                        Ok(schedule) => {
                            schedules.insert(key, schedule);
                        }
                        Err(e) => tracing::error!(
                            key = %String::from_utf8_lossy(&key),
                            error = %e,
                            "a stored schedule does not decode; left alone"
                        ),
                    }
                }
                Ok::<_, StoreError>(schedules)
            })
            .await;
        match stored {
            Ok(Ok(schedules)) => {
                *self.inner.schedules.lock() = schedules;
                *leasing.schedules_read.lock() = Some(Instant::now());
                true
            }
            Ok(Err(e)) | Err(e) => {
                tracing::error!(error = %e, "cannot read the schedules; not firing them this round");
                false
            }
        }
    }

    /// Gives up this worker's lease on `id` (the sync settled, waits, or the
    /// worker stops), so that any worker may claim it when it is due.
    pub(super) async fn release(&self, id: &str, kind: Kind, platform: &str) {
        let Some((leasing, leases)) = self.leases() else {
            return;
        };
        let Some(claim) = leasing.take(id) else {
            return;
        };
        match kind {
            Kind::Push => {
                if let Some(p) = self.inner.pushers.get(platform) {
                    p.runner().let_go(id);
                }
            }
            Kind::Pull => {
                if let Some(p) = self.inner.pullers.get(platform) {
                    p.runner().let_go(id);
                }
            }
        }
        self.give_back(leasing, leases, claim).await;
    }

    /// Releases `claim`, or keeps it to try again next round.
    async fn give_back(&self, leasing: &Leasing, leases: &dyn Leases, claim: Claim) {
        match leases.release(&claim).await {
            Ok(released) => log_release(leasing, &claim, released),
            Err(e) => {
                tracing::warn!(sync = %claim.sync, error = %e, "cannot release a lease; trying again next round");
                leasing.to_release.lock().push(claim);
            }
        }
    }

    /// Retries the releases that failed (a release of a lease that moved on
    /// since is simply refused by the store).
    async fn retry_releases(&self, leasing: &Leasing, leases: &dyn Leases) {
        let pending = std::mem::take(&mut *leasing.to_release.lock());
        for claim in pending {
            self.give_back(leasing, leases, claim).await;
        }
    }

    /// A sync whose lease was taken over: no longer ours. Its runner keeps
    /// the stale fence, so nothing more of it is written from here.
    pub(super) fn lost(&self, id: &str) {
        if let Some((leasing, _)) = self.leases() {
            leasing.take(id);
        }
    }

    /// Releases every lease still held (a graceful stop): other workers
    /// take the syncs over at once instead of at the leases' expiry.
    pub(super) async fn release_all(&self) {
        let Some((leasing, leases)) = self.leases() else {
            return;
        };
        let held: Vec<Claim> = leasing.held.lock().drain().map(|(_, h)| h.claim).collect();
        for claim in held {
            match leases.release(&claim).await {
                Ok(released) => log_release(leasing, &claim, released),
                Err(e) => {
                    tracing::warn!(sync = %claim.sync, error = %e, "cannot release a lease; it expires by itself");
                }
            }
        }
    }
}

/// A lease given back (`released`), or found already taken by another
/// claim: with the claims, tells a reader of the logs a takeover (a claim
/// of a lease its holder never gave back) from a handover.
fn log_release(leasing: &Leasing, claim: &Claim, released: bool) {
    if released {
        tracing::info!(sync = %claim.sync, fence = claim.fence, owner = %leasing.owner, "released a sync");
    } else {
        tracing::info!(sync = %claim.sync, fence = claim.fence, owner = %leasing.owner, "a lease to release was claimed by another worker already");
    }
}
