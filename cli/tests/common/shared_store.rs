//! `adsync` on a shared store: daemons started with `--store postgres://…`
//! against a fake Reddit server, and the checks every such test makes.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::Value;

/// The token the fake Reddit server of these tests accepts.
pub const REDDIT_TOKEN: &str = "reddit-pg-test-token";

/// The `adsync` binary with `args`, in an environment without adsync's own
/// variables (so nothing from the developer's shell leaks in).
pub fn adsync_cmd(args: &[&str]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_adsync"));
    command.args(args);
    for var in [
        "ADSYNC_DB",
        "ADSYNC_STORE_URL",
        "ADSYNC_DAEMON_URL",
        "ADSYNC_TEST_CRASH_AT",
        "ADSYNC_REDDIT_TOKEN",
        "ADSYNC_REDDIT_USER_AGENT",
        "ADSYNC_REDDIT_BASE_URL",
        "ADSYNC_AMAZON_TOKEN",
        "ADSYNC_AMAZON_CLIENT_ID",
        "ADSYNC_AMAZON_HOST",
    ] {
        command.env_remove(var);
    }
    command.stdin(Stdio::null());
    command
}

/// Runs `command`: its exit code, stdout and stderr.
pub fn run_cmd(command: &mut Command) -> (Option<i32>, String, String) {
    let out = command.output().expect("adsync runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The password in `url` (`postgres://user:password@host/db`), which no
/// output may contain.
pub fn password_of(url: &str) -> String {
    let rest = url.split_once("://").expect("a URL").1;
    let credentials = rest.split_once('@').expect("credentials").0;
    let password = credentials.split_once(':').expect("a password").1;
    assert!(password.len() >= 8, "a password long enough to search for");
    password.to_string()
}

/// A running `adsync daemon --store …`, killed when dropped.
pub struct Daemon {
    pub child: Child,
    pub url: String,
    http: reqwest::Client,
}

impl Daemon {
    /// Starts a daemon on `store` pushing to the fake Reddit at `reddit`,
    /// with `extra` daemon flags (and a `--db` in `dir` it must ignore);
    /// its log goes to the test's stderr. Waits for the address it prints.
    pub fn start(store: &str, reddit: &str, dir: &Path, extra: &[&str]) -> Daemon {
        Self::spawn(store, reddit, dir, extra, |_| {})
    }

    /// [`Daemon::start`] with its log (stderr) written to `log`.
    pub fn start_logged(store: &str, reddit: &str, log: &Path, extra: &[&str]) -> Daemon {
        let file = std::fs::File::create(log).expect("a log file");
        let dir = log.parent().expect("the log's directory");
        Self::spawn(store, reddit, dir, extra, |command| {
            command.stderr(file);
        })
    }

    /// Starts a daemon; `configure` may set more environment or redirect
    /// its stderr (inherited otherwise).
    pub fn spawn(
        store: &str,
        reddit: &str,
        dir: &Path,
        extra: &[&str],
        configure: impl FnOnce(&mut Command),
    ) -> Daemon {
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
        let mut command = adsync_cmd(&args);
        command
            .env("ADSYNC_REDDIT_BASE_URL", reddit)
            .env("ADSYNC_REDDIT_TOKEN", REDDIT_TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        configure(&mut command);
        let mut child = command.spawn().expect("adsync daemon starts");
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

    /// One request to the control API: its status and JSON body.
    pub async fn json(
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

    /// `GET /v1/syncs`: every sync the daemon's store holds.
    pub async fn syncs(&self) -> Vec<Value> {
        let (status, body) = self.json(reqwest::Method::GET, "/v1/syncs", None).await;
        assert_eq!(status, 200, "{body}");
        body["syncs"].as_array().expect("syncs").clone()
    }

    /// Kills the daemon at once (SIGKILL), as a machine dying would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}
