//! A fake Reddit Ads server on its own runtime, for tests that drive the real
//! `adsync` binary from plain (non-async) test code.

use crate::reddit::{FakeEntities, FakeReddit, FakeRedditConfig, FakeRedditHandle};

/// A [`FakeReddit`] with a one-worker tokio runtime of its own, so a plain
/// `#[test]` can start it, run the binary against it and read what it holds
/// without being async itself. [`stop`](Self::stop) shuts it down.
pub struct FakeRedditServer {
    runtime: tokio::runtime::Runtime,
    fake: Option<FakeRedditHandle>,
    /// The bearer token the server accepts.
    pub token: String,
}

impl FakeRedditServer {
    /// Starts the server on 127.0.0.1 (any free port), accepting `token`.
    pub fn start(token: &str) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let fake = runtime
            .block_on(FakeReddit::start(FakeRedditConfig {
                token: token.to_string(),
                ..FakeRedditConfig::default()
            }))
            .expect("fake Reddit starts on 127.0.0.1:0");
        FakeRedditServer {
            runtime,
            fake: Some(fake),
            token: token.to_string(),
        }
    }

    /// The running server, to inject faults or read its request log.
    pub fn fake(&self) -> &FakeRedditHandle {
        self.fake.as_ref().expect("running")
    }

    /// API requests received (the admin endpoint is not logged).
    pub fn requests(&self) -> usize {
        self.fake().requests().len()
    }

    /// What the server holds, read through its admin endpoint.
    pub fn held(&self) -> FakeEntities {
        self.runtime
            .block_on(FakeEntities::fetch(self.fake().addr()))
            .expect("admin endpoint answers")
    }

    /// Shuts the server down and waits for it; dropping without `stop` leaves
    /// the runtime to end its task.
    pub fn stop(mut self) {
        if let Some(fake) = self.fake.take() {
            self.runtime.block_on(fake.shutdown());
        }
    }
}
