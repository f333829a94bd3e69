//! A commit (writes that land together) and the key layout.

use super::record::{RecordBody, RecordHead, StoredEntryOut, OLDEST_RECORD_FORMAT};
use super::{HistoryEntry, Record, StoreError};

/// One write in a [`Commit`].
#[derive(Debug, Clone)]
pub enum Write {
    /// Set `key` to `value`.
    Put(Vec<u8>, Vec<u8>),
    /// Remove `key`.
    Delete(Vec<u8>),
}

/// Writes applied atomically and durably together.
#[derive(Debug, Clone, Default)]
pub struct Commit {
    pub(super) writes: Vec<Write>,
    pub(super) marks: Vec<(String, u64)>,
    /// `(sync, fencing token)`: see [`Commit::fenced`].
    pub(super) fence: Option<(String, u64)>,
}

impl Commit {
    /// An empty commit: writes nothing (what an effect returns when it has no
    /// data to commit with its checkpoint). Build one up with the methods
    /// below, which lay out the keys.
    pub fn new() -> Self {
        Self::default()
    }

    /// Writes `record` (and remembers that its seq is durable once committed),
    /// in the layout of its `format` (see [`RECORD_FORMAT`](super::RECORD_FORMAT)); the head of a
    /// format-2 record is written with its first checkpoint (seq 0).
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] naming the sync if the record does not encode.
    pub fn record(mut self, record: &Record) -> Result<Self, StoreError> {
        let corrupt = |e: serde_json::Error| StoreError::Corrupt {
            sync: record.id.clone(),
            detail: format!("cannot encode record: {e}"),
        };
        // Sized for the state plus the other fields, so the buffer is not
        // regrown (and copied) several times on the way.
        let mut bytes = Vec::with_capacity(record.state.get().len() + 512);
        if record.format == OLDEST_RECORD_FORMAT {
            serde_json::to_writer(&mut bytes, record).map_err(corrupt)?;
        } else {
            serde_json::to_writer(
                &mut bytes,
                &RecordBody {
                    format: record.format,
                    id: record.id.as_str().into(),
                    state_version: record.state_version,
                    seq: record.seq,
                    phase: record.phase.as_str().into(),
                    status: record.status,
                    effects_run: record.effects_run,
                    failed_effects: record.failed_effects,
                    last_error: record.last_error.clone(),
                    not_before: record.not_before,
                    updated_at: record.updated_at,
                    state: std::borrow::Cow::Borrowed(&record.state),
                },
            )
            .map_err(corrupt)?;
            if record.seq == 0 {
                let head = serde_json::to_vec(&RecordHead {
                    kind: record.kind.as_str().into(),
                    created_at: record.created_at,
                    labels: std::borrow::Cow::Borrowed(&record.labels),
                })
                .map_err(corrupt)?;
                self.writes.push(Write::Put(head_key(&record.id), head));
            }
        }
        self.writes.push(Write::Put(record_key(&record.id), bytes));
        self.marks.push((record.id.clone(), record.seq));
        Ok(self)
    }

    /// Writes the plan of sync `id` (see [`Record::plan`]); once, when it starts.
    pub fn plan(mut self, id: &str, plan: &serde_json::value::RawValue) -> Self {
        self.writes
            .push(Write::Put(plan_key(id), plan.get().as_bytes().to_vec()));
        self
    }

    /// Writes segment `n` of sync `id`'s progress (see [`Record::segments`]),
    /// replacing any segment `n` it had.
    pub fn segment(mut self, id: &str, n: u32, segment: &serde_json::value::RawValue) -> Self {
        self.writes.push(Write::Put(
            segment_key(id, n),
            segment.get().as_bytes().to_vec(),
        ));
        self
    }

    /// Appends a history entry of sync `id`, in the store's compact history
    /// layout (its seq is the key's).
    ///
    /// # Errors
    ///
    /// [`StoreError::Corrupt`] naming the sync if the entry does not encode.
    pub fn history(mut self, id: &str, entry: &HistoryEntry) -> Result<Self, StoreError> {
        let mut bytes = Vec::with_capacity(128);
        serde_json::to_writer(&mut bytes, &StoredEntryOut(entry)).map_err(|e| {
            StoreError::Corrupt {
                sync: id.to_string(),
                detail: format!("cannot encode history: {e}"),
            }
        })?;
        self.writes
            .push(Write::Put(history_key(id, entry.seq), bytes));
        Ok(self)
    }

    /// Sets index entry `key` to `value` (key `i/<key>`): a small value a
    /// caller finds by a name it knows, read with [`Store::index`](super::Store::index).
    pub fn index(mut self, key: &str, value: &str) -> Self {
        self.writes
            .push(Write::Put(index_key(key), value.as_bytes().to_vec()));
        self
    }

    /// Puts machine-owned data under `x/<key>`.
    pub fn data(mut self, key: &[u8], value: Vec<u8>) -> Self {
        self.writes.push(Write::Put(data_key(key), value));
        self
    }

    /// Removes machine-owned data `x/<key>`.
    pub fn delete_data(mut self, key: &[u8]) -> Self {
        self.writes.push(Write::Delete(data_key(key)));
        self
    }

    /// Appends the writes of `other` (applied after this commit's own, in the
    /// same atomic batch).
    pub fn merge(mut self, other: Commit) -> Self {
        self.writes.extend(other.writes);
        self.marks.extend(other.marks);
        self.fence = self.fence.or(other.fence);
        self
    }

    /// Number of writes in the commit (each put or delete, the record and
    /// history entry included).
    pub fn len(&self) -> usize {
        self.writes.len()
    }

    /// Whether the commit writes nothing.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// The writes, in order, for a backend that applies them (sled's
    /// [`Store`] applies them through its log).
    pub fn writes(&self) -> &[Write] {
        &self.writes
    }

    /// Makes the commit conditional on sync `sync`'s lease still carrying
    /// fencing token `fence` (see [`CheckpointStore`]).
    pub fn fenced(mut self, sync: &str, fence: u64) -> Self {
        self.fence = Some((sync.to_string(), fence));
        self
    }

    /// The fence set with [`Commit::fenced`], if any.
    pub fn fence(&self) -> Option<(&str, u64)> {
        self.fence.as_ref().map(|(s, f)| (s.as_str(), *f))
    }
}

pub(super) fn record_key(id: &str) -> Vec<u8> {
    [b"r/".as_slice(), id.as_bytes()].concat()
}

pub(super) fn head_key(id: &str) -> Vec<u8> {
    [b"m/".as_slice(), id.as_bytes()].concat()
}

pub(super) fn plan_key(id: &str) -> Vec<u8> {
    [b"p/".as_slice(), id.as_bytes()].concat()
}

pub(super) fn segment_prefix(id: &str) -> Vec<u8> {
    [b"s/".as_slice(), id.as_bytes(), b"\0"].concat()
}

pub(super) fn segment_key(id: &str, n: u32) -> Vec<u8> {
    [segment_prefix(id).as_slice(), &n.to_be_bytes()].concat()
}

pub(super) fn history_prefix(id: &str) -> Vec<u8> {
    [b"h/".as_slice(), id.as_bytes(), b"\0"].concat()
}

pub(super) fn history_key(id: &str, seq: u64) -> Vec<u8> {
    [history_prefix(id).as_slice(), &seq.to_be_bytes()].concat()
}

pub(super) fn index_key(key: &str) -> Vec<u8> {
    [b"i/".as_slice(), key.as_bytes()].concat()
}

pub(super) fn data_key(key: &[u8]) -> Vec<u8> {
    [b"x/".as_slice(), key].concat()
}

/// `(prefix up to and including the NUL, seq)` of a history key.
pub(super) fn split_history_key(key: &[u8]) -> Option<(&[u8], u64)> {
    if !key.starts_with(b"h/") || key.len() < 2 + 1 + 8 {
        return None;
    }
    let (prefix, seq) = key.split_at(key.len() - 8);
    if prefix.last() != Some(&0) {
        return None;
    }
    Some((prefix, u64::from_be_bytes(seq.try_into().ok()?)))
}
