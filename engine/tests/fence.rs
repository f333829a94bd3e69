//! Fencing: a runner whose lease on a sync was taken over cannot write that
//! sync again, and the new owner resumes under the restart rules (the effect
//! the old owner may have sent is looked up, never sent again).
//!
//! The store here is sled's, wrapped with an in-memory lease table that
//! checks fencing tokens the way a shared store does
//! ([`CheckpointStore`]'s contract); `adsync-postgres` runs the same rule in
//! PostgreSQL.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use adsync_engine::{
    CheckpointCodec, CheckpointStore, Claim, Commit, Context, Effects, Machine, Next, Reads,
    RunError, Runner, Status, Step, Store, StoreError, SystemClock, TransitionError, WriterStats,
};
use serde::{Deserialize, Serialize};

/// Sends `total` messages; after a restart, the message that may have been
/// in flight is looked up instead of sent.
#[derive(Debug)]
struct Sender;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct State {
    sent: Vec<String>,
    total: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Outcome {
    Sent(String),
    /// A look-up found message `n` was sent before the restart.
    Found(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display)]
enum Phase {
    Sending,
    Done,
}

impl Machine for Sender {
    const KIND: &'static str = "sender";
    const STATE_VERSION: u32 = 1;
    type State = State;
    type Effect = usize;
    type Outcome = Outcome;
    type Phase = Phase;

    fn phase(state: &State) -> Phase {
        if state.sent.len() == state.total {
            Phase::Done
        } else {
            Phase::Sending
        }
    }
    fn next(state: &State) -> Next<usize> {
        match Self::phase(state) {
            Phase::Sending => Next::Effect(state.sent.len()),
            Phase::Done => Next::Settled(Status::Succeeded),
        }
    }
    fn transition(state: &State, outcome: &Outcome, _: &Context) -> Result<State, TransitionError> {
        if Self::phase(state) == Phase::Done {
            return Err(TransitionError {
                machine: Self::KIND,
                phase: "Done".into(),
                outcome: format!("{outcome:?}"),
                reason: "finished".into(),
            });
        }
        let mut next = state.clone();
        match outcome {
            Outcome::Sent(id) => next.sent.push(id.clone()),
            Outcome::Found(n) => next.sent.push(format!("m{n}")),
        }
        Ok(next)
    }
    fn on_restart(state: &State) -> Option<Outcome> {
        (Self::phase(state) == Phase::Sending).then_some(Outcome::Found(state.sent.len()))
    }
}

impl CheckpointCodec for Sender {}

/// Counts every message actually sent.
#[derive(Default)]
struct Mailer {
    sends: Mutex<Vec<usize>>,
}

#[async_trait::async_trait]
impl Effects<Sender> for Mailer {
    async fn perform(&self, _sync: &str, n: &usize) -> (Outcome, Commit) {
        self.sends.lock().unwrap().push(*n);
        (Outcome::Sent(format!("m{n}")), Commit::new())
    }
}

/// sled's store plus a lease table: a fenced commit lands only while its
/// token is the sync's current one.
struct Fencing {
    store: Store,
    tokens: Mutex<HashMap<String, u64>>,
}

impl Fencing {
    /// Another worker claims `sync`: its token moves on.
    fn claim(&self, sync: &str) -> Claim {
        let mut tokens = self.tokens.lock().unwrap();
        let fence = tokens.entry(sync.to_string()).or_default();
        *fence += 1;
        Claim {
            sync: sync.to_string(),
            fence: *fence,
        }
    }
}

#[async_trait::async_trait]
impl CheckpointStore for Fencing {
    fn location(&self) -> String {
        self.store.location()
    }
    async fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        if let Some((sync, fence)) = commit.fence() {
            let current = self.tokens.lock().unwrap().get(sync).copied();
            if current != Some(fence) {
                return Err(StoreError::LeaseLost {
                    sync: sync.to_string(),
                    fence,
                });
            }
        }
        CheckpointStore::commit(&self.store, commit).await
    }
    fn commit_blocking(&self, commit: Commit) -> Result<(), StoreError> {
        self.store.commit_blocking(commit)
    }
    async fn read_with(&self, reads: Reads) -> Result<(), StoreError> {
        self.store.read_with(reads).await
    }
    fn writer_stats(&self) -> WriterStats {
        self.store.writer_stats()
    }
}

/// A lease that will not run out during the test.
fn far() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

#[tokio::test]
async fn a_worker_that_lost_its_lease_cannot_write_and_the_new_owner_looks_up() {
    let store = Arc::new(Fencing {
        store: Store::temporary().unwrap(),
        tokens: Mutex::new(HashMap::new()),
    });
    let shared: Arc<dyn CheckpointStore> = store.clone();
    let old = Runner::<Sender>::new(shared.clone(), Arc::new(SystemClock));
    let new = Runner::<Sender>::new(shared.clone(), Arc::new(SystemClock));
    let state = State {
        sent: Vec::new(),
        total: 3,
    };
    old.start("s", state, BTreeMap::new(), &[]).await.unwrap();
    let mail = Mailer::default();

    // The first worker holds the sync and sends m0.
    old.hold(&store.claim("s"), far());
    old.step("s", &mail).await.expect("m0 sent and recorded");
    assert_eq!(old.get("s").await.unwrap().record.seq, 1);

    // It pauses; its lease runs out and the second worker claims the sync.
    new.hold(&store.claim("s"), far());

    // The first worker wakes up and sends m1, but cannot record it.
    let refused = old.step("s", &mail).await;
    assert!(
        matches!(
            refused,
            Err(RunError::Store(StoreError::LeaseLost { ref sync, fence: 1 })) if sync == "s"
        ),
        "{refused:?}"
    );
    assert_eq!(
        new.get("s").await.unwrap().record.seq,
        1,
        "nothing of the refused commit was written"
    );

    // Stepping it again from the old runner is refused as well, and sends
    // nothing: that runner no longer trusts its memory of the sync, so the
    // step is the look-up, whose commit the fence stops.
    let again = old.step("s", &mail).await;
    assert!(
        matches!(again, Err(RunError::Store(StoreError::LeaseLost { .. }))),
        "{again:?}"
    );
    assert_eq!(*mail.sends.lock().unwrap(), [0, 1]);

    // The new owner did not write the state it resumes from, so m1 may have
    // been sent: it is looked up (Found), not sent again.
    let t = match new.step("s", &mail).await.unwrap() {
        Step::Transitioned(t) => t,
        other => panic!("expected a transition, got {other:?}"),
    };
    assert!(t.effect.is_none(), "the look-up replaced the send");
    let done = new.run("s", &mail).await.unwrap();
    assert_eq!(done.record.status, Status::Succeeded);
    assert_eq!(done.state.sent, ["m0", "m1", "m2"]);
    assert_eq!(
        *mail.sends.lock().unwrap(),
        [0, 1, 2],
        "each message sent once: m0 and m1 by the old owner, m2 by the new"
    );
}

#[tokio::test]
async fn no_effect_starts_once_the_lease_may_have_run_out() {
    let store = Arc::new(Fencing {
        store: Store::temporary().unwrap(),
        tokens: Mutex::new(HashMap::new()),
    });
    let runner = Runner::<Sender>::new(
        store.clone() as Arc<dyn CheckpointStore>,
        Arc::new(SystemClock),
    );
    let state = State {
        sent: Vec::new(),
        total: 2,
    };
    runner
        .start("s", state, BTreeMap::new(), &[])
        .await
        .unwrap();
    let mail = Mailer::default();
    // Held, but the lease's time is up (the worker was paused past it):
    // nothing is sent, nothing is written, even though no one else has
    // claimed the sync yet.
    runner.hold(&store.claim("s"), Instant::now());
    let refused = runner.step("s", &mail).await;
    assert!(
        matches!(
            refused,
            Err(RunError::Store(StoreError::LeaseLost { fence: 1, .. }))
        ),
        "{refused:?}"
    );
    assert!(
        mail.sends.lock().unwrap().is_empty(),
        "no send after the lease's time"
    );
    assert_eq!(runner.get("s").await.unwrap().record.seq, 0);

    // Renewed: the work goes on. The runner no longer trusts its memory of
    // a sync whose lease ran out (another worker may have moved it on), so
    // m0 is looked up, not sent; m1 is sent.
    runner.hold(
        &Claim {
            sync: "s".into(),
            fence: 1,
        },
        far(),
    );
    let done = runner.run("s", &mail).await.unwrap();
    assert_eq!(done.state.sent, ["m0", "m1"]);
    assert_eq!(*mail.sends.lock().unwrap(), [1]);
}

/// Sends after waiting at a gate (a rate limiter, say): the send itself is
/// counted only once the gate opens.
struct Gated {
    gate: tokio::sync::Semaphore,
    waiting: tokio::sync::Notify,
    sends: Mutex<Vec<usize>>,
}

#[async_trait::async_trait]
impl Effects<Sender> for Gated {
    async fn perform(&self, _sync: &str, n: &usize) -> (Outcome, Commit) {
        self.waiting.notify_one();
        self.gate.acquire().await.expect("open").forget();
        self.sends.lock().unwrap().push(*n);
        (Outcome::Sent(format!("m{n}")), Commit::new())
    }
}

#[tokio::test]
async fn an_effect_waiting_across_its_lease_deadline_is_dropped_before_it_sends() {
    let store = Arc::new(Fencing {
        store: Store::temporary().unwrap(),
        tokens: Mutex::new(HashMap::new()),
    });
    let runner = Arc::new(Runner::<Sender>::new(
        store.clone() as Arc<dyn CheckpointStore>,
        Arc::new(SystemClock),
    ));
    let state = State {
        sent: Vec::new(),
        total: 1,
    };
    runner
        .start("s", state, BTreeMap::new(), &[])
        .await
        .unwrap();
    let gated = Arc::new(Gated {
        gate: tokio::sync::Semaphore::new(0),
        waiting: tokio::sync::Notify::new(),
        sends: Mutex::new(Vec::new()),
    });
    // The lease lasts 100 ms from now and is not renewed.
    runner.hold(
        &store.claim("s"),
        Instant::now() + Duration::from_millis(100),
    );
    let step = tokio::spawn({
        let (runner, gated) = (runner.clone(), gated.clone());
        async move { runner.step("s", gated.as_ref()).await }
    });
    gated.waiting.notified().await;
    // The effect waits at its gate past the deadline; then the gate opens.
    tokio::time::sleep(Duration::from_millis(200)).await;
    gated.gate.add_permits(1);
    let refused = step.await.unwrap();
    assert!(
        matches!(
            refused,
            Err(RunError::Store(StoreError::LeaseLost { fence: 1, .. }))
        ),
        "{refused:?}"
    );
    assert!(
        gated.sends.lock().unwrap().is_empty(),
        "the effect was dropped before it sent"
    );
    assert_eq!(
        runner.get("s").await.unwrap().record.seq,
        0,
        "nothing written"
    );
}
