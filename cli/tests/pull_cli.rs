//! The pull commands end to end: `adsync fake-server amazon` in a child process
//! on 127.0.0.1, `adsync pull`, `show`, `status` and `history` against it, the
//! admin endpoint changing the data between pulls, reading with no
//! credentials, and no token in the store.

use std::path::Path;
use std::process::{Command, Output};

mod common;
use common::fake_amazon::{pull_args, FakeAmazonProcess};

const PROFILE: &str = "77";
const TOKEN: &str = "sekrit-token-4f1c9e";

/// `adsync fake-server amazon` with a small generated profile.
fn start_server() -> FakeAmazonProcess {
    FakeAmazonProcess::generated(PROFILE, [2, 2, 3], &["--token", TOKEN])
}

/// Runs `call` with an HTTP client (no proxy) on a runtime of its own.
fn with_client<F: std::future::Future>(call: impl FnOnce(reqwest::Client) -> F) -> F::Output {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    rt.block_on(call(client))
}

/// Posts `body` to the fake's admin endpoint `path`; the HTTP status.
fn admin(server: &FakeAmazonProcess, path: &str, body: serde_json::Value) -> u16 {
    let url = format!("{}{path}", server.url);
    with_client(|client| async move {
        client
            .post(url)
            .json(&body)
            .send()
            .await
            .expect("admin call")
            .status()
            .as_u16()
    })
}

fn adsync(db: &Path, args: &[&str], token: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_adsync"))
        .arg("--db")
        .arg(db)
        .args(args)
        .env("ADSYNC_AMAZON_TOKEN", token)
        .env("ADSYNC_AMAZON_CLIENT_ID", "fake-client-id")
        .env_remove("ADSYNC_AMAZON_HOST")
        .env_remove("ADSYNC_TEST_CRASH_AT")
        .output()
        .expect("adsync runs")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn files_contain(dir: &Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir)
        .expect("dir")
        .filter_map(|e| e.ok())
        .any(|e| {
            let path = e.path();
            if path.is_dir() {
                files_contain(&path, needle)
            } else {
                std::fs::read(&path)
                    .map(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
                    .unwrap_or(false)
            }
        })
}

#[test]
fn pull_show_status_history_against_the_fake_server_binary() {
    let server = start_server();
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("adsync.db");
    let pull = |token: &str| {
        adsync(
            &db,
            &pull_args(
                PROFILE,
                &server.url,
                &[
                    "--page-size",
                    "5",
                    "--rate",
                    "200",
                    "--max-rate",
                    "200",
                    "--json",
                ],
            ),
            token,
        )
    };

    // A wrong token: a clear 401 error, exit 1, nothing persisted.
    let out = pull("wrong-token");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let status = json(&out);
    assert_eq!(status[0]["state"], "failed");
    assert!(
        status[0]["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("401 unauthorized"),
        "{status}"
    );
    assert_eq!(status[0]["counts"], serde_json::Value::Null);

    // The right token: the failed pull resumes where it stopped (its first page).
    let out = pull(TOKEN);
    assert!(out.status.success(), "{out:?}");
    let status = json(&out);
    assert_eq!(status[0]["state"], "completed");
    assert_eq!(
        status[0]["counts"],
        serde_json::json!({"campaigns": 2, "ad_groups": 4, "keywords": 12})
    );

    let show = |args: &[&str]| {
        let mut all = vec!["show", "--profile", PROFILE];
        all.extend_from_slice(args);
        adsync(&db, &all, TOKEN)
    };
    let keywords = json(&show(&["--kind", "keywords", "--json"]));
    let keywords = keywords.as_array().expect("array").clone();
    assert_eq!(keywords.len(), 12);
    let gone = keywords[4]["keywordId"].as_str().expect("id").to_string();
    let out = show(&["--kind", "keywords", "--id", &gone]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(&gone));

    // Change the platform through the admin endpoint, then pull again.
    let code = admin(
        &server,
        "/_admin/mutations",
        serde_json::json!({"op": "remove", "profile_id": PROFILE, "kind": "keywords", "id": gone}),
    );
    assert_eq!(code, 204);
    assert!(pull(TOKEN).status.success());
    let keywords = json(&show(&["--kind", "keywords", "--json"]));
    assert_eq!(keywords.as_array().map(Vec::len), Some(11));
    let out = show(&["--kind", "keywords", "--id", &gone]);
    assert_eq!(
        out.status.code(),
        Some(6),
        "the removed keyword is not found"
    );
    let campaigns = json(&show(&["--kind", "campaigns", "--json", "--limit", "1"]));
    assert_eq!(campaigns.as_array().map(Vec::len), Some(1));

    // `status` lists the pull sync with its fields; `history` shows its transitions.
    let status = json(&adsync(&db, &["status", "--json"], TOKEN));
    let pulls = status["pulls"].as_array().expect("pulls").clone();
    assert_eq!(pulls.len(), 1);
    let p = &pulls[0];
    assert_eq!(p["sync"], "pull-amazon-77");
    assert_eq!(p["state"], "completed");
    assert_eq!(p["run"], 2, "the resumed pull, then a new one");
    assert_eq!(p["counts"]["keywords"], 11);
    for field in ["started_at", "finished_at", "last_success_at"] {
        assert!(p[field].is_string(), "{field}: {p}");
    }
    let out = adsync(&db, &["status"], TOKEN);
    assert!(String::from_utf8_lossy(&out.stdout).contains("pull-amazon-77"));
    let out = adsync(&db, &["history", "pull-amazon-77"], TOKEN);
    assert!(out.status.success());
    let history = String::from_utf8_lossy(&out.stdout);
    assert!(history.contains("401 unauthorized"), "{history}");
    assert!(history.contains("generation 2 is current"), "{history}");

    // Reading needs no platform: with no Amazon variable at all (and the fake
    // server gone), `show` and `status` print what they printed with them.
    drop(server);
    for args in [
        &["show", "--profile", PROFILE, "--json"][..],
        &["show", "--profile", PROFILE, "--kind", "keywords", "--json"],
        &["status", "--json"],
    ] {
        let bare = common::adsync(&db, args);
        assert!(bare.status.success(), "{args:?}: {bare:?}");
        assert_eq!(json(&bare), json(&adsync(&db, args, TOKEN)), "{args:?}");
    }

    // The token is in no checkpoint, history entry or snapshot.
    assert!(!files_contain(&db, TOKEN.as_bytes()));
    assert!(!history.contains(TOKEN));
}

/// `show --json` reproduces what the API listed: every field of every entity,
/// `dynamicBidding` and fields adsync does not know included (key order aside).
#[test]
fn show_json_reproduces_the_listing_field_for_field() {
    let generator = adsync_fakes::Generator {
        campaigns: 4,
        ad_groups_per_campaign: 2,
        keywords_per_ad_group: 10,
        seed: 5,
    };
    let server =
        FakeAmazonProcess::generated(PROFILE, [4, 2, 10], &["--seed", "5", "--token", TOKEN]);
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("adsync.db");
    let args = pull_args(PROFILE, &server.url, &["--page-size", "7"]);
    let out = adsync(&db, &args, TOKEN);
    assert!(out.status.success(), "{out:?}");
    let data = generator.generate();
    use adsync_fakes::amazon::wire_json;
    for (kind, want) in [
        ("campaigns", wire_json(&data.campaigns)),
        ("ad-groups", wire_json(&data.ad_groups)),
        ("keywords", wire_json(&data.keywords)),
    ] {
        let out = adsync(
            &db,
            &["show", "--profile", PROFILE, "--kind", kind, "--json"],
            TOKEN,
        );
        assert!(out.status.success(), "{out:?}");
        assert_eq!(json(&out), want, "{kind}");
    }
    assert!(String::from_utf8_lossy(
        &adsync(
            &db,
            &[
                "show",
                "--profile",
                PROFILE,
                "--kind",
                "campaigns",
                "--json"
            ],
            TOKEN
        )
        .stdout
    )
    .contains("\"placementBidding\""));
}

/// The fake's request log (`GET /_admin/requests`).
fn requests(server: &FakeAmazonProcess) -> Vec<serde_json::Value> {
    let url = format!("{}/_admin/requests", server.url);
    with_client(|client| async move {
        client
            .get(url)
            .send()
            .await
            .expect("admin call")
            .json::<Vec<serde_json::Value>>()
            .await
            .expect("request log")
    })
}

/// A page size outside Amazon's documented range (1..=1000) is refused before
/// any request: a message naming the range, exit 2 (bad input), no request
/// at the server, and no store created.
#[test]
fn page_size_outside_the_documented_range_is_refused_before_any_request() {
    let server = start_server();
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("adsync.db");
    for size in ["1001", "0"] {
        let out = adsync(
            &db,
            &pull_args(PROFILE, &server.url, &["--page-size", size]),
            TOKEN,
        );
        assert_eq!(out.status.code(), Some(2), "--page-size {size}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("--page-size") && stderr.contains(size) && stderr.contains("1..=1000"),
            "--page-size {size}: {stderr}"
        );
        assert!(requests(&server).is_empty(), "--page-size {size}");
        assert!(!db.exists(), "--page-size {size}: nothing written");
    }
    // The bounds themselves are accepted.
    let out = adsync(
        &db,
        &pull_args(PROFILE, &server.url, &["--page-size", "1000"]),
        TOKEN,
    );
    assert!(out.status.success(), "{out:?}");
    assert!(!requests(&server).is_empty());
}

/// Without a terminal (stderr is a pipe here), a pull prints plain lines: every
/// phase change and every 100th transition on stdout, and no progress bar
/// (no carriage returns or escape sequences) on stderr.
#[test]
fn without_a_terminal_a_pull_prints_phase_changes_and_every_100th_transition() {
    let server = FakeAmazonProcess::generated(PROFILE, [2, 2, 30], &["--token", TOKEN]);
    let dir = tempfile::tempdir().expect("dir");
    let db = dir.path().join("adsync.db");
    let out = adsync(
        &db,
        &pull_args(
            PROFILE,
            &server.url,
            &["--page-size", "1", "--rate", "1000", "--max-rate", "1000"],
        ),
        TOKEN,
    );
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains('\r') && !stderr.contains('\u{1b}'),
        "{stderr:?}"
    );
    let transitions: Vec<&str> = stdout.lines().filter(|l| l.contains(" → ")).collect();
    // 126 pages (4 + 2 + 120, one entity each, plus an empty last page per
    // kind at most) and the phase changes: far fewer lines than transitions.
    assert!(transitions.iter().any(|l| l.contains(" #100 ")), "{stdout}");
    for line in &transitions {
        let (from, to) = line
            .split_once(": ")
            .and_then(|(head, _)| head.split_once(" → "))
            .expect("from → to");
        let from = from.rsplit(' ').next().unwrap_or_default();
        assert!(
            from != to || line.contains(" #100 "),
            "a line that is neither a phase change nor the 100th: {line}"
        );
    }
    for phase in ["FetchingKeywords", "Persisting", "Completed"] {
        assert!(stdout.contains(phase), "{phase}: {stdout}");
    }
    assert!(stdout.contains("persisted: "), "{stdout}");
}
