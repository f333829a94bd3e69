//! `adsync demo`: the whole story in one command, over real HTTP against an
//! in-process fake Reddit Ads server on 127.0.0.1.
//!
//! 1. Push the example set; the server stores the first ad group create but its
//!    response is lost (the connection closes).
//! 2. Mid-push, "crash": an ad create reaches the server, then the process dies
//!    before recording it (simulated: the runner is dropped without its state).
//! 3. A new runner on the same store resumes; it looks both entities up instead
//!    of re-sending the creates, and adopts them.
//! 4. Count what the server holds through its admin endpoint: one entity per
//!    local entity, no duplicates.

use std::sync::Arc;
use std::time::Duration;

use adsync::reddit::{RedditAdapter, RedditConfig};
use adsync::Backoff;
use adsync::CampaignSet;
use adsync::Secret;
use adsync::Step;
use adsync::Store;
use adsync::{Clock, SystemClock};
use adsync::{EntityKind, PushAdapter};
use adsync::{Machine, Next};
use adsync::{PushEffect, PushMachine, Pusher};
use adsync_fakes::fixtures::EXAMPLE_SET_JSON as EXAMPLE;
use adsync_fakes::reddit::{
    FakeEntities, FakeReddit, FakeRedditConfig, RedditFault, RedditFaultKind,
};

use crate::exit::Exit;
use crate::failure::Failure;
use crate::{progress, report};

const ACCOUNT: &str = "a2_demo";

fn pusher(store: Store, adapter: &Arc<RedditAdapter>, clock: &Arc<dyn Clock>) -> Pusher {
    Pusher::new(store, adapter.clone(), clock.clone())
}

fn failed(context: &str) -> impl Fn(String) -> Failure + '_ {
    move |e| Failure::failed(format!("{context}: {e}"))
}

/// `adsync demo`: exit 0 when the server holds exactly one of each entity.
pub async fn run() -> Result<Exit, Failure> {
    let set = CampaignSet::from_json(EXAMPLE, "examples/campaign_set.json")
        .map_err(|e| Failure::usage(e.to_string()))?;
    let dir = tempfile_dir()?;
    let db = dir.join("adsync.db");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);

    // A per-run token: it must never show up in the output below.
    let token = format!("demo-{:016x}", rand::random::<u64>());
    let fake = FakeReddit::start(FakeRedditConfig {
        token: token.clone(),
        ..FakeRedditConfig::default()
    })
    .await
    .map_err(|e| failed("cannot start the fake Reddit server")(e.to_string()))?;
    fake.inject(
        RedditFault::new(RedditFaultKind::LoseResponse { withhold_ms: None })
            .method("POST")
            .path_contains("/ad_groups")
            .times(1),
    );
    let adapter = Arc::new(
        RedditAdapter::new(RedditConfig {
            base_url: fake.base_url(),
            token: Some(Secret::new(token)),
            timeout: Duration::from_secs(10),
            backoff: Backoff {
                base: Duration::from_millis(50),
                max: Duration::from_secs(2),
                max_attempts: 5,
            },
            ..RedditConfig::default()
        })
        .map_err(|e| failed("cannot build the Reddit adapter")(e.to_string()))?,
    );
    let print = progress::printer(false);

    outln!(
        "── fake Reddit Ads API at {} (in this process, over HTTP) ──",
        fake.base_url()
    );
    outln!(
        "── process 1: push `{}` to account {ACCOUNT} (store {}) ──",
        set.name,
        db.display()
    );
    outln!("   the server will store the first ad group create, then lose its response");
    let ids = {
        let p = pusher(Store::open_from_async(&db).await?, &adapter, &clock);
        let ids = p.start(&set, ACCOUNT).await?;
        let first = &ids[0];
        // Step the first campaign until an ad create is the next durable effect.
        while let Step::Transitioned(t) = p.step(first).await? {
            print(&t);
            if let Next::Effect(PushEffect::Create { parent, spec }) = PushMachine::next(&t.state) {
                if spec.kind() == EntityKind::Ad {
                    // The create reaches the server; the process dies before recording it.
                    let id = adapter
                        .create(&parent, &spec)
                        .await
                        .map_err(|e| failed("the interrupted create")(e.to_string()))?;
                    outln!("   💥 the ad create reached the server as {id}, then the process was killed");
                    break;
                }
            }
        }
        ids
    };

    outln!("\n── process 2: resume from the checkpoints ──");
    let p = pusher(Store::open_from_async(&db).await?, &adapter, &clock);
    let report = p.run_all_observed(&ids, print).await;
    report::print(&report, false);

    let held = FakeEntities::fetch(fake.addr())
        .await
        .map_err(|e| failed("cannot read the admin endpoint")(e.to_string()))?;
    let posts = fake
        .requests()
        .iter()
        .filter(|r| r.method == "POST")
        .count();
    fake.shutdown().await;
    let local: usize = set
        .campaigns
        .iter()
        .map(|c| 1 + c.ad_groups.iter().map(|g| 1 + g.ads.len()).sum::<usize>())
        .sum();
    let keywords_ok = set.campaigns.iter().flat_map(|c| &c.ad_groups).all(|g| {
        let wanted: Vec<&str> = g.keywords.iter().map(|k| k.text.as_str()).collect();
        held.ad_groups.iter().any(|v| {
            v.get("name").and_then(|n| n.as_str()) == Some(g.name.as_str())
                && v.pointer("/targeting/keywords")
                    .and_then(|k| k.as_array())
                    .map(|k| k.iter().filter_map(|s| s.as_str()).collect::<Vec<_>>())
                    .unwrap_or_default()
                    == wanted
        })
    });
    let duplicates = held.duplicates();
    outln!(
        "\nserver (GET /__admin/entities): {} campaigns, {} ad groups, {} ads for {local} local entities \
         ({} create POSTs received); keywords in ad group targeting: {}; duplicates: {}",
        held.campaigns.len(),
        held.ad_groups.len(),
        held.ads.len(),
        posts,
        if keywords_ok { "all in place" } else { "MISSING" },
        if duplicates.is_empty() {
            "none".to_string()
        } else {
            duplicates.join(", ")
        }
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(
        if duplicates.is_empty() && keywords_ok && report.all_synced() && held.len() == local {
            Exit::Ok
        } else {
            Exit::SyncFailed
        },
    )
}

fn tempfile_dir() -> Result<std::path::PathBuf, Failure> {
    let dir = std::env::temp_dir().join(format!("adsync-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Failure {
        exit: Exit::StoreUnusable,
        message: format!("cannot create {}: {e}", dir.display()),
    })?;
    Ok(dir)
}
