//! The applier: the thread that makes durable groups visible in sled.

use parking_lot::MutexGuard;
use std::collections::BTreeMap;

use super::commit::split_history_key;
use super::error::io_error;
use super::record::HistoryRun;
use super::wal::{self, WriteRef};
use super::writer::Shared;
use super::StoreError;

/// The hand-over between leaders (who make groups durable) and the applier
/// (who makes them visible in sled).
///
/// A group goes over as a copy of its log record's payload, not as its
/// commits: the commits are dropped by the leader that wrote them, on the
/// thread that built them. Freed on the applier thread instead, their few
/// dozen buffers per step defeated glibc's per-thread caches (the sync's
/// thread kept allocating from its arena's slow path, and the large record
/// buffers set off fastbin consolidations). The copies are recycled through
/// `spare`, so a steady stream of commits hands over without allocating.
#[derive(Default)]
pub(super) struct Applying {
    /// Payloads of durable groups, oldest first.
    pub(super) pending: std::collections::VecDeque<Vec<u8>>,
    /// Applied payloads' buffers, for the next hand-overs.
    pub(super) spare: Vec<Vec<u8>>,
    /// Groups made durable so far.
    pub(super) logged: u64,
    /// Groups applied to sled so far.
    pub(super) applied: u64,
    /// Set when applying failed: sled no longer matches the log, so reads
    /// and commits are refused (the log replays on the next open).
    pub(super) failed: Option<StoreError>,
    pub(super) closed: bool,
    /// Whether the applier sleeps on `to_apply` (wake it only then).
    pub(super) applier_waiting: bool,
    /// Readers and checkpoints sleeping on `applied`.
    pub(super) waiters: usize,
}

/// How many durable groups wait before the applier is woken, when nobody is
/// reading. Readers and checkpoints wake it at once (they need every
/// acknowledged group applied). Why wait at all:
/// - each wake-up costs a futex call and a context switch on the other core,
///   on the lone committer's path;
/// - a batch is applied with only the last write per key and each sync's
///   history entries joined into one value (see [`apply`]), so sled logs far
///   less, and sled's log writes compete with the log's syncs for the disk.
///
/// 256 bounds what a reader may have to wait for; batches larger than that
/// did not write less. docs/performance.md has the measurements.
pub(super) const APPLY_BATCH: usize = 256;

/// The largest hand-over buffer kept for reuse (see [`Applying`]): a
/// one-commit group's payload is well under this; a large group's buffer is rare
/// enough to allocate each time, and not worth holding on to.
const SPARE_CAPACITY: usize = 8 * 1024;

impl Applying {
    /// Whether the applier has work that should not wait any longer: a full
    /// batch, someone waiting to read, or a closing store.
    fn due(&self) -> bool {
        !self.pending.is_empty()
            && (self.pending.len() >= APPLY_BATCH || self.waiters > 0 || self.closed)
    }
}

impl Shared {
    pub(super) fn applying(&self) -> MutexGuard<'_, Applying> {
        self.apply.lock()
    }

    /// Hands a durable group (its log record's payload) to the applier.
    /// Counted as logged before any of its committers is answered, so their
    /// next read waits for it. Returns whether the applier sleeps and has a
    /// batch due: the leader wakes it *after* answering, so the futex call is
    /// not on the committers' path.
    pub(super) fn hand_over(&self, payload: &[u8]) -> bool {
        let mut applying = self.applying();
        let mut copy = applying.spare.pop().unwrap_or_default();
        copy.clear();
        copy.extend_from_slice(payload);
        applying.logged += 1;
        applying.pending.push_back(copy);
        applying.applier_waiting && applying.due()
    }

    /// Waits until every group logged so far is applied: what a read needs to
    /// see every acknowledged commit.
    pub(super) fn wait_applied(&self) -> Result<(), StoreError> {
        let mut applying = self.applying();
        let target = applying.logged;
        while applying.applied < target && applying.failed.is_none() {
            applying.waiters += 1;
            if applying.applier_waiting {
                // It may be holding back a batch that is not full yet.
                self.to_apply.notify_one();
            }
            self.applied.wait(&mut applying);
            applying.waiters -= 1;
        }
        match &applying.failed {
            Some(error) => Err(error.clone()),
            None => Ok(()),
        }
    }
}

/// The applier thread: puts durable groups into sled, in log order, a batch
/// at a time (see [`APPLY_BATCH`]), while leaders sync the next groups.
/// Readers wake it and wait for it (see [`Shared::wait_applied`]), so they
/// still see every acknowledged commit.
pub(super) fn applier_thread(shared: &Shared) {
    loop {
        let batch = {
            let mut applying = shared.applying();
            while !applying.due() {
                if applying.closed {
                    return; // and nothing is pending
                }
                applying.applier_waiting = true;
                shared.to_apply.wait(&mut applying);
                applying.applier_waiting = false;
            }
            std::mem::take(&mut applying.pending)
        };
        let result = {
            // One lock for the batch: a reader sees none or all of it.
            let _visible = shared.visibility.write();
            apply_payloads(&shared.tree, batch.iter().map(Vec::as_slice))
        };
        let mut applying = shared.applying();
        if let Err(e) = result {
            applying.failed = Some(io_error(&shared.path, e));
        }
        applying.applied += batch.len() as u64;
        // Small buffers are kept for the next hand-overs; the count is bounded
        // by what one batch holds, the size by SPARE_CAPACITY.
        let room = APPLY_BATCH.saturating_sub(applying.spare.len());
        let reusable = batch.into_iter().filter(|b| b.capacity() <= SPARE_CAPACITY);
        applying.spare.extend(reusable.take(room));
        let wake = applying.waiters > 0;
        drop(applying);
        if wake {
            shared.applied.notify_all();
        }
    }
}
/// Applies writes to sled, one key at a time, and for each key only the last
/// write among `groups`.
///
/// Not as a `sled::Batch`: sled 0.34 makes every batch durable on its own (one
/// more `sync_file_range` per commit), which the log already did. Atomicity
/// comes from the log instead: a group is in the log before its first key is
/// applied, so after a crash the replay completes any group cut short; readers
/// in this process see whole groups because they hold the visibility lock.
///
/// Only the last write per key: readers never see the groups of a batch one
/// by one, so the writes before it are invisible anyway — and a sync rewrites
/// its record in every group. Skipping them saves sled's CPU and, above all,
/// its disk writes: sled logs every insert and writes its log buffers out
/// with `sync_file_range` as they fill, which competed with the log's own
/// syncs (see the README's performance notes).
pub(super) fn apply<'a>(
    tree: &sled::Tree,
    writes: impl Iterator<Item = WriteRef<'a>>,
) -> sled::Result<()> {
    let mut last: BTreeMap<&[u8], Option<&[u8]>> = BTreeMap::new();
    for (key, value) in writes {
        last.insert(key, value);
    }
    let mut run: Option<HistoryRun<'_>> = None;
    for (key, value) in last {
        if let (Some(value), Some((prefix, seq))) = (value, split_history_key(key)) {
            match &mut run {
                Some(r) if r.prefix == prefix && r.next == seq => r.push(value),
                _ => {
                    if let Some(done) = run.take() {
                        done.put(tree)?;
                    }
                    run = Some(HistoryRun::new(key, prefix, seq, value));
                }
            }
            continue;
        }
        if let Some(done) = run.take() {
            done.put(tree)?;
        }
        match value {
            Some(value) => {
                tree.insert(key, value)?;
            }
            None => {
                tree.remove(key)?;
            }
        }
    }
    if let Some(done) = run {
        done.put(tree)?;
    }
    Ok(())
}

/// [`apply`] for log records' payloads (what the applier is handed, and what
/// a replay reads back). A payload that does not decode is refused whole
/// before anything is applied; the log's checksums make that a bug, not a
/// disk error.
pub(super) fn apply_payloads<'a>(
    tree: &sled::Tree,
    payloads: impl Iterator<Item = &'a [u8]>,
) -> sled::Result<()> {
    let mut writes = Vec::new();
    for payload in payloads {
        writes.extend(wal::writes(payload).ok_or_else(|| {
            sled::Error::Unsupported("a write-ahead log record does not decode".into())
        })?);
    }
    apply(tree, writes.into_iter())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::tests::open_small;
    use crate::store::{Commit, Write};

    /// Applying keeps only the last write to each key, and its result is the
    /// same as applying every write in order.
    #[test]
    fn applying_a_batch_keeps_the_last_write_to_each_key() {
        let db = sled::Config::new().temporary(true).open().unwrap();
        let tree = db.open_tree("t").unwrap();
        tree.insert(b"gone", b"old".as_slice()).unwrap();
        tree.insert(b"back", b"old".as_slice()).unwrap();
        let put = |k: &str, v: &str| Write::Put(k.as_bytes().to_vec(), v.as_bytes().to_vec());
        let delete = |k: &str| Write::Delete(k.as_bytes().to_vec());
        let groups = [
            vec![put("r/a", "1"), put("h/a1", "x"), delete("back")],
            vec![put("r/a", "2"), put("gone", "new")],
            vec![put("r/a", "3"), delete("gone"), put("back", "again")],
        ];
        let writes = groups.iter().flatten().map(|w| match w {
            Write::Put(k, v) => (k.as_slice(), Some(v.as_slice())),
            Write::Delete(k) => (k.as_slice(), None),
        });
        apply(&tree, writes).unwrap();
        let read = |k: &str| {
            tree.get(k)
                .unwrap()
                .map(|v| String::from_utf8(v.to_vec()).unwrap())
        };
        assert_eq!(read("r/a").as_deref(), Some("3"));
        assert_eq!(read("h/a1").as_deref(), Some("x"));
        assert_eq!(read("gone"), None);
        assert_eq!(read("back").as_deref(), Some("again"));
    }

    /// The applier is woken once per APPLY_BATCH groups; a read in between
    /// must wake it and see every acknowledged group.
    #[test]
    fn a_read_sees_groups_that_did_not_fill_a_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_small(&dir.path().join("db"));
        for k in 0..3u8 {
            store
                .commit_blocking(Commit::new().data(&[b'k', k], vec![k]))
                .unwrap();
        }
        const { assert!(3 < APPLY_BATCH) };
        for k in 0..3u8 {
            assert_eq!(store.data(&[b'k', k]).unwrap(), Some(vec![k]));
        }
    }
}
