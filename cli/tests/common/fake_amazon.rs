//! `adsync fake-server amazon` in a child process, for tests that drive the
//! real `adsync` binary against it.

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};

/// The running server; killed when dropped.
pub struct FakeAmazonProcess {
    child: Child,
    /// Its base URL (`http://127.0.0.1:PORT`).
    pub url: String,
}

impl FakeAmazonProcess {
    /// Starts `adsync fake-server amazon --port 0` with `args` and waits for
    /// the URL it prints.
    pub fn start(args: &[&str]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_adsync"))
            .args(["fake-server", "amazon", "--port", "0"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("fake server starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("the server prints its URL");
        let url = line.trim().to_string();
        assert!(url.starts_with("http://127.0.0.1:"), "{url}");
        FakeAmazonProcess { child, url }
    }
}

impl Drop for FakeAmazonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl FakeAmazonProcess {
    /// A fake serving one generated profile of `campaigns × ad groups per
    /// campaign × keywords per ad group` (`shape`), with `extra` arguments
    /// (`--token`, `--seed`, …).
    pub fn generated(profile: &str, shape: [usize; 3], extra: &[&str]) -> Self {
        let [campaigns, ad_groups, keywords] = shape.map(|n| n.to_string());
        let mut args = vec![
            "--profile",
            profile,
            "--campaigns",
            &campaigns,
            "--ad-groups-per-campaign",
            &ad_groups,
            "--keywords-per-ad-group",
            &keywords,
        ];
        args.extend_from_slice(extra);
        Self::start(&args)
    }
}

/// The arguments of `adsync pull` of Amazon profile `profile` from the fake
/// at `url`, then `extra` (`--page-size`, `--json`, …).
pub fn pull_args<'a>(profile: &'a str, url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "pull",
        "--platform",
        "amazon",
        "--profile",
        profile,
        "--host",
        url,
    ];
    args.extend_from_slice(extra);
    args
}
