//! Set pushes through the real binary: a set starts atomically (a kill leaves
//! all of its syncs or none), a re-run of the same push continues it, changed
//! content is refused with one command that works when pasted, `resume` needs
//! no flags, and the default memory platform remembers between runs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use adsync::memory::{Fault, MemoryPlatform, Op};
use adsync::EntityKind;
use adsync::Status;
use adsync::Store;
use adsync::SystemClock;

const CAMPAIGNS: usize = 16;
const ACCOUNT: &str = "a2_sets";

/// A 16-campaign set: each campaign → one ad group → one ad.
fn set_json(renamed: Option<usize>) -> String {
    let campaigns: Vec<String> = (1..=CAMPAIGNS)
        .map(|i| {
            let name = if renamed == Some(i) {
                format!("Campaign {i} renamed")
            } else {
                format!("Campaign {i}")
            };
            format!(
                r#"{{"id": "c{i:02}", "name": "{name}", "objective": "CLICKS", "ad_groups": [
                    {{"id": "g{i:02}", "name": "Group {i}",
                      "ads": [{{"id": "a{i:02}", "name": "Ad {i}", "post_id": "t3_{i}"}}]}}]}}"#
            )
        })
        .collect();
    format!(
        r#"{{"name": "sixteen", "campaigns": [{}]}}"#,
        campaigns.join(",")
    )
}

fn command(dir: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_adsync"));
    cmd.arg("--db")
        .arg(dir.join("adsync.db"))
        .env_remove("ADSYNC_DB")
        .env_remove("ADSYNC_TEST_CRASH_AT")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

fn push_command(dir: &Path) -> Command {
    let mut cmd = command(dir);
    cmd.args(["push"])
        .arg(dir.join("set.json"))
        .args(["--account", ACCOUNT, "--memory-file"])
        .arg(dir.join("platform.json"));
    cmd
}

fn run(mut cmd: Command) -> Output {
    cmd.output().expect("adsync runs")
}

fn text(out: &Output) -> String {
    format!(
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The set's syncs in the store (by campaign), and whether its set record exists.
fn started(dir: &Path) -> (Vec<(String, Status)>, bool) {
    let store = Store::open(dir.join("adsync.db")).expect("store opens");
    let syncs = store
        .list()
        .into_iter()
        .map(|r| r.expect("record decodes"))
        .map(|r| (r.id, r.status))
        .collect();
    let sets = adsync::set_records(&store).count();
    (syncs, sets == 1)
}

/// Every campaign, ad group and ad exactly once on the platform.
fn assert_exactly_once(dir: &Path, variant: &str) {
    let platform =
        MemoryPlatform::open_file(dir.join("platform.json"), Arc::new(SystemClock)).unwrap();
    assert!(
        platform.duplicates().is_empty(),
        "{variant}: duplicates {:?}",
        platform.duplicates()
    );
    assert_eq!(
        platform.entities().len(),
        CAMPAIGNS * 3,
        "{variant}: {:#?}",
        platform.entities()
    );
}

/// Kills `adsync push` of a 16-campaign set at many points early in its start
/// (SIGKILL at a sweep of delays after the process opened its store, and at
/// checkpoint boundaries after the start), asserts all or none of the set's
/// syncs exist, then recovers with `resume --all` (no flags) or by re-running
/// the same push: every campaign exactly once on the platform.
/// The first `adsync …` command quoted in `stderr`, pasted into a shell as it
/// is (with this build's binary); returns the command and what it did.
fn run_suggested(stderr: &str) -> (String, Output) {
    let suggested = stderr
        .split('`')
        .find(|s| s.starts_with("adsync "))
        .expect("a command is suggested")
        .to_string();
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_adsync"));
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "{} {}",
            bin.display(),
            &suggested["adsync ".len()..]
        ))
        .env_remove("ADSYNC_DB")
        .env_remove("ADSYNC_TEST_CRASH_AT")
        .output()
        .expect("sh runs");
    (suggested, out)
}

#[test]
fn a_killed_set_start_leaves_all_or_none_and_recovers_exactly_once() {
    let mut variants: Vec<(Option<u64>, Option<&str>)> = vec![
        (None, Some("1:before")),
        (None, Some("1:after")),
        (None, Some("5:after")),
    ];
    // The delays count from the moment the store's log exists (the process
    // opened its store), so the sweep covers the start whatever the load.
    variants.extend((0..=40).step_by(2).map(|ms| (Some(ms), None)));
    let mut seen = [0usize; 2];
    for (i, (delay, crash_at)) in variants.into_iter().enumerate() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join("set.json"), set_json(None)).unwrap();
        let variant = format!("variant {i} (delay {delay:?}, crash at {crash_at:?})");
        let mut cmd = push_command(dir);
        cmd.stdout(Stdio::null()).stderr(Stdio::null());
        if let Some(at) = crash_at {
            cmd.env("ADSYNC_TEST_CRASH_AT", at);
        }
        let mut child = cmd.spawn().expect("adsync starts");
        if let Some(ms) = delay {
            let log = dir.join("adsync.db").join("adsync.wal");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
            while !log.exists() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
            std::thread::sleep(std::time::Duration::from_millis(ms));
            let _ = child.kill();
        }
        let _ = child.wait();

        let (syncs, set_recorded) = started(dir);
        assert!(
            syncs.is_empty() || syncs.len() == CAMPAIGNS,
            "{variant}: a partial set was started: {syncs:?}"
        );
        assert_eq!(set_recorded, !syncs.is_empty(), "{variant}: set record");
        seen[usize::from(!syncs.is_empty())] += 1;

        // Recovering every variant would make the sweep slow: every third.
        if i % 3 != 0 {
            continue;
        }
        if i % 2 == 0 {
            // No flags at all: platform, account and memory file come from the checkpoints.
            let out = run({
                let mut c = command(dir);
                c.args(["resume", "--all"]);
                c
            });
            assert_eq!(out.status.code(), Some(0), "{variant}: {}", text(&out));
        }
        // The same push again: continues what is unfinished, starts what is not.
        let out = run(push_command(dir));
        assert_eq!(out.status.code(), Some(0), "{variant}: {}", text(&out));
        assert_exactly_once(dir, &variant);
        let (syncs, _) = started(dir);
        assert!(
            syncs.iter().all(|(_, s)| *s == Status::Succeeded),
            "{variant}: {syncs:?}"
        );
    }
    // The crash points after the start always leave the whole set.
    assert!(seen[1] >= 3, "whole sets seen: {seen:?}");
}

/// Re-running the same push after a crash continues the unfinished syncs
/// instead of starting new ones. (Which syncs the crash leaves finished
/// depends on how the 16 concurrent syncs interleaved; a finished one gets a
/// new sync that updates.)
#[test]
fn the_same_push_rerun_continues_the_unfinished_syncs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("set.json"), set_json(None)).unwrap();
    let mut cmd = push_command(dir);
    cmd.env("ADSYNC_TEST_CRASH_AT", "3:after");
    let out = run(cmd);
    assert_eq!(out.status.signal_code(), Some(9), "{}", text(&out));
    let (at_crash, _) = started(dir);
    assert!(
        at_crash.iter().any(|(_, s)| *s == Status::Running),
        "the crash left work unfinished: {at_crash:?}"
    );

    let out = run(push_command(dir));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let (syncs, _) = started(dir);
    let ids: Vec<_> = syncs.iter().map(|(id, _)| id.as_str()).collect();
    let mut expected: Vec<String> = Vec::new();
    for (id, status) in &at_crash {
        expected.push(id.clone());
        if *status == Status::Succeeded {
            expected.push(id.replace("-1", "-2"));
        }
    }
    assert_eq!(ids, expected, "unfinished syncs continued, none restarted");
    assert_exactly_once(dir, "rerun");
}

trait SignalCode {
    fn signal_code(&self) -> Option<i32>;
}

impl SignalCode for std::process::ExitStatus {
    fn signal_code(&self) -> Option<i32> {
        std::os::unix::process::ExitStatusExt::signal(self)
    }
}

/// A push whose content changed while a sync of the set is unfinished is
/// refused with exit 2, naming every unfinished sync and one command, which
/// works when pasted.
#[test]
fn changed_content_with_unfinished_syncs_is_refused_with_a_command_that_works() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("set.json"), set_json(None)).unwrap();
    let mut cmd = push_command(dir);
    cmd.env("ADSYNC_TEST_CRASH_AT", "1:after");
    let out = run(cmd);
    assert_eq!(out.status.signal_code(), Some(9), "{}", text(&out));

    std::fs::write(dir.join("set.json"), set_json(Some(3))).unwrap();
    let out = run(push_command(dir));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(stderr.contains("`c03`"), "{stderr}");
    for i in 1..=CAMPAIGNS {
        assert!(stderr.contains(&format!("`c{i:02}-1`")), "{stderr}");
    }
    // The suggested command, pasted into a shell as it is.
    let (suggested, out) = run_suggested(&stderr);
    assert_eq!(out.status.code(), Some(0), "`{suggested}`: {}", text(&out));
    // Now the changed set pushes, as an update.
    let out = run(push_command(dir));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_exactly_once(dir, "after the changed push");
}

/// The default memory platform is kept beside the store: pushing the README
/// example twice changes nothing the second time (a converging push).
#[test]
fn the_default_memory_platform_remembers_between_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/campaign_set.json");
    for round in 0..2 {
        let mut cmd = command(dir);
        cmd.arg("push").arg(&example).args(["--account", "a2_demo"]);
        let out = run(cmd);
        assert_eq!(out.status.code(), Some(0), "round {round}: {}", text(&out));
        let stdout = String::from_utf8_lossy(&out.stdout);
        if round == 1 {
            assert!(
                stdout.contains("unchanged")
                    && !stdout.contains(" created")
                    && !stdout.contains("updated"),
                "{stdout}"
            );
        }
    }
    let platform = MemoryPlatform::open_file(
        dir.join("adsync.db.memory-platform.json"),
        Arc::new(SystemClock),
    )
    .unwrap();
    assert!(platform.duplicates().is_empty());
    assert_eq!(platform.entities().len(), 12);
}

/// `resume` of a failed sync says failed syncs are final and gives the push
/// command, which works when pasted.
#[test]
fn resuming_a_failed_sync_says_it_is_final_and_how_to_push_again() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("set.json"), set_json(None)).unwrap();
    let platform =
        MemoryPlatform::open_file(dir.join("platform.json"), Arc::new(SystemClock)).unwrap();
    platform.fail_next(
        Op::Create,
        Some(EntityKind::Ad),
        Fault::Permanent("rejected".into()),
    );
    let out = run(push_command(dir));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let (syncs, _) = started(dir);
    let failed = syncs
        .iter()
        .find(|(_, s)| *s == Status::Failed)
        .expect("one sync failed")
        .0
        .clone();

    let out = run({
        let mut c = command(dir);
        c.args(["resume", &failed]);
        c
    });
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stderr.contains("failed syncs are final"), "{stderr}");
    let (suggested, out) = run_suggested(&stderr);
    assert_eq!(out.status.code(), Some(0), "`{suggested}`: {}", text(&out));
    assert_exactly_once(dir, "after pushing again");
}

/// `resume --all` names a sync that needs attention and exits 3, and names
/// an unfinished one it cannot run.
#[test]
fn resume_all_names_syncs_needing_attention_and_exits_3() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("set.json"), set_json(None)).unwrap();
    let platform =
        MemoryPlatform::open_file(dir.join("platform.json"), Arc::new(SystemClock)).unwrap();
    // One create's response is lost, and its look-up is rejected: whether
    // the campaign exists cannot be told, so the sync parks.
    platform.fail_next(
        Op::Find,
        Some(EntityKind::Campaign),
        Fault::Permanent("look-ups are down".into()),
    );
    platform.fail_next(Op::Create, Some(EntityKind::Campaign), Fault::LoseResponse);
    drop(platform);
    let out = run(push_command(dir));
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let (syncs, _) = started(dir);
    let parked = syncs
        .iter()
        .find(|(_, s)| *s == Status::NeedsAttention)
        .expect("one sync parked")
        .0
        .clone();

    let out = run({
        let mut c = command(dir);
        c.args(["resume", "--all"]);
        c
    });
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        stderr.contains("needs attention") && stderr.contains(&format!("`{parked}`")),
        "{stderr}"
    );
}

/// `status` shows a sync left running by a killed process as interrupted,
/// with its last checkpoint's time, in the table and in JSON; and sets.
#[test]
fn status_shows_interrupted_syncs_and_sets() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    std::fs::write(dir.join("set.json"), set_json(None)).unwrap();
    let mut cmd = push_command(dir);
    cmd.env("ADSYNC_TEST_CRASH_AT", "1:after");
    let _ = run(cmd);

    let out = run({
        let mut c = command(dir);
        c.args(["status", "--json"]);
        c
    });
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let syncs = value["syncs"].as_array().unwrap();
    assert_eq!(syncs.len(), CAMPAIGNS);
    for s in syncs {
        assert_eq!(s["status"], "interrupted", "{s}");
        assert!(s["interrupted_at"].is_string(), "{s}");
        assert_eq!(s["platform"], "memory");
        assert_eq!(s["account"], ACCOUNT);
    }
    let sets = value["sets"].as_array().unwrap();
    assert_eq!(sets.len(), 1);
    assert_eq!(sets[0]["name"], "sixteen");
    assert_eq!(sets[0]["syncs"].as_array().unwrap().len(), CAMPAIGNS);

    let out = run({
        let mut c = command(dir);
        c.arg("status");
        c
    });
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let header = stdout.lines().next().unwrap();
    assert!(
        header.contains("platform") && header.contains("account"),
        "{stdout}"
    );
    assert!(stdout.contains("interrupted"), "{stdout}");
    assert!(
        stdout.contains("sixteen (memory account a2_sets"),
        "{stdout}"
    );
}

/// The status table keeps its columns aligned with long ids (never cut) and
/// cuts long cells, whose full text stays in `--json`.
#[test]
fn status_table_aligns_long_ids_and_cuts_long_cells() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let long_id = "a-very-long-campaign-identifier-that-goes-on-and-on-and-on";
    let long_error = "rejected because ".repeat(10);
    let set = format!(
        r#"{{"name": "long", "campaigns": [
            {{"id": "{long_id}", "name": "Long", "objective": "CLICKS"}},
            {{"id": "c2", "name": "Short", "objective": "CLICKS"}}]}}"#
    );
    std::fs::write(dir.join("set.json"), set).unwrap();
    let platform =
        MemoryPlatform::open_file(dir.join("platform.json"), Arc::new(SystemClock)).unwrap();
    platform.fail_call(1, Fault::Permanent(long_error.clone()));
    drop(platform);
    let out = run(push_command(dir));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));

    let out = run({
        let mut c = command(dir);
        c.arg("status");
        c
    });
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let rows: Vec<&str> = stdout.lines().take(3).collect();
    let kind_at: Vec<usize> = rows
        .iter()
        .map(|row| {
            let row = row.replace('…', ".");
            row.find(" kind ")
                .or_else(|| row.find(" push "))
                .expect("a kind column")
        })
        .collect();
    assert!(
        kind_at.iter().all(|&at| at == kind_at[0]),
        "{kind_at:?}\n{stdout}"
    );
    assert!(stdout.contains(&format!("{long_id}-1")), "{stdout}");
    assert!(!stdout.contains(long_error.trim()), "{stdout}");
    assert!(stdout.contains('…'), "{stdout}");

    let out = run({
        let mut c = command(dir);
        c.args(["status", "--json"]);
        c
    });
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let errors: Vec<&str> = value["syncs"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|s| s["last_error"].as_str())
        .collect();
    assert!(
        errors.iter().any(|e| e.contains(long_error.trim())),
        "{errors:?}"
    );
}
