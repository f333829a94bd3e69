//! Small helpers the benchmarks share: their flags, the raw durable-write
//! rate they report beside their own figures, and a platform with latency.

use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use adsync::converge::Observed;
use adsync::memory::MemoryPlatform;
use adsync::{
    AdapterError, EntityKind, EntitySpec, FoundEntity, Keyword, KeywordModel, Parent,
    PlatformEntity, PushAdapter, Timestamp,
};

/// The value after flag `name` on the command line (`--clients 32`).
pub fn arg(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

/// Raw `write` + `fdatasync` of one 4 KiB page per call in directory `dir`,
/// for `seconds`: what one durable write costs on this disk right now.
pub fn raw_fdatasync_rate(dir: &Path, seconds: f64) -> f64 {
    let mut file = std::fs::File::create(dir.join("raw-fdatasync")).expect("raw file");
    let page = vec![7u8; 4096];
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed().as_secs_f64() < seconds {
        file.write_all(&page).expect("write");
        file.sync_data().expect("fdatasync");
        n += 1;
    }
    n as f64 / start.elapsed().as_secs_f64()
}

/// The in-memory platform answering every call after `latency`, as a remote
/// platform would, and counting the calls (each paid the latency).
pub struct SlowPlatform {
    inner: Arc<MemoryPlatform>,
    latency: Duration,
    calls: Arc<AtomicUsize>,
}

impl SlowPlatform {
    /// `inner` behind `latency` per call; `calls` counts them (share one
    /// counter between several workers' adapters to count them all).
    pub fn new(inner: Arc<MemoryPlatform>, latency: Duration, calls: Arc<AtomicUsize>) -> Self {
        SlowPlatform {
            inner,
            latency,
            calls,
        }
    }

    async fn wait(&self) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        if !self.latency.is_zero() {
            tokio::time::sleep(self.latency).await;
        }
    }
}

#[async_trait::async_trait]
impl PushAdapter for SlowPlatform {
    fn platform(&self) -> &str {
        self.inner.platform()
    }

    fn keyword_model(&self) -> KeywordModel {
        self.inner.keyword_model()
    }

    async fn create(&self, parent: &Parent, spec: &EntitySpec) -> Result<String, AdapterError> {
        self.wait().await;
        self.inner.create(parent, spec).await
    }

    async fn update(
        &self,
        parent: &Parent,
        id: &str,
        spec: &EntitySpec,
    ) -> Result<(), AdapterError> {
        self.wait().await;
        self.inner.update(parent, id, spec).await
    }

    async fn find(
        &self,
        parent: &Parent,
        kind: EntityKind,
        name: &str,
        created_after: Timestamp,
    ) -> Result<Vec<FoundEntity>, AdapterError> {
        self.wait().await;
        self.inner.find(parent, kind, name, created_after).await
    }

    async fn get(
        &self,
        parent: &Parent,
        kind: EntityKind,
        id: &str,
    ) -> Result<Option<PlatformEntity>, AdapterError> {
        self.wait().await;
        self.inner.get(parent, kind, id).await
    }

    async fn list(&self, parent: &Parent, kind: EntityKind) -> Result<Vec<Observed>, AdapterError> {
        self.wait().await;
        self.inner.list(parent, kind).await
    }

    async fn set_ad_group_keywords(
        &self,
        parent: &Parent,
        ad_group_id: &str,
        keywords: &[Keyword],
    ) -> Result<(), AdapterError> {
        self.wait().await;
        self.inner
            .set_ad_group_keywords(parent, ad_group_id, keywords)
            .await
    }
}

/// The fake Reddit server at Reddit's limits scaled from a minute to
/// `window` (`reads` and `writes` per window, fractional `X-Ratelimit-Reset`
/// when `fractional_reset`), and an adapter whose client-side limiter
/// matches it: what the push benches run against.
pub async fn scaled_reddit(
    reads: u32,
    writes: u32,
    window: Duration,
    fractional_reset: bool,
) -> (crate::FakeRedditHandle, Arc<adsync::reddit::RedditAdapter>) {
    use adsync::reddit::{RatePolicy, RedditAdapter, RedditConfig};
    const TOKEN: &str = "bench-token";
    let fake = crate::FakeReddit::start(crate::FakeRedditConfig {
        token: TOKEN.into(),
        reads_per_window: reads,
        writes_per_window: writes,
        window,
        fractional_reset,
        ..crate::FakeRedditConfig::default()
    })
    .await
    .expect("fake Reddit starts");
    let adapter = RedditAdapter::new(RedditConfig {
        base_url: fake.base_url(),
        token: Some(adsync::Secret::new(TOKEN)),
        timeout: Duration::from_secs(10),
        rate: RatePolicy {
            reads,
            writes,
            window,
        },
        backoff: adsync::Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(2),
            max_attempts: 6,
        },
        ..RedditConfig::default()
    })
    .expect("adapter");
    (fake, Arc::new(adapter))
}
