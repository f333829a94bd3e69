//! Cancellation lands at a step boundary: an effect in flight completes and
//! is recorded first, the request survives a restart, and a cancelled sync
//! keeps what it learnt.

use std::collections::BTreeMap;
use std::sync::Arc;

use adsync_engine::{
    Cancel, CheckpointCodec, Commit, Context, Effects, Machine, Next, RunError, Runner, Status,
    Step, Store, SystemClock, TransitionError,
};
use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore};

/// Sends `total` messages one at a time; cancellable while sending.
struct Mailing;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct State {
    sent: Vec<String>,
    total: usize,
    cancelled: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Outcome {
    Sent(String),
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, strum::Display)]
enum Phase {
    Sending,
    Done,
    Cancelled,
}

impl Machine for Mailing {
    const KIND: &'static str = "mailing";
    const STATE_VERSION: u32 = 1;
    type State = State;
    type Effect = usize;
    type Outcome = Outcome;
    type Phase = Phase;

    fn phase(state: &State) -> Phase {
        if state.cancelled {
            Phase::Cancelled
        } else if state.sent.len() == state.total {
            Phase::Done
        } else {
            Phase::Sending
        }
    }
    fn next(state: &State) -> Next<usize> {
        match Self::phase(state) {
            Phase::Sending => Next::Effect(state.sent.len()),
            Phase::Done => Next::Settled(Status::Succeeded),
            Phase::Cancelled => Next::Settled(Status::Cancelled),
        }
    }
    fn transition(state: &State, outcome: &Outcome, _: &Context) -> Result<State, TransitionError> {
        if Self::phase(state) != Phase::Sending {
            return Err(TransitionError {
                machine: Self::KIND,
                phase: Self::phase(state).to_string(),
                outcome: format!("{outcome:?}"),
                reason: "finished".into(),
            });
        }
        let mut next = state.clone();
        match outcome {
            Outcome::Sent(id) => next.sent.push(id.clone()),
            Outcome::Cancelled => next.cancelled = true,
        }
        Ok(next)
    }
    fn on_restart(_: &State) -> Option<Outcome> {
        None
    }
    fn on_cancel(state: &State) -> Option<Outcome> {
        (Self::phase(state) == Phase::Sending).then_some(Outcome::Cancelled)
    }
}

impl CheckpointCodec for Mailing {}

/// A mail server whose sends can be held until the test lets them go.
struct Mailer {
    started: Notify,
    release: Semaphore,
}

#[async_trait::async_trait]
impl Effects<Mailing> for Mailer {
    async fn perform(&self, _sync: &str, n: &usize) -> (Outcome, Commit) {
        self.started.notify_one();
        self.release.acquire().await.expect("open").forget();
        (Outcome::Sent(format!("m{n}")), Commit::new())
    }
}

fn mailer(released: usize) -> Arc<Mailer> {
    Arc::new(Mailer {
        started: Notify::new(),
        release: Semaphore::new(released),
    })
}

async fn start(runner: &Runner<Mailing>, id: &str, total: usize) {
    let state = State {
        sent: Vec::new(),
        total,
        cancelled: false,
    };
    runner
        .start(id, state, BTreeMap::new(), &[])
        .await
        .expect("starts");
}

#[tokio::test]
async fn an_idle_sync_is_cancelled_at_once_and_keeps_what_it_did() {
    let runner = Runner::<Mailing>::new(Store::temporary().unwrap(), Arc::new(SystemClock));
    start(&runner, "s", 3).await;
    let mail = mailer(1);
    runner.step("s", mail.as_ref()).await.expect("one send");

    let Cancel::Cancelled(t) = runner.cancel("s").await.expect("cancels") else {
        panic!("no step was in flight: the cancel is immediate");
    };
    assert_eq!((t.from, t.to), (Phase::Sending, Phase::Cancelled));
    assert!(t.effect.is_none(), "no effect ran for the cancel");
    let done = runner.get("s").await.unwrap();
    assert_eq!(done.record.status, Status::Cancelled);
    assert_eq!(
        done.state.sent,
        vec!["m0".to_string()],
        "what was sent is kept"
    );
    assert!(matches!(
        runner.step("s", mail.as_ref()).await.unwrap(),
        Step::Settled(Status::Cancelled)
    ));
    assert!(matches!(
        runner.cancel("s").await.unwrap(),
        Cancel::AlreadySettled(Status::Cancelled)
    ));
}

#[tokio::test]
async fn a_cancel_during_an_effect_lands_after_the_effect_is_recorded() {
    let runner = Arc::new(Runner::<Mailing>::new(
        Store::temporary().unwrap(),
        Arc::new(SystemClock),
    ));
    start(&runner, "s", 3).await;
    let mail = mailer(0);
    let run = tokio::spawn({
        let (runner, mail) = (runner.clone(), mail.clone());
        async move { runner.run("s", mail.as_ref()).await }
    });
    mail.started.notified().await;

    assert!(matches!(
        runner.cancel("s").await.expect("requested"),
        Cancel::Requested
    ));
    mail.release.add_permits(10);
    let done = run.await.unwrap().expect("the run ends");
    assert_eq!(done.record.status, Status::Cancelled);
    assert_eq!(
        done.state.sent,
        vec!["m0".to_string()],
        "the send in flight completed and was recorded; no other started"
    );
    let history = runner.history("s").await.unwrap();
    let outcomes: Vec<_> = history.iter().map(|h| h.outcome.as_str()).collect();
    assert_eq!(outcomes.len(), 3, "{outcomes:?}");
}

#[tokio::test]
async fn a_cancel_request_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let runner = Arc::new(Runner::<Mailing>::new(
            Store::open(&path).unwrap(),
            Arc::new(SystemClock),
        ));
        start(&runner, "s", 3).await;
        let mail = mailer(0);
        let step = tokio::spawn({
            let (runner, mail) = (runner.clone(), mail.clone());
            async move { runner.step("s", mail.as_ref()).await }
        });
        mail.started.notified().await;
        assert!(matches!(
            runner.cancel("s").await.unwrap(),
            Cancel::Requested
        ));
        // The process dies with the send in flight: its outcome is never recorded.
        step.abort();
        let _ = step.await;
        runner.store().close();
    }
    let runner = Runner::<Mailing>::new(Store::open(&path).unwrap(), Arc::new(SystemClock));
    let mail = mailer(10);
    let done = runner.run("s", mail.as_ref()).await.expect("runs");
    assert_eq!(done.record.status, Status::Cancelled);
    assert!(done.state.sent.is_empty(), "nothing more was sent");
}

#[tokio::test]
async fn a_finished_or_unknown_sync_is_not_cancelled() {
    let runner = Runner::<Mailing>::new(Store::temporary().unwrap(), Arc::new(SystemClock));
    start(&runner, "s", 0).await;
    // Zero messages: the sync is done before any step.
    assert!(matches!(
        runner.cancel("s").await.unwrap(),
        Cancel::AlreadySettled(Status::Succeeded)
    ));
    assert!(matches!(
        runner.cancel("nope").await,
        Err(RunError::UnknownSync(_))
    ));
}

#[tokio::test]
async fn a_request_that_outlived_its_sync_is_withdrawn_and_never_cancels_a_later_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db");
    {
        let runner = Arc::new(Runner::<Mailing>::new(
            Store::open(&path).unwrap(),
            Arc::new(SystemClock),
        ));
        start(&runner, "s", 1).await;
        let mail = mailer(0);
        let step = tokio::spawn({
            let (runner, mail) = (runner.clone(), mail.clone());
            async move { runner.step("s", mail.as_ref()).await }
        });
        mail.started.notified().await;
        // The last send is in flight: the request waits for the boundary...
        assert!(matches!(
            runner.cancel("s").await.unwrap(),
            Cancel::Requested
        ));
        mail.release.add_permits(1);
        step.await.unwrap().expect("the last send is recorded");
        // ...which never comes: the process ends with the sync finished.
        runner.store().close();
    }
    let store = (0..100)
        .find_map(|_| {
            Store::open(&path)
                .map_err(|_| std::thread::sleep(std::time::Duration::from_millis(20)))
                .ok()
        })
        .expect("reopens");
    let runner = Arc::new(Runner::<Mailing>::new(store, Arc::new(SystemClock)));
    assert_eq!(
        runner.get("s").await.unwrap().record.status,
        Status::Succeeded
    );
    assert_eq!(runner.withdraw_stale_cancels().await.unwrap(), 1);
    assert_eq!(runner.withdraw_stale_cancels().await.unwrap(), 0);
    // A pending request of an unfinished sync is kept.
    start(&runner, "t", 2).await;
    let mail = mailer(0);
    let step = tokio::spawn({
        let (runner, mail) = (runner.clone(), mail.clone());
        async move { runner.step("t", mail.as_ref()).await }
    });
    mail.started.notified().await;
    assert!(matches!(
        runner.cancel("t").await.unwrap(),
        Cancel::Requested
    ));
    assert_eq!(runner.withdraw_stale_cancels().await.unwrap(), 0);
    mail.release.add_permits(10);
    step.await.unwrap().expect("step");
    let end = runner.run("t", mail.as_ref()).await.unwrap();
    assert_eq!(
        end.record.status,
        Status::Cancelled,
        "the live request still lands"
    );
}
