//! Who is working on an unfinished sync right now, as `status` and `show`
//! say it. A record that says `running` only tells that the sync has not
//! settled; whether some process is driving it depends on the store:
//!
//! - **sled** (`--db`): sled locks the store's directory for the process
//!   that opened it, and a command that runs syncs holds the store until it
//!   exits. A process reading the store is therefore the only one using it,
//!   so a `running` record was left by a process that stopped (killed,
//!   crashed, interrupted): it is *interrupted*, and `adsync resume`
//!   continues it.
//! - **shared store** (`--store postgres://…`): daemons hold syncs by lease.
//!   A live lease says which daemon runs the sync and until when; an expired
//!   lease (its owner died or paused) means the sync waits for a new owner,
//!   which any daemon on the store claims; a released sync with a backoff
//!   waits until its time; one nobody ever claimed waits for a daemon.
//!
//! A process that both runs syncs and reports on them (a daemon) asks its
//! own worker instead.

use std::collections::BTreeMap;

use adsync::{LeaseView, Record, Status, Timestamp};

use crate::format::rfc3339;

/// What this process can tell about who works on the syncs of the store it
/// opened: nothing but itself (sled), or the leases of a shared store.
pub enum Watch {
    /// A sled store, which this process alone has open.
    Alone,
    /// A shared store's leases by sync, read at `now` (the database's
    /// clock decided `expired`).
    Leases(BTreeMap<String, LeaseView>),
}

/// Who works on one sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activity {
    /// Settled: the recorded status is the whole story.
    Settled,
    /// sled: left unfinished by a process that stopped; its last checkpoint.
    Interrupted { at: Timestamp },
    /// A daemon holds a live lease on it.
    RunningOn { owner: String, until: Timestamp },
    /// Its owner's lease ran out (the owner died, paused or lost the
    /// database): any daemon on the store claims it; its last checkpoint.
    WaitingForOwner {
        at: Timestamp,
        last_owner: String,
        expired_at: Timestamp,
    },
    /// Released by its last holder until its backoff ends.
    WaitingUntil { at: Timestamp },
    /// Unfinished and held by no one, due now: the next daemon to claim
    /// takes it (submitted, or released when it was due).
    Unclaimed,
}

impl Watch {
    /// The activity of `record`'s sync.
    pub fn of(&self, record: &Record) -> Activity {
        if record.status != Status::Running {
            return Activity::Settled;
        }
        let leases = match self {
            Watch::Alone => {
                return Activity::Interrupted {
                    at: record.updated_at,
                }
            }
            Watch::Leases(leases) => leases,
        };
        match leases.get(&record.id) {
            Some(lease) if !lease.expired => Activity::RunningOn {
                owner: lease.owner.clone(),
                until: lease.expires_at,
            },
            Some(lease) => Activity::WaitingForOwner {
                at: record.updated_at,
                last_owner: lease.owner.clone(),
                expired_at: lease.expires_at,
            },
            None => match record.not_before {
                Some(at) if at > time::OffsetDateTime::now_utc() => Activity::WaitingUntil { at },
                _ => Activity::Unclaimed,
            },
        }
    }
}

impl Activity {
    /// The time of the last checkpoint of a sync no process works on,
    /// which a script tests (`interrupted_at` in `--json`); `None` when the
    /// sync is settled, running, or due to be claimed by design.
    pub fn interrupted_at(&self) -> Option<Timestamp> {
        match self {
            Activity::Interrupted { at } | Activity::WaitingForOwner { at, .. } => Some(*at),
            _ => None,
        }
    }

    /// The status as shown, from the recorded one: `interrupted`, `running
    /// on w1 (lease until …)`, `waiting for a new owner`, `waiting until …`,
    /// `waiting for a daemon`, or the recorded status.
    pub fn shown(&self, recorded: &str) -> String {
        match self {
            Activity::Settled => recorded.to_string(),
            Activity::Interrupted { .. } => "interrupted".to_string(),
            Activity::RunningOn { owner, until } => {
                format!("running on {owner} (lease until {})", rfc3339(*until))
            }
            Activity::WaitingForOwner { .. } => "waiting for a new owner".to_string(),
            Activity::WaitingUntil { at } => format!("waiting until {}", rfc3339(*at)),
            Activity::Unclaimed => "waiting for a daemon".to_string(),
        }
    }

    /// The lease as `--json` shows it (`null` when no daemon holds or held
    /// the sync), in the shape of the control API's `lease`.
    pub fn lease_json(&self) -> serde_json::Value {
        match self {
            Activity::RunningOn { owner, until } => serde_json::json!({
                "owner": owner, "expires_at": rfc3339(*until), "expired": false,
            }),
            Activity::WaitingForOwner {
                last_owner,
                expired_at,
                ..
            } => serde_json::json!({
                "owner": last_owner, "expires_at": rfc3339(*expired_at), "expired": true,
            }),
            _ => serde_json::Value::Null,
        }
    }

    /// One line saying what happens next to a sync nobody works on, for
    /// sync `id`; `None` when something already works on it.
    pub fn next_step(&self, id: &str) -> Option<String> {
        match self {
            Activity::Interrupted { at } => Some(format!(
                "interrupted: no process is working on it; last checkpoint {}; `adsync resume {id}` continues it",
                rfc3339(*at)
            )),
            Activity::WaitingForOwner {
                at,
                last_owner,
                expired_at,
            } => Some(format!(
                "waiting for a new owner: the lease of {last_owner} ran out at {}; last checkpoint {}; \
                 any daemon on this store claims it",
                rfc3339(*expired_at),
                rfc3339(*at)
            )),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(status: Status, not_before: Option<Timestamp>) -> Record {
        let mut r: Record = serde_json::from_value(serde_json::json!({
            "format": adsync::RECORD_FORMAT, "id": "s1", "kind": "push", "state_version": 1,
            "seq": 4, "phase": "CampaignCreated", "status": status, "effects_run": 2,
            "failed_effects": 0, "last_error": null, "created_at": "2026-12-02T09:00:00Z",
            "updated_at": "2026-12-02T09:30:00Z", "labels": {}, "state": {},
        }))
        .expect("a record");
        r.not_before = not_before;
        r
    }

    fn lease(expired: bool) -> Watch {
        let at = time::macros::datetime!(2026-12-02 10:00 UTC);
        Watch::Leases(BTreeMap::from([(
            "s1".to_string(),
            LeaseView {
                sync: "s1".into(),
                status: "running".into(),
                owner: "w1".into(),
                expires_at: at,
                expired,
                fence: 3,
            },
        )]))
    }

    #[test]
    fn a_running_record_reads_by_store_and_lease() {
        let running = record(Status::Running, None);
        assert!(matches!(
            Watch::Alone.of(&running),
            Activity::Interrupted { .. }
        ));
        assert_eq!(
            lease(false).of(&running).shown("running"),
            "running on w1 (lease until 2026-12-02T10:00:00Z)"
        );
        let waiting = lease(true).of(&running);
        assert_eq!(waiting.shown("running"), "waiting for a new owner");
        assert_eq!(waiting.interrupted_at(), Some(running.updated_at));
        let none = Watch::Leases(BTreeMap::new());
        assert_eq!(none.of(&running), Activity::Unclaimed);
        let later = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
        assert_eq!(
            none.of(&record(Status::Running, Some(later))),
            Activity::WaitingUntil { at: later }
        );
    }

    #[test]
    fn a_settled_record_is_shown_as_recorded_whatever_its_lease() {
        let done = record(Status::Succeeded, None);
        assert_eq!(lease(false).of(&done), Activity::Settled);
        assert_eq!(Watch::Alone.of(&done).shown("succeeded"), "succeeded");
        assert_eq!(Watch::Alone.of(&done).lease_json(), serde_json::Value::Null);
    }
}
