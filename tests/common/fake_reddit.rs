//! A fake Reddit Ads server on its own runtime, for tests that drive the real
//! `adsync` binary from plain (non-async) test code.

use adsync::platform::reddit::fake_server::FakeEntities;
use adsync::platform::reddit::{FakeReddit, FakeRedditConfig, FakeRedditHandle};

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

    pub fn stop(mut self) {
        if let Some(fake) = self.fake.take() {
            self.runtime.block_on(fake.shutdown());
        }
    }
}
