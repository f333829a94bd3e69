//! Process crashes of a *converging* push: a set already on the platform is
//! pushed again changed, so the push reads the platform, then updates one ad
//! group's bid (only that field), adopts an ad group made by hand
//! (`--adopt-existing`), creates a new ad under it and archives an ad the set
//! no longer names (`--prune`). A real `adsync` process is killed with
//! SIGKILL just before and just after each checkpoint in turn, and a new
//! process resumes. After every variant the platform equals the set: no
//! duplicate, the bid changed, the removed ad archived, the hand-made group
//! adopted, and every id in the store is on the platform.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use adsync::memory::MemoryPlatform;
use adsync::{AdGroup, ConfiguredStatus};
use adsync::{EntityKind, EntitySpec, Parent, PushMachine, Status, Store, SystemClock};

const ACCOUNT: &str = "a2_crash";

/// The second set: `TWO_CAMPAIGNS` with g1's bid set, ad a2 removed, and a
/// group g4 (made by hand on the platform before the push) with a new ad.
const CHANGED: &str = r#"{"name": "crash", "campaigns": [
  {"id": "c1", "name": "Campaign one", "objective": "CLICKS", "ad_groups": [
    {"id": "g1", "name": "Group one", "bid_value_micros": 2500000,
     "ads": [{"id": "a1", "name": "Ad one", "post_id": "t3_1"}],
     "keywords": [{"id": "k1", "text": "shoes"}]},
    {"id": "g2", "name": "Group two"},
    {"id": "g4", "name": "Group four", "ads": [{"id": "a4", "name": "Ad four", "post_id": "t3_4"}]}]},
  {"id": "c2", "name": "Campaign two", "objective": "IMPRESSIONS", "ad_groups": [
    {"id": "g3", "name": "Group three", "keywords": [{"id": "k3", "text": "boots"}]}]}]}"#;

fn adsync(dir: &Path, args: &[&str], crash_at: Option<&str>) -> std::process::ExitStatus {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_adsync"));
    cmd.arg("--db").arg(dir.join("adsync.db")).args(args);
    cmd.args(["--platform", "memory", "--memory-file"])
        .arg(dir.join("platform.json"));
    cmd.env_remove("ADSYNC_TEST_CRASH_AT")
        .stdout(std::process::Stdio::null());
    if let Some(at) = crash_at {
        cmd.env("ADSYNC_TEST_CRASH_AT", at);
    }
    cmd.status().expect("adsync runs")
}

fn platform(dir: &Path) -> MemoryPlatform {
    MemoryPlatform::open_file(dir.join("platform.json"), Arc::new(SystemClock)).unwrap()
}

/// The first push (not killed), then the hand-made group under c1.
fn prepare(dir: &Path) {
    std::fs::write(dir.join("first.json"), common::TWO_CAMPAIGNS).unwrap();
    std::fs::write(dir.join("changed.json"), CHANGED).unwrap();
    let first = dir.join("first.json");
    let pushed = adsync(
        dir,
        &["push", first.to_str().unwrap(), "--account", ACCOUNT],
        None,
    );
    assert!(pushed.success(), "the first push: {pushed:?}");
    let platform = platform(dir);
    let c1 = platform
        .entities()
        .into_iter()
        .find(|e| e.kind == EntityKind::Campaign && e.name == "Campaign one")
        .expect("c1 on the platform");
    platform.insert(
        &Parent {
            account_id: ACCOUNT.into(),
            parent_id: Some(c1.id),
        },
        &EntitySpec::AdGroup(AdGroup {
            id: String::new(),
            name: "Group four".into(),
            status: ConfiguredStatus::Paused,
            bid_strategy: None,
            bid_type: None,
            bid_value_micros: None,
            start_time: None,
            end_time: None,
            ads: vec![],
            keywords: vec![],
        }),
    );
}

fn converge(dir: &Path, crash_at: Option<&str>) -> std::process::ExitStatus {
    let set = dir.join("changed.json");
    adsync(
        dir,
        &[
            "push",
            set.to_str().unwrap(),
            "--account",
            ACCOUNT,
            "--adopt-existing",
            "--prune",
        ],
        crash_at,
    )
}

/// Checks that the platform equals the changed set; returns the number of
/// checkpoints the converging push wrote (its history, start excluded).
fn check(dir: &Path, variant: &str) -> usize {
    let platform = platform(dir);
    let held = platform.entities();
    assert!(
        platform.duplicates().is_empty(),
        "{variant}: duplicates {:?}",
        platform.duplicates()
    );
    // 9 first-push entities, the hand-made group and the new ad.
    assert_eq!(held.len(), 11, "{variant}: platform holds {held:#?}");
    let status_of = |name: &str| {
        held.iter()
            .find(|e| e.name == name)
            .map(|e| match &e.spec {
                EntitySpec::Ad(a) => a.status,
                EntitySpec::AdGroup(g) => g.status,
                EntitySpec::Campaign(c) => c.status,
                EntitySpec::Keyword(_) => ConfiguredStatus::Active,
            })
            .unwrap_or_else(|| panic!("{variant}: {name} is on the platform"))
    };
    assert_eq!(status_of("Ad two"), ConfiguredStatus::Archived, "{variant}");
    assert_ne!(status_of("Ad one"), ConfiguredStatus::Archived, "{variant}");
    let g1 = held
        .iter()
        .find(|e| e.name == "Group one")
        .expect("g1 on the platform");
    match &g1.spec {
        EntitySpec::AdGroup(g) => assert_eq!(g.bid_value_micros, Some(2_500_000), "{variant}"),
        other => panic!("{variant}: g1 is {other:?}"),
    }
    let store = Store::open(dir.join("adsync.db")).unwrap();
    let mut transitions = 0;
    let mut latest = 0;
    for record in store.list() {
        let record = record.unwrap();
        assert_eq!(record.status, Status::Succeeded, "{variant}: {record:?}");
        let history = store.history(&record.id).unwrap().len() - 1;
        let checkpoint = adsync::Checkpoint::<PushMachine>::try_from(record).unwrap();
        if !checkpoint.state.converges() || checkpoint.record.id.ends_with("-1") {
            continue;
        }
        latest += 1;
        transitions += history;
        for e in checkpoint.state.entities().iter() {
            let id = e
                .platform_id()
                .unwrap_or_else(|| panic!("{variant}: {} has no id", e.local_id()));
            let on_platform = held
                .iter()
                .find(|h| h.id == id)
                .unwrap_or_else(|| panic!("{variant}: {id} not on platform"));
            assert_eq!(
                (on_platform.kind, on_platform.name.as_str()),
                (e.kind(), e.spec().lookup_name()),
                "{variant}"
            );
        }
    }
    assert_eq!(latest, 2, "{variant}: one converging sync per campaign");
    transitions
}

#[test]
fn a_converging_push_killed_at_every_checkpoint_resumes_to_the_set() {
    let clean = tempfile::tempdir().unwrap();
    prepare(clean.path());
    assert!(converge(clean.path(), None).success());
    let boundaries = check(clean.path(), "clean run");
    // Per campaign: the reading, then c1's update, adoption-free steps, the
    // create and the archive; c2 has nothing to write.
    assert!(boundaries >= 4, "{boundaries}");

    let mut killed = 0;
    for n in 1..=boundaries {
        for when in ["before", "after"] {
            let variant = format!("kill at checkpoint {n} ({when} it is durable)");
            let dir = tempfile::tempdir().unwrap();
            prepare(dir.path());
            let status = converge(dir.path(), Some(&format!("{n}:{when}")));
            assert_eq!(
                status.signal(),
                Some(libc::SIGKILL),
                "{variant}: the push was not killed: {status:?}"
            );
            killed += 1;
            let resumed = adsync(dir.path(), &["resume", "--all"], None);
            assert!(resumed.success(), "{variant}: resume exited {resumed:?}");
            check(dir.path(), &variant);
        }
    }
    assert_eq!(killed, 2 * boundaries);
}
