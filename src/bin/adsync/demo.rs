//! `adsync demo`: the whole story in one command, against the in-memory platform.
//!
//! 1. Push the example set; the platform loses the response to one ad group create.
//! 2. Mid-push, "crash": an ad create reaches the platform, then the process dies
//!    before recording it (simulated: the runner is dropped without its state).
//! 3. A new runner on the same store resumes; it looks both entities up instead
//!    of re-sending the creates, and adopts them.
//! 4. Count what the platform holds: one entity per local entity, no duplicates.

use std::sync::Arc;

use adsync::adapter::{EntityKind, PushAdapter};
use adsync::clock::{Clock, SystemClock};
use adsync::machine::{Machine, Next};
use adsync::model::CampaignSet;
use adsync::platform::memory::{Fault, MemoryPlatform, Op};
use adsync::push::{AdapterEffects, PushEffect, PushMachine, Pusher};
use adsync::runner::{Runner, Step};
use adsync::store::Store;

use crate::{output, Failure};

const EXAMPLE: &str = include_str!("../../../examples/campaign_set.json");
const ACCOUNT: &str = "a2_demo";

fn pusher(store: Arc<Store>, platform: &Arc<MemoryPlatform>, clock: &Arc<dyn Clock>) -> Pusher {
    let runner = Runner::<PushMachine>::new(
        store,
        Arc::new(AdapterEffects::new(platform.clone())),
        clock.clone(),
    );
    Pusher::new(Arc::new(runner), platform.as_ref(), clock.clone())
}

pub async fn run() -> Result<u8, Failure> {
    let set = CampaignSet::from_json(EXAMPLE, "examples/campaign_set.json")
        .map_err(|e| Failure::usage(e.to_string()))?;
    let dir = tempfile_dir()?;
    let db = dir.join("adsync.db");
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let platform = Arc::new(MemoryPlatform::new(clock.clone()));
    platform.fail_next(Op::Create, Some(EntityKind::AdGroup), Fault::LoseResponse);
    let print = output::printer(false);

    println!(
        "── process 1: push `{}` to account {ACCOUNT} (store {}) ──",
        set.name,
        db.display()
    );
    println!("   the platform will lose the response to the first ad group create");
    let ids = {
        let p = pusher(Store::open(&db)?, &platform, &clock);
        let ids = p.start(&set, ACCOUNT).await?;
        let first = &ids[0];
        // Step the first campaign until an ad create is the next durable effect.
        while let Step::Transitioned(t) = p.runner().step(first).await? {
            print(&t);
            if let Next::Effect(PushEffect::Create { parent, spec }) = PushMachine::next(&t.state) {
                if spec.kind() == EntityKind::Ad {
                    // The create reaches the platform; the process dies before recording it.
                    let id = platform.create(&parent, &spec).await.map_err(|e| Failure {
                        code: 1,
                        message: e.to_string(),
                    })?;
                    println!("   💥 the ad create reached the platform as {id}, then the process was killed");
                    break;
                }
            }
        }
        ids
    };

    println!("\n── process 2: resume from the checkpoints ──");
    let p = pusher(Store::open(&db)?, &platform, &clock);
    let report = p.run_all_observed(&ids, print).await;
    output::report(&report, false);

    let duplicates = platform.duplicates();
    let local: usize = set
        .campaigns
        .iter()
        .map(|c| {
            1 + c
                .ad_groups
                .iter()
                .map(|g| 1 + g.ads.len() + g.keywords.len())
                .sum::<usize>()
        })
        .sum();
    println!(
        "\nplatform: {} entities for {local} local entities, {} creates sent, duplicates: {}",
        platform.entities().len(),
        platform.creations(),
        if duplicates.is_empty() {
            "none".to_string()
        } else {
            format!("{duplicates:?}")
        }
    );
    let _ = std::fs::remove_dir_all(&dir);
    Ok(
        if duplicates.is_empty() && report.all_synced() && platform.entities().len() == local {
            0
        } else {
            1
        },
    )
}

fn tempfile_dir() -> Result<std::path::PathBuf, Failure> {
    let dir = std::env::temp_dir().join(format!("adsync-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| Failure {
        code: 4,
        message: format!("cannot create {}: {e}", dir.display()),
    })?;
    Ok(dir)
}
