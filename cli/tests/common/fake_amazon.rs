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
