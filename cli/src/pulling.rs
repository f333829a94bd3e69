//! Pulls shared by `adsync pull`, `adsync resume` and `adsync show`/`status`:
//! building the puller a real pull runs through, running one to its end,
//! resuming one from its checkpoint, printing statuses.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use adsync::amazon::{AmazonClient, AmazonConfig, ListKind, DEFAULT_HOST};
use adsync::Machine;
use adsync::StopSignal;
use adsync::{Clock, SystemClock};
use adsync::{PullMachine, PullMode, PullStatus, Puller, SyncState};
use adsync::{Record, Store};

use crate::activity::{Activity, Watch};
use crate::exit::Exit;
use crate::failure::Failure;
use crate::format::{rfc3339, rfc3339_or_dash};
use crate::signals::Interrupts;

/// The host as the client uses it (no trailing slash).
pub fn client_host(host: &str) -> String {
    host.trim_end_matches('/').to_string()
}

/// The puller every real pull runs through (`pull`, `resume`): an Amazon
/// client of `config` with the CLI's request timeout, the system clock, and
/// a runner that stops at the next step once `stop` is given (and, with
/// `test-hooks`, crashes where `ADSYNC_TEST_CRASH_AT` says). A pull it
/// creates records the client's host, so that `resume` needs no `--host`.
///
/// The client is built before `store` is awaited, so a client that cannot be
/// built is a usage error that leaves no store behind. Also returns a clone of
/// the client (same limiter and counters), for the progress display.
pub async fn open_puller(
    config: AmazonConfig,
    store: impl Future<Output = Result<impl adsync::IntoStore, Failure>>,
    stop: &StopSignal,
) -> Result<(Puller, AmazonClient), Failure> {
    // `with_host` already dropped a trailing slash: this is `client_host`.
    let host = config.host.clone();
    let client = AmazonClient::new(config.with_timeout(Duration::from_secs(30)))
        .map_err(|e| Failure::usage(e.to_string()))?;
    let store = store.await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let watched = client.clone();
    let puller = Puller::new(store, client, clock)
        .with_runner(|mut runner| {
            if let Some(hook) = crate::crash_hook::crash_hook_from_env() {
                runner = runner.with_hook(hook);
            }
            runner.with_stop(stop.clone())
        })
        .with_labels(std::collections::BTreeMap::from([(
            "host".to_string(),
            host,
        )]));
    Ok((puller, watched))
}

/// `adsync resume` of pull sync `id`: host and profile from its checkpoint,
/// credentials from the environment only. Missing credentials are a usage
/// error (exit 2) naming the variables.
///
/// The pull stops at the next step boundary once `interrupts` has seen a signal;
/// the caller prints how to continue.
pub async fn resume(
    store: Store,
    id: &str,
    json: bool,
    interrupts: &Interrupts,
) -> Result<Exit, Failure> {
    let key = id.to_string();
    let record = store
        .blocking(move |store| store.record(&key))
        .await
        .map_err(Failure::from)?
        .map_err(Failure::from)?
        .ok_or_else(|| Failure::usage(format!("no sync `{id}` in {}", store.path().display())))?;
    let Some(profile) = record.labels.get("profile").cloned() else {
        return Err(Failure::usage(format!("pull `{id}` names no profile")));
    };
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    let (Some(client_id), Some(token)) =
        (env("ADSYNC_AMAZON_CLIENT_ID"), env("ADSYNC_AMAZON_TOKEN"))
    else {
        return Err(Failure::usage(
            "needs Amazon credentials: set ADSYNC_AMAZON_TOKEN and ADSYNC_AMAZON_CLIENT_ID",
        ));
    };
    let host = match (record.labels.get("host"), env("ADSYNC_AMAZON_HOST")) {
        (Some(recorded), Some(given)) if client_host(&given) != *recorded => {
            return Err(Failure::usage(format!(
                "pull `{id}` was made from {recorded}, but ADSYNC_AMAZON_HOST is {given}: unset it or set it to {recorded}"
            )))
        }
        (Some(recorded), _) => recorded.clone(),
        (None, Some(given)) => given,
        (None, None) => DEFAULT_HOST.to_string(),
    };
    let config = AmazonConfig::new(client_id, token).with_host(host);
    let (puller, client) = open_puller(
        config,
        std::future::ready(Ok(store)),
        interrupts.stop_signal(),
    )
    .await?;
    run_pull(
        &puller,
        &client,
        &profile,
        PullMode::ResumeOrStart,
        json,
        interrupts,
    )
    .await
}

/// Runs `profile`'s pull to its end (or to the stop a signal asks for),
/// printing phase changes and failures; every 100th page too when stderr is
/// not a terminal, a live progress line on stderr when it is. A signal
/// decides the exit. `client` is the puller's client (rate, 429s).
pub async fn run_pull(
    puller: &Puller,
    client: &AmazonClient,
    profile: &str,
    mode: PullMode,
    json: bool,
    interrupts: &Interrupts,
) -> Result<Exit, Failure> {
    use std::io::IsTerminal as _;
    let live = (!json && std::io::stderr().is_terminal()).then(|| LiveProgress::new(client));
    let status = puller
        .pull_observed(profile, mode, &|t| {
            let line = || {
                format!(
                    "[{}] #{} {} → {}: {}",
                    t.sync,
                    t.seq,
                    t.from,
                    t.to,
                    PullMachine::describe_outcome(&t.outcome)
                )
            };
            let notable = t.from != t.to || PullMachine::is_failure(&t.outcome);
            match &live {
                Some(live) => {
                    if notable {
                        live.bar.suspend(|| outln!("{}", line()));
                    }
                    live.update(t);
                }
                // Phase changes, failures, and every 100th page as progress.
                None if !json && (notable || t.seq % 100 == 0) => outln!("{}", line()),
                None => {}
            }
        })
        .await;
    if let Some(live) = &live {
        live.bar.finish_and_clear();
    }
    let status = match status {
        Ok(status) => status,
        Err(e) => {
            // A stop surfaces as the run's error; the signal decides the code.
            return match interrupts.signalled() {
                Some(code) => Ok(code),
                None => Err(e.into()),
            };
        }
    };
    print_statuses(std::slice::from_ref(&status), json);
    let code = match status.state {
        SyncState::Completed | SyncState::Cancelled => Exit::Ok,
        _ => Exit::SyncFailed,
    };
    Ok(interrupts.signalled().unwrap_or(code))
}

/// What the live progress line of a pull shows at one transition (see
/// [`progress_line`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ProgressView {
    /// The pull's phase (`FetchingKeywords`, `Persisting`, …).
    pub phase: String,
    /// Pages staged in this pull, all kinds.
    pub pages: u64,
    /// Entities staged in this pull, all kinds.
    pub entities: u64,
    /// Entities of the kind being fetched, and its `totalResults` when the
    /// platform gave one.
    pub kind: Option<(String, u64, Option<u64>)>,
    /// Requests per second the limiter allows now.
    pub rate: f64,
    /// 429 answers so far (retried ones included).
    pub throttled: u64,
    /// Estimated time left for the kind being fetched, when its total is known.
    pub eta: Option<Duration>,
}

/// The live progress line: phase, pages and entities (against `totalResults`
/// where known), request rate, 429s and the time left.
pub fn progress_line(p: &ProgressView) -> String {
    let mut line = format!("{}: {} pages, {} entities", p.phase, p.pages, p.entities);
    if let Some((kind, fetched, total)) = &p.kind {
        match total {
            Some(total) => line.push_str(&format!(" ({kind} {fetched} of {total})")),
            None => line.push_str(&format!(" ({kind} {fetched})")),
        }
    }
    line.push_str(&format!(" · {:.0} req/s · {} × 429", p.rate, p.throttled));
    if let Some(eta) = p.eta {
        line.push_str(&format!(" · ~{}s left", eta.as_secs()));
    }
    line
}

/// The progress bar of a pull on a terminal, and what it needs to estimate
/// the time left: each kind's `totalResults` and when its fetch started.
struct LiveProgress {
    bar: indicatif::ProgressBar,
    client: AmazonClient,
    /// Per kind: `totalResults` (when given), the entities staged when this
    /// run first saw the kind, and when.
    kinds: parking_lot::Mutex<std::collections::HashMap<ListKind, KindStart>>,
}

/// A kind's `totalResults` (when given), the entities staged when this run
/// first saw it, and when.
type KindStart = (Option<u64>, u64, std::time::Instant);

impl LiveProgress {
    fn new(client: &AmazonClient) -> Self {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        LiveProgress {
            bar,
            client: client.clone(),
            kinds: parking_lot::Mutex::new(std::collections::HashMap::new()),
        }
    }

    fn update(&self, t: &adsync::Transition<PullMachine>) {
        let state = &t.state;
        let mut kind = None;
        let mut eta = None;
        if let adsync::PullOutcome::PageFetched {
            kind: k,
            total_results,
            ..
        } = &t.outcome
        {
            let fetched = state.fetched.get(*k);
            let mut kinds = self.kinds.lock();
            let entry = kinds
                .entry(*k)
                .or_insert((None, fetched, std::time::Instant::now()));
            if total_results.is_some() {
                entry.0 = *total_results;
            }
            let (total, from, since) = *entry;
            let elapsed = since.elapsed().as_secs_f64();
            let done = fetched.saturating_sub(from);
            if let Some(total) = total {
                if done > 0 && elapsed > 0.0 {
                    let left = total.saturating_sub(fetched) as f64 * elapsed / done as f64;
                    eta = Some(Duration::from_secs_f64(left));
                }
            }
            let name = match k {
                ListKind::Campaigns => "campaigns",
                ListKind::AdGroups => "ad groups",
                ListKind::Keywords => "keywords",
            };
            kind = Some((name.to_string(), fetched, total));
        }
        self.bar.set_message(progress_line(&ProgressView {
            phase: t.to.to_string(),
            pages: state.pages.total(),
            entities: state.fetched.total(),
            kind,
            rate: self.client.current_rate(),
            throttled: self.client.throttled_count(),
            eta,
        }));
    }
}

/// A pull's status as `status` and `show` print it: the status its
/// checkpoint tells, and who works on it now (see [`crate::activity`]).
pub struct ShownPull {
    /// What the checkpoint says.
    pub status: PullStatus,
    /// Who works on it: nobody (interrupted, or waiting for a new owner on a
    /// shared store), a daemon, or it is settled.
    pub activity: Activity,
}

impl ShownPull {
    /// The pull status of `record`; `None` if it is no pull checkpoint this
    /// version can decode.
    pub fn from_record(record: &Record, watch: &Watch) -> Option<Self> {
        if record.kind != PullMachine::KIND {
            return None;
        }
        let activity = watch.of(record);
        let status = PullStatus::from_record(record.clone()).ok()?;
        Some(ShownPull { status, activity })
    }

    /// The state as printed: `interrupted` instead of `syncing` for a pull
    /// nobody works on; on a shared store, the daemon working on it.
    pub fn state(&self) -> String {
        self.activity.shown(&self.status.state.to_string())
    }

    /// The status's JSON, with `state` as printed, the checkpoint's own
    /// state as `recorded_state`, and `interrupted_at` (RFC 3339, or `null`
    /// unless interrupted) for scripts to test.
    pub fn json(&self) -> serde_json::Value {
        let mut value = serde_json::to_value(&self.status).unwrap_or_default();
        if let Some(map) = value.as_object_mut() {
            let recorded = map.get("state").cloned().unwrap_or_default();
            map.insert("recorded_state".to_string(), recorded);
            map.insert("state".to_string(), self.state().into());
            map.insert(
                "interrupted_at".to_string(),
                self.activity.interrupted_at().map(rfc3339).into(),
            );
            map.insert("lease".to_string(), self.activity.lease_json());
        }
        value
    }
}

/// Prints pull statuses as `status` and `show` do: a few lines each, or one
/// JSON array; an interrupted pull says so, with its last checkpoint's time
/// and the command that continues it.
pub fn print_shown(pulls: &[ShownPull], json: bool) {
    if json {
        let values: Vec<_> = pulls.iter().map(ShownPull::json).collect();
        outln!(
            "{}",
            serde_json::to_string_pretty(&values).unwrap_or_default()
        );
        return;
    }
    for p in pulls {
        print_lines(&p.status, &p.state());
        if let Some(next) = p.activity.next_step(&p.status.sync) {
            outln!("  {next}");
        }
    }
}

/// Prints pull statuses: a few lines each, or one JSON array.
pub fn print_statuses(statuses: &[PullStatus], json: bool) {
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(statuses).unwrap_or_default()
        );
        return;
    }
    for s in statuses {
        print_lines(s, &s.state.to_string());
    }
}

/// The lines of one pull status, with `state` as it is to be shown.
fn print_lines(s: &PullStatus, state: &str) {
    outln!(
        "{} ({} profile {}): {} (phase {}, pull #{})",
        s.sync,
        s.platform,
        s.profile_id,
        state,
        s.phase,
        s.run
    );
    outln!(
        "  started {}  finished {}  last success {}",
        rfc3339_or_dash(Some(s.started_at)),
        rfc3339_or_dash(s.finished_at),
        rfc3339_or_dash(s.last_success_at)
    );
    match &s.counts {
        Some(c) => outln!("  persisted: {c}"),
        None => outln!("  persisted: nothing yet"),
    }
    outln!(
        "  this pull: {} pages, {} entities staged",
        s.pages.total(),
        s.fetched.total()
    );
    if let Some(e) = &s.last_error {
        outln!("  last error: {e}");
    }
}

/// The pull syncs among a store's readable records, for `adsync status`.
pub fn pull_statuses(records: &[Record], watch: &Watch) -> Vec<ShownPull> {
    records
        .iter()
        .filter_map(|r| ShownPull::from_record(r, watch))
        .collect()
}

/// The pull section of `adsync status` (human output).
pub fn print_pull_section(records: &[Record], watch: &Watch) {
    let pulls = pull_statuses(records, watch);
    if !pulls.is_empty() {
        outln!("\npull syncs:");
        print_shown(&pulls, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_progress_line_shows_phase_counts_total_rate_429s_and_time_left() {
        let view = ProgressView {
            phase: "FetchingKeywords".into(),
            pages: 40,
            entities: 38_000,
            kind: Some(("keywords".into(), 16_000, Some(500_000))),
            rate: 12.4,
            throttled: 3,
            eta: Some(Duration::from_secs(95)),
        };
        assert_eq!(
            progress_line(&view),
            "FetchingKeywords: 40 pages, 38000 entities (keywords 16000 of 500000) · 12 req/s · 3 × 429 · ~95s left"
        );
        let unknown = ProgressView {
            kind: Some(("campaigns".into(), 100, None)),
            eta: None,
            ..view.clone()
        };
        assert_eq!(
            progress_line(&unknown),
            "FetchingKeywords: 40 pages, 38000 entities (campaigns 100) · 12 req/s · 3 × 429"
        );
        let persisting = ProgressView {
            phase: "Persisting".into(),
            kind: None,
            eta: None,
            ..view
        };
        assert_eq!(
            progress_line(&persisting),
            "Persisting: 40 pages, 38000 entities · 12 req/s · 3 × 429"
        );
    }
}
