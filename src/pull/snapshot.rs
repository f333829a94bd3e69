//! Staged pages and persisted snapshots: their keys, their encoding, the
//! persist step and the readers.
//!
//! ## Layout (machine-owned data, under the store's `x/` prefix)
//!
//! | key                                              | value |
//! |--------------------------------------------------|-------|
//! | `pull/<platform>/<profile>/s/<kind><page u64 BE>` | a staged page's index: its entity count, the first id of each part, its last id |
//! | `pull/<platform>/<profile>/g/<gen u64 BE>/p<kind><page u64 BE><part u32 BE>` | one part of a page of generation `gen`'s pull: entities sorted by id, about [`VALUE_BYTES`] |
//! | `pull/<platform>/<profile>/g/<gen u64 BE>/i<kind>` | the generation's directory: the first id of every part with its page and part number, in id order |
//! | `pull/<platform>/<profile>/current`               | the [`SnapshotRef`] of the current generation (JSON) |
//!
//! `<kind>` is one byte: `c` campaigns, `g` ad groups, `k` keywords.
//!
//! Parts use one framing: a sequence of entries
//! `[u32 LE id length][id][u32 LE JSON length][entity JSON]`. A fetched page is
//! sorted by id, cut into parts of whole entries, each at most [`VALUE_BYTES`]
//! (unless one entity alone is larger), and written where it stays: under the
//! generation its pull will make current, not yet named by `current`. Its
//! index under `s/` says it is staged.
//!
//! Persisting reads only the indexes: when the pages do not overlap (the
//! platform lists in id order), the generation is the staged parts as they
//! are, and its directory lists them in id order, so persisting costs a read
//! per page, not a write per entity. Pages that overlap (data changed during
//! the fetch) are merged like sorted runs into new parts under the page number
//! [`MERGED_PAGE`], an id on several pages keeping the latest page's entity;
//! the staged parts the merge replaced go with the flip. Persisting never
//! parses entity JSON.
//!
//! The Completed checkpoint's commit writes the directories and `current`,
//! and removes the indexes under `s/` and the previous generation: the flip is
//! atomic. A generation's keys are never changed while `current` names it, so
//! a reader that reads `current`, then the parts, then `current` again, and
//! finds it unchanged has read one complete snapshot.
//!
//! ## Layout versions
//!
//! [`SnapshotRef::layout`] says how a generation is stored. Layout 1 (adsync
//! before layout 2; its pointer has no `layout`) kept staged pages under `s/`
//! (part 0 under the page's key, further parts behind it) and rewrote them as
//! chunks `g/<gen>/c<kind><chunk u32 BE>` with a JSON directory of first ids
//! `g/<gen>/d<kind>`. This build reads, replaces and removes layout-1
//! generations, and persists pages a layout-1 pull staged (a resume after an
//! upgrade) through the merge. A pointer of a newer layout is refused with an
//! error naming it.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::ops::Range;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::platform::amazon::{Items, ListKind, SpAdGroup, SpCampaign, SpEntity, SpKeyword};
use crate::pull::machine::{PullCounts, SnapshotRef};
#[cfg(test)]
use adsync_engine::Store;
use adsync_engine::Timestamp;
use adsync_engine::{CheckpointStore, Commit, StoreError, StoreRead};

/// The most bytes of entries in one stored value (a staged page's part, a
/// chunk), unless a single entity is larger. A reader finds an entity by id
/// through the chunk directory and decodes one chunk, not the whole kind.
///
/// Why so small: sled keeps a value larger than a quarter of its segment
/// (128 KiB by default) as a "blob", and its page cache counts a leaf holding
/// one by the size of the blob's pointer, not the value's. Such leaves are never
/// evicted, so a pull's memory grew with the profile's size (every staged page
/// and chunk stayed in memory). A leaf holds up to 16 values before it splits:
/// values of this size keep each leaf well under the blob threshold, so the
/// cache's bound (the store's `cache_capacity`) holds for pull data too
/// (docs/performance.md, "Pull memory").
pub const VALUE_BYTES: usize = 7 << 10;
/// The newest snapshot layout this build reads, and the one it writes (see
/// "Layout versions" in the module docs).
pub const SNAPSHOT_LAYOUT: u32 = 2;
/// Bytes of merged parts written per commit while persisting.
const COMMIT_BYTES: usize = 4 << 20;

/// Errors of staging, persisting and reading snapshots.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// The store failed; its error names the store and keeps the cause.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Stored data does not decode.
    #[error("profile {profile}: corrupt {what}: {detail}")]
    Corrupt {
        /// The profile whose data it is.
        profile: String,
        /// Which value (a staged page, a chunk, the generation pointer, …).
        what: String,
        /// The decoder's message.
        detail: String,
    },
    /// The snapshot kept changing while it was read: every attempt saw a new
    /// generation made current under it (pulls completing back to back).
    #[error("profile {0}: the snapshot changed during every read attempt")]
    Contended(String),
}

mod keys;

use keys::{chunk_key, directory_key, index_key, page_prefix, part_key};
#[cfg(not(feature = "testing"))]
pub(crate) use keys::{current_key, generation_of, generations_prefix, stage_key, stage_prefix};
/// The key builders, for tests that look at or damage the layout (feature `testing`).
#[cfg(feature = "testing")]
pub use keys::{current_key, generation_of, generations_prefix, stage_key, stage_prefix};

fn push_entry(out: &mut Vec<u8>, id: &[u8], json: &[u8]) {
    out.extend_from_slice(&(id.len() as u32).to_le_bytes());
    out.extend_from_slice(id);
    out.extend_from_slice(&(json.len() as u32).to_le_bytes());
    out.extend_from_slice(json);
}

/// Encodes the entities of a fetched page for staging: sorted by id, one
/// entry per id (the last on the page wins).
pub fn encode_items(items: &Items) -> Result<Vec<u8>, serde_json::Error> {
    fn enc<T: SpEntity>(items: &[T]) -> Result<Vec<u8>, serde_json::Error> {
        // Sorted by id, one entry per id (the last one on the page wins).
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by(|&a, &b| items[a].id().cmp(items[b].id()));
        let mut unique: Vec<usize> = Vec::with_capacity(order.len());
        for i in order {
            match unique.last_mut() {
                Some(last) if items[*last].id() == items[i].id() => *last = i,
                _ => unique.push(i),
            }
        }
        let mut out = Vec::with_capacity(items.len() * 160);
        let mut json = Vec::with_capacity(256);
        for item in unique.into_iter().map(|i| &items[i]) {
            json.clear();
            serde_json::to_writer(&mut json, item)?;
            push_entry(&mut out, item.id().as_bytes(), &json);
        }
        Ok(out)
    }
    match items {
        Items::Campaigns(v) => enc(v),
        Items::AdGroups(v) => enc(v),
        Items::Keywords(v) => enc(v),
    }
}

/// What a staged page's index value starts with. Layout 1 staged the page's
/// entries themselves under that key, whose first 4 bytes are an id's length:
/// never 4 GiB.
const INDEX_MAGIC: &[u8; 4] = &[0xff; 4];

/// The page number under which the merge writes the parts of a kind whose
/// staged pages overlap: no staged page has it.
pub const MERGED_PAGE: u64 = u64::MAX;

/// A staged page's index (under its `s/` key, after [`INDEX_MAGIC`], JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PageIndex {
    /// Entities on the page (one per id).
    n: u64,
    /// The first id of each part, in part order.
    parts: Vec<String>,
    /// The page's last id; `None` for an empty page.
    last: Option<String>,
}

/// The writes that stage `page` (framed as [`encode_items`] does) of the pull
/// writing generation `generation`: its entries cut into parts of at most
/// [`VALUE_BYTES`], under the generation's keys, and the page's index under
/// its staging key. An empty page is an index with no part: persisting reads
/// every page it counted.
pub fn stage_writes(
    platform: &str,
    profile: &str,
    generation: u64,
    kind: ListKind,
    page: u64,
    encoded: &[u8],
) -> Result<Commit, String> {
    let frames = decode_frames(encoded)?;
    let id_of = |f: &Entry| String::from_utf8_lossy(&encoded[f.id.clone()]).into_owned();
    let mut index = PageIndex {
        n: frames.len() as u64,
        parts: Vec::new(),
        last: frames.last().map(id_of),
    };
    let mut commit = Commit::new();
    let mut start = 0usize;
    let mut end = 0usize;
    for frame in &frames {
        // The entry's framing starts with its id's length, before the id.
        let entry_start = frame.id.start - 4;
        if end > start && frame.json.end - start > VALUE_BYTES {
            let key = part_key(
                platform,
                profile,
                generation,
                kind,
                page,
                index.parts.len() as u32 - 1,
            );
            commit = commit.data(&key, encoded[start..end].to_vec());
            start = entry_start;
        }
        if entry_start == start {
            index.parts.push(id_of(frame));
        }
        end = frame.json.end;
    }
    if end > start {
        let part = index.parts.len() as u32 - 1;
        let key = part_key(platform, profile, generation, kind, page, part);
        commit = commit.data(&key, encoded[start..end].to_vec());
    }
    let mut value = INDEX_MAGIC.to_vec();
    serde_json::to_writer(&mut value, &index).map_err(|e| e.to_string())?;
    Ok(commit.data(&stage_key(platform, profile, kind, page), value))
}

/// One framed entry: the id and JSON ranges inside its buffer.
#[derive(Debug, Clone)]
struct Entry {
    id: Range<usize>,
    json: Range<usize>,
}

fn decode_frames(buf: &[u8]) -> Result<Vec<Entry>, String> {
    let mut out = Vec::new();
    let mut at = 0usize;
    let read_len = |at: usize| -> Result<usize, String> {
        let bytes: [u8; 4] = buf
            .get(at..at + 4)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| format!("truncated entry at byte {at}"))?;
        Ok(u32::from_le_bytes(bytes) as usize)
    };
    while at < buf.len() {
        let id_len = read_len(at)?;
        let id = at + 4..at + 4 + id_len;
        let json_len = read_len(id.end)?;
        let json = id.end + 4..id.end + 4 + json_len;
        if json.end > buf.len() {
            return Err(format!("truncated entry at byte {at}"));
        }
        at = json.end;
        out.push(Entry { id, json });
    }
    Ok(out)
}

fn corrupt(profile: &str, what: impl Into<String>, detail: impl ToString) -> SnapshotError {
    SnapshotError::Corrupt {
        profile: profile.to_string(),
        what: what.into(),
        detail: detail.to_string(),
    }
}

/// One staged page during the merge: its buffer, its entries, the next one.
struct Run {
    buf: Vec<u8>,
    frames: Vec<Entry>,
    pos: usize,
}

impl Run {
    fn id(&self) -> Option<&[u8]> {
        self.frames.get(self.pos).map(|f| &self.buf[f.id.clone()])
    }

    fn json(&self) -> &[u8] {
        self.frames
            .get(self.pos)
            .map_or(&[][..], |f| &self.buf[f.json.clone()])
    }
}

/// One entry of a layout-2 directory: the first id of a part, where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Piece {
    first: Vec<u8>,
    page: u64,
    part: u32,
}

/// A directory in its stored form: entries framed as pages are, the part's
/// page (u64 BE) and number (u32 BE) in place of the JSON.
fn encode_directory(pieces: &[Piece]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pieces.len() * 32);
    for piece in pieces {
        let mut at = [0u8; 12];
        at[..8].copy_from_slice(&piece.page.to_be_bytes());
        at[8..].copy_from_slice(&piece.part.to_be_bytes());
        push_entry(&mut out, &piece.first, &at);
    }
    out
}

fn decode_directory(profile: &str, buf: &[u8]) -> Result<Vec<Piece>, SnapshotError> {
    let frames = decode_frames(buf).map_err(|e| corrupt(profile, "directory", e))?;
    frames
        .iter()
        .map(|f| decode_piece(profile, buf, f))
        .collect()
}

fn decode_piece(profile: &str, buf: &[u8], entry: &Entry) -> Result<Piece, SnapshotError> {
    let at = &buf[entry.json.clone()];
    let (Some(page), Some(part)) = (
        at.get(..8).and_then(|b| b.try_into().ok()),
        at.get(8..12).and_then(|b| b.try_into().ok()),
    ) else {
        return Err(corrupt(profile, "directory", "an entry without its place"));
    };
    Ok(Piece {
        first: buf[entry.id.clone()].to_vec(),
        page: u64::from_be_bytes(page),
        part: u32::from_be_bytes(part),
    })
}

/// A generation built by [`build_generation`], not yet current.
#[derive(Debug)]
pub struct Built {
    /// What to make current.
    pub snapshot: SnapshotRef,
    /// The directory of each kind, written with the flip.
    directories: Vec<(ListKind, Vec<u8>)>,
    /// Staged values that are not part of the generation (the pages a merge
    /// replaced, further parts of pages staged in layout 1): removed with the
    /// flip, so that their removal needs no scan.
    unused: Vec<Vec<u8>>,
}

/// How one page was staged.
enum Staged {
    /// Layout 2: its index; its parts are under the generation.
    Indexed(PageIndex),
    /// Layout 1 (staged before an upgrade): its first part under its `s/` key,
    /// here; further parts behind it.
    Inline(Vec<u8>),
}

/// Builds generation `generation` of a profile from its staged pages. Returns
/// the [`SnapshotRef`] to make current and the directories to write with it
/// (in [`Built`]). Blocking: call it from a blocking thread.
///
/// Reads every page's index. Pages that do not overlap are the generation as
/// they are (see the module docs): nothing else is read or written. Otherwise
/// the kind's pages are merged like sorted runs (each staged page is sorted by
/// id, see [`encode_items`]): a page is read only when the merge reaches its
/// first id and dropped when it is consumed, so only a page or two are in
/// memory at a time whatever the size of the profile. An id on several pages
/// (the data changed during the fetch) keeps the entity of the latest page:
/// upsert by platform id. The merged parts are written (under keys no reader
/// looks at until the flip) before this returns.
pub fn build_generation(
    store: &dyn StoreRead,
    writes: &dyn CheckpointStore,
    platform: &str,
    profile: &str,
    generation: u64,
    pages: &PullCounts,
    now: Timestamp,
) -> Result<Built, SnapshotError> {
    let mut counts = PullCounts::default();
    let mut chunks = PullCounts::default();
    let mut writer = ChunkWriter {
        store: writes,
        commit: Commit::new(),
        pending: 0,
    };
    let mut directories = Vec::new();
    let mut unused = Vec::new();
    for kind in ListKind::ALL {
        let missing = |page: u64| {
            corrupt(
                profile,
                format!("staging of {kind}"),
                format!("staged page {page} is missing"),
            )
        };
        let mut staged = Vec::with_capacity(pages.get(kind) as usize);
        for page in 0..pages.get(kind) {
            let value = store
                .data(&stage_key(platform, profile, kind, page))?
                .ok_or_else(|| missing(page))?;
            staged.push(match value.strip_prefix(INDEX_MAGIC) {
                Some(json) => Staged::Indexed(serde_json::from_slice(json).map_err(|e| {
                    corrupt(profile, format!("index of staged {kind} page {page}"), e)
                })?),
                None => Staged::Inline(value),
            });
        }
        let (pieces, n) = match in_place(&staged) {
            Some(found) => found,
            None => {
                let mut out = KindChunks {
                    platform,
                    profile,
                    generation,
                    kind,
                    chunk: Vec::with_capacity(VALUE_BYTES),
                    in_chunk: 0,
                    directory: Vec::new(),
                    n: 0,
                };
                merge(
                    store,
                    platform,
                    profile,
                    generation,
                    kind,
                    &staged,
                    &mut out,
                    &mut writer,
                    &mut unused,
                )?;
                (out.directory, out.n)
            }
        };
        counts.add(kind, n);
        chunks.add(kind, pieces.len() as u64);
        directories.push((kind, encode_directory(&pieces)));
    }
    writer.flush()?;
    Ok(Built {
        snapshot: SnapshotRef {
            generation,
            counts,
            chunks,
            completed_at: now,
            layout: SNAPSHOT_LAYOUT,
        },
        directories,
        unused,
    })
}

/// The directory of a kind whose staged pages are the generation as they
/// are: every page indexed (layout 2) and no two overlapping. `None`
/// otherwise (they need the merge). With the entity count.
fn in_place(staged: &[Staged]) -> Option<(Vec<Piece>, u64)> {
    let mut order: Vec<(u64, &PageIndex)> = Vec::with_capacity(staged.len());
    for (page, staged) in staged.iter().enumerate() {
        match staged {
            Staged::Indexed(index) if index.parts.is_empty() => {}
            Staged::Indexed(index) => order.push((page as u64, index)),
            Staged::Inline(_) => return None,
        }
    }
    order.sort_by(|a, b| a.1.parts[0].cmp(&b.1.parts[0]));
    let disjoint = order.windows(2).all(|w| {
        w[0].1
            .last
            .as_deref()
            .is_some_and(|last| last < w[1].1.parts[0].as_str())
    });
    if !disjoint {
        return None;
    }
    let mut pieces = Vec::new();
    let mut n = 0;
    for (page, index) in order {
        n += index.n;
        for (part, first) in index.parts.iter().enumerate() {
            pieces.push(Piece {
                first: first.clone().into_bytes(),
                page,
                part: part as u32,
            });
        }
    }
    Some((pieces, n))
}

/// Merges the staged pages of a kind into `out` (see [`build_generation`]),
/// noting in `unused` the staged parts that the merged ones replace.
#[allow(clippy::too_many_arguments)]
fn merge(
    store: &dyn StoreRead,
    platform: &str,
    profile: &str,
    generation: u64,
    kind: ListKind,
    staged: &[Staged],
    out: &mut KindChunks<'_>,
    writer: &mut ChunkWriter<'_>,
    unused: &mut Vec<Vec<u8>>,
) -> Result<(), SnapshotError> {
    let missing = |page: u64| {
        corrupt(
            profile,
            format!("staging of {kind}"),
            format!("staged page {page} is missing"),
        )
    };
    let mut load = |page: u64| -> Result<Run, SnapshotError> {
        let mut buf = Vec::new();
        let mut parts = 0u32;
        let prefix = match &staged[page as usize] {
            Staged::Indexed(_) => page_prefix(platform, profile, generation, kind, page),
            Staged::Inline(_) => stage_key(platform, profile, kind, page),
        };
        for item in store.scan_data(&prefix) {
            let (key, value) = item?;
            if buf.is_empty() {
                buf = value;
            } else {
                buf.extend_from_slice(&value);
            }
            // A layout-1 page's first part is under its staging key, which
            // the flip removes with every other page's.
            if parts > 0 || matches!(staged[page as usize], Staged::Indexed(_)) {
                unused.push(key);
            }
            parts += 1;
        }
        if parts == 0 && matches!(staged[page as usize], Staged::Inline(_)) {
            return Err(missing(page));
        }
        let frames = decode_frames(&buf)
            .map_err(|e| corrupt(profile, format!("staged {kind} page {page}"), e))?;
        Ok(Run {
            buf,
            frames,
            pos: 0,
        })
    };
    // The first id of every page, from its index or its first part.
    let mut firsts: Vec<(Vec<u8>, u64)> = Vec::new();
    for (page, staged) in staged.iter().enumerate() {
        let first = match staged {
            Staged::Indexed(index) => index.parts.first().map(|id| id.clone().into_bytes()),
            Staged::Inline(first) => {
                let frames = decode_frames(first)
                    .map_err(|e| corrupt(profile, format!("staged {kind} page {page}"), e))?;
                frames.first().map(|f| first[f.id.clone()].to_vec())
            }
        };
        if let Some(first) = first {
            firsts.push((first, page as u64));
        }
    }
    firsts.sort();
    let mut unloaded = firsts.into_iter().peekable();
    let mut runs: BTreeMap<u64, Run> = BTreeMap::new();
    let mut heap: BinaryHeap<Reverse<(Vec<u8>, u64)>> = BinaryHeap::new();
    loop {
        while let Some((first, page)) = unloaded.peek() {
            let due = heap
                .peek()
                .is_none_or(|Reverse((id, _))| first.as_slice() <= id.as_slice());
            if !due {
                break;
            }
            let page = *page;
            unloaded.next();
            let run = load(page)?;
            if let Some(id) = run.id() {
                heap.push(Reverse((id.to_vec(), page)));
            }
            runs.insert(page, run);
        }
        // The common case, pages that do not overlap: a lone run whose
        // last id is below the next page's first is copied as it is.
        if let (1, Some(Reverse((_, page)))) = (heap.len(), heap.peek()) {
            let page = *page;
            if let Some(run) = runs.get(&page) {
                let last = run.frames.last().map(|f| &run.buf[f.id.clone()]);
                let alone = match (unloaded.peek(), last) {
                    (None, _) => true,
                    (Some((first, _)), Some(last)) => first.as_slice() > last,
                    (Some(_), None) => false,
                };
                if alone {
                    let mut previous: Option<&[u8]> = None;
                    for f in &run.frames[run.pos..] {
                        let id = &run.buf[f.id.clone()];
                        if previous.is_some_and(|p| id <= p) {
                            return Err(corrupt(
                                profile,
                                format!("staged {kind} page {page}"),
                                "entries are not sorted by id",
                            ));
                        }
                        previous = Some(id);
                        out.push(writer, id, &run.buf[f.json.clone()])?;
                    }
                    heap.clear();
                    runs.remove(&page);
                    continue;
                }
            }
        }
        let Some(Reverse((id, page))) = heap.pop() else {
            break;
        };
        // Every occurrence of this id; the latest page wins.
        let mut best: (u64, Vec<u8>) = (page, Vec::new());
        let mut occurrence = Some(page);
        while let Some(page) = occurrence {
            if let Some(run) = runs.get_mut(&page) {
                if page >= best.0 {
                    best = (page, run.json().to_vec());
                }
                run.pos += 1;
                match run.id() {
                    Some(next) if next <= id.as_slice() => {
                        return Err(corrupt(
                            profile,
                            format!("staged {kind} page {page}"),
                            "entries are not sorted by id",
                        ))
                    }
                    Some(next) => heap.push(Reverse((next.to_vec(), page))),
                    None => {
                        runs.remove(&page);
                    }
                }
            }
            occurrence = match heap.peek() {
                Some(Reverse((next, _))) if *next == id => heap.pop().map(|Reverse((_, p))| p),
                _ => None,
            };
        }
        out.push(writer, &id, &best.1)?;
    }
    out.write(writer)
}

/// The merged parts of one kind being built: entries are added in id order
/// and cut into values of at most [`VALUE_BYTES`], written as the parts of
/// page [`MERGED_PAGE`].
struct KindChunks<'k> {
    platform: &'k str,
    profile: &'k str,
    generation: u64,
    kind: ListKind,
    chunk: Vec<u8>,
    in_chunk: usize,
    directory: Vec<Piece>,
    n: u64,
}

impl KindChunks<'_> {
    fn push(
        &mut self,
        writer: &mut ChunkWriter<'_>,
        id: &[u8],
        json: &[u8],
    ) -> Result<(), SnapshotError> {
        if self.in_chunk > 0 && self.chunk.len() + 8 + id.len() + json.len() > VALUE_BYTES {
            self.write(writer)?;
        }
        if self.in_chunk == 0 {
            self.directory.push(Piece {
                first: id.to_vec(),
                page: MERGED_PAGE,
                part: self.directory.len() as u32,
            });
        }
        push_entry(&mut self.chunk, id, json);
        self.in_chunk += 1;
        self.n += 1;
        Ok(())
    }

    /// Writes the part being filled, if it holds anything.
    fn write(&mut self, writer: &mut ChunkWriter<'_>) -> Result<(), SnapshotError> {
        if self.in_chunk == 0 {
            return Ok(());
        }
        let key = part_key(
            self.platform,
            self.profile,
            self.generation,
            self.kind,
            MERGED_PAGE,
            self.directory.len() as u32 - 1,
        );
        let chunk = std::mem::replace(&mut self.chunk, Vec::with_capacity(VALUE_BYTES));
        self.in_chunk = 0;
        writer.put(key, chunk)
    }
}

/// Writes merged parts in commits of about [`COMMIT_BYTES`].
struct ChunkWriter<'a> {
    store: &'a dyn CheckpointStore,
    commit: Commit,
    pending: usize,
}

impl ChunkWriter<'_> {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) -> Result<(), SnapshotError> {
        self.pending += value.len();
        self.commit = std::mem::take(&mut self.commit).data(&key, value);
        if self.pending >= COMMIT_BYTES {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SnapshotError> {
        if !self.commit.is_empty() {
            self.store
                .commit_blocking(std::mem::take(&mut self.commit))?;
        }
        self.pending = 0;
        Ok(())
    }
}

/// The writes that make `built` current: the directories and the pointer,
/// the removal of the `previous` generation (read from `store`: a layout-2
/// generation's directories name its parts), of the staged pages' indexes and
/// of the staged values the generation does not use. Committed with the
/// Completed checkpoint. Blocking.
pub fn completion_writes(
    store: &dyn StoreRead,
    platform: &str,
    profile: &str,
    built: Built,
    previous: Option<&SnapshotRef>,
    pages: &PullCounts,
) -> Result<Commit, SnapshotError> {
    let snapshot = &built.snapshot;
    let pointer = serde_json::to_vec(snapshot).map_err(|e| corrupt(profile, "pointer", e))?;
    let mut commit = Commit::new();
    if let Some(prev) = previous.filter(|p| p.generation != snapshot.generation) {
        commit = commit.merge(generation_deletes(store, platform, profile, prev)?);
    }
    for (kind, directory) in built.directories {
        commit = commit.data(
            &index_key(platform, profile, snapshot.generation, kind),
            directory,
        );
    }
    commit = commit.data(&current_key(platform, profile), pointer);
    for kind in ListKind::ALL {
        for page in 0..pages.get(kind) {
            commit = commit.delete_data(&stage_key(platform, profile, kind, page));
        }
    }
    for key in &built.unused {
        commit = commit.delete_data(key);
    }
    Ok(commit)
}

/// The removal of every key of a generation, found without a scan (a scan
/// reads every value).
fn generation_deletes(
    store: &dyn StoreRead,
    platform: &str,
    profile: &str,
    snapshot: &SnapshotRef,
) -> Result<Commit, SnapshotError> {
    let generation = snapshot.generation;
    let mut commit = Commit::new();
    for kind in ListKind::ALL {
        if snapshot.layout == 1 {
            commit = commit.delete_data(&directory_key(platform, profile, generation, kind));
            for chunk in 0..snapshot.chunks.get(kind) {
                commit = commit.delete_data(&chunk_key(platform, profile, generation, kind, chunk));
            }
            continue;
        }
        let key = index_key(platform, profile, generation, kind);
        // Without its directory, what is left of it is a leftover the next
        // pull's cleanup removes.
        if let Some(directory) = store.data(&key)? {
            for piece in decode_directory(profile, &directory)? {
                commit = commit.delete_data(&part_key(
                    platform, profile, generation, kind, piece.page, piece.part,
                ));
            }
        }
        commit = commit.delete_data(&key);
    }
    Ok(commit)
}

/// Deletes of every staged page and every generation other than `keep` of a
/// profile (leftovers of abandoned or failed pulls). Blocking.
pub fn leftover_deletes(
    store: &dyn StoreRead,
    platform: &str,
    profile: &str,
    keep: Option<u64>,
) -> Result<(Commit, u64), SnapshotError> {
    let mut commit = Commit::new();
    let mut n = 0;
    for item in store.scan_data(&stage_prefix(platform, profile)) {
        let (key, _) = item?;
        commit = commit.delete_data(&key);
        n += 1;
    }
    let all = generations_prefix(platform, profile);
    let Some(keep) = keep else {
        for item in store.scan_data(&all) {
            let (key, _) = item?;
            commit = commit.delete_data(&key);
            n += 1;
        }
        return Ok((commit, n));
    };
    // The kept generation is never scanned: a scan reads every value, and
    // reading a whole generation to list none of it raised the peak memory of
    // the next pull (docs/performance.md). Generations below it come first in
    // key order; those above it are under the prefixes `above` lists.
    for item in store.scan_data(&all) {
        let (key, _) = item?;
        if generation_of(platform, profile, &key).is_some_and(|g| g >= keep) {
            break;
        }
        commit = commit.delete_data(&key);
        n += 1;
    }
    for tail in above(keep) {
        for item in store.scan_data(&[all.as_slice(), &tail].concat()) {
            let (key, _) = item?;
            commit = commit.delete_data(&key);
            n += 1;
        }
    }
    Ok((commit, n))
}

/// Prefixes (of the 8 big-endian bytes of a generation number) that together
/// cover every generation above `keep` and nothing else: for each byte, the
/// bytes before it as in `keep`, then any larger value of it.
fn above(keep: u64) -> Vec<Vec<u8>> {
    let bytes = keep.to_be_bytes();
    let mut out = Vec::new();
    for i in (0..8).rev() {
        for b in bytes[i].saturating_add(1)..=u8::MAX {
            if b > bytes[i] {
                out.push([&bytes[..i], &[b][..]].concat());
            }
        }
    }
    out
}

/// The current snapshot reference of a profile, if it was ever pulled. Blocking.
pub fn current(
    store: &dyn StoreRead,
    platform: &str,
    profile: &str,
) -> Result<Option<SnapshotRef>, SnapshotError> {
    let Some(bytes) = store.data(&current_key(platform, profile))? else {
        return Ok(None);
    };
    let snapshot: SnapshotRef =
        serde_json::from_slice(&bytes).map_err(|e| corrupt(profile, "generation pointer", e))?;
    if !(1..=SNAPSHOT_LAYOUT).contains(&snapshot.layout) {
        return Err(corrupt(
            profile,
            "generation pointer",
            format!(
                "generation {} is stored in layout {}, which this adsync does not know (it reads layouts 1 to {SNAPSHOT_LAYOUT}): written by a newer adsync",
                snapshot.generation, snapshot.layout
            ),
        ));
    }
    Ok(Some(snapshot))
}

/// A profile's persisted entities, as of one completed pull.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProfileSnapshot {
    /// Which pull wrote it, its counts and when.
    pub info: SnapshotRef,
    /// Campaigns, sorted by id.
    pub campaigns: Vec<SpCampaign>,
    /// Ad groups, sorted by id.
    pub ad_groups: Vec<SpAdGroup>,
    /// Keywords, sorted by id.
    pub keywords: Vec<SpKeyword>,
}

const READ_ATTEMPTS: usize = 8;

/// Reads the entities of one kind of the current snapshot, consistently (see the
/// module docs). `None` when the profile was never pulled. Blocking.
pub fn read_kind<T: SpEntity + DeserializeOwned>(
    store: &dyn StoreRead,
    platform: &str,
    profile: &str,
) -> Result<Option<(SnapshotRef, Vec<T>)>, SnapshotError> {
    consistent(store, platform, profile, |info| {
        read_gen::<T>(store, platform, profile, info)
    })
}

/// Reads the whole current snapshot of a profile consistently. Blocking.
pub fn read_snapshot(
    store: &dyn StoreRead,
    platform: &str,
    profile: &str,
) -> Result<Option<ProfileSnapshot>, SnapshotError> {
    consistent(store, platform, profile, |info| {
        let (Some(campaigns), Some(ad_groups), Some(keywords)) = (
            read_gen::<SpCampaign>(store, platform, profile, info)?,
            read_gen::<SpAdGroup>(store, platform, profile, info)?,
            read_gen::<SpKeyword>(store, platform, profile, info)?,
        ) else {
            return Ok(None);
        };
        Ok(Some(ProfileSnapshot {
            info: info.clone(),
            campaigns,
            ad_groups,
            keywords,
        }))
    })
    .map(|r| r.map(|(_, s)| s))
}

fn read_gen<T: SpEntity + DeserializeOwned>(
    store: &dyn StoreRead,
    platform: &str,
    profile: &str,
    info: &SnapshotRef,
) -> Result<Option<Vec<T>>, SnapshotError> {
    let mut out = Vec::with_capacity(info.counts.get(T::KIND) as usize);
    let keys: Vec<Vec<u8>> = if info.layout == 1 {
        (0..info.chunks.get(T::KIND))
            .map(|chunk| chunk_key(platform, profile, info.generation, T::KIND, chunk))
            .collect()
    } else {
        let key = index_key(platform, profile, info.generation, T::KIND);
        let Some(directory) = store.data(&key)? else {
            return Ok(None);
        };
        decode_directory(profile, &directory)?
            .into_iter()
            .map(|p| part_key(platform, profile, info.generation, T::KIND, p.page, p.part))
            .collect()
    };
    for key in keys {
        let Some(buf) = store.data(&key)? else {
            return Ok(None);
        };
        decode_entities(profile, &buf, &mut out)?;
    }
    Ok(Some(out))
}

/// Looks one entity up by platform id in the current snapshot: a binary search
/// in the chunk directory, then one chunk read. Blocking.
pub fn find<T: SpEntity + DeserializeOwned>(
    store: &dyn StoreRead,
    platform: &str,
    profile: &str,
    id: &str,
) -> Result<Option<T>, SnapshotError> {
    let found = consistent(store, platform, profile, |info| {
        let key = if info.layout == 1 {
            let Some(dir) =
                store.data(&directory_key(platform, profile, info.generation, T::KIND))?
            else {
                return Ok(None);
            };
            let directory: Vec<String> =
                serde_json::from_slice(&dir).map_err(|e| corrupt(profile, "chunk directory", e))?;
            let chunk = match directory.partition_point(|first| first.as_str() <= id) {
                0 => return Ok(Some(None)),
                n => n - 1,
            };
            chunk_key(platform, profile, info.generation, T::KIND, chunk as u64)
        } else {
            let key = index_key(platform, profile, info.generation, T::KIND);
            let Some(dir) = store.data(&key)? else {
                return Ok(None);
            };
            // Searched in place: decoding every entry cost a lookup more than
            // reading its part.
            let frames = decode_frames(&dir).map_err(|e| corrupt(profile, "directory", e))?;
            let entry = match frames.partition_point(|f| &dir[f.id.clone()] <= id.as_bytes()) {
                0 => return Ok(Some(None)),
                n => &frames[n - 1],
            };
            let piece = decode_piece(profile, &dir, entry)?;
            part_key(
                platform,
                profile,
                info.generation,
                T::KIND,
                piece.page,
                piece.part,
            )
        };
        let Some(buf) = store.data(&key)? else {
            return Ok(None);
        };
        let frames = decode_frames(&buf).map_err(|e| corrupt(profile, "chunk", e))?;
        for f in frames {
            if &buf[f.id.clone()] == id.as_bytes() {
                let item = serde_json::from_slice(&buf[f.json])
                    .map_err(|e| corrupt(profile, "entity", e))?;
                return Ok(Some(Some(item)));
            }
        }
        Ok(Some(None))
    })?;
    Ok(found.and_then(|(_, item)| item))
}

fn decode_entities<T: DeserializeOwned>(
    profile: &str,
    buf: &[u8],
    out: &mut Vec<T>,
) -> Result<(), SnapshotError> {
    let frames = decode_frames(buf).map_err(|e| corrupt(profile, "chunk", e))?;
    for f in frames {
        out.push(serde_json::from_slice(&buf[f.json]).map_err(|e| corrupt(profile, "entity", e))?);
    }
    Ok(())
}

/// Runs `read` against the current generation until the pointer is the same
/// before and after it (and `read` found every key it needed: `Some`).
fn consistent<T>(
    store: &dyn StoreRead,
    platform: &str,
    profile: &str,
    mut read: impl FnMut(&SnapshotRef) -> Result<Option<T>, SnapshotError>,
) -> Result<Option<(SnapshotRef, T)>, SnapshotError> {
    for _ in 0..READ_ATTEMPTS {
        let Some(before) = current(store, platform, profile)? else {
            return Ok(None);
        };
        let value = read(&before)?;
        let after = current(store, platform, profile)?;
        if after.as_ref() == Some(&before) {
            if let Some(value) = value {
                return Ok(Some((before, value)));
            }
        }
    }
    Err(SnapshotError::Contended(profile.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_truncation_is_an_error() {
        let mut buf = Vec::new();
        push_entry(&mut buf, b"12", b"{\"a\":1}");
        push_entry(&mut buf, b"3", b"{}");
        let frames = decode_frames(&buf).unwrap();
        assert_eq!(frames.len(), 2);
        assert_eq!(&buf[frames[1].id.clone()], b"3");
        assert!(decode_frames(&buf[..buf.len() - 1]).is_err());
        assert!(decode_frames(&buf[..3]).is_err());
    }

    fn kw(id: &str, text: &str) -> SpKeyword {
        SpKeyword {
            keyword_id: id.into(),
            campaign_id: "1".into(),
            ad_group_id: "2".into(),
            keyword_text: text.into(),
            match_type: crate::platform::amazon::MatchType::Exact,
            state: crate::platform::amazon::State::Enabled,
            bid: None,
            extra: Default::default(),
        }
    }

    /// Persists generation `generation` from the staged pages and makes it
    /// current, as the Persisting step and its checkpoint do.
    fn persist(store: &Store, generation: u64, pages: &PullCounts) -> SnapshotRef {
        let now = time::macros::datetime!(2026-01-01 00:00 UTC);
        let previous = current(store, "amazon", "p").unwrap();
        let built = build_generation(store, store, "amazon", "p", generation, pages, now).unwrap();
        let snapshot = built.snapshot.clone();
        let writes =
            completion_writes(store, "amazon", "p", built, previous.as_ref(), pages).unwrap();
        store.commit_blocking(writes).unwrap();
        snapshot
    }

    fn keywords(n: u64) -> PullCounts {
        PullCounts {
            keywords: n,
            ..PullCounts::default()
        }
    }

    /// Every data key of the profile: (staged, per generation).
    fn data_keys(store: &Store) -> (usize, BTreeMap<u64, usize>) {
        let staged = store.scan_data(&stage_prefix("amazon", "p")).count();
        let mut generations = BTreeMap::new();
        for item in store.scan_data(&generations_prefix("amazon", "p")) {
            let (key, _) = item.unwrap();
            let generation = generation_of("amazon", "p", &key).unwrap();
            *generations.entry(generation).or_insert(0) += 1;
        }
        (staged, generations)
    }

    #[test]
    fn extra_fields_persist_and_entries_written_before_them_still_read() {
        let store = Store::temporary().unwrap();
        let mut with_extra = kw("2", "new");
        with_extra.extra = crate::platform::amazon::api::Extra::from_map(
            serde_json::json!({"nativeLanguageKeyword": "neu", "x": {"y": [1, 2.5]}})
                .as_object()
                .cloned()
                .unwrap(),
        )
        .unwrap();
        let mut page = encode_items(&Items::Keywords(vec![with_extra.clone()])).unwrap();
        // An entry as an older adsync staged it: no extra fields at all.
        let old = br#"{"keywordId":"3","campaignId":"1","adGroupId":"2","keywordText":"old","matchType":"EXACT","state":"ENABLED"}"#;
        push_entry(&mut page, b"3", old);
        store
            .commit_blocking(stage_writes("amazon", "p", 1, ListKind::Keywords, 0, &page).unwrap())
            .unwrap();
        persist(&store, 1, &keywords(1));
        let (_, got) = read_kind::<SpKeyword>(&store, "amazon", "p")
            .unwrap()
            .unwrap();
        assert_eq!(got, vec![with_extra.clone(), kw("3", "old")]);
        assert_eq!(
            serde_json::to_value(&got[0]).unwrap()["x"],
            serde_json::json!({"y": [1, 2.5]})
        );
        assert_eq!(
            find::<SpKeyword>(&store, "amazon", "p", "2").unwrap(),
            Some(with_extra)
        );
    }

    /// Pages staged in layout 2, and in layout 1 (a pull staged by an
    /// earlier adsync, persisted after an upgrade).
    #[test]
    fn overlapping_pages_merge_sorted_and_the_latest_page_wins() {
        for layout_one in [false, true] {
            overlapping_pages_merge(layout_one);
        }
    }

    fn overlapping_pages_merge(layout_one: bool) {
        let store = Store::temporary().unwrap();
        // Data changed during the fetch: "3" moved and changed, "5" appears twice
        // on page 1 (the later one wins), pages overlap and are out of order.
        let pages = [
            vec![kw("4", "a"), kw("3", "old"), kw("7", "b")],
            vec![
                kw("5", "first"),
                kw("1", "c"),
                kw("5", "second"),
                kw("3", "new"),
            ],
            vec![],
            vec![kw("9", "d"), kw("2", "e")],
        ];
        let mut commit = Commit::new();
        for (n, page) in pages.iter().enumerate() {
            let bytes = encode_items(&Items::Keywords(page.clone())).unwrap();
            let key = stage_key("amazon", "p", ListKind::Keywords, n as u64);
            commit = if layout_one {
                commit.data(&key, bytes)
            } else {
                commit.merge(
                    stage_writes("amazon", "p", 1, ListKind::Keywords, n as u64, &bytes).unwrap(),
                )
            };
        }
        store.commit_blocking(commit).unwrap();
        let snap = persist(&store, 1, &keywords(pages.len() as u64));
        assert_eq!(snap.counts.keywords, 7);
        assert_eq!(snap.layout, SNAPSHOT_LAYOUT);
        // Only the merged parts and the directories are left.
        assert_eq!(
            data_keys(&store),
            (0, BTreeMap::from([(1, snap.chunks.keywords as usize + 3)]))
        );
        let (_, got) = read_kind::<SpKeyword>(&store, "amazon", "p")
            .unwrap()
            .unwrap();
        let got: Vec<(&str, &str)> = got
            .iter()
            .map(|k| (k.keyword_id.as_str(), k.keyword_text.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("1", "c"),
                ("2", "e"),
                ("3", "new"),
                ("4", "a"),
                ("5", "second"),
                ("7", "b"),
                ("9", "d")
            ]
        );
        let found = find::<SpKeyword>(&store, "amazon", "p", "5").unwrap();
        assert_eq!(found.map(|k| k.keyword_text), Some("second".to_string()));
        assert_eq!(find::<SpKeyword>(&store, "amazon", "p", "0").unwrap(), None);
        assert_eq!(find::<SpKeyword>(&store, "amazon", "p", "6").unwrap(), None);
    }

    fn stage_pages(store: &Store, generation: u64, all: &[SpKeyword], reversed: bool) -> u64 {
        let mut pages: Vec<&[SpKeyword]> = all.chunks(1000).collect();
        if reversed {
            pages.reverse();
        }
        let mut commit = Commit::new();
        for (n, page) in pages.iter().enumerate() {
            let bytes = encode_items(&Items::Keywords(page.to_vec())).unwrap();
            assert!(
                bytes.len() > 2 * VALUE_BYTES,
                "the page needs several parts"
            );
            commit = commit.merge(
                stage_writes(
                    "amazon",
                    "p",
                    generation,
                    ListKind::Keywords,
                    n as u64,
                    &bytes,
                )
                .unwrap(),
            );
        }
        store.commit_blocking(commit).unwrap();
        pages.len() as u64
    }

    #[test]
    fn disjoint_pages_are_the_generation_as_staged_in_small_values_found_through_the_directory() {
        let store = Store::temporary().unwrap();
        let all: Vec<SpKeyword> = (0..4500)
            .map(|i| kw(&format!("{:06}", 100_000 + i), &format!("k{i}")))
            .collect();
        // Listed out of order, but no two pages overlap.
        let n = stage_pages(&store, 3, &all, true);
        let (staged, generations) = data_keys(&store);
        assert_eq!(staged, 5, "one index per page");
        let parts = generations[&3];
        assert!(parts > 10, "{parts}");
        let values: Vec<(Vec<u8>, Vec<u8>)> = store
            .scan_data(&generations_prefix("amazon", "p"))
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(values.iter().all(|(_, v)| v.len() <= VALUE_BYTES));

        let snap = persist(&store, 3, &keywords(n));
        assert_eq!(snap.counts.keywords, 4500);
        assert_eq!(
            snap.chunks.keywords as usize, parts,
            "every part, none rewritten"
        );
        // The indexes are gone, the parts stay, with a directory per kind.
        assert_eq!(data_keys(&store), (0, BTreeMap::from([(3, parts + 3)])));
        assert_eq!(values, {
            let mut now: Vec<(Vec<u8>, Vec<u8>)> = store
                .scan_data(&generations_prefix("amazon", "p"))
                .collect::<Result<_, _>>()
                .unwrap();
            now.retain(|(k, _)| values.iter().any(|(v, _)| v == k));
            now
        });
        let (_, got) = read_kind::<SpKeyword>(&store, "amazon", "p")
            .unwrap()
            .unwrap();
        assert_eq!(got, all);
        for want in &all {
            let found = find::<SpKeyword>(&store, "amazon", "p", &want.keyword_id).unwrap();
            assert_eq!(found.as_ref(), Some(want));
        }
        assert_eq!(find::<SpKeyword>(&store, "amazon", "p", "0").unwrap(), None);
        assert_eq!(
            find::<SpKeyword>(&store, "amazon", "p", "100000x").unwrap(),
            None
        );

        // The next generation replaces it and removes every key of it.
        let fewer = &all[..2500];
        let n = stage_pages(&store, 4, fewer, false);
        let snap = persist(&store, 4, &keywords(n));
        assert_eq!(snap.counts.keywords, 2500);
        let (staged, generations) = data_keys(&store);
        assert_eq!(staged, 0);
        assert_eq!(generations.keys().collect::<Vec<_>>(), [&4]);
        let (_, got) = read_kind::<SpKeyword>(&store, "amazon", "p")
            .unwrap()
            .unwrap();
        assert_eq!(got, fewer);
    }

    /// A store written before layout 2: its generation is read, and replaced
    /// and removed by the next pull's.
    #[test]
    fn a_layout_one_generation_is_read_and_replaced() {
        let store = Store::temporary().unwrap();
        let (a, b) = (kw("10", "a"), kw("20", "b"));
        let chunk = encode_items(&Items::Keywords(vec![a.clone(), b.clone()])).unwrap();
        let pointer = br#"{"generation":7,"counts":{"campaigns":0,"ad_groups":0,"keywords":2},"chunks":{"campaigns":0,"ad_groups":0,"keywords":1},"completed_at":"2026-01-01T00:00:00Z"}"#;
        let mut commit = Commit::new()
            .data(&current_key("amazon", "p"), pointer.to_vec())
            .data(&chunk_key("amazon", "p", 7, ListKind::Keywords, 0), chunk);
        for (kind, firsts) in [
            (ListKind::Campaigns, "[]"),
            (ListKind::AdGroups, "[]"),
            (ListKind::Keywords, r#"["10"]"#),
        ] {
            commit = commit.data(
                &directory_key("amazon", "p", 7, kind),
                firsts.as_bytes().to_vec(),
            );
        }
        store.commit_blocking(commit).unwrap();
        let info = current(&store, "amazon", "p").unwrap().unwrap();
        assert_eq!(info.layout, 1);
        let (_, got) = read_kind::<SpKeyword>(&store, "amazon", "p")
            .unwrap()
            .unwrap();
        assert_eq!(got, vec![a.clone(), b.clone()]);
        assert_eq!(
            find::<SpKeyword>(&store, "amazon", "p", "20").unwrap(),
            Some(b)
        );
        assert_eq!(
            find::<SpKeyword>(&store, "amazon", "p", "15").unwrap(),
            None
        );

        let page = encode_items(&Items::Keywords(vec![a.clone()])).unwrap();
        store
            .commit_blocking(stage_writes("amazon", "p", 8, ListKind::Keywords, 0, &page).unwrap())
            .unwrap();
        persist(&store, 8, &keywords(1));
        let (staged, generations) = data_keys(&store);
        assert_eq!(
            (staged, generations.keys().collect::<Vec<_>>()),
            (0, vec![&8])
        );
        let (info, got) = read_kind::<SpKeyword>(&store, "amazon", "p")
            .unwrap()
            .unwrap();
        assert_eq!((info.generation, info.layout, got), (8, 2, vec![a]));
    }

    #[test]
    fn a_pointer_of_a_newer_layout_is_refused_by_name() {
        let store = Store::temporary().unwrap();
        let pointer = br#"{"generation":7,"counts":{"campaigns":0,"ad_groups":0,"keywords":2},"chunks":{"campaigns":0,"ad_groups":0,"keywords":1},"completed_at":"2026-01-01T00:00:00Z","layout":3}"#;
        store
            .commit_blocking(Commit::new().data(&current_key("amazon", "p"), pointer.to_vec()))
            .unwrap();
        let error = read_kind::<SpKeyword>(&store, "amazon", "p")
            .unwrap_err()
            .to_string();
        assert!(error.contains("layout 3"), "{error}");
        assert!(error.contains("newer adsync"), "{error}");
    }

    #[test]
    fn the_prefixes_above_a_generation_cover_exactly_the_larger_ones() {
        for keep in [0u64, 1, 2, 255, 256, 0x01_02_03, u64::MAX - 1, u64::MAX] {
            let prefixes = above(keep);
            let covered = |g: u64| {
                let bytes = g.to_be_bytes();
                prefixes.iter().any(|p| bytes.starts_with(p))
            };
            for g in [
                0u64,
                1,
                2,
                3,
                254,
                255,
                256,
                257,
                0x01_02_02,
                0x01_02_03,
                0x01_02_04,
                0x01_03_00,
                1 << 40,
                u64::MAX - 1,
                u64::MAX,
            ] {
                assert_eq!(covered(g), g > keep, "keep {keep}, generation {g}");
            }
        }
    }

    #[test]
    fn leftovers_are_every_staged_page_and_every_generation_but_the_kept_one() {
        let store = Store::temporary().unwrap();
        let mut commit = Commit::new();
        for generation in [1u64, 2, 3, 300] {
            commit = commit
                .data(
                    &chunk_key("amazon", "p", generation, ListKind::Keywords, 0),
                    vec![1],
                )
                .data(
                    &directory_key("amazon", "p", generation, ListKind::Keywords),
                    vec![2],
                );
        }
        commit = commit.data(&stage_key("amazon", "p", ListKind::Keywords, 0), vec![3]);
        store.commit_blocking(commit).unwrap();
        let (deletes, n) = leftover_deletes(&store, "amazon", "p", Some(2)).unwrap();
        assert_eq!(n, 7);
        store.commit_blocking(deletes).unwrap();
        let left: Vec<Option<u64>> = store
            .scan_data(&profile_data_prefix("amazon", "p"))
            .map(|item| generation_of("amazon", "p", &item.unwrap().0))
            .collect();
        assert_eq!(left, vec![Some(2), Some(2)]);
        let (_, n) = leftover_deletes(&store, "amazon", "p", None).unwrap();
        assert_eq!(n, 2);
    }

    fn profile_data_prefix(platform: &str, profile: &str) -> Vec<u8> {
        format!("pull/{platform}/{profile}/").into_bytes()
    }

    #[test]
    fn generation_of_reads_the_key() {
        let k = chunk_key("amazon", "p1", 42, ListKind::Keywords, 3);
        assert_eq!(generation_of("amazon", "p1", &k), Some(42));
        assert_eq!(generation_of("amazon", "p2", &k), None);
    }
}
