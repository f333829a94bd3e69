//! `adsync fake-server reddit` as its own process, and `adsync push --platform
//! reddit` against it: the flags inject a lost create response and 5xx, the
//! push still leaves exactly one entity per local entity.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};

use adsync_fakes::reddit::FakeEntities;

/// The fake server child; killed (by its own pid) when dropped.
struct FakeProcess {
    child: Child,
    addr: SocketAddr,
    /// Kept open: the server's stdout stays a live pipe.
    _stdout: BufReader<std::process::ChildStdout>,
}

impl FakeProcess {
    fn start(extra: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_adsync"))
            .args([
                "fake-server",
                "reddit",
                "--port",
                "0",
                "--token",
                "cli-test-token",
            ])
            .args(extra)
            .env_remove("ADSYNC_FAKE_REDDIT_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("fake server starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut stdout = BufReader::new(stdout);
        let mut first = String::new();
        stdout.read_line(&mut first).expect("the address line");
        let url = first.trim().rsplit(' ').next().expect("url").to_string();
        let addr = url
            .strip_prefix("http://")
            .and_then(|rest| rest.strip_suffix("/api/v3"))
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("unexpected first line: {first}"));
        FakeProcess {
            child,
            addr,
            _stdout: stdout,
        }
    }

    fn held(&self) -> FakeEntities {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(FakeEntities::fetch(self.addr))
            .expect("admin endpoint")
    }
}

impl Drop for FakeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn push_to_the_fake_server_process_with_lost_responses_and_5xx_has_no_duplicates() {
    let fake = FakeProcess::start(&["--lose-create-responses", "2", "--fail-5xx", "1"]);
    assert!(fake.addr.ip().is_loopback());
    let dir = tempfile::tempdir().expect("tempdir");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/campaign_set.json");
    let out = Command::new(env!("CARGO_BIN_EXE_adsync"))
        .arg("--db")
        .arg(dir.path().join("adsync.db"))
        .args([
            "push",
            example,
            "--platform",
            "reddit",
            "--account",
            "a2_cli",
            "--json",
            "--reddit-base-url",
            &format!("http://{}/api/v3", fake.addr),
        ])
        .env("ADSYNC_REDDIT_TOKEN", "cli-test-token")
        .env_remove("ADSYNC_REDDIT_BASE_URL")
        .env_remove("ADSYNC_TEST_CRASH_AT")
        .output()
        .expect("adsync runs");
    assert!(
        out.status.success(),
        "{:?}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    let campaigns = report["campaigns"].as_array().expect("campaigns");
    assert_eq!(campaigns.len(), 2);
    let adopted = campaigns
        .iter()
        .flat_map(|c| c["entities"].as_array().expect("entities"))
        .filter(|e| e["result"]["result"] == "adopted")
        .count();
    assert!(adopted >= 2, "lost responses are adopted: {report:#}");

    let held = fake.held();
    assert!(held.duplicates().is_empty(), "{:?}", held.duplicates());
    // 2 campaigns, 3 ad groups, 4 ads in the example set.
    assert_eq!(
        (held.campaigns.len(), held.ad_groups.len(), held.ads.len()),
        (2, 3, 4)
    );
}
