//! The dispatch queue: which unfinished syncs a worker knows, which of them
//! may run now, and the limits that say how many run at once.
//!
//! Plain data, no I/O and no tasks: a sync waiting its turn or its backoff
//! time is an entry here (its id and two shared strings), not a task, so ten
//! thousand waiting syncs cost memory in kilobytes, not ten thousand stacks.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;

use adsync_engine::Timestamp;

/// Which machine a sync runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Push,
    Pull,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Push => "push",
            Kind::Pull => "pull",
        }
    }
}

/// How many syncs may run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Running syncs in all (at least one).
    pub max_running: usize,
    /// Running syncs per platform account (push) or profile (pull), at
    /// least one: what keeps one big account from starving the others and
    /// from spending its platform budget on many syncs at once.
    pub max_per_account: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_running: 32,
            max_per_account: 4,
        }
    }
}

/// Where a sync is in a worker's queue ([`Worker::queued`](super::Worker::queued)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Queued {
    /// It may run as soon as the limits allow.
    Ready,
    /// It waits until this time (a backoff, a deferred look-up).
    Waiting(Timestamp),
    /// A task is stepping it.
    Running,
}

/// Where a tracked sync is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// May run as soon as the limits allow.
    Ready,
    /// Backing off (or deferred) until then.
    Waiting(Timestamp),
    /// A task is stepping it.
    Running,
}

#[derive(Debug)]
struct Entry {
    kind: Kind,
    platform: Arc<str>,
    /// `platform/account` (push) or `platform/profile` (pull): what the
    /// per-account limit counts.
    account: Arc<str>,
    place: Place,
}

/// A sync the queue hands out to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Job {
    pub(crate) id: String,
    pub(crate) kind: Kind,
    pub(crate) platform: Arc<str>,
    pub(crate) account: Arc<str>,
}

/// Queue sizes, for metrics and `status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueDepth {
    /// Syncs that may run but wait for a free slot.
    pub ready: usize,
    /// Syncs waiting for a time (a backoff, a deferred look-up).
    pub waiting: usize,
    /// Syncs being stepped.
    pub running: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Queue {
    limits: Limits,
    entries: HashMap<String, Entry>,
    /// Ready syncs per account, oldest first; may hold ids that left
    /// (cancelled while ready): skipped when popped.
    ready: HashMap<Arc<str>, VecDeque<String>>,
    /// Accounts with ready syncs, in round-robin order.
    accounts: VecDeque<Arc<str>>,
    /// Waiting syncs by due time; may hold stale entries (skipped).
    waiting: BinaryHeap<Reverse<(Timestamp, String)>>,
    running: usize,
    running_per: HashMap<Arc<str>, usize>,
    /// Interned account and platform names.
    names: HashMap<String, Arc<str>>,
}

impl Queue {
    pub(crate) fn new(limits: Limits) -> Self {
        Queue {
            limits: Limits {
                max_running: limits.max_running.max(1),
                max_per_account: limits.max_per_account.max(1),
            },
            ..Queue::default()
        }
    }

    fn intern(&mut self, name: &str) -> Arc<str> {
        if let Some(name) = self.names.get(name) {
            return name.clone();
        }
        let shared: Arc<str> = Arc::from(name);
        self.names.insert(name.to_string(), shared.clone());
        shared
    }

    pub(crate) fn place(&self, id: &str) -> Option<Queued> {
        self.entries.get(id).map(|e| match e.place {
            Place::Ready => Queued::Ready,
            Place::Waiting(at) => Queued::Waiting(at),
            Place::Running => Queued::Running,
        })
    }

    /// Whether `id` is tracked (ready, waiting or running).
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.entries.contains_key(id)
    }

    /// Starts tracking `id`: ready now, or waiting until `due` when it is
    /// later than `now`. Returns false (and changes nothing) if it is
    /// already tracked: one sync never runs twice at once.
    pub(crate) fn track(
        &mut self,
        id: &str,
        kind: Kind,
        platform: &str,
        account: &str,
        due: Option<Timestamp>,
        now: Timestamp,
    ) -> bool {
        if self.entries.contains_key(id) {
            return false;
        }
        let platform = self.intern(platform);
        let account = self.intern(&format!("{platform}/{account}"));
        self.entries.insert(
            id.to_string(),
            Entry {
                kind,
                platform,
                account,
                place: Place::Ready,
            },
        );
        match due.filter(|due| *due > now) {
            Some(due) => self.set_waiting(id, due),
            None => self.set_ready(id),
        }
        true
    }

    fn set_ready(&mut self, id: &str) {
        let Some(entry) = self.entries.get_mut(id) else {
            return;
        };
        entry.place = Place::Ready;
        let account = entry.account.clone();
        let queue = self.ready.entry(account.clone()).or_default();
        if queue.is_empty() {
            self.accounts.push_back(account);
        }
        queue.push_back(id.to_string());
    }

    fn set_waiting(&mut self, id: &str, due: Timestamp) {
        if let Some(entry) = self.entries.get_mut(id) {
            entry.place = Place::Waiting(due);
            self.waiting.push(Reverse((due, id.to_string())));
        }
    }

    /// Moves every waiting sync due at `now` to the ready queues.
    pub(crate) fn promote_due(&mut self, now: Timestamp) {
        while let Some(Reverse((due, _))) = self.waiting.peek() {
            if *due > now {
                break;
            }
            let Some(Reverse((due, id))) = self.waiting.pop() else {
                break;
            };
            let current = self.entries.get(&id).map(|e| e.place);
            if current == Some(Place::Waiting(due)) {
                self.set_ready(&id);
            }
        }
    }

    /// The earliest time a waiting sync is due.
    pub(crate) fn next_due(&mut self) -> Option<Timestamp> {
        // Drop stale heap entries so the answer is a real due time.
        while let Some(Reverse((due, id))) = self.waiting.peek() {
            if self.entries.get(id).map(|e| e.place) == Some(Place::Waiting(*due)) {
                return Some(*due);
            }
            self.waiting.pop();
        }
        None
    }

    /// The next sync to run within the limits, marked running; accounts
    /// take turns.
    pub(crate) fn next_job(&mut self) -> Option<Job> {
        if self.running >= self.limits.max_running {
            return None;
        }
        for _ in 0..self.accounts.len() {
            let account = self.accounts.pop_front()?;
            let busy = self.running_per.get(&account).copied().unwrap_or(0);
            if busy >= self.limits.max_per_account {
                self.accounts.push_back(account);
                continue;
            }
            let queue = self.ready.entry(account.clone()).or_default();
            let mut found = None;
            while let Some(id) = queue.pop_front() {
                let ready = self.entries.get(&id).map(|e| e.place) == Some(Place::Ready);
                if ready {
                    found = Some(id);
                    break;
                }
            }
            if queue.is_empty() {
                self.ready.remove(&account);
            } else {
                self.accounts.push_back(account.clone());
            }
            let Some(id) = found else { continue };
            let entry = self.entries.get_mut(&id)?;
            entry.place = Place::Running;
            self.running += 1;
            *self.running_per.entry(account.clone()).or_default() += 1;
            return Some(Job {
                id,
                kind: entry.kind,
                platform: entry.platform.clone(),
                account,
            });
        }
        None
    }

    fn release(&mut self, id: &str) {
        let Some(entry) = self.entries.get(id) else {
            return;
        };
        if entry.place != Place::Running {
            return;
        }
        self.running -= 1;
        if let Some(n) = self.running_per.get_mut(&entry.account) {
            *n -= 1;
            if *n == 0 {
                self.running_per.remove(&entry.account);
            }
        }
    }

    /// A running sync has settled, stopped or failed: it leaves the queue.
    pub(crate) fn finished(&mut self, id: &str) {
        self.release(id);
        self.entries.remove(id);
    }

    /// A running sync waits until `due`: its slot is free meanwhile.
    pub(crate) fn wait(&mut self, id: &str, due: Timestamp) {
        self.release(id);
        self.set_waiting(id, due);
    }

    /// A ready or waiting sync leaves the queue (it was cancelled). A
    /// running one stays: its task reports how it ended. Whether a task is
    /// running it (and so will report its end).
    pub(crate) fn forget(&mut self, id: &str) -> bool {
        match self.entries.get(id) {
            Some(entry) if entry.place == Place::Running => true,
            Some(_) => {
                self.entries.remove(id);
                false
            }
            None => false,
        }
    }

    pub(crate) fn depth(&self) -> QueueDepth {
        let mut depth = QueueDepth::default();
        for entry in self.entries.values() {
            match entry.place {
                Place::Ready => depth.ready += 1,
                Place::Waiting(_) => depth.waiting += 1,
                Place::Running => depth.running += 1,
            }
        }
        depth
    }

    /// Running syncs, for a graceful stop's report.
    pub(crate) fn running_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.place == Place::Running)
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use time::macros::datetime;

    const T0: Timestamp = datetime!(2026-01-01 00:00 UTC);

    fn queue(max_running: usize, max_per_account: usize) -> Queue {
        Queue::new(Limits {
            max_running,
            max_per_account,
        })
    }

    fn drain(q: &mut Queue) -> Vec<String> {
        std::iter::from_fn(|| q.next_job().map(|j| j.id)).collect()
    }

    #[test]
    fn the_global_and_per_account_limits_hold_and_accounts_take_turns() {
        let mut q = queue(3, 2);
        for (id, account) in [
            ("a1", "A"),
            ("a2", "A"),
            ("a3", "A"),
            ("b1", "B"),
            ("b2", "B"),
        ] {
            assert!(q.track(id, Kind::Push, "reddit", account, None, T0));
        }
        assert_eq!(drain(&mut q), ["a1", "b1", "a2"]);
        q.finished("a1");
        // A is at its limit of two again only after a3 runs; B's turn first.
        assert_eq!(drain(&mut q), ["b2"]);
        q.finished("b1");
        assert_eq!(drain(&mut q), ["a3"]);
        assert_eq!(
            q.depth(),
            QueueDepth {
                ready: 0,
                waiting: 0,
                running: 3
            }
        );
    }

    #[test]
    fn a_waiting_sync_holds_no_slot_and_comes_back_when_due() {
        let mut q = queue(1, 1);
        q.track("a", Kind::Pull, "amazon", "P", None, T0);
        q.track("b", Kind::Pull, "amazon", "Q", None, T0);
        assert_eq!(drain(&mut q), ["a"]);
        let due = T0 + Duration::from_secs(30);
        q.wait("a", due);
        assert_eq!(q.next_due(), Some(due));
        assert_eq!(drain(&mut q), ["b"]);
        q.finished("b");
        q.promote_due(due - Duration::from_secs(1));
        assert_eq!(drain(&mut q), Vec::<String>::new());
        q.promote_due(due);
        assert_eq!(drain(&mut q), ["a"]);
        assert_eq!(q.next_due(), None);
    }

    #[test]
    fn a_sync_is_tracked_once_and_a_forgotten_one_never_runs() {
        let mut q = queue(4, 4);
        assert!(q.track("a", Kind::Push, "reddit", "A", None, T0));
        assert!(!q.track("a", Kind::Push, "reddit", "A", None, T0));
        q.track(
            "w",
            Kind::Push,
            "reddit",
            "A",
            Some(T0 + Duration::from_secs(5)),
            T0,
        );
        q.forget("a");
        q.forget("w");
        q.promote_due(T0 + Duration::from_secs(10));
        assert_eq!(drain(&mut q), Vec::<String>::new());
        assert_eq!(q.next_due(), None);
        assert!(!q.contains("a"));
    }
}
