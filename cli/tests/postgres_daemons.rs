//! `--store postgres://…`: `adsync migrate`, and two `adsync daemon`
//! processes sharing one throwaway PostgreSQL database, pushing to the fake
//! Reddit server through either. Every entity exists once, every sync is
//! readable through both daemons, and the password never appears.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use adsync_fakes::fixtures::EXAMPLE_SET_JSON;
use adsync_fakes::postgres::TestServer;
use adsync_fakes::reddit::{FakeReddit, FakeRedditConfig};
use serde_json::Value;

const REDDIT_TOKEN: &str = "reddit-pg-test-token";

fn adsync(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_adsync"));
    command.args(args);
    for var in [
        "ADSYNC_DB",
        "ADSYNC_STORE_URL",
        "ADSYNC_DAEMON_URL",
        "ADSYNC_REDDIT_TOKEN",
        "ADSYNC_REDDIT_BASE_URL",
        "ADSYNC_AMAZON_TOKEN",
        "ADSYNC_AMAZON_CLIENT_ID",
    ] {
        command.env_remove(var);
    }
    command
}

fn run(command: &mut Command) -> (Option<i32>, String, String) {
    let out = command.output().expect("adsync runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running `adsync daemon --store …`, killed when dropped.
struct Daemon {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Daemon {
    fn start(store: &str, reddit: &str, dir: &std::path::Path) -> Daemon {
        Self::start_with(store, reddit, dir, &[])
    }

    fn start_with(store: &str, reddit: &str, dir: &std::path::Path, extra: &[&str]) -> Daemon {
        let password = password_of(store);
        let db = dir.join("unused.db").to_string_lossy().into_owned();
        let mut args = vec![
            "--store",
            store,
            // Must be ignored: the shared store is used, no sled directory.
            "--db",
            &db,
            "daemon",
            "--listen",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        let mut child = adsync(&args)
            .env("ADSYNC_REDDIT_BASE_URL", reddit)
            .env("ADSYNC_REDDIT_TOKEN", REDDIT_TOKEN)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("adsync daemon starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the daemon prints its address");
        assert!(
            !line.contains(&password),
            "the password is never printed: {line}"
        );
        let port = line
            .split("listening on http://")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|addr| addr.rsplit(':').next())
            .unwrap_or_else(|| panic!("unexpected first line: {line:?}"))
            .to_string();
        Daemon {
            child,
            url: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder()
                .no_proxy()
                .timeout(Duration::from_secs(30))
                .build()
                .expect("client"),
        }
    }

    async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
    ) -> (u16, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            request = request
                .header("content-type", "application/json")
                .body(body);
        }
        let response = request.send().await.expect("the daemon answers");
        let status = response.status().as_u16();
        let text = response.text().await.expect("body");
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")),
        )
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The password in `url` (`postgres://user:password@host/db`), which no
/// output may contain.
fn password_of(url: &str) -> String {
    let rest = url.split_once("://").expect("a URL").1;
    let credentials = rest.split_once('@').expect("credentials").0;
    let password = credentials.split_once(':').expect("a password").1;
    assert!(password.len() >= 8, "a password long enough to search for");
    password.to_string()
}

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
    let a = Daemon::start(&url, &reddit.base_url(), dir.path());
    let b = Daemon::start(&url, &reddit.base_url(), dir.path());

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

/// Starts a daemon on the shared store with short leases, as `owner`.
fn torture_daemon(store: &str, reddit: &str, dir: &std::path::Path, owner: &str) -> Daemon {
    Daemon::start_with(
        store,
        reddit,
        dir,
        &[
            "--lease-ttl",
            "2s",
            "--claim-every",
            "100ms",
            "--shutdown-timeout",
            "1s",
            "--owner",
            owner,
        ],
    )
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
    let names = ["d0", "d1", "d2"];
    let mut daemons: Vec<Daemon> = names
        .iter()
        .map(|n| torture_daemon(&url, &reddit.base_url(), dir.path(), n))
        .collect();

    let accounts: Vec<String> = (0..10).map(|n| format!("a2_t{n}")).collect();
    let mut acknowledged = Vec::new();
    for (n, account) in accounts.iter().enumerate() {
        let body = format!(
            "{{\"account\": \"{account}\", \"platform\": \"reddit\", \"set\": {EXAMPLE_SET_JSON}}}"
        );
        let (status, answer) = daemons[n % 3]
            .json(reqwest::Method::POST, "/v1/pushes", Some(body))
            .await;
        assert_eq!(status, 202, "{answer}");
        for id in answer["syncs"].as_array().expect("syncs") {
            acknowledged.push(id.as_str().expect("id").to_string());
        }
    }

    // The chaos must hit work in flight, not a finished run.
    let (_, body) = daemons[0]
        .json(reqwest::Method::GET, "/v1/syncs?status=running", None)
        .await;
    let running_at_start = body["syncs"].as_array().map_or(0, Vec::len);
    assert!(running_at_start > 0, "every push finished before the chaos");

    // Chaos: SIGKILL and restart a random daemon every few hundred ms; once,
    // SIGSTOP one past its lease (others take its syncs over), then SIGCONT.
    let (mut kills, mut paused) = (0, false);
    let chaos_until = Instant::now() + Duration::from_secs(8);
    while Instant::now() < chaos_until {
        tokio::time::sleep(Duration::from_millis(200 + rng.below(400))).await;
        let victim = rng.below(3) as usize;
        if !paused && kills >= 3 {
            paused = true;
            let pid = i32::try_from(daemons[victim].child.id()).expect("pid");
            assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
            // Past the 2 s lease: what the others show of the paused daemon's
            // syncs is an expired lease (waiting for a new owner) or another
            // owner, never the paused one as a live holder.
            tokio::time::sleep(Duration::from_millis(2_600)).await;
            let other = &daemons[(victim + 1) % 3];
            let (_, body) = other
                .json(reqwest::Method::GET, "/v1/syncs?status=running", None)
                .await;
            for sync in body["syncs"].as_array().expect("syncs") {
                let lease = &sync["lease"];
                if lease["owner"] == names[victim] {
                    assert_eq!(lease["expired"], true, "{sync:#}");
                }
            }
            let (code, out, err) = run(&mut adsync(&["--daemon", &other.url, "status"]));
            assert_eq!(code, Some(0), "{err}");
            assert!(
                !out.contains(&format!("running on {}", names[victim])),
                "the paused daemon shows as holding nothing live: {out}"
            );
            eprintln!(
                "during the pause, status showed {} syncs running on a live daemon and {} waiting for a new owner",
                out.matches("running on").count(),
                out.matches("waiting for a new owner").count()
            );
            tokio::time::sleep(Duration::from_millis(900)).await;
            assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
            continue;
        }
        let _ = daemons[victim].child.kill();
        let _ = daemons[victim].child.wait();
        daemons[victim] = torture_daemon(&url, &reddit.base_url(), dir.path(), names[victim]);
        kills += 1;
    }
    assert!(paused, "the pause happened");

    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (status, body) = daemons[0]
            .json(reqwest::Method::GET, "/v1/syncs", None)
            .await;
        assert_eq!(status, 200, "{body}");
        let syncs = body["syncs"].as_array().expect("syncs").clone();
        if syncs.len() == acknowledged.len() && syncs.iter().all(|s| s["status"] != "running") {
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
    let held = reddit.entities();
    assert!(
        held.duplicates().is_empty(),
        "seed {seed}: {:?}",
        held.duplicates()
    );
    let set = adsync_fakes::fixtures::example_set();
    let per_account: usize = set
        .campaigns
        .iter()
        .map(|c| 1 + c.ad_groups.iter().map(|g| 1 + g.ads.len()).sum::<usize>())
        .sum();
    assert_eq!(held.len(), accounts.len() * per_account, "seed {seed}");
    eprintln!(
        "torture: {kills} kills and one pause past the lease, {running_at_start} of {} syncs \
         running when the chaos began, seed {seed}",
        acknowledged.len()
    );
}
