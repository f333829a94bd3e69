//! Process crashes during a pull: a real `adsync pull` process is killed with
//! SIGKILL at each checkpoint boundary in turn (just before a checkpoint is
//! written, and just after), then a new process resumes. The fake Amazon server
//! runs in this test process on 127.0.0.1 and counts every request, so the test
//! knows exactly which pages were fetched by which process.

use std::collections::HashSet;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus};

use adsync::testing::{self as snapshot, AMAZON};
use adsync::Store;
use adsync::{ProfileSnapshot, PullMachine};
use adsync_fakes::amazon::{wire_json, ListKind, Mutation, RequestRecord};
use adsync_fakes::{FakeAmazon, FakeAmazonConfig, FakeAmazonHandle, Generator, ProfileData};

const PROFILE: &str = "271828";
const PAGE: usize = 4;

fn data() -> ProfileData {
    Generator {
        campaigns: 3,
        ad_groups_per_campaign: 2,
        keywords_per_ad_group: 4,
        seed: 9,
    }
    .generate()
}

fn pages_of(d: &ProfileData) -> usize {
    [d.campaigns.len(), d.ad_groups.len(), d.keywords.len()]
        .iter()
        .map(|n| n.div_ceil(PAGE).max(1))
        .sum()
}

struct Server {
    rt: tokio::runtime::Runtime,
    handle: Option<FakeAmazonHandle>,
}

impl Server {
    fn start() -> Self {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let config = FakeAmazonConfig::default().with_profile(PROFILE, data());
        let handle = rt
            .block_on(FakeAmazon::start(config))
            .expect("fake server starts");
        Server {
            rt,
            handle: Some(handle),
        }
    }

    fn h(&self) -> &FakeAmazonHandle {
        self.handle.as_ref().expect("running")
    }

    /// The pages served (200) since the last call, as (endpoint, nextToken).
    fn take_pages(&self) -> Vec<(String, Option<String>)> {
        let log: Vec<RequestRecord> = self.h().requests();
        self.h().clear_requests();
        log.into_iter()
            .filter(|r| r.status == 200)
            .map(|r| (r.path, r.next_token))
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            self.rt.block_on(h.shutdown());
        }
    }
}

fn pull(dir: &Path, url: &str, crash_at: Option<&str>) -> ExitStatus {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_adsync"));
    cmd.arg("--db")
        .arg(dir.join("adsync.db"))
        .args(["pull", "--platform", "amazon", "--profile", PROFILE])
        .args(["--host", url, "--client-id", "fake-client-id"])
        .args(["--page-size", &PAGE.to_string()])
        .args(["--rate", "1000", "--max-rate", "1000"])
        .env("ADSYNC_AMAZON_TOKEN", "fake-token")
        .env_remove("ADSYNC_AMAZON_HOST")
        .env_remove("ADSYNC_AMAZON_CLIENT_ID")
        .env_remove("ADSYNC_TEST_CRASH_AT")
        .stdout(std::process::Stdio::null());
    if let Some(at) = crash_at {
        cmd.env("ADSYNC_TEST_CRASH_AT", at);
    }
    cmd.status().expect("adsync runs")
}

fn persisted(dir: &Path) -> Option<ProfileSnapshot> {
    let store = Store::open(dir.join("adsync.db")).expect("store opens");
    snapshot::read_snapshot(&store, AMAZON, PROFILE).expect("snapshot reads")
}

fn assert_equals(snap: &ProfileSnapshot, d: &ProfileData, variant: &str) {
    assert_eq!(
        wire_json(&snap.campaigns),
        wire_json(&d.campaigns),
        "{variant}"
    );
    assert_eq!(
        wire_json(&snap.ad_groups),
        wire_json(&d.ad_groups),
        "{variant}"
    );
    assert_eq!(
        wire_json(&snap.keywords),
        wire_json(&d.keywords),
        "{variant}"
    );
}

fn checkpoints(dir: &Path) -> usize {
    let store = Store::open(dir.join("adsync.db")).expect("store opens");
    let id = adsync::testing::pull_sync_id(AMAZON, PROFILE);
    let record = store.record(&id).expect("reads").expect("exists");
    assert_eq!(record.kind, <PullMachine as adsync::Machine>::KIND);
    // Seq 0 (the start) is no hook point; every later checkpoint is one.
    record.seq as usize
}

#[test]
fn sigkill_at_every_checkpoint_boundary_then_resume_fetches_no_page_twice() {
    let server = Server::start();
    let url = server.h().base_url();
    let expected = data();
    let all_pages = pages_of(&expected);

    let clean = tempfile::tempdir().expect("dir");
    assert!(pull(clean.path(), &url, None).success());
    let boundaries = checkpoints(clean.path());
    assert_eq!(boundaries, 1 + all_pages + 1, "cleanup, pages, persist");
    assert_eq!(server.take_pages().len(), all_pages);
    assert_equals(
        &persisted(clean.path()).expect("persisted"),
        &expected,
        "clean",
    );

    for n in 1..=boundaries {
        for when in ["before", "after"] {
            let variant = format!("kill at checkpoint {n} ({when} it is durable)");
            let dir = tempfile::tempdir().expect("dir");
            let status = pull(dir.path(), &url, Some(&format!("{n}:{when}")));
            assert_eq!(
                status.signal(),
                Some(libc::SIGKILL),
                "{variant}: not killed: {status:?}"
            );
            let before_kill = server.take_pages();
            if n == boundaries && when == "after" {
                // Completed was durable: the pull is done (pulling again would
                // be a new pull, not a resume).
                assert_eq!(before_kill.len(), all_pages, "{variant}");
                assert_equals(
                    &persisted(dir.path()).expect("persisted"),
                    &expected,
                    &variant,
                );
                continue;
            }
            let resumed = pull(dir.path(), &url, None);
            assert!(resumed.success(), "{variant}: resume exited {resumed:?}");
            let after_kill = server.take_pages();

            // The persisted data equal the server's.
            assert_equals(
                &persisted(dir.path()).expect("persisted"),
                &expected,
                &variant,
            );
            // Every page was fetched; none twice, except the one page whose
            // checkpoint the kill prevented ("before": fetched, not staged).
            let first: HashSet<_> = before_kill.iter().cloned().collect();
            let second: HashSet<_> = after_kill.iter().cloned().collect();
            assert_eq!(first.len(), before_kill.len(), "{variant}: {before_kill:?}");
            assert_eq!(second.len(), after_kill.len(), "{variant}: {after_kill:?}");
            let twice: Vec<_> = first.intersection(&second).collect();
            match when {
                "after" => assert!(twice.is_empty(), "{variant}: refetched {twice:?}"),
                _ => {
                    assert!(twice.len() <= 1, "{variant}: refetched {twice:?}");
                    if let Some(page) = twice.first() {
                        assert_eq!(Some(*page), before_kill.last(), "{variant}");
                    }
                }
            }
            assert_eq!(first.union(&second).count(), all_pages, "{variant}");
            // Once every page is staged, the resume asks the platform nothing.
            let all_staged = n > all_pages + 1 || (n == all_pages + 1 && when == "after");
            if all_staged {
                assert!(after_kill.is_empty(), "{variant}: {after_kill:?}");
            }
        }
    }
}

#[test]
fn a_kill_during_persist_leaves_the_previous_snapshot_intact() {
    let server = Server::start();
    let url = server.h().base_url();
    let dir = tempfile::tempdir().expect("dir");
    let old = data();
    assert!(pull(dir.path(), &url, None).success());
    server.take_pages();

    // Change the platform: one keyword gone, one renamed.
    let h = server.h();
    h.mutate(Mutation::Remove {
        profile_id: PROFILE.into(),
        kind: ListKind::Keywords,
        id: old.keywords[5].keyword_id.clone(),
    })
    .expect("remove");
    h.mutate(Mutation::Rename {
        profile_id: PROFILE.into(),
        kind: ListKind::Campaigns,
        id: old.campaigns[0].campaign_id.clone(),
        name: "Renamed campaign".into(),
    })
    .expect("rename");
    let new = h.profile(PROFILE).expect("profile");
    assert_ne!(new, old);

    // The second process's checkpoints: the new-pull request, cleanup, pages, persist.
    let persist_boundary = 1 + 1 + pages_of(&new) + 1;
    let status = pull(
        dir.path(),
        &url,
        Some(&format!("{persist_boundary}:before")),
    );
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status:?}");
    assert_eq!(server.take_pages().len(), pages_of(&new));
    // The new generation's chunks are written but not current: readers see the
    // old snapshot, whole.
    let snap = persisted(dir.path()).expect("still persisted");
    assert_eq!(snap.info.generation, 1);
    assert_equals(&snap, &old, "after the kill");

    // The resume redoes persist from staging, asking the platform nothing.
    assert!(pull(dir.path(), &url, None).success());
    assert!(server.take_pages().is_empty(), "no request on resume");
    let snap = persisted(dir.path()).expect("persisted");
    assert_eq!(snap.info.generation, 2);
    assert_equals(&snap, &new, "after the resume");
    // Generation 1 and the staging are gone.
    let store = Store::open(dir.path().join("adsync.db")).expect("store");
    assert_eq!(
        store
            .scan_data(&snapshot::stage_prefix(AMAZON, PROFILE))
            .count(),
        0
    );
    let gens: HashSet<u64> = store
        .scan_data(&snapshot::generations_prefix(AMAZON, PROFILE))
        .filter_map(|item| item.ok())
        .filter_map(|(k, _)| snapshot::generation_of(AMAZON, PROFILE, &k))
        .collect();
    assert_eq!(gens, HashSet::from([2]));
}
