//! `--store postgres://…`: `adsync migrate`, and two `adsync daemon`
//! processes sharing one throwaway PostgreSQL database, pushing to the fake
//! Reddit server through either. Every entity exists once, every sync is
//! readable through both daemons, and the password never appears. Then the
//! torture: three daemons killed, restarted and one paused past its lease,
//! checked from the fake's request log and the daemons' lease log lines.

use std::process::Stdio;
use std::time::{Duration, Instant};

use adsync_fakes::fixtures::EXAMPLE_SET_JSON;
use adsync_fakes::postgres::TestServer;
use adsync_fakes::reddit::{FakeReddit, FakeRedditConfig};
use serde_json::Value;

mod common;

use common::shared_store::{
    adsync_cmd as adsync, password_of, run_cmd as run, Daemon, REDDIT_TOKEN,
};

#[test]
fn migrate_needs_a_store_applies_once_and_never_prints_the_password() {
    let (code, _, err) = run(&mut adsync(&["migrate"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--store"), "{err}");

    let (code, _, err) = run(&mut adsync(&["--store", "/var/lib/adsync", "migrate"]));
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("postgres://"), "{err}");

    // Nothing listens on port 1: exit 4, the store named, no password.
    let (code, _, err) = run(&mut adsync(&[
        "--store",
        "postgres://someone:secret-pw@127.0.0.1:1/adsync",
        "migrate",
    ]));
    assert_eq!(code, Some(4), "{err}");
    assert!(err.contains("127.0.0.1:1"), "{err}");
    assert!(!err.contains("secret-pw"), "{err}");

    let server = TestServer::start();
    let url = server.url();
    let password = password_of(&url);
    let (code, out, err) = run(&mut adsync(&["--store", &url, "migrate"]));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("schema version 0 → 1"), "{out}");
    assert!(!out.contains(&password) && !err.contains(&password));
    let (code, out, err) = run(adsync(&["migrate"]).env("ADSYNC_STORE_URL", &url));
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("schema version 1 already"), "{out}");

    // Commands that run syncs leave that to the daemons, and say how to reach one.
    let (code, _, err) = run(&mut adsync(&[
        "--store",
        &url,
        "push",
        "set.json",
        "--account",
        "a2_x",
    ]));
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("the daemons on that store run them") && err.contains("--daemon"),
        "{err}"
    );
    assert!(!err.contains(&password), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_daemons_on_one_database_push_through_either_and_create_each_entity_once() {
    let server = TestServer::start();
    let url = server.url();
    let reddit = FakeReddit::start(FakeRedditConfig {
        token: REDDIT_TOKEN.into(),
        reads_per_window: 100_000,
        writes_per_window: 100_000,
        ..FakeRedditConfig::default()
    })
    .await
    .expect("fake reddit");
    let dir = tempfile::tempdir().expect("dir");
    let a = Daemon::start(&url, &reddit.base_url(), dir.path(), &[]);
    let b = Daemon::start(&url, &reddit.base_url(), dir.path(), &[]);

    let accounts: Vec<String> = (0..6).map(|n| format!("a2_acct{n}")).collect();
    for (n, account) in accounts.iter().enumerate() {
        let via = if n % 2 == 0 { &a } else { &b };
        let body = format!(
            "{{\"account\": \"{account}\", \"platform\": \"reddit\", \"set\": {EXAMPLE_SET_JSON}}}"
        );
        let (status, answer) = via
            .json(reqwest::Method::POST, "/v1/pushes", Some(body))
            .await;
        assert_eq!(status, 202, "{answer}");
    }

    // Both daemons read the same store: wait on one, check on the other.
    let deadline = Instant::now() + Duration::from_secs(60);
    let syncs = loop {
        let (status, body) = a.json(reqwest::Method::GET, "/v1/syncs", None).await;
        assert_eq!(status, 200, "{body}");
        let syncs = body["syncs"].as_array().expect("syncs").clone();
        if !syncs.is_empty() && syncs.iter().all(|s| s["status"] != "running") {
            break syncs;
        }
        assert!(Instant::now() < deadline, "still running: {syncs:#?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let per_set = adsync_fakes::fixtures::example_set().campaigns.len();
    assert_eq!(syncs.len(), accounts.len() * per_set);
    for sync in &syncs {
        assert_eq!(sync["status"], "succeeded", "{sync:#}");
        let id = sync["id"].as_str().expect("id");
        let (status, seen) = b
            .json(reqwest::Method::GET, &format!("/v1/syncs/{id}"), None)
            .await;
        assert_eq!((status, &seen["status"]), (200, &sync["status"]));
    }
    let held = reddit.entities();
    assert!(held.duplicates().is_empty(), "{:?}", held.duplicates());
    let set = adsync_fakes::fixtures::example_set();
    let per_account: usize = set
        .campaigns
        .iter()
        .map(|c| 1 + c.ad_groups.iter().map(|g| 1 + g.ads.len()).sum::<usize>())
        .sum();
    assert_eq!(held.len(), accounts.len() * per_account);
}

/// How long the torture's daemons hold a lease without renewing it.
const TORTURE_TTL: Duration = Duration::from_secs(2);

/// A torture daemon's `User-Agent` is this and its name: the fake's request
/// log names the sender of every request by it.
const TORTURE_UA: &str = "adsync-torture/";

/// How long a create may take, at most, from the runner's hand-off to its
/// HTTP connection to its arrival in the fake's handler, unless its sender is
/// stopped meanwhile: this machine's scheduling delays only (the worker's
/// connection task writing it, loopback, the fake's runtime reading it, on a
/// busy machine), with room. The 90% deadline leaves 0.1 ttl more (see
/// [`creates_after_takeover`]).
const TRANSIT: Duration = Duration::from_millis(500);

/// Starts a torture daemon on the shared store with short leases: `name` is
/// its owner in the leases and its User-Agent; its claims and releases go to
/// `<dir>/<name>.log`.
fn torture_daemon(store: &str, reddit: &str, dir: &std::path::Path, name: &str) -> Daemon {
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).expect("a log file");
    let ttl = format!("{}s", TORTURE_TTL.as_secs());
    Daemon::spawn(
        store,
        reddit,
        dir,
        &[
            "--lease-ttl",
            &ttl,
            "--claim-every",
            "100ms",
            "--shutdown-timeout",
            "1s",
            "--owner",
            name,
        ],
        |command| {
            command
                .env("ADSYNC_REDDIT_USER_AGENT", format!("{TORTURE_UA}{name}"))
                // Warnings as usual, and the lease lines the check reads.
                .env("RUST_LOG", "adsync=warn,adsync::worker::lease=info")
                .stderr(Stdio::from(log));
        },
    )
}

/// Prints the daemons' warnings and errors (the last lines of each log in
/// `dir`) when the test fails: their stderr goes to files, which the failed
/// test's temporary directory takes along.
struct LogsOnFailure<'a>(&'a std::path::Path);

impl Drop for LogsOnFailure<'_> {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            return;
        }
        let Ok(entries) = std::fs::read_dir(self.0) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "log") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            let lines: Vec<&str> = text.lines().filter(|l| !l.contains(" INFO ")).collect();
            let tail = &lines[lines.len().saturating_sub(20)..];
            if tail.is_empty() {
                continue;
            }
            eprintln!("--- {} (last warnings and errors)", path.display());
            for line in tail {
                eprintln!("{line}");
            }
        }
    }
}

/// A small xorshift, seeded from the clock (printed) or ADSYNC_TORTURE_SEED.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Nanoseconds since the epoch, this machine's wall clock: what the daemons'
/// log lines, the fake's request log and PostgreSQL's `now()` all read.
fn nanos(rfc3339: &str) -> i128 {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("not an RFC 3339 time ({e}): {rfc3339}"))
        .unix_timestamp_nanos()
}

fn now_nanos() -> i128 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos()
}

fn span(d: Duration) -> i128 {
    i128::try_from(d.as_nanos()).expect("a short duration")
}

/// A claim or a release of a sync's lease, as a daemon logged it.
#[derive(Debug, Clone)]
struct LeaseEvent {
    /// When it was logged: after the store answered.
    at: i128,
    worker: String,
    sync: String,
    fence: u64,
    claimed: bool,
    line: String,
}

/// The claims and releases in `worker`'s log (the lines of `src/worker/lease.rs`:
/// `<time> INFO …adsync::worker::lease: claimed a sync sync=… fence=… owner=…`).
fn lease_events(worker: &str, log: &str) -> Vec<LeaseEvent> {
    let mut events = Vec::new();
    // A process killed while it wrote may leave a last line unfinished.
    let whole = log.rfind('\n').map_or("", |end| &log[..end]);
    for line in whole
        .lines()
        .filter(|l| l.contains("adsync::worker::lease"))
    {
        let (claimed, fields) = if let Some((_, fields)) = line.split_once(" claimed a sync ") {
            (true, fields)
        } else if let Some((_, fields)) = line.split_once(" released a sync ") {
            (false, fields)
        } else {
            continue;
        };
        let field = |name: &str| {
            fields
                .split_whitespace()
                .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                .unwrap_or_else(|| panic!("no {name} in {worker}'s line: {line}"))
        };
        assert_eq!(field("owner"), worker, "{line}");
        let at = line.split_whitespace().next().expect("a time stamp");
        events.push(LeaseEvent {
            at: nanos(at),
            worker: worker.to_string(),
            sync: field("sync").to_string(),
            fence: field("fence").parse().expect("a fencing token"),
            claimed,
            line: line.to_string(),
        });
    }
    events
}

/// When a daemon was stopped (SIGSTOP) and continued (SIGCONT).
#[derive(Debug, Clone)]
struct Pause {
    worker: String,
    from: i128,
    to: i128,
}

/// The account a request creates an entity in, if it is a create.
fn created_in(request: &adsync_fakes::reddit::LoggedRequest) -> Option<&str> {
    if request.method != "POST" {
        return None;
    }
    let path = request.path.split('?').next()?;
    let (account, collection) = path.strip_prefix("/api/v3/ad_accounts/")?.split_once('/')?;
    matches!(collection, "campaigns" | "ad_groups" | "ads").then_some(account)
}

/// The creates (every one the fake received, answered or not) that a worker
/// sent after another worker had taken its sync over; returns them as
/// messages, how many creates were checked, and the closest call: the least
/// time from a create's arrival to a later claim of its sync by another
/// worker (negative: the claim came first; a finding needs less than
/// `-TRANSIT`).
///
/// A create of sync `s` by worker `w` (its User-Agent) arriving at `t`
/// (each account has one campaign, so one sync) is one when another worker
/// had logged a claim of `s` with a higher fence than `w`'s latest claim of
/// `s` logged before `t`, and had logged it before `t - TRANSIT`.
///
/// Sound (a correct run shows none):
/// * A worker's runner hands an effect's request to its HTTP connection only
///   before its lease's deadline: 90% of the ttl after the claim or renewal
///   was *asked*. The store counts the ttl from its `now()`, later, and lets
///   another worker claim only once that ran out; a claim is logged after the
///   store answered. So another worker's claim is logged at least 0.1 ttl
///   after the holder's last hand-off. (Or the holder released the lease:
///   only once its task ended, after the answers to its creates, so after
///   they arrived.)
/// * From the hand-off to the fake's handler a request meets only this
///   machine's scheduling delays, which `TRANSIT` bounds.
/// * Every time is this machine's wall clock: the daemons' log stamps, the
///   fake's arrival stamps and PostgreSQL's `now()`.
/// * One case remains, and is reported rightly: a worker stopped (SIGSTOP)
///   between a hand-off and the socket write writes the create after the
///   SIGCONT, after the takeover: it did send a create after its lease was
///   taken over, and the new owner, which looked the entity up during the
///   pause and created it, makes it a duplicate the entity checks report
///   too. The platform takes no fencing token; the runner's deadline only
///   narrows this window to the instant between hand-off and write (it was
///   a whole rate-limit wait before the deadline existed: that bug shows
///   here as the paused worker's creates arriving just after the SIGCONT).
///
/// Not racy: a claim that disqualifies a create was logged before the create
/// arrived, and a worker logs its claim before it runs anything under it;
/// the check reads the logs after every sync settled.
///
/// Not a tautology: without the deadline, or without fencing, the paused
/// worker sends creates of syncs taken over after its SIGCONT, seconds
/// after the takeover was logged (both seen failing this check). It may miss
/// some (a claimer killed before it logged its claim, a create within
/// `TRANSIT` of a takeover), never invent one.
fn creates_after_takeover(
    requests: &[adsync_fakes::reddit::LoggedRequest],
    events: &[LeaseEvent],
    sync_of_account: &std::collections::HashMap<String, String>,
) -> (Vec<String>, usize, Option<i128>) {
    let transit = span(TRANSIT);
    let mut found = Vec::new();
    let mut checked = 0;
    let mut closest: Option<i128> = None;
    for request in requests {
        let Some(account) = created_in(request) else {
            continue;
        };
        checked += 1;
        let t = nanos(&request.at);
        let worker = request
            .user_agent
            .strip_prefix(TORTURE_UA)
            .unwrap_or_else(|| panic!("a create from an unknown sender: {request:?}"));
        let sync = sync_of_account
            .get(account)
            .unwrap_or_else(|| panic!("a create in an account never pushed: {request:?}"));
        let claims = || events.iter().filter(move |e| e.claimed && e.sync == *sync);
        let Some(own) = claims()
            .filter(|e| e.worker == worker && e.at < t)
            .map(|e| e.fence)
            .max()
        else {
            found.push(format!("{request:?}: {worker} had not claimed {sync}"));
            continue;
        };
        for other in claims().filter(|e| e.worker != worker && e.fence > own) {
            closest = Some(closest.map_or(other.at - t, |c| c.min(other.at - t)));
        }
        for other in claims().filter(|e| e.worker != worker && e.fence > own && e.at < t - transit)
        {
            found.push(format!(
                "{request:?}, sent by {worker} under fence {own}, after {}",
                other.line
            ));
        }
    }
    (found, checked, closest)
}

/// Claims of a lease that its holder had not given back: (the earlier
/// holder, the claim that took the sync over).
fn takeovers(events: &[LeaseEvent]) -> Vec<(String, LeaseEvent)> {
    let released: std::collections::HashSet<(&str, u64)> = events
        .iter()
        .filter(|e| !e.claimed)
        .map(|e| (e.sync.as_str(), e.fence))
        .collect();
    let mut claims: Vec<&LeaseEvent> = events.iter().filter(|e| e.claimed).collect();
    claims.sort_by(|a, b| (&a.sync, a.fence).cmp(&(&b.sync, b.fence)));
    claims
        .windows(2)
        .filter(|w| {
            w[0].sync == w[1].sync
                && w[0].worker != w[1].worker
                && !released.contains(&(w[0].sync.as_str(), w[0].fence))
        })
        .map(|w| (w[0].worker.clone(), w[1].clone()))
        .collect()
}

/// The running daemon holding the most live leases (by the store's clock),
/// if any holds one.
async fn busiest(workers: &[(String, Daemon)]) -> Option<usize> {
    let (_, body) = workers[0]
        .1
        .json(reqwest::Method::GET, "/v1/syncs?status=running", None)
        .await;
    let syncs = body["syncs"].as_array()?;
    let held = |name: &str| {
        syncs
            .iter()
            .filter(|s| s["lease"]["owner"] == name && s["lease"]["expired"] == false)
            .count()
    };
    (0..workers.len())
        .map(|n| (held(&workers[n].0), n))
        .max()
        .filter(|(count, _)| *count > 0)
        .map(|(_, n)| n)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_survive_kills_and_a_pause_past_the_lease_without_duplicates() {
    let seed = std::env::var("ADSYNC_TORTURE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock")
                .as_nanos() as u64
                | 1
        });
    eprintln!("torture seed {seed} (ADSYNC_TORTURE_SEED={seed} replays it)");
    let mut rng = Rng(seed);
    let server = TestServer::start();
    let url = server.url();
    // A tight write budget: pushes are throttled (429), back off durably and
    // are handed from daemon to daemon, for long enough for the chaos below.
    let reddit = FakeReddit::start(FakeRedditConfig {
        token: REDDIT_TOKEN.into(),
        reads_per_window: 100_000,
        writes_per_window: 25,
        window: Duration::from_secs(1),
        ..FakeRedditConfig::default()
    })
    .await
    .expect("fake reddit");
    let dir = tempfile::tempdir().expect("dir");
    let _logs = LogsOnFailure(dir.path());
    // Every process is a worker of its own name (a restarted one too): w1, w2, …
    let mut names: Vec<String> = Vec::new();
    let start = |names: &mut Vec<String>| {
        let name = format!("w{}", names.len() + 1);
        names.push(name.clone());
        let daemon = torture_daemon(&url, &reddit.base_url(), dir.path(), &name);
        (name, daemon)
    };
    let mut workers: Vec<(String, Daemon)> = (0..3).map(|_| start(&mut names)).collect();

    // One campaign per account (the example set's two, alternately): each
    // account's creates belong to one sync, which the check needs.
    let example: Value = serde_json::from_str(EXAMPLE_SET_JSON).expect("the example set");
    let campaigns = example["campaigns"].as_array().expect("campaigns");
    let set = adsync_fakes::fixtures::example_set();
    let mut sync_of_account = std::collections::HashMap::new();
    let mut expected_entities = 0;
    for n in 0..20 {
        let account = format!("a2_t{n}");
        let which = n % campaigns.len();
        let one = serde_json::json!({"name": example["name"], "campaigns": [campaigns[which]]});
        let body = serde_json::json!({"account": account, "platform": "reddit", "set": one});
        let (status, answer) = workers[n % 3]
            .1
            .json(reqwest::Method::POST, "/v1/pushes", Some(body.to_string()))
            .await;
        assert_eq!(status, 202, "{answer}");
        let ids = answer["syncs"].as_array().expect("syncs");
        assert_eq!(ids.len(), 1, "{answer}");
        let id = ids[0].as_str().expect("id").to_string();
        sync_of_account.insert(account, id);
        let campaign = &set.campaigns[which];
        expected_entities += 1 + campaign
            .ad_groups
            .iter()
            .map(|g| 1 + g.ads.len())
            .sum::<usize>();
    }

    // The chaos must hit work in flight, not a finished run.
    let (_, body) = workers[0]
        .1
        .json(reqwest::Method::GET, "/v1/syncs?status=running", None)
        .await;
    let running_at_start = body["syncs"].as_array().map_or(0, Vec::len);
    assert!(running_at_start > 0, "every push finished before the chaos");

    // Chaos: SIGKILL and restart a random daemon every few hundred ms; once,
    // SIGSTOP one that holds syncs past its lease (others take them over),
    // then SIGCONT, and let it run on for a while (to show what it sends).
    let (mut kills, mut pause, mut spared) = (0, None::<Pause>, None::<(usize, Instant)>);
    let chaos_until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < chaos_until {
        tokio::time::sleep(Duration::from_millis(200 + rng.below(400))).await;
        let mut victim = rng.below(3) as usize;
        if pause.is_none() && kills >= 3 {
            if let Some(paused) = busiest(&workers).await {
                let name = workers[paused].0.clone();
                let pid = i32::try_from(workers[paused].1.child.id()).expect("pid");
                let from = now_nanos();
                assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
                // Past the lease: what the others show of the paused daemon's
                // syncs is an expired lease (waiting for a new owner) or
                // another owner, never the paused one as a live holder.
                tokio::time::sleep(TORTURE_TTL + Duration::from_millis(600)).await;
                let other = &workers[(paused + 1) % 3].1;
                let (_, body) = other
                    .json(reqwest::Method::GET, "/v1/syncs?status=running", None)
                    .await;
                for sync in body["syncs"].as_array().expect("syncs") {
                    let lease = &sync["lease"];
                    if lease["owner"] == name.as_str() {
                        assert_eq!(lease["expired"], true, "{sync:#}");
                    }
                }
                let (code, out, err) = run(&mut adsync(&["--daemon", &other.url, "status"]));
                assert_eq!(code, Some(0), "{err}");
                assert!(
                    !out.contains(&format!("running on {name}")),
                    "the paused daemon shows as holding nothing live: {out}"
                );
                eprintln!(
                    "during the pause of {name}, status showed {} syncs running on a live daemon and {} waiting for a new owner",
                    out.matches("running on").count(),
                    out.matches("waiting for a new owner").count()
                );
                tokio::time::sleep(Duration::from_millis(900)).await;
                assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
                pause = Some(Pause {
                    worker: name,
                    from,
                    to: now_nanos(),
                });
                spared = Some((paused, Instant::now() + TORTURE_TTL));
                continue;
            }
        }
        if let Some((slot, until)) = spared {
            if slot == victim && Instant::now() < until {
                victim = (victim + 1) % 3;
            }
        }
        let _ = workers[victim].1.child.kill();
        let _ = workers[victim].1.child.wait();
        workers[victim] = start(&mut names);
        kills += 1;
    }
    let pause = pause.expect("a daemon holding syncs was paused past its lease");

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) = workers[0]
            .1
            .json(reqwest::Method::GET, "/v1/syncs", None)
            .await;
        assert_eq!(status, 200, "{body}");
        let syncs = body["syncs"].as_array().expect("syncs").clone();
        if syncs.len() == sync_of_account.len() && syncs.iter().all(|s| s["status"] != "running") {
            for sync in &syncs {
                assert_eq!(sync["status"], "succeeded", "{sync:#}");
            }
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running after the chaos (seed {seed}): {syncs:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // No create sent by a worker after its lease had been taken over.
    let mut events = Vec::new();
    for name in &names {
        let log = std::fs::read_to_string(dir.path().join(format!("{name}.log"))).expect("a log");
        events.extend(lease_events(name, &log));
    }
    assert!(
        events.iter().any(|e| e.claimed),
        "seed {seed}: no daemon logged a claim (`claimed a sync` at info, from \
         src/worker/lease.rs): is the adsync binary built from this tree?"
    );
    let requests = reddit.requests();
    let (found, creates, closest) = creates_after_takeover(&requests, &events, &sync_of_account);
    assert!(
        found.is_empty(),
        "seed {seed}: creates sent after a takeover:\n{}",
        found.join("\n")
    );
    assert!(
        creates >= expected_entities,
        "seed {seed}: {creates} creates"
    );
    let held = reddit.entities();
    assert!(
        held.duplicates().is_empty(),
        "seed {seed}: {:?}",
        held.duplicates()
    );
    assert_eq!(held.len(), expected_entities, "seed {seed}");

    // The check saw what it is for: a live daemon's syncs taken over (the
    // paused one's, while it was stopped or just after, while it was spared
    // the kills), and it ran on afterwards.
    let takeovers = takeovers(&events);
    let spared_until = pause.to + span(TORTURE_TTL);
    let of_paused = takeovers
        .iter()
        .filter(|(from, claim)| {
            *from == pause.worker && pause.from < claim.at && claim.at < spared_until
        })
        .count();
    assert!(
        of_paused > 0,
        "seed {seed}: no sync of the paused {} was taken over: {pause:?}",
        pause.worker
    );
    eprintln!(
        "torture: {kills} kills and one pause past the lease, {running_at_start} of {} syncs \
         running when the chaos began; {creates} creates checked against {} takeovers \
         ({of_paused} of the paused daemon's syncs), the closest {:.0} ms before another \
         worker's claim of its sync; seed {seed}",
        sync_of_account.len(),
        takeovers.len(),
        closest.map_or(f64::NAN, |c| c as f64 / 1e6),
    );
}
