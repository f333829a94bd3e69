//! What the store does with damage and loss on disk: a damaged write-ahead
//! log record, a missing or foreign log, damaged sled files, a path with no
//! store, and a kill while a store is being created. Nothing acknowledged may
//! be lost without an error, and nothing runs on a store that lost commits.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::FileExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use adsync::memory::MemoryPlatform;
use adsync::SystemClock;
use adsync::{Commit, Store, StoreError};

const PAGE: u64 = 4096;
const RECORD_HEADER_LEN: u64 = 16;

/// Runs `adsync --db <dir>/adsync.db <args>` (with the memory platform kept
/// in `<dir>/platform.json` for the commands that push).
fn adsync(dir: &Path, args: &[&str], crash_at: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_adsync"));
    cmd.arg("--db").arg(dir.join("adsync.db")).args(args);
    if matches!(args.first(), Some(&"push") | Some(&"resume")) {
        cmd.args(["--platform", "memory", "--memory-file"])
            .arg(dir.join("platform.json"));
    }
    cmd.env_remove("ADSYNC_TEST_CRASH_AT")
        .env_remove("ADSYNC_DB");
    if let Some(at) = crash_at {
        cmd.env("ADSYNC_TEST_CRASH_AT", at);
    }
    cmd.output().expect("adsync runs")
}

fn push(dir: &Path, crash_at: Option<&str>) -> Output {
    let set = dir.join("set.json");
    if !set.exists() {
        std::fs::write(&set, common::TWO_CAMPAIGNS).unwrap();
    }
    adsync(
        dir,
        &["push", set.to_str().unwrap(), "--account", "a2_recovery"],
        crash_at,
    )
}

/// A push killed (SIGKILL) just after its 8th checkpoint was durable: its
/// log holds every commit since the store was opened, none checkpointed.
fn killed_push(dir: &Path) {
    let out = push(dir, Some("8:after"));
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGKILL),
        "the push was not killed: {out:?}"
    );
}

fn platform_entities(dir: &Path) -> usize {
    MemoryPlatform::open_file(dir.join("platform.json"), Arc::new(SystemClock))
        .unwrap()
        .entities()
        .len()
}

/// One record of the log's current epoch.
struct LogRecord {
    offset: u64,
    /// `(key, value)` of each write; `None` for a delete.
    writes: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

/// Reads the log's records the way the store does, from the outside: the
/// header's epoch at bytes 8..16, then page-aligned records
/// `len u32 | epoch u64 | crc32(epoch, payload) u32 | payload`.
fn log_records(log: &Path) -> Vec<LogRecord> {
    let bytes = std::fs::read(log).unwrap();
    let le32 = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
    let le64 = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let epoch = le64(8);
    let mut records = Vec::new();
    let mut offset = PAGE as usize;
    while offset + 16 <= bytes.len() {
        let len = le32(offset) as usize;
        let start = offset + 16;
        if len == 0 || le64(offset + 4) != epoch || start + len > bytes.len() {
            break;
        }
        let payload = &bytes[start..start + len];
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&epoch.to_le_bytes());
        hasher.update(payload);
        if hasher.finalize() != le32(offset + 12) {
            break;
        }
        records.push(LogRecord {
            offset: offset as u64,
            writes: decode(payload),
        });
        offset = (start + len).div_ceil(PAGE as usize) * PAGE as usize;
    }
    records
}

fn decode(payload: &[u8]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let mut at = 0;
    let mut take = |n: usize| {
        let bytes = payload[at..at + n].to_vec();
        at += n;
        bytes
    };
    let mut writes = Vec::new();
    let mut left = payload.len();
    while left > 0 {
        let tag = take(1)[0];
        let len = u32::from_le_bytes(take(4).try_into().unwrap()) as usize;
        let key = take(len);
        let mut used = 1 + 4 + len;
        let value = if tag == 1 {
            let len = u32::from_le_bytes(take(4).try_into().unwrap()) as usize;
            used += 4 + len;
            Some(take(len))
        } else {
            None
        };
        writes.push((key, value));
        left -= used;
    }
    writes
}

/// The highest seq each sync's record has among `records`.
fn seqs(records: &[LogRecord]) -> BTreeMap<String, u64> {
    let mut seqs = BTreeMap::new();
    for (key, value) in records.iter().flat_map(|r| &r.writes) {
        let (Some(id), Some(value)) = (key.strip_prefix(b"r/"), value) else {
            continue;
        };
        let record: serde_json::Value = serde_json::from_slice(value).unwrap();
        let seq = record["seq"].as_u64().unwrap();
        let id = String::from_utf8(id.to_vec()).unwrap();
        let best = seqs.entry(id).or_insert(seq);
        *best = (*best).max(seq);
    }
    seqs
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

/// Flips 10 bytes in the middle of the record's payload.
fn damage_record(log: &Path, record: &LogRecord) {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(log)
        .unwrap();
    let mut len = [0u8; 4];
    file.read_exact_at(&mut len, record.offset).unwrap();
    let len = u64::from(u32::from_le_bytes(len));
    let at = record.offset + RECORD_HEADER_LEN + len / 2 - 5;
    let mut bytes = [0u8; 10];
    file.read_exact_at(&mut bytes, at).unwrap();
    for b in &mut bytes {
        *b ^= 0xff;
    }
    file.write_all_at(&bytes, at).unwrap();
}

/// Every record of a killed push's log damaged in turn. A damaged record
/// followed by intact ones is refused, naming the file and its offset, by
/// the library and by the CLI (exit 4, and a resume runs nothing); the last
/// one is dropped as a torn write, and every earlier commit is there.
#[test]
fn each_log_record_damaged_in_turn_is_refused_in_the_middle_and_dropped_at_the_end() {
    let killed = tempfile::tempdir().unwrap();
    killed_push(killed.path());
    let db = killed.path().join("adsync.db");
    let records = log_records(&db.join("adsync.wal"));
    assert!(records.len() >= 4, "only {} log records", records.len());
    let entities = platform_entities(killed.path());
    let last = records.len() - 1;

    for (i, record) in records.iter().enumerate() {
        let case = format!("record {i} of {} at byte {}", records.len(), record.offset);
        let dir = tempfile::tempdir().unwrap();
        copy_dir(killed.path(), dir.path());
        let db = dir.path().join("adsync.db");
        let log = db.join("adsync.wal");
        damage_record(&log, record);
        let damaged = std::fs::read(&log).unwrap();

        if i < last {
            match Store::open(&db) {
                Err(StoreError::LogDamaged {
                    log: named,
                    offset,
                    later,
                    ..
                }) => {
                    assert_eq!(named, log, "{case}");
                    assert_eq!(
                        (offset, later),
                        (record.offset, records[i + 1].offset),
                        "{case}"
                    );
                }
                other => panic!("{case}: opened or failed otherwise: {other:?}"),
            }
            let out = adsync(dir.path(), &["status"], None);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(4), "{case}: {stderr}");
            assert!(
                stderr.contains("adsync.wal")
                    && stderr.contains(&format!("byte offset {}", record.offset))
                    && stderr.contains("backup"),
                "{case}: {stderr}"
            );
            let out = adsync(dir.path(), &["resume", "--all"], None);
            assert_eq!(out.status.code(), Some(4), "{case}: {out:?}");
            assert_eq!(
                platform_entities(dir.path()),
                entities,
                "{case}: a resume ran"
            );
            assert_eq!(
                std::fs::read(&log).unwrap(),
                damaged,
                "{case}: the log was changed"
            );
        } else {
            let store = Store::open(&db).unwrap_or_else(|e| panic!("{case}: {e}"));
            // Every sync is at least where the intact records left it.
            for (id, seq) in seqs(&records[..last]) {
                let found = store.record(&id).unwrap().map(|r| r.seq);
                assert!(
                    found >= Some(seq),
                    "{case}: {id} at {found:?}, acknowledged {seq}"
                );
                assert!(
                    store.history(&id).unwrap().len() as u64 > seq,
                    "{case}: {id}"
                );
            }
        }
    }
}

/// A deleted log, after a killed push: refused by every command that opens
/// the store (exit 4, naming the file), and the push that would have
/// duplicated every campaign does not run.
#[test]
fn a_deleted_log_is_refused_and_a_push_does_not_run() {
    let dir = tempfile::tempdir().unwrap();
    killed_push(dir.path());
    let entities = platform_entities(dir.path());
    let log = dir.path().join("adsync.db/adsync.wal");
    std::fs::remove_file(&log).unwrap();

    match Store::open(dir.path().join("adsync.db")) {
        Err(StoreError::LogMissing { log: named, .. }) => assert_eq!(named, log),
        other => panic!("{other:?}"),
    }
    let out = adsync(dir.path(), &["status"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains("adsync.wal") && stderr.contains("missing"),
        "{stderr}"
    );
    let out = push(dir.path(), None);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert_eq!(platform_entities(dir.path()), entities, "the push ran");
    assert!(!log.exists(), "no new log was made");
}

fn store_with(path: &Path, key: &[u8]) {
    let store = Store::open(path).unwrap();
    store
        .commit_blocking(Commit::new().data(key, b"v".to_vec()))
        .unwrap();
    store.close();
}

/// sled's copy of the store id, read from outside.
fn sled_id(db: &Path) -> Option<Vec<u8>> {
    let raw = common::open_raw_sled(db);
    raw.get("adsync/store-id").unwrap().map(|v| v.to_vec())
}

fn log_id(db: &Path) -> Vec<u8> {
    std::fs::read(db.join("adsync.wal")).unwrap()[16..32].to_vec()
}

#[test]
fn a_log_of_another_store_or_with_a_zeroed_header_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    store_with(&a, b"in a");
    store_with(&b, b"in b");
    std::fs::copy(a.join("adsync.wal"), b.join("adsync.wal")).unwrap();
    let err = Store::open(&b).unwrap_err();
    assert!(matches!(err, StoreError::LogMismatch { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("adsync.wal") && text.contains("does not belong"),
        "{text}"
    );

    // A zeroed header would once have been taken for a log whose creation
    // was cut short, and silently made again.
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(a.join("adsync.wal"))
        .unwrap();
    file.write_all_at(&[0; 4096], 0).unwrap();
    let err = Store::open(&a).unwrap_err();
    assert!(matches!(err, StoreError::LogMismatch { .. }), "{err:?}");
}

/// A store of the previous version has sled data without an id and a log
/// header without one (magic `ADSYNCW2`): it opens, is given an id once, and
/// from then on its log is required.
#[test]
fn a_store_of_the_previous_version_opens_and_is_given_an_id() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("adsync.db");
    store_with(&db, b"old");
    {
        let raw = common::open_raw_sled(&db);
        raw.remove("adsync/store-id").unwrap();
        raw.flush().unwrap();
    }
    let log = db.join("adsync.wal");
    let mut header = [0u8; 4096];
    let old = std::fs::read(&log).unwrap();
    header[0..8].copy_from_slice(b"ADSYNCW2");
    header[8..16].copy_from_slice(&old[8..16]);
    let crc = crc32fast::hash(&header[0..16]);
    header[16..20].copy_from_slice(&crc.to_le_bytes());
    std::fs::OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .write_all_at(&header, 0)
        .unwrap();

    let store = Store::open(&db).unwrap();
    assert_eq!(store.data(b"old").unwrap(), Some(b"v".to_vec()));
    drop(store);
    let id = sled_id(&db).expect("stamped");
    assert_eq!(id, log_id(&db));
    assert_eq!(&std::fs::read(&log).unwrap()[0..8], b"ADSYNCW3");

    store_with(&db, b"new");
    assert_eq!(sled_id(&db), Some(id), "stamped once");
    std::fs::remove_file(&log).unwrap();
    assert!(matches!(
        Store::open(&db),
        Err(StoreError::LogMissing { .. })
    ));
}

/// A store is created log first, sled's id second, and commits only after
/// both. Each state a kill can leave while creating one still opens:
/// sled's directory without a log; a half-made log under its temporary
/// name; a log whose id sled has not stored yet.
#[test]
fn a_kill_while_a_store_is_created_never_makes_it_unopenable() {
    let dir = tempfile::tempdir().unwrap();

    // Killed after sled created its files, before the log existed.
    let first = dir.path().join("first");
    drop(common::open_raw_sled(&first));
    assert!(!first.join("adsync.wal").exists());
    store_with(&first, b"k");
    assert_eq!(sled_id(&first), Some(log_id(&first)));

    // Killed while the log was being preallocated under its temporary name.
    let second = dir.path().join("second");
    drop(common::open_raw_sled(&second));
    std::fs::write(second.join("adsync.wal.new"), vec![0u8; 12_345]).unwrap();
    store_with(&second, b"k");
    assert_eq!(sled_id(&second), Some(log_id(&second)));

    // Killed after the log was renamed into place, before sled had the id.
    let third = dir.path().join("third");
    drop(Store::open(&third).unwrap());
    let id = log_id(&third);
    {
        let raw = common::open_raw_sled(&third);
        raw.remove("adsync/store-id").unwrap();
        raw.flush().unwrap();
    }
    store_with(&third, b"k");
    assert_eq!(sled_id(&third), Some(id.clone()));
    assert_eq!(log_id(&third), id, "the log's id was adopted, not replaced");

    for db in [first, second, third] {
        let store = Store::open(&db).unwrap();
        assert_eq!(store.data(b"k").unwrap(), Some(b"v".to_vec()), "{db:?}");
    }
}

/// `status`, `history` and `show` read: on a mistyped path they create
/// nothing and say which path has no store (exit 2: a usage error).
#[test]
fn read_only_commands_never_create_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty-dir");
    std::fs::create_dir(&empty).unwrap();
    for db in [dir.path().join("adsync.dbb"), empty.clone()] {
        for args in [
            &["status"][..],
            &["status", "--json"],
            &["history", "c1-1"],
            &["show", "--profile", "123"],
        ] {
            let out = Command::new(env!("CARGO_BIN_EXE_adsync"))
                .arg("--db")
                .arg(&db)
                .args(args)
                .env_remove("ADSYNC_DB")
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?} on {db:?}: {stderr}");
            assert!(
                stderr.contains(&db.display().to_string()) && stderr.contains("no adsync store"),
                "{args:?}: {stderr}"
            );
        }
    }
    assert!(
        !dir.path().join("adsync.dbb").exists(),
        "a store was created"
    );
    assert_eq!(
        std::fs::read_dir(&empty).unwrap().count(),
        0,
        "files were created"
    );
}

/// Damage to sled's own files is named: the store, its files, what to do —
/// not "Read corrupted data at file offset None backtrace ()".
#[test]
fn a_corrupt_sled_file_names_the_store_and_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("adsync.db");
    store_with(&db, b"k");
    // sled's `conf` is text ("segment_size: 524288", …) and a checksum: a
    // damaged digit.
    let conf: PathBuf = db.join("conf");
    let mut bytes = std::fs::read(&conf).unwrap();
    let at = bytes
        .windows(14)
        .position(|w| w == b"segment_size: ")
        .expect("sled's conf names its segment size")
        + 15;
    bytes[at] = b'#';
    std::fs::write(&conf, &bytes).unwrap();

    let err = Store::open(&db).unwrap_err();
    assert!(matches!(err, StoreError::SledCorrupt { .. }), "{err:?}");
    let out = adsync(dir.path(), &["status"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(
        stderr.contains(&db.display().to_string())
            && stderr.contains("conf")
            && stderr.contains("backup")
            && !stderr.contains("offset None"),
        "{stderr}"
    );
}
