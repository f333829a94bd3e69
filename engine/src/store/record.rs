//! The record and history types, and their compact encodings.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::clock::Timestamp;
use crate::status::Status;

/// Layout version of [`Record`] that this adsync writes; bumped on
/// incompatible changes.
///
/// Format 2 writes the fields fixed when a sync starts (kind, start time,
/// labels: a few hundred bytes, as labels hold paths and URLs) once, as the
/// record's *head* under `m/<sync id>`, instead of with every checkpoint.
/// Format-1 records (every field under `r/<sync id>`) still read, and a sync
/// started with format 1 keeps it: [`Commit::record`](super::Commit::record) writes a record in its
/// own `format`.
pub const RECORD_FORMAT: u32 = 2;

/// The oldest record format this adsync reads.
pub(super) const OLDEST_RECORD_FORMAT: u32 = 1;

/// The fields of a format-2 record that are written with every checkpoint.
#[derive(Serialize, Deserialize)]
pub(super) struct RecordBody<'a> {
    pub(super) format: u32,
    #[serde(borrow)]
    pub(super) id: std::borrow::Cow<'a, str>,
    pub(super) state_version: u32,
    pub(super) seq: u64,
    #[serde(borrow)]
    pub(super) phase: std::borrow::Cow<'a, str>,
    pub(super) status: Status,
    pub(super) effects_run: u64,
    pub(super) failed_effects: u64,
    pub(super) last_error: Option<String>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub(super) not_before: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339")]
    pub(super) updated_at: Timestamp,
    #[serde(borrow)]
    pub(super) state: std::borrow::Cow<'a, serde_json::value::RawValue>,
}

/// The fields of a format-2 record written once, when its sync starts.
#[derive(Serialize, Deserialize)]
pub(super) struct RecordHead<'a> {
    #[serde(borrow)]
    pub(super) kind: std::borrow::Cow<'a, str>,
    #[serde(with = "time::serde::rfc3339")]
    pub(super) created_at: Timestamp,
    pub(super) labels: std::borrow::Cow<'a, BTreeMap<String, String>>,
}

/// The latest checkpoint of one sync.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// Layout version of this record ([`RECORD_FORMAT`]).
    pub format: u32,
    /// The sync's id.
    pub id: String,
    /// The machine kind (`push`, `pull`).
    pub kind: String,
    /// The state version of the machine that wrote `state`; a runner built
    /// for another version refuses to decode it.
    pub state_version: u32,
    /// Transitions applied so far (0 = just started).
    pub seq: u64,
    /// The phase of `state`.
    pub phase: String,
    /// Where the sync stands; anything but `Running` means the runner has
    /// nothing more to do on its own.
    pub status: Status,
    /// Effects run so far, in this sync.
    pub effects_run: u64,
    /// Effects that failed so far, in this sync (each retry counts).
    pub failed_effects: u64,
    /// The error worth showing, if any.
    pub last_error: Option<String>,
    /// The earliest time the state's next effect may start (a backoff), as
    /// the machine's `not_before` gave it when this checkpoint was written:
    /// a scheduler listing unfinished syncs learns when each is due without
    /// decoding its state. `None`: due now (and in records written before
    /// this field existed).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub not_before: Option<Timestamp>,
    /// When the sync started.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    /// When this checkpoint was written.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
    /// Free-form labels (platform, account, campaign, …) for listing.
    pub labels: BTreeMap<String, String>,
    /// The machine state, as the JSON text the machine's serde encoding gave.
    ///
    /// Kept as raw JSON, not a `serde_json::Value`: building and dropping a
    /// value tree for every checkpoint was most of a step's CPU time.
    pub state: Box<serde_json::value::RawValue>,
    /// The part of the state fixed when the sync started (a push's entity specs
    /// and work plan), if the machine splits one out
    /// (the machine's `encode_plan`). Stored once under its own key
    /// (`p/<sync id>`), not in every checkpoint: checkpoints then carry only
    /// progress, so their size does not grow with the campaign. The store fills
    /// it in when it reads a record; [`Commit::plan`](super::Commit::plan) writes it.
    #[serde(skip)]
    pub plan: Option<Arc<serde_json::value::RawValue>>,
    /// Segments of the sync's progress that the machine wrote under their own
    /// keys (`s/<sync id>\0<n BE>`, [`Commit::segment`](super::Commit::segment)), in segment order:
    /// parts of its state that no longer change, so each is written once
    /// instead of with every later checkpoint
    /// (the machine's `encode_segments`). Like the plan, filled
    /// in by the store when it reads a record.
    #[serde(skip)]
    pub segments: Vec<(u32, Arc<serde_json::value::RawValue>)>,
}

impl PartialEq for Record {
    fn eq(&self, other: &Self) -> bool {
        // Field by field; the state compares as JSON text.
        let key = |r: &Record| {
            (
                r.format,
                r.state_version,
                r.seq,
                r.effects_run,
                r.failed_effects,
            )
        };
        let text = |r: &Record| {
            (
                r.id.clone(),
                r.kind.clone(),
                r.phase.clone(),
                r.last_error.clone(),
                r.state.get().to_string(),
                r.plan.as_ref().map(|p| p.get().to_string()),
                r.segments
                    .iter()
                    .map(|(n, s)| (*n, s.get().to_string()))
                    .collect::<Vec<_>>(),
            )
        };
        key(self) == key(other)
            && text(self) == text(other)
            && self.status == other.status
            && (self.created_at, self.updated_at) == (other.created_at, other.updated_at)
            && self.labels == other.labels
    }
}

/// One applied transition, kept as text (phases and the machine's
/// descriptions), so reading a history needs no machine to decode it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// Sequence number of the state this transition produced.
    pub seq: u64,
    /// When it was applied.
    #[serde(with = "time::serde::rfc3339")]
    pub at: Timestamp,
    /// Phase before (empty for the entry of the sync's start, seq 0).
    pub from: String,
    /// The machine's description of the effect that ran (none when the runner applied an outcome without
    /// running the effect, e.g. after a restart).
    pub effect: Option<String>,
    /// The machine's description of the outcome applied (`started` for the
    /// entry of the sync's start).
    pub outcome: String,
    /// Phase after.
    pub to: String,
}

/// A [`HistoryEntry`] as the store writes it: the tuple
/// `[at, from, effect, outcome]`, or `[at, from, effect, outcome, to]` when
/// the phase changed. `at` is unix nanoseconds (exact, so the entry reads back
/// equal); the seq is the key's (a run's entries follow it one by one). A
/// transition is written for every effect, so field names, an RFC 3339 time
/// and a repeated phase were most of the history's bytes.
pub(super) struct StoredEntryOut<'a>(pub(super) &'a HistoryEntry);

impl Serialize for StoredEntryOut<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeTuple};
        let e = self.0;
        let at = i64::try_from(e.at.unix_timestamp_nanos())
            .map_err(|_| S::Error::custom(format!("time {} is out of range", e.at)))?;
        let changed = e.to != e.from;
        let mut t = serializer.serialize_tuple(if changed { 5 } else { 4 })?;
        t.serialize_element(&at)?;
        t.serialize_element(&e.from)?;
        t.serialize_element(&e.effect)?;
        t.serialize_element(&e.outcome)?;
        if changed {
            t.serialize_element(&e.to)?;
        }
        t.end()
    }
}

/// A history entry as read: a tuple (see [`StoredEntryOut`]), or the object
/// earlier versions wrote, which carries its own seq.
pub(super) enum StoredEntry {
    Tuple {
        at: Timestamp,
        from: String,
        effect: Option<String>,
        outcome: String,
        to: Option<String>,
    },
    Object(HistoryEntry),
    /// An entry after the first of a run, as the applier joins them:
    /// `[effect, outcome, nanoseconds since the entry before(, to)]`, its
    /// phase before being the entry before's phase after.
    FollowOn {
        effect: Option<String>,
        outcome: String,
        after: i64,
        to: Option<String>,
    },
}

impl StoredEntry {
    /// The entry, `seq` being where its key and its place in a run put it,
    /// `before` the entry before it in the same run.
    pub(super) fn into_entry(
        self,
        seq: u64,
        before: Option<&HistoryEntry>,
    ) -> Result<HistoryEntry, String> {
        Ok(match self {
            StoredEntry::Tuple {
                at,
                from,
                effect,
                outcome,
                to,
            } => HistoryEntry {
                seq,
                at,
                to: to.unwrap_or_else(|| from.clone()),
                from,
                effect,
                outcome,
            },
            StoredEntry::Object(entry) => entry,
            StoredEntry::FollowOn {
                effect,
                outcome,
                after,
                to,
            } => {
                let before = before.ok_or("a run's first entry is not a whole entry")?;
                let at = before
                    .at
                    .checked_add(time::Duration::nanoseconds(after))
                    .ok_or_else(|| {
                        format!("time {after} ns after {} is out of range", before.at)
                    })?;
                HistoryEntry {
                    seq,
                    at,
                    from: before.to.clone(),
                    to: to.unwrap_or_else(|| before.to.clone()),
                    effect,
                    outcome,
                }
            }
        })
    }
}

/// The first element of a stored tuple: a whole entry's time, or a
/// follow-on's effect.
#[derive(Deserialize)]
#[serde(untagged)]
enum TupleHead {
    Time(i64),
    Effect(Option<String>),
}

impl<'de> Deserialize<'de> for StoredEntry {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = StoredEntry;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a history entry: [time, from, effect, outcome(, to)] or an object")
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<StoredEntry, A::Error> {
                use serde::de::Error;
                let missing = |i: usize| A::Error::invalid_length(i, &self);
                let nanos = match seq.next_element()?.ok_or_else(|| missing(0))? {
                    TupleHead::Time(nanos) => nanos,
                    TupleHead::Effect(effect) => {
                        let outcome = seq.next_element()?.ok_or_else(|| missing(1))?;
                        let after = seq.next_element()?.ok_or_else(|| missing(2))?;
                        let to = seq.next_element()?;
                        if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                            return Err(A::Error::invalid_length(5, &self));
                        }
                        return Ok(StoredEntry::FollowOn {
                            effect,
                            outcome,
                            after,
                            to,
                        });
                    }
                };
                let at = Timestamp::from_unix_timestamp_nanos(nanos.into())
                    .map_err(|e| A::Error::custom(format!("time {nanos}: {e}")))?;
                let from = seq.next_element()?.ok_or_else(|| missing(1))?;
                let effect = seq.next_element()?.ok_or_else(|| missing(2))?;
                let outcome = seq.next_element()?.ok_or_else(|| missing(3))?;
                let to = seq.next_element()?;
                if seq.next_element::<serde::de::IgnoredAny>()?.is_some() {
                    return Err(A::Error::invalid_length(6, &self));
                }
                Ok(StoredEntry::Tuple {
                    at,
                    from,
                    effect,
                    outcome,
                    to,
                })
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<StoredEntry, A::Error> {
                HistoryEntry::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(StoredEntry::Object)
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// Whether a history value is a run of entries (`[[…],…]` or, as earlier
/// versions joined objects, `[{…},…]`) rather than one entry (`[time,…]` or
/// `{…}`).
pub(super) fn is_history_run(bytes: &[u8]) -> bool {
    let mut rest = bytes.iter().filter(|b| !b.is_ascii_whitespace());
    rest.next() == Some(&b'[') && matches!(rest.next(), Some(b'[' | b'{'))
}
/// Consecutive history entries of one sync, stored as one sled value (a
/// JSON array under the first entry's key) instead of one key each. The
/// first is stored whole; an entry that starts in the phase the one before
/// ended in, nearly all of them, joins as a follow-on (see
/// [`StoredEntry::FollowOn`]): no phase before, and its time as an offset.
pub(super) struct HistoryRun<'a> {
    pub(super) key: &'a [u8],
    pub(super) prefix: &'a [u8],
    pub(super) next: u64,
    pub(super) first: &'a [u8],
    /// `[first,second,…` once a second entry joins; empty while there is one.
    pub(super) joined: Vec<u8>,
    /// The last entry's time (unix ns) and phase after, when it decoded.
    pub(super) last: Option<(i64, String)>,
}

impl<'a> HistoryRun<'a> {
    pub(super) fn new(key: &'a [u8], prefix: &'a [u8], seq: u64, value: &'a [u8]) -> Self {
        HistoryRun {
            key,
            prefix,
            next: seq + 1,
            first: value,
            joined: Vec::new(),
            last: Self::time_and_phase(value),
        }
    }

    /// The time and phase after of a whole stored entry.
    fn time_and_phase(value: &[u8]) -> Option<(i64, String)> {
        match serde_json::from_slice::<StoredEntry>(value).ok()? {
            StoredEntry::Tuple { at, from, to, .. } => Some((
                i64::try_from(at.unix_timestamp_nanos()).ok()?,
                to.unwrap_or(from),
            )),
            StoredEntry::Object(e) => {
                Some((i64::try_from(e.at.unix_timestamp_nanos()).ok()?, e.to))
            }
            StoredEntry::FollowOn { .. } => None,
        }
    }

    pub(super) fn push(&mut self, value: &[u8]) {
        if self.joined.is_empty() {
            self.joined.push(b'[');
            self.joined.extend_from_slice(self.first);
        }
        self.joined.push(b',');
        let entry = serde_json::from_slice::<StoredEntry>(value).ok();
        match (entry, self.last.take()) {
            (
                Some(StoredEntry::Tuple {
                    at,
                    from,
                    effect,
                    outcome,
                    to,
                }),
                Some((before, phase)),
            ) if from == phase => {
                let at = i64::try_from(at.unix_timestamp_nanos()).unwrap_or(i64::MAX);
                let to = to.filter(|to| *to != from);
                let after = at.wrapping_sub(before);
                let written = match &to {
                    Some(to) => serde_json::to_vec(&(&effect, &outcome, after, to)),
                    None => serde_json::to_vec(&(&effect, &outcome, after)),
                };
                match written {
                    Ok(bytes) => {
                        self.joined.extend_from_slice(&bytes);
                        self.last = Some((at, to.unwrap_or(from)));
                    }
                    // Not reached (strings and integers always encode); the
                    // entry is then kept whole.
                    Err(_) => {
                        self.joined.extend_from_slice(value);
                        self.last = Self::time_and_phase(value);
                    }
                }
            }
            _ => {
                self.joined.extend_from_slice(value);
                self.last = Self::time_and_phase(value);
            }
        }
        self.next += 1;
    }

    pub(super) fn put(mut self, tree: &sled::Tree) -> sled::Result<()> {
        if self.joined.is_empty() {
            tree.insert(self.key, self.first)?;
        } else {
            self.joined.push(b']');
            tree.insert(self.key, self.joined)?;
        }
        Ok(())
    }
}

/// Decodes a record of either format; `head` reads a format-2 record's head.
pub(super) fn decode_record<H: AsRef<[u8]>>(
    id: &str,
    bytes: &[u8],
    head: impl FnOnce() -> Result<Option<H>, StoreError>,
) -> Result<Record, StoreError> {
    /// Only the format field: checked before the rest is trusted to mean
    /// what this version thinks it means. Skipping the other fields is much
    /// cheaper than building a value tree of the whole record.
    #[derive(Deserialize)]
    struct Probe {
        format: Option<serde_json::Value>,
    }
    let corrupt = |detail: String| StoreError::Corrupt {
        sync: id.to_string(),
        detail,
    };
    let probe: Probe =
        serde_json::from_slice(bytes).map_err(|e| corrupt(format!("not a JSON record: {e}")))?;
    let format = match probe.format.as_ref().map(|f| f.as_u64()) {
        Some(Some(f))
            if (u64::from(OLDEST_RECORD_FORMAT)..=u64::from(RECORD_FORMAT)).contains(&f) =>
        {
            f
        }
        Some(Some(found)) => {
            return Err(StoreError::UnsupportedFormat {
                sync: id.to_string(),
                found,
                supported: u64::from(RECORD_FORMAT),
            })
        }
        Some(None) => return Err(corrupt("the format field is not a number".into())),
        None => return Err(corrupt("no format field".into())),
    };
    if format == u64::from(OLDEST_RECORD_FORMAT) {
        return serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()));
    }
    let body: RecordBody = serde_json::from_slice(bytes).map_err(|e| corrupt(e.to_string()))?;
    let head = head()?.ok_or_else(|| {
        corrupt(format!(
            "its head (kind, start time, labels; key `m/{id}`) is missing"
        ))
    })?;
    let head: RecordHead =
        serde_json::from_slice(head.as_ref()).map_err(|e| corrupt(format!("its head: {e}")))?;
    Ok(Record {
        format: body.format,
        id: body.id.into_owned(),
        kind: head.kind.into_owned(),
        state_version: body.state_version,
        seq: body.seq,
        phase: body.phase.into_owned(),
        status: body.status,
        effects_run: body.effects_run,
        failed_effects: body.failed_effects,
        last_error: body.last_error,
        not_before: body.not_before,
        created_at: head.created_at,
        updated_at: body.updated_at,
        labels: head.labels.into_owned(),
        state: body.state.into_owned(),
        plan: None,
        segments: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::commit::{history_key, history_prefix};
    use crate::store::tests::{entry, open_small};
    use crate::store::{Commit, Write};

    /// A batch stores each sync's consecutive history entries as one value;
    /// reading gives every entry once, in order, whether entries are stored
    /// alone (as by earlier versions), joined, or joined twice over (a replay
    /// after a crash re-applies groups sled may already hold).
    #[test]
    fn history_entries_are_joined_per_batch_and_read_back_once_each() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_small(&dir.path().join("db"));
        for seq in 1..=5 {
            let commit = Commit::new()
                .history("a", &entry(seq))
                .unwrap()
                .history("b", &entry(seq))
                .unwrap();
            store.commit_blocking(commit).unwrap();
        }
        let seqs =
            |id: &str| -> Vec<u64> { store.history(id).unwrap().iter().map(|e| e.seq).collect() };
        assert_eq!(seqs("a"), [1, 2, 3, 4, 5]);
        assert_eq!(seqs("b"), [1, 2, 3, 4, 5]);
        let keys = store.inner.tree.scan_prefix(history_prefix("a")).count();
        assert_eq!(keys, 1, "five entries applied in one batch share one key");

        // What a replay can leave: a single entry, then a run overlapping it
        // and a later run, all for sync "c".
        let json = |seqs: &[u64]| -> Vec<u8> {
            let entries: Vec<_> = seqs.iter().map(|s| entry(*s)).collect();
            serde_json::to_vec(&entries).unwrap()
        };
        let tree = &store.inner.tree;
        tree.insert(history_key("c", 1), serde_json::to_vec(&entry(1)).unwrap())
            .unwrap();
        tree.insert(history_key("c", 2), json(&[2, 3, 4])).unwrap();
        tree.insert(history_key("c", 3), json(&[3, 4, 5, 6]))
            .unwrap();
        assert_eq!(seqs("c"), [1, 2, 3, 4, 5, 6]);

        tree.insert(history_key("c", 7), b"[{\"seq\": 7".to_vec())
            .unwrap();
        let err = store.history("c").unwrap_err().to_string();
        assert!(err.contains("history entry") && err.contains('c'), "{err}");
    }

    /// An entry is stored as a tuple without field names, its time in unix
    /// nanoseconds and `to` only when the phase changed, and reads back
    /// equal; entries of the earlier layout (an object alone, or objects
    /// joined in a run, here mixed with tuples as a replay across an upgrade
    /// can join them) still read.
    #[test]
    fn history_entries_are_compact_tuples_and_old_objects_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_small(&dir.path().join("db"));
        let at = time::macros::datetime!(2026-12-01 18:44:01.123456789 UTC);
        let same = HistoryEntry {
            seq: 1,
            at,
            from: "AdGroupsCreated".into(),
            effect: Some("create ad `a1` under t2_g".into()),
            outcome: "created t2_a".into(),
            to: "AdGroupsCreated".into(),
        };
        let changed = HistoryEntry {
            seq: 2,
            effect: None,
            to: "AdsCreated".into(),
            ..same.clone()
        };
        let commit = Commit::new()
            .history("a", &same)
            .unwrap()
            .history("a", &changed)
            .unwrap();
        let bytes = |c: &Commit| -> Vec<Vec<u8>> {
            c.writes
                .iter()
                .filter_map(|w| match w {
                    Write::Put(_, v) => Some(v.clone()),
                    _ => None,
                })
                .collect()
        };
        let written = bytes(&commit);
        assert_eq!(
            String::from_utf8_lossy(&written[0]),
            r#"[1796150641123456789,"AdGroupsCreated","create ad `a1` under t2_g","created t2_a"]"#
        );
        assert_eq!(
            String::from_utf8_lossy(&written[1]),
            r#"[1796150641123456789,"AdGroupsCreated",null,"created t2_a","AdsCreated"]"#
        );
        store.commit_blocking(commit).unwrap();
        assert_eq!(store.history("a").unwrap(), [same.clone(), changed.clone()]);

        // Written by hand in the earlier layout: an object alone, then a run
        // of objects, then a run mixing an object and a tuple.
        let old = |seq: u64| {
            serde_json::json!({
                "seq": seq, "at": "2026-12-01T18:44:01.123456789Z", "from": "Pending",
                "effect": "create campaign `c` \"Spring\" in account a2", "outcome": "created t2_c",
                "to": "CampaignCreated"
            })
        };
        let tree = &store.inner.tree;
        tree.insert(history_key("b", 1), old(1).to_string().as_bytes())
            .unwrap();
        tree.insert(
            history_key("b", 2),
            serde_json::json!([old(2), old(3)]).to_string().as_bytes(),
        )
        .unwrap();
        let tuple = String::from_utf8(written[1].clone()).unwrap();
        tree.insert(
            history_key("b", 4),
            format!("[ {},{tuple}]", old(4)).as_bytes(),
        )
        .unwrap();
        let read = store.history("b").unwrap();
        assert_eq!(
            read.iter().map(|e| e.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(read[0].at, at);
        assert_eq!(read[0].to, "CampaignCreated");
        assert_eq!(
            read[3].effect.as_deref(),
            Some("create campaign `c` \"Spring\" in account a2")
        );
        assert_eq!(read[4], HistoryEntry { seq: 5, ..changed });

        tree.insert(history_key("b", 6), b"[1,\"x\"]".to_vec())
            .unwrap();
        let err = store.history("b").unwrap_err().to_string();
        assert!(err.contains("history entry") && err.contains('b'), "{err}");
    }

    /// A run stores its first entry whole and each later one that starts
    /// where the one before ended as `[effect, outcome, ns after(, to)]`;
    /// every entry reads back equal, times to the nanosecond, phases and
    /// all, including one that does not start where the one before ended.
    #[test]
    fn a_run_stores_later_entries_as_follow_ons_and_reads_them_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_small(&dir.path().join("db"));
        let t0 = time::macros::datetime!(2026-12-01 18:44:01.123456789 UTC);
        let step = |seq: u64, ns: i64, from: &str, to: &str, effect: Option<&str>| HistoryEntry {
            seq,
            at: t0 + time::Duration::nanoseconds(ns),
            from: from.into(),
            effect: effect.map(Into::into),
            outcome: format!("outcome {seq}"),
            to: to.into(),
        };
        let entries = [
            step(0, 0, "", "Pending", None),
            step(
                1,
                1_000_001,
                "Pending",
                "CampaignCreated",
                Some("create campaign `c`"),
            ),
            step(
                2,
                2_500_000,
                "CampaignCreated",
                "CampaignCreated",
                Some("create ad_group `g`"),
            ),
            // The clock went back, and a phase that is not the last one's.
            step(3, -7, "Elsewhere", "Elsewhere", Some("odd")),
            step(4, 9_000_000_000, "Elsewhere", "Synced", None),
        ];
        let mut commit = Commit::new();
        for e in &entries {
            commit = commit.history("a", e).unwrap();
        }
        store.commit_blocking(commit).unwrap();
        assert_eq!(store.history("a").unwrap(), entries);

        let (_, value) = store
            .inner
            .tree
            .scan_prefix(history_prefix("a"))
            .next()
            .unwrap()
            .unwrap();
        let run: serde_json::Value = serde_json::from_slice(&value).unwrap();
        assert_eq!(
            run,
            serde_json::json!([
                [1796150641123456789_i64, "", null, "outcome 0", "Pending"],
                [
                    "create campaign `c`",
                    "outcome 1",
                    1_000_001,
                    "CampaignCreated"
                ],
                ["create ad_group `g`", "outcome 2", 1_499_999],
                [1796150641123456782_i64, "Elsewhere", "odd", "outcome 3"],
                [null, "outcome 4", 9_000_000_007_i64, "Synced"],
            ])
        );

        // A follow-on with no whole entry before it is corrupt, not a panic.
        store
            .inner
            .tree
            .insert(
                history_key("b", 1),
                br#"[["x","y",1],["x","y",1]]"#.to_vec(),
            )
            .unwrap();
        let err = store.history("b").unwrap_err().to_string();
        assert!(err.contains("history entry") && err.contains('b'), "{err}");
    }
}
