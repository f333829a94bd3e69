//! The binary under a closed stdout or stderr, Ctrl-C and SIGTERM, and `-v`
//! (issue 12, items 13, 14 and 19): output to a pipe nobody reads ends
//! quietly, a signal stops a push at a checkpoint with a command that resumes
//! it, and `-v` logs one plain-text line per effect.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use adsync_fakes::blocking::FakeRedditServer;
use adsync_fakes::reddit::{RedditFault, RedditFaultKind};

const TOKEN: &str = "signals-test-token";
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/campaign_set.json");

fn adsync(db: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_adsync"));
    cmd.arg("--db")
        .arg(db)
        .env_remove("ADSYNC_DB")
        .env_remove("ADSYNC_TEST_CRASH_AT")
        .env_remove("ADSYNC_REDDIT_BASE_URL")
        .env_remove("RUST_LOG")
        .env("ADSYNC_REDDIT_TOKEN", TOKEN)
        .stdin(Stdio::null());
    cmd
}

fn reddit_push(db: &Path, fake: &FakeRedditServer) -> Command {
    let mut cmd = adsync(db);
    cmd.args([
        "push",
        EXAMPLE,
        "--platform",
        "reddit",
        "--account",
        "a2_sig",
    ])
    .args(["--reddit-base-url", &fake.fake().base_url()]);
    cmd
}

/// Spawns `cmd` with stdout a pipe whose reading end is closed at once, and
/// waits for it; stderr is captured.
fn run_with_closed_stdout(cmd: &mut Command) -> Output {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("adsync starts");
    drop(child.stdout.take());
    child.wait_with_output().expect("adsync exits")
}

fn assert_quiet_success(what: &str, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{what}: {stderr}");
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert!(!stderr.contains("store task failed"), "{what}: {stderr}");
}

fn assert_complete_without_duplicates(fake: &FakeRedditServer) {
    let held = fake.held();
    assert!(held.duplicates().is_empty(), "{:?}", held.duplicates());
    // 2 campaigns, 3 ad groups, 4 ads in the example set.
    assert_eq!(
        (held.campaigns.len(), held.ad_groups.len(), held.ads.len()),
        (2, 3, 4)
    );
}

#[test]
fn a_push_into_a_closed_pipe_finishes_and_exits_with_its_own_code() {
    let fake = FakeRedditServer::start(TOKEN);
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("adsync.db");
    let out = run_with_closed_stdout(&mut reddit_push(&db, &fake));
    assert_quiet_success("push | head", &out);
    assert_complete_without_duplicates(&fake);

    // The read-only commands over the same store, into a closed pipe too.
    let status = run_with_closed_stdout(adsync(&db).args(["status"]));
    assert_quiet_success("status", &status);
    let json = run_with_closed_stdout(adsync(&db).args(["status", "--json"]));
    assert_quiet_success("status --json", &json);
    let listed = adsync(&db)
        .args(["status", "--json"])
        .output()
        .expect("status runs");
    let listed: serde_json::Value = serde_json::from_slice(&listed.stdout).expect("status JSON");
    let sync = listed["syncs"][0]["id"]
        .as_str()
        .or_else(|| listed[0]["id"].as_str())
        .unwrap_or_else(|| panic!("a sync id in {listed:#}"))
        .to_string();
    let history = run_with_closed_stdout(adsync(&db).args(["history", &sync]));
    assert_quiet_success("history", &history);
}

#[test]
fn status_into_a_closed_pipe_with_more_than_a_pipe_buffer_of_output() {
    // 300 campaigns: the status table and JSON are far larger than a pipe buffer.
    let campaigns: Vec<_> = (0..300)
        .map(|i| {
            serde_json::json!({"id": format!("c{i}"), "name": format!("Campaign number {i}"),
                               "objective": "CLICKS"})
        })
        .collect();
    let dir = tempfile::tempdir().expect("tempdir");
    let set = dir.path().join("big.json");
    std::fs::write(
        &set,
        serde_json::json!({"name": "big", "campaigns": campaigns}).to_string(),
    )
    .expect("write");
    let db = dir.path().join("adsync.db");
    let out = adsync(&db)
        .args(["push", set.to_str().expect("utf-8"), "--account", "a2_big"])
        .stdout(Stdio::null())
        .output()
        .expect("push runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for args in [&["status"][..], &["status", "--json"][..]] {
        let out = run_with_closed_stdout(adsync(&db).args(args));
        assert_quiet_success(&format!("{args:?}"), &out);
    }
}

#[test]
fn the_demo_into_a_closed_pipe_exits_0() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = run_with_closed_stdout(adsync(&dir.path().join("adsync.db")).arg("demo"));
    assert_quiet_success("demo", &out);
}

#[test]
fn a_closed_stderr_does_not_stop_a_verbose_push() {
    let fake = FakeRedditServer::start(TOKEN);
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = reddit_push(&dir.path().join("adsync.db"), &fake)
        .arg("-v")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("adsync starts");
    drop(child.stderr.take());
    let out = child.wait_with_output().expect("adsync exits");
    assert_eq!(out.status.code(), Some(0));
    assert_complete_without_duplicates(&fake);
}

#[test]
fn verbose_logs_one_plain_line_per_effect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = adsync(&dir.path().join("adsync.db"))
        .args(["-v", "push", EXAMPLE, "--account", "a2_verbose"])
        .output()
        .expect("push runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        !stderr.contains("\x1b["),
        "no colour codes in a pipe: {stderr:?}"
    );
    let effects = stderr
        .lines()
        .filter(|l| l.contains(" INFO ") && l.contains("effect starts"))
        .count();
    // At least one create per entity of the example set (2 + 3 + 4).
    assert!(effects >= 9, "{effects} effect lines:\n{stderr}");
    assert!(
        stderr.contains("sync="),
        "each line names its sync:\n{stderr}"
    );
}

/// Starts a push against a slow fake, waits until it is mid-way, signals it.
fn interrupted_push(signal: i32) -> (FakeRedditServer, tempfile::TempDir, Output) {
    let fake = FakeRedditServer::start(TOKEN);
    fake.fake()
        .inject(RedditFault::new(RedditFaultKind::Latency { ms: 150 }));
    let dir = tempfile::tempdir().expect("tempdir");
    let child: Child = reddit_push(&dir.path().join("adsync.db"), &fake)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("adsync starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.requests() < 3 {
        assert!(Instant::now() < deadline, "the push never got going");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = i32::try_from(child.id()).expect("pid fits");
    // SAFETY: signalling our own child by its pid.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    let out = child.wait_with_output().expect("adsync exits");
    (fake, dir, out)
}

#[test]
fn sigterm_stops_a_push_at_a_checkpoint_and_the_printed_command_resumes_it() {
    let (fake, dir, out) = interrupted_push(libc::SIGTERM);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let held = fake.held();
    assert!(
        held.len() < 9,
        "stopped mid-way, not after everything: {}",
        held.len()
    );

    let status = adsync(&dir.path().join("adsync.db"))
        .args(["status", "--json"])
        .output()
        .expect("status runs");
    assert_eq!(status.status.code(), Some(0));

    // The suggested command works when pasted into a shell as it is.
    let command = stderr
        .lines()
        .find_map(|l| l.split_once("continue with: ").map(|(_, c)| c.to_string()))
        .unwrap_or_else(|| panic!("no resume command in:\n{stderr}"));
    assert!(command.starts_with("adsync "), "{command}");
    assert!(command.contains(" resume "), "{command}");
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_adsync"))
        .parent()
        .expect("bin dir");
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let resumed = Command::new("sh")
        .args(["-c", &command])
        .current_dir("/")
        .env("PATH", path)
        .env_remove("ADSYNC_DB")
        .env_remove("ADSYNC_TEST_CRASH_AT")
        .env_remove("ADSYNC_REDDIT_BASE_URL")
        .env("ADSYNC_REDDIT_TOKEN", TOKEN)
        .output()
        .expect("sh runs");
    assert_eq!(
        resumed.status.code(),
        Some(0),
        "{command}\n{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert_complete_without_duplicates(&fake);
}

#[test]
fn sigint_stops_a_push_with_exit_130() {
    let (fake, _dir, out) = interrupted_push(libc::SIGINT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("adsync "), "{stderr}");
    assert!(fake.held().duplicates().is_empty());
}

#[test]
fn a_second_signal_exits_at_once() {
    let fake = FakeRedditServer::start(TOKEN);
    let dir = tempfile::tempdir().expect("tempdir");
    let child = reddit_push(&dir.path().join("adsync.db"), &fake)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("adsync starts");
    // Every request now hangs far longer than the test waits.
    fake.fake()
        .inject(RedditFault::new(RedditFaultKind::Latency { ms: 60_000 }));
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake.requests() < 1 {
        assert!(Instant::now() < deadline, "the push never got going");
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = i32::try_from(child.id()).expect("pid fits");
    let sent = Instant::now();
    // SAFETY: signalling our own child by its pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let out = child.wait_with_output().expect("adsync exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        sent.elapsed() < Duration::from_secs(5),
        "took {:?}",
        sent.elapsed()
    );
    // The first signal decides the code.
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert!(stderr.contains("continue with: adsync "), "{stderr}");
}

/// `adsync fake-server amazon` as a child process; killed when dropped.
struct FakeAmazon {
    child: Child,
    url: String,
}

impl FakeAmazon {
    fn start() -> Self {
        use std::io::BufRead as _;
        let mut child = Command::new(env!("CARGO_BIN_EXE_adsync"))
            .args(["fake-server", "amazon", "--port", "0", "--profile", "77"])
            .args(["--campaigns", "10", "--ad-groups-per-campaign", "2"])
            .args(["--keywords-per-ad-group", "2", "--token", TOKEN])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("fake server starts");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the server prints its URL");
        let url = line.trim().to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        FakeAmazon { child, url }
    }
}

impl Drop for FakeAmazon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sigterm_stops_a_pull_and_the_printed_command_finishes_it() {
    let server = FakeAmazon::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("adsync.db");
    let amazon_env = |cmd: &mut Command| {
        cmd.env("ADSYNC_AMAZON_TOKEN", TOKEN)
            .env("ADSYNC_AMAZON_CLIENT_ID", "fake-client-id")
            .env_remove("ADSYNC_AMAZON_HOST");
    };
    // One entity per page at 5 requests a second: about 14 s unless stopped.
    let mut cmd = adsync(&db);
    cmd.args(["pull", "--profile", "77", "--host", &server.url])
        .args(["--page-size", "1", "--rate", "5", "--max-rate", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    amazon_env(&mut cmd);
    let child = cmd.spawn().expect("pull starts");
    std::thread::sleep(Duration::from_millis(1500));
    let pid = i32::try_from(child.id()).expect("pid fits");
    // SAFETY: signalling our own child by its pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let out = child.wait_with_output().expect("pull exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!stderr.contains(TOKEN), "the token is never printed");
    let command = stderr
        .lines()
        .find_map(|l| l.split_once("continue with: ").map(|(_, c)| c.to_string()))
        .unwrap_or_else(|| panic!("no resume command in:\n{stderr}"));
    assert!(
        command.starts_with("adsync ") && command.contains(" pull "),
        "{command}"
    );

    let bin_dir = Path::new(env!("CARGO_BIN_EXE_adsync"))
        .parent()
        .expect("bin dir");
    let mut sh = Command::new("sh");
    sh.args(["-c", &format!("{command} --json")])
        .current_dir("/")
        .env(
            "PATH",
            format!(
                "{}:{}",
                bin_dir.display(),
                std::env::var("PATH").unwrap_or_default()
            ),
        )
        .env_remove("ADSYNC_DB")
        .env_remove("ADSYNC_TEST_CRASH_AT");
    amazon_env(&mut sh);
    let resumed = sh.output().expect("sh runs");
    assert_eq!(
        resumed.status.code(),
        Some(0),
        "{command}\n{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&resumed.stdout).expect("JSON");
    assert_eq!(status[0]["state"], "completed", "{status:#}");

    // `pull` (up to date now) and `show` into a closed pipe end quietly too.
    let mut again = adsync(&db);
    again.args(["pull", "--profile", "77", "--host", &server.url]);
    amazon_env(&mut again);
    assert_quiet_success("pull", &run_with_closed_stdout(&mut again));
    for kind in ["summary", "keywords"] {
        let out =
            run_with_closed_stdout(adsync(&db).args(["show", "--profile", "77", "--kind", kind]));
        assert_quiet_success(&format!("show --kind {kind}"), &out);
    }
}
