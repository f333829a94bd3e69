//! The group-commit writer: leaders, followers and the queue.

use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};
use std::collections::HashMap;
use std::path::PathBuf;

use serde::Serialize;

use super::applier::Applying;
use super::commit::{Commit, Write};
use super::error::{io_error, log_error};
use super::wal::Wal;
use super::{Store, StoreError};

pub(super) type Reply = tokio::sync::oneshot::Sender<Result<(), StoreError>>;

pub(super) struct Job {
    pub(super) commit: Commit,
    pub(super) reply: Reply,
}

/// Counters of a store's writer ([`Store::writer_stats`](super::Store::writer_stats)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct WriterStats {
    /// Commits acknowledged.
    pub commits: u64,
    /// Flushes performed (one per group).
    pub flushes: u64,
}

pub(super) struct Shared {
    pub(super) durable: Mutex<HashMap<String, u64>>,
    pub(super) stats: Mutex<WriterStats>,
    /// Held for writing while the writer applies a group to sled, and for
    /// reading by point reads and short listings: they see whole commits.
    pub(super) visibility: RwLock<()>,
    /// Commits waiting for a leader to write them.
    pub(super) queue: Mutex<Queue>,
    /// Signalled when a commit is queued or the store closes (wakes the
    /// writer thread).
    pub(super) queued: Condvar,
    /// The log and sled: whoever holds this lock is the leader and writes the
    /// next group — the writer thread, or a committer that found it idle.
    pub(super) writer: Mutex<Writer>,
    /// How many commits the last group held. 1 means commits come one at a
    /// time: then an async committer may lead its own group.
    pub(super) last_group: std::sync::atomic::AtomicUsize,
    /// Groups durable in the log, waiting for the applier thread to put them
    /// into sled.
    pub(super) apply: Mutex<Applying>,
    /// Signalled when a group is handed over or the store closes (wakes the
    /// applier thread).
    pub(super) to_apply: Condvar,
    /// Signalled when a group has been applied (wakes readers and checkpoints).
    pub(super) applied: Condvar,
    /// sled's tree, for the applier.
    pub(super) tree: sled::Tree,
    /// The store's directory, for errors.
    pub(super) path: PathBuf,
}

#[derive(Default)]
pub(super) struct Queue {
    pub(super) jobs: Vec<Job>,
    pub(super) closed: bool,
    /// Whether the writer thread sleeps on `queued`: only then is a wake-up
    /// (a futex call) worth making. Under load it never sleeps.
    pub(super) writer_waiting: bool,
}

impl Shared {
    pub(super) fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock()
    }

    /// The writer, for an async committer to lead its own group: only while
    /// commits come one at a time.
    pub(super) fn try_lead_alone(&self) -> Option<MutexGuard<'_, Writer>> {
        if self.last_group.load(std::sync::atomic::Ordering::Relaxed) > 1 {
            return None;
        }
        self.try_lead()
    }

    /// The writer, if no other leader holds it right now.
    pub(super) fn try_lead(&self) -> Option<MutexGuard<'_, Writer>> {
        self.writer.try_lock()
    }
}

/// Most commits the writer folds into one batch and flush.
const MAX_GROUP: usize = 4096;
impl Store {
    /// Queues `commit` for the writer thread (or the next leader).
    fn enqueue(
        &self,
        commit: Commit,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<(), StoreError>>, StoreError> {
        let (reply, receiver) = tokio::sync::oneshot::channel();
        let mut queue = self.inner.shared.queue();
        if queue.closed {
            return Err(StoreError::WriterStopped);
        }
        queue.jobs.push(Job { commit, reply });
        let wake = queue.writer_waiting;
        drop(queue);
        if wake {
            self.inner.shared.queued.notify_one();
        }
        Ok(receiver)
    }

    /// Writes `commit`, and everything queued, as the leader of one group.
    fn lead(&self, mut writer: MutexGuard<'_, Writer>, commit: Commit) -> Result<(), StoreError> {
        let jobs = {
            let mut queue = self.inner.shared.queue();
            if queue.closed {
                return Err(StoreError::WriterStopped);
            }
            take_group(&mut queue)
        };
        writer.commit_group(&self.inner.shared, Some(commit), jobs)
    }

    /// Applies `commit` atomically and returns once it is flushed to disk.
    ///
    /// Never blocks an async worker thread on disk. While commits come one at
    /// a time (the last group held one) and the runtime is tokio's multi-thread
    /// one, the calling task leads: it writes its commit itself inside
    /// [`tokio::task::block_in_place`], which first hands the worker's other
    /// tasks to another thread. That saves two thread hand-offs per commit (to
    /// the writer thread and back), which a lone sync pays on every side effect
    /// (docs/performance.md). Under concurrent load,
    /// when another leader is writing, or on a current-thread runtime, the
    /// commit queues for the writer thread and shares the next group's flush;
    /// leading there too gave the worker's core away on every group for no gain.
    ///
    /// # Errors
    ///
    /// [`StoreError::Io`] if the log write, its sync or sled failed: the commit
    /// may or may not be on disk, and the store refuses every later commit
    /// (after a failed sync nothing about the file is certain; reopen it).
    /// [`StoreError::WriterStopped`] once the store is closed.
    pub async fn commit(&self, commit: Commit) -> Result<(), StoreError> {
        // block_in_place panics on a current-thread runtime: there the commit
        // always goes to the writer thread.
        let on_multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if on_multi_thread {
            if let Some(writer) = self.inner.shared.try_lead_alone() {
                return tokio::task::block_in_place(move || self.lead(writer, commit));
            }
        }
        self.enqueue(commit)?
            .await
            .map_err(|_| StoreError::WriterStopped)?
    }
    /// [`Store::commit`] for blocking code (not inside an async task). Leads
    /// the group itself when the store is idle. Blocks until durable; may panic
    /// if called inside an async task (tokio forbids blocking receives there).
    ///
    /// # Errors
    ///
    /// As [`Store::commit`].
    pub fn commit_blocking(&self, commit: Commit) -> Result<(), StoreError> {
        if let Some(writer) = self.inner.shared.try_lead() {
            return self.lead(writer, commit);
        }
        self.enqueue(commit)?
            .blocking_recv()
            .map_err(|_| StoreError::WriterStopped)?
    }
}

/// Takes the next group's jobs off the queue.
fn take_group(queue: &mut Queue) -> Vec<Job> {
    let n = queue.jobs.len().min(MAX_GROUP);
    queue.jobs.drain(..n).collect()
}

/// The writer thread: leads a group whenever commits are queued and no
/// committer is leading one itself. Everything that queued up while the last
/// group was written joins the next log record and the next `fdatasync`.
pub(super) fn writer_thread(shared: &Shared) {
    loop {
        {
            let mut queue = shared.queue();
            while queue.jobs.is_empty() && !queue.closed {
                queue.writer_waiting = true;
                shared.queued.wait(&mut queue);
                queue.writer_waiting = false;
            }
            if queue.jobs.is_empty() {
                break;
            }
        }
        // Wait out a leading committer: it may take these jobs with its own.
        let mut writer = shared.writer.lock();
        let jobs = take_group(&mut shared.queue());
        if !jobs.is_empty() {
            let _ = writer.commit_group(shared, None, jobs);
        }
    }
    // Closing: make sled hold everything, so the next open replays nothing.
    let mut writer = shared.writer.lock();
    if writer.failed.is_none() && writer.checkpoint(shared).is_err() {
        tracing::warn!(
            store = %shared.path.display(),
            "final checkpoint failed; the log will be replayed on the next open"
        );
    }
    shared.applying().closed = true;
    shared.to_apply.notify_all();
}
/// The log and sled, held by the group's leader: the only code that writes
/// to either.
pub(super) struct Writer {
    pub(super) db: sled::Db,
    pub(super) wal: Wal,
    /// Set once a write failed: after a failed `fdatasync` nothing about the
    /// file is certain any more, so every later commit is refused.
    pub(super) failed: Option<StoreError>,
}

impl Writer {
    /// Writes the leader's own commit (if any) and `jobs` as one group with one
    /// `fdatasync`, answers the jobs, and returns the group's result.
    pub(super) fn commit_group(
        &mut self,
        shared: &Shared,
        own: Option<Commit>,
        jobs: Vec<Job>,
    ) -> Result<(), StoreError> {
        let mut replies = Vec::with_capacity(jobs.len());
        let mut commits: Vec<Commit> = own.into_iter().collect();
        for job in jobs {
            commits.push(job.commit);
            replies.push(job.reply);
        }
        let marks: Vec<(String, u64)> = commits
            .iter_mut()
            .flat_map(|c| std::mem::take(&mut c.marks))
            .collect();
        let count = commits.len();
        shared
            .last_group
            .store(count, std::sync::atomic::Ordering::Relaxed);
        if self.failed.is_none() {
            self.failed = shared.applying().failed.clone();
        }
        let result = match &self.failed {
            Some(error) => Err(error.clone()),
            None => self.write_group(shared, commits),
        };
        let wake_applier = matches!(result, Ok(true));
        let result = result.map(|_| ());
        if let Err(error) = &result {
            self.failed = Some(error.clone());
        } else {
            let mut durable = shared.durable.lock();
            for (id, seq) in marks {
                durable.insert(id, seq);
            }
            let mut stats = shared.stats.lock();
            stats.commits += count as u64;
            stats.flushes += 1;
        }
        for reply in replies {
            let _ = reply.send(result.clone());
        }
        if wake_applier {
            shared.to_apply.notify_one();
        }
        result
    }

    /// Makes `commits` durable (one log write; when the log is full, a sled
    /// flush empties it first) and hands them to the applier, which makes them
    /// visible in sled while the next group is being synced.
    /// Returns whether the applier must be woken.
    fn write_group(&mut self, shared: &Shared, commits: Vec<Commit>) -> Result<bool, StoreError> {
        let groups = || commits.iter().map(|c| c.writes.as_slice());
        let len: usize = groups().map(Wal::encoded_len).sum();
        if !self.wal.fits(len) {
            // Empty the log first (sled's flush makes what it holds durable), so
            // the group still goes through the log and stays atomic on a crash.
            self.checkpoint(shared)?;
        }
        if self.wal.fits(len) {
            // Durable first, then visible: readers never see an unacknowledged write.
            let payload = self
                .wal
                .append(groups())
                .map_err(|e| log_error(&shared.path, e))?;
            Ok(shared.hand_over(payload))
        } else {
            // Larger than the whole log: one sled batch (atomic in sled's own
            // log) made durable by sled's flush.
            shared.wait_applied()?;
            {
                let _visible = shared.visibility.write();
                let mut batch = sled::Batch::default();
                for write in groups().flatten() {
                    match write {
                        Write::Put(k, v) => batch.insert(k.as_slice(), v.as_slice()),
                        Write::Delete(k) => batch.remove(k.as_slice()),
                    }
                }
                shared
                    .tree
                    .apply_batch(batch)
                    .map_err(|e| io_error(&shared.path, e))?;
            }
            self.checkpoint(shared).map(|()| false)
        }
    }

    /// Makes sled hold everything the log holds, then empties the log.
    pub(super) fn checkpoint(&mut self, shared: &Shared) -> Result<(), StoreError> {
        shared.wait_applied()?;
        self.db.flush().map_err(|e| io_error(&shared.path, e))?;
        self.wal.reset().map_err(|e| log_error(&shared.path, e))
    }
}
