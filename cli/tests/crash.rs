//! Process crashes: a real `adsync` process pushing a campaign set is killed
//! with SIGKILL at each checkpoint boundary in turn — just before a checkpoint
//! is written (the effect ran, its outcome is lost) and just after (the state is
//! durable, its effect has not started). A new process then resumes. After every
//! variant the platform holds exactly one entity per local entity and the store
//! holds all of their ids.
//!
//! The platform is the in-memory one kept in a JSON file, so it survives the
//! kill; one ad group create also loses its response on top of the crashes.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use adsync::memory::{Fault, MemoryPlatform, Op};
use adsync::EntityKind;
use adsync::PushMachine;
use adsync::Status;
use adsync::Store;
use adsync::SystemClock;

const LOCAL_ENTITIES: usize = 9;

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

fn prepare(dir: &Path) {
    std::fs::write(dir.join("set.json"), common::TWO_CAMPAIGNS).unwrap();
    let platform =
        MemoryPlatform::open_file(dir.join("platform.json"), Arc::new(SystemClock)).unwrap();
    platform.fail_next(Op::Create, Some(EntityKind::AdGroup), Fault::LoseResponse);
}

fn push(dir: &Path, crash_at: Option<&str>) -> std::process::ExitStatus {
    let set = dir.join("set.json");
    adsync(
        dir,
        &["push", set.to_str().unwrap(), "--account", "a2_crash"],
        crash_at,
    )
}

/// Checks the invariant after a run: one platform entity per local entity, and
/// every id in the store is one the platform holds, for the right entity.
fn check(dir: &Path, variant: &str) -> usize {
    let platform =
        MemoryPlatform::open_file(dir.join("platform.json"), Arc::new(SystemClock)).unwrap();
    let held = platform.entities();
    assert!(
        platform.duplicates().is_empty(),
        "{variant}: duplicates {:?}",
        platform.duplicates()
    );
    assert_eq!(
        held.len(),
        LOCAL_ENTITIES,
        "{variant}: platform holds {held:#?}"
    );
    let store = Store::open(dir.join("adsync.db")).unwrap();
    let mut ids = 0;
    let mut transitions = 0;
    for record in store.list() {
        let record = record.unwrap();
        assert_eq!(record.status, Status::Succeeded, "{variant}: {record:?}");
        transitions += store.history(&record.id).unwrap().len() - 1;
        let checkpoint = adsync::Checkpoint::<PushMachine>::try_from(record).unwrap();
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
            ids += 1;
        }
    }
    assert_eq!(ids, LOCAL_ENTITIES, "{variant}");
    transitions
}

#[test]
fn sigkill_at_every_checkpoint_boundary_then_resume_leaves_no_duplicates_and_every_id() {
    // A clean run tells how many checkpoint boundaries there are.
    let clean = tempfile::tempdir().unwrap();
    prepare(clean.path());
    assert!(push(clean.path(), None).success());
    let boundaries = check(clean.path(), "clean run");
    assert!(boundaries >= LOCAL_ENTITIES, "{boundaries}");

    let mut killed = 0;
    for n in 1..=boundaries {
        for when in ["before", "after"] {
            let variant = format!("kill at checkpoint {n} ({when} it is durable)");
            let dir = tempfile::tempdir().unwrap();
            prepare(dir.path());
            let status = push(dir.path(), Some(&format!("{n}:{when}")));
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
