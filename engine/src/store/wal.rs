//! The store's write-ahead log: what makes a commit durable with one `fdatasync`.
//!
//! ## Why a log beside sled
//! sled 0.34's `flush` hands its log buffers to its own I/O threads, issues one
//! `sync_file_range` per buffer (usually two per batch: the batch manifest and the
//! items) and waits for them: several times the cost of one `pwrite` +
//! `fdatasync` (docs/performance.md), and `sync_file_range` does not flush the
//! drive's cache.
//! So the writer thread appends each group of commits to this log, makes it durable
//! with one `fdatasync`, and only then applies the group to sled *without* flushing
//! it. sled is flushed at checkpoints (log full, store closed), after which the log
//! starts over. Opening the store replays the log into sled, so every commit that
//! was acknowledged is there after a crash — and, where the device honours cache
//! flushes, after a power cut.
//!
//! ## Layout
//! The file is preallocated with zeros (so an append overwrites allocated blocks
//! and `fdatasync` has no metadata to journal) and reused forever:
//!
//! ```text
//! offset 0     header: "ADSYNCW3" | epoch u64 | store id [u8; 16] | crc32 u32
//!              (one 4 KiB page)
//! offset 4096  record: len u32 | epoch u64 | crc32 u32 | payload, zero-padded
//!              to a whole number of 4 KiB pages                   (repeated)
//! ```
//!
//! The store id is also kept in sled (see `Store::open`): a log that is
//! missing, or that belongs to another store, is refused instead of silently
//! replaying nothing. Logs of the previous header (`ADSYNCW2`, no id) are read
//! and get the id at the reset that follows opening.
//!
//! A record counts only if its epoch is the header's and its checksum matches.
//! A checkpoint bumps the epoch, which empties the log without rewriting it, so
//! past the last record of the current epoch lie stale records of earlier
//! epochs (intact, with their own epoch and checksum) or never-written zeros.
//!
//! ## A bad record: torn tail or damage
//! Only the last record can be torn by a crash: an append never rewrites a
//! page of an earlier record, and a record is acknowledged only once it is
//! durable. So when a record fails (checksum, length, epoch, or it does not
//! decode), the rest of the log is searched, page by page, for an intact
//! record of the current epoch. None: the bad record was the torn tail of a
//! write that was never acknowledged, and it is dropped. One: the bad record
//! was acknowledged and damaged since, and opening fails with both offsets —
//! replaying around the hole would silently lose it, and dropping everything
//! after it would lose every later acknowledged commit. The search stops at
//! the first intact record of an *earlier* epoch: the current epoch wrote its
//! records contiguously from the first page, so it never reached that page
//! (it would have overwritten it), and nothing of it lies beyond.
//!
//! Replaying is idempotent: every write is a put or delete applied in order,
//! so replaying records sled already has changes nothing.
//!
//! ## Whole pages, written past the page cache
//! Records start on page boundaries and are padded to whole pages. It costs
//! space, not time (the store's 8 MiB log holds about two thousand
//! single-commit groups between checkpoints), and it buys two things:
//! - an append never rewrites a page holding an earlier, acknowledged record,
//!   so a torn write can only damage the record being written;
//! - appends can use `O_DIRECT | O_DSYNC` (Linux): one `pwrite` from a
//!   page-aligned buffer that returns once the record is on stable storage
//!   (the kernel sends it with FUA, or follows it with a cache flush), with no
//!   copy into the page cache and no separate `fdatasync`.
//!
//! A direct append costs about what a raw `pwrite` + `fdatasync` of one page
//! does, and less than a buffered append (docs/performance.md has the figures).
//!
//! Where the filesystem refuses `O_DIRECT` (tmpfs, some FUSE mounts) appends
//! fall back to the page cache + `fdatasync`. Then the log drops the pages
//! behind its tail from the cache every 64 KiB (`POSIX_FADV_DONTNEED`):
//! `fdatasync` of a one-page write took longer the more cached pages the
//! file had (README, "Durability, honestly"). Whole-page
//! records make that cheap too: no append has to read a dropped page back.
//!
//! Logs of the earlier packed layout (magic `ADSYNCWL`) are still replayed;
//! the reset that follows writes the new header.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::Write;

const MAGIC: &[u8; 8] = b"ADSYNCW3";
/// The header of the previous version: no store id (records are the same).
const MAGIC_NO_ID: &[u8; 8] = b"ADSYNCW2";
/// The packed layout of earlier versions: records follow each other unpadded.
const MAGIC_PACKED: &[u8; 8] = b"ADSYNCWL";
const PAGE: u64 = 4096;
const HEADER_LEN: u64 = PAGE;
/// Magic, epoch and store id: what the header's checksum covers.
const HEADER_FIELDS: usize = 8 + 8 + 16;
/// How far the tail moves before the pages behind it are dropped from the cache.
const DROP_EVERY: u64 = 64 * 1024;
const RECORD_HEADER_LEN: usize = 4 + 8 + 4;
const PUT: u8 = 1;
const DELETE: u8 = 2;

/// Why the log could not be opened or read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WalError {
    #[error("write-ahead log {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("write-ahead log {path} is not an adsync log: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    /// The file has no header (all zeros, or shorter than one page).
    #[error("write-ahead log {path} has no header (its first page is blank)")]
    Blank { path: PathBuf },
    /// A record fails its checks and an intact record of the same epoch
    /// follows it: not a torn tail, but damage to an acknowledged commit.
    #[error("write-ahead log {path}: the record at byte offset {offset} is damaged and an intact later record follows at byte offset {later}")]
    Damaged {
        path: PathBuf,
        offset: u64,
        later: u64,
    },
}

/// A store id: shared by sled's data and the log's header.
pub(crate) type StoreId = [u8; 16];

/// An open log, owned by the store's writer thread.
pub(crate) struct Wal {
    path: PathBuf,
    file: File,
    epoch: u64,
    /// The store id every header written from now on carries.
    id: StoreId,
    /// The id the header had when the log was opened: `None` for a header of
    /// an earlier version, which had none.
    found_id: Option<StoreId>,
    /// Where the next record goes.
    end: u64,
    capacity: u64,
    /// Records are page-aligned (false only while replaying a packed log).
    aligned: bool,
    /// The file's pages before this offset are not in the page cache.
    dropped: u64,
    /// The log opened a second time with `O_DIRECT | O_DSYNC`, for appends:
    /// `None` where the platform or filesystem does not offer it, and then
    /// appends go through the page cache and `fdatasync`.
    direct: Option<File>,
    /// Where records are encoded before they are written: page-aligned, as
    /// `O_DIRECT` requires, so the record is written from where it was built.
    staging: AlignedPages,
}

/// A reusable buffer whose contents start on a page boundary.
#[derive(Default)]
struct AlignedPages {
    bytes: Vec<u8>,
    /// Where the page-aligned part of `bytes` starts.
    start: usize,
}

impl AlignedPages {
    /// Empties the buffer and makes room for `len` bytes starting on a page
    /// boundary: appending up to `len` bytes to [`AlignedPages::append_to`] never
    /// reallocates, so the contents stay aligned.
    fn begin(&mut self, len: usize) {
        let page = PAGE as usize;
        if self.bytes.capacity() < len + page {
            self.bytes = Vec::with_capacity(len + page);
        }
        self.start = (page - self.bytes.as_ptr().addr() % page) % page;
        self.bytes.clear();
        self.bytes.resize(self.start, 0);
    }

    /// The buffer to append to (within the length given to `begin`).
    fn append_to(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    /// The contents, from the page boundary on.
    fn contents(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    fn contents_mut(&mut self) -> &mut [u8] {
        &mut self.bytes[self.start..]
    }
}

/// Opens `path` for appends that are durable when `write` returns, bypassing
/// the page cache: `None` if the filesystem refuses (tmpfs, some FUSE mounts).
#[cfg(target_os = "linux")]
fn open_direct(path: &Path) -> Option<File> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
        .open(path)
        .ok()
}

#[cfg(not(target_os = "linux"))]
fn open_direct(_path: &Path) -> Option<File> {
    None
}

/// `n` rounded up to a whole number of pages.
fn page_align(n: u64) -> u64 {
    n.div_ceil(PAGE) * PAGE
}

impl Wal {
    /// Opens the log at `path` (creating and preallocating `capacity` bytes, with
    /// store id `id`, when it does not exist) and returns it with the records to
    /// replay, oldest first: their payloads, each readable with [`writes`].
    ///
    /// An existing log keeps its own id ([`Wal::found_id`]); a log of an
    /// earlier version, which has none, is given `id` at its next reset.
    /// A file without a header (an older version's creation cut short) is
    /// created again only if `may_recreate`: otherwise it is an error, and
    /// the file is left as it is.
    pub(crate) fn open(
        path: &Path,
        capacity: u64,
        id: StoreId,
        may_recreate: bool,
    ) -> Result<(Wal, Vec<Vec<u8>>), WalError> {
        let io_err = |source| WalError::Io {
            path: path.to_path_buf(),
            source,
        };
        let capacity = capacity.max(HEADER_LEN * 2);
        if !path.exists() {
            return Self::create(path, capacity, id).map_err(io_err);
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(false)
            .truncate(false)
            .open(path)
            .map_err(io_err)?;
        let mut wal = Wal {
            path: path.to_path_buf(),
            file,
            epoch: 0,
            id,
            found_id: None,
            end: HEADER_LEN,
            capacity,
            aligned: true,
            dropped: 0,
            direct: None,
            staging: AlignedPages::default(),
        };
        if wal.file.metadata().map_err(io_err)?.len() < HEADER_LEN || wal.never_initialized() {
            if !may_recreate {
                return Err(WalError::Blank {
                    path: path.to_path_buf(),
                });
            }
            // Left by a crash of an older adsync while it created the log
            // (before its header existed, so before any commit): start over.
            drop(wal);
            return Self::create(path, capacity, id).map_err(io_err);
        }
        wal.capacity = wal.file.metadata().map_err(io_err)?.len().max(capacity);
        (wal.epoch, wal.aligned, wal.found_id) = wal.read_header()?;
        // A log keeps its own id; `id` is for a log that has none yet.
        wal.id = wal.found_id.unwrap_or(id);
        let batches = wal.read_records()?;
        if !wal.aligned && batches.is_empty() {
            // Nothing to replay, so nothing else will reset it: switch layouts now.
            wal.reset().map_err(io_err)?;
        }
        wal.drop_all_cached();
        wal.direct = open_direct(path);
        Ok((wal, batches))
    }

    /// Creates a fresh log: preallocated and given its header under a temporary
    /// name, then renamed into place, so that a crash (SIGKILL) at any moment
    /// leaves either no log or a complete one — never a header-less file that
    /// would make the store unopenable.
    fn create(path: &Path, capacity: u64, id: StoreId) -> io::Result<(Wal, Vec<Vec<u8>>)> {
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".new");
        let tmp = PathBuf::from(tmp);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        let mut wal = Wal {
            path: path.to_path_buf(),
            file,
            epoch: 0,
            id,
            found_id: Some(id),
            end: HEADER_LEN,
            capacity,
            aligned: true,
            dropped: 0,
            direct: None,
            staging: AlignedPages::default(),
        };
        wal.preallocate()?;
        wal.write_header(1)?;
        wal.drop_all_cached();
        std::fs::rename(&tmp, path)?;
        if let Some(dir) = path.parent() {
            // The new file's directory entry must be durable too.
            File::open(dir).and_then(|d| d.sync_all())?;
        }
        wal.direct = open_direct(path);
        Ok((wal, Vec::new()))
    }

    /// Whether the header is all zeros: the file was preallocated but its
    /// header never written, so it never held a commit.
    fn never_initialized(&self) -> bool {
        let mut header = [0u8; 20];
        self.file.read_exact_at(&mut header, 0).is_ok() && header.iter().all(|b| *b == 0)
    }

    /// The store id the header held when the log was opened (`None`: a log of
    /// an earlier version, whose header had no id).
    pub(crate) fn found_id(&self) -> Option<StoreId> {
        self.found_id
    }

    /// Whether a payload of `len` bytes still fits before a checkpoint is due.
    pub(crate) fn fits(&self, len: usize) -> bool {
        self.end + page_align((RECORD_HEADER_LEN + len) as u64) <= self.capacity
    }

    /// Appends one record holding `groups` of writes, makes it durable and
    /// returns its payload (readable with [`writes`]).
    pub(crate) fn append<'a>(
        &mut self,
        groups: impl Iterator<Item = &'a [Write]> + Clone,
    ) -> io::Result<&[u8]> {
        let payload_len: usize = groups.clone().map(Self::encoded_len).sum();
        let len = u32::try_from(payload_len)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "record over 4 GiB"))?;
        // Whole pages: the kernel never reads a dropped page back to merge.
        let padded = page_align((RECORD_HEADER_LEN + payload_len) as u64) as usize;
        let mut staging = std::mem::take(&mut self.staging);
        staging.begin(padded);
        let out = staging.append_to();
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(&[0; 4]); // the checksum, once the payload is there
        for writes in groups {
            encode(writes, out);
        }
        debug_assert_eq!(staging.contents().len(), RECORD_HEADER_LEN + payload_len);
        let record = staging.contents_mut();
        let crc = checksum(self.epoch, &record[RECORD_HEADER_LEN..]);
        record[12..16].copy_from_slice(&crc.to_le_bytes());
        let out = staging.append_to();
        out.resize(out.len() + padded - (RECORD_HEADER_LEN + payload_len), 0);
        let result = self.write_durably(staging.contents());
        if result.is_ok() {
            self.end += padded as u64;
        }
        self.staging = staging;
        result.map(|()| &self.staging.contents()[RECORD_HEADER_LEN..][..payload_len])
    }

    /// Writes `record` (whole pages, page-aligned in memory) at the end of the
    /// log and returns once it is durable.
    fn write_durably(&mut self, record: &[u8]) -> io::Result<()> {
        if let Some(direct) = &self.direct {
            match direct.write_all_at(record, self.end) {
                // The kernel refused this buffer or offset for direct I/O: use
                // the page cache from now on, and write the record again there.
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => self.direct = None,
                result => return result,
            }
        }
        self.file.write_all_at(record, self.end)?;
        self.file.sync_data()?;
        let end = self.end + record.len() as u64;
        if end >= self.dropped + DROP_EVERY {
            self.drop_cached(end);
        }
        Ok(())
    }

    /// Drops the file's clean pages in `[self.dropped, end)` from the page
    /// cache (see the module docs: cached pages make every `fdatasync` of this
    /// file slower). Only advice: if the kernel declines, nothing is lost but
    /// time. A length of 0 means "to the end of the file".
    fn drop_cached(&mut self, end: u64) {
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::io::AsRawFd;
            let start = i64::try_from(self.dropped).unwrap_or(i64::MAX);
            let len = i64::try_from(end.saturating_sub(self.dropped)).unwrap_or(0);
            // SAFETY: posix_fadvise only reads its integer arguments; the fd is
            // open for as long as `self.file` lives.
            unsafe {
                libc::posix_fadvise(self.file.as_raw_fd(), start, len, libc::POSIX_FADV_DONTNEED);
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = end;
        self.dropped = if end == 0 { self.end } else { end };
    }

    /// Drops every cached page of the file (after creating, replaying, resetting).
    fn drop_all_cached(&mut self) {
        self.dropped = 0;
        self.drop_cached(0);
    }

    /// The encoded size of `writes` in a record.
    pub(crate) fn encoded_len(writes: &[Write]) -> usize {
        writes
            .iter()
            .map(|w| match w {
                Write::Put(k, v) => 1 + 4 + k.len() + 4 + v.len(),
                Write::Delete(k) => 1 + 4 + k.len(),
            })
            .sum()
    }

    /// Empties the log. Call only once everything it holds is durable in sled.
    pub(crate) fn reset(&mut self) -> io::Result<()> {
        self.write_header(self.epoch + 1)?;
        self.aligned = true;
        self.end = HEADER_LEN;
        self.drop_all_cached();
        Ok(())
    }

    fn preallocate(&mut self) -> io::Result<()> {
        let zeros = vec![0u8; 1 << 20];
        let mut offset = 0;
        while offset < self.capacity {
            let n = zeros.len().min((self.capacity - offset) as usize);
            self.file.write_all_at(&zeros[..n], offset)?;
            offset += n as u64;
        }
        self.file.sync_all()
    }

    fn write_header(&mut self, epoch: u64) -> io::Result<()> {
        // A whole page, like records: no read of a dropped page to merge into.
        let mut header = [0u8; HEADER_LEN as usize];
        header[0..8].copy_from_slice(MAGIC);
        header[8..16].copy_from_slice(&epoch.to_le_bytes());
        header[16..32].copy_from_slice(&self.id);
        let crc = crc32fast::hash(&header[..HEADER_FIELDS]);
        header[HEADER_FIELDS..HEADER_FIELDS + 4].copy_from_slice(&crc.to_le_bytes());
        self.file.write_all_at(&header, 0)?;
        self.file.sync_data()?;
        self.epoch = epoch;
        self.found_id = Some(self.id);
        Ok(())
    }

    /// The header's epoch, whether records are page-aligned, and its store id.
    fn read_header(&self) -> Result<(u64, bool, Option<StoreId>), WalError> {
        let mut header = [0u8; HEADER_FIELDS + 4];
        self.file
            .read_exact_at(&mut header, 0)
            .map_err(|source| WalError::Io {
                path: self.path.clone(),
                source,
            })?;
        let corrupt = |detail: &str| WalError::Corrupt {
            path: self.path.clone(),
            detail: detail.to_string(),
        };
        let (aligned, covered) = match &header[0..8] {
            magic if magic == MAGIC => (true, HEADER_FIELDS),
            magic if magic == MAGIC_NO_ID => (true, 16),
            magic if magic == MAGIC_PACKED => (false, 16),
            _ => return Err(corrupt("wrong magic bytes")),
        };
        let crc = u32::from_le_bytes(le4(&header[covered..]));
        if crc32fast::hash(&header[..covered]) != crc {
            return Err(corrupt("header checksum mismatch"));
        }
        let id = (covered == HEADER_FIELDS).then(|| {
            let mut id = StoreId::default();
            id.copy_from_slice(&header[16..32]);
            id
        });
        Ok((u64::from_le_bytes(le8(&header[8..])), aligned, id))
    }

    /// Reads the records of the current epoch, sets `end` after the last one,
    /// and refuses a bad record that an intact one follows (see the module docs).
    fn read_records(&mut self) -> Result<Vec<Vec<u8>>, WalError> {
        let io_err = |source| WalError::Io {
            path: self.path.clone(),
            source,
        };
        let mut batches = Vec::new();
        let mut offset = HEADER_LEN;
        loop {
            match self.slot_at(offset).map_err(io_err)? {
                Slot::Record(payload, next) => {
                    batches.push(payload);
                    offset = next;
                }
                Slot::Stale => break,
                Slot::Bad => {
                    // A packed log's records are not page-aligned: there is
                    // no way to find the next one after a bad one.
                    if self.aligned {
                        if let Some(later) = self.later_record(offset).map_err(io_err)? {
                            return Err(WalError::Damaged {
                                path: self.path.clone(),
                                offset,
                                later,
                            });
                        }
                    }
                    break;
                }
            }
        }
        self.end = offset;
        Ok(batches)
    }

    /// What the log holds at `offset`.
    fn slot_at(&self, offset: u64) -> io::Result<Slot> {
        if offset + RECORD_HEADER_LEN as u64 > self.capacity {
            return Ok(Slot::Stale); // the end of the file: nothing can follow
        }
        let mut head = [0u8; RECORD_HEADER_LEN];
        self.file.read_exact_at(&mut head, offset)?;
        let len = u64::from(u32::from_le_bytes(le4(&head[0..])));
        let epoch = u64::from_le_bytes(le8(&head[4..]));
        let crc = u32::from_le_bytes(le4(&head[12..]));
        let start = offset + RECORD_HEADER_LEN as u64;
        // Epochs only grow: a record from a later one, or of length 0, is not
        // a record (zeros, damage, or a page inside another record) — and
        // reading its "payload" could mean reading most of the file.
        if len == 0 || epoch == 0 || epoch > self.epoch || start + len > self.capacity {
            return Ok(Slot::Bad);
        }
        let mut payload = vec![0u8; len as usize];
        self.file.read_exact_at(&mut payload, start)?;
        if checksum(epoch, &payload) != crc {
            return Ok(Slot::Bad);
        }
        if epoch != self.epoch {
            return Ok(Slot::Stale);
        }
        if writes(&payload).is_none() {
            return Ok(Slot::Bad);
        }
        let next = if self.aligned {
            page_align(start + len)
        } else {
            start + len
        };
        Ok(Slot::Record(payload, next))
    }

    /// The offset of an intact record of the current epoch after the bad
    /// record at `bad`, if there is one (records start on page boundaries).
    ///
    /// Pages are read a chunk at a time, and only a page whose header could
    /// start a record is looked at closely: after a torn tail in a log that
    /// has not wrapped yet, the search reads the rest of the file.
    fn later_record(&self, bad: u64) -> io::Result<Option<u64>> {
        const CHUNK: u64 = 64 * PAGE;
        let mut chunk = vec![0u8; CHUNK as usize];
        let mut offset = bad + PAGE;
        while offset + RECORD_HEADER_LEN as u64 <= self.capacity {
            let n = CHUNK.min(self.capacity - offset) as usize;
            self.file.read_exact_at(&mut chunk[..n], offset)?;
            for page in (0..n).step_by(PAGE as usize) {
                let head = &chunk[page..];
                if head.len() < RECORD_HEADER_LEN {
                    break;
                }
                let len = u32::from_le_bytes(le4(head));
                let epoch = u64::from_le_bytes(le8(&head[4..]));
                if len == 0 || epoch == 0 || epoch > self.epoch {
                    continue; // what `slot_at` would call bad, without reading more
                }
                let at = offset + page as u64;
                match self.slot_at(at)? {
                    Slot::Record(..) => return Ok(Some(at)),
                    // An earlier epoch's record the current one never overwrote.
                    Slot::Stale => return Ok(None),
                    Slot::Bad => {}
                }
            }
            offset += n as u64;
        }
        Ok(None)
    }
}

/// What a page boundary of the log holds.
enum Slot {
    /// An intact record of the current epoch: its payload, and where the next
    /// record starts.
    Record(Vec<u8>, u64),
    /// An intact record of an earlier epoch, or the end of the file.
    Stale,
    /// Anything else: zeros, a torn or damaged record, or the inside of one.
    Bad,
}

fn le4(bytes: &[u8]) -> [u8; 4] {
    [bytes[0], bytes[1], bytes[2], bytes[3]]
}

fn le8(bytes: &[u8]) -> [u8; 8] {
    let mut out = [0u8; 8];
    out.copy_from_slice(&bytes[..8]);
    out
}

fn checksum(epoch: u64, payload: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&epoch.to_le_bytes());
    hasher.update(payload);
    hasher.finalize()
}

fn encode(writes: &[Write], out: &mut Vec<u8>) {
    for write in writes {
        match write {
            Write::Put(key, value) => {
                out.push(PUT);
                out.extend_from_slice(&(key.len() as u32).to_le_bytes());
                out.extend_from_slice(key);
                out.extend_from_slice(&(value.len() as u32).to_le_bytes());
                out.extend_from_slice(value);
            }
            Write::Delete(key) => {
                out.push(DELETE);
                out.extend_from_slice(&(key.len() as u32).to_le_bytes());
                out.extend_from_slice(key);
            }
        }
    }
}

/// One write of a record's payload, borrowed from it: the key, and the value
/// (`None` for a delete).
pub(crate) type WriteRef<'a> = (&'a [u8], Option<&'a [u8]>);

/// The writes of a record's payload, in order; `None` if it does not decode.
pub(crate) fn writes(mut payload: &[u8]) -> Option<Vec<WriteRef<'_>>> {
    fn take<'a>(input: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if input.len() < n {
            return None;
        }
        let (head, rest) = input.split_at(n);
        *input = rest;
        Some(head)
    }
    fn take_len(input: &mut &[u8]) -> Option<usize> {
        let bytes = take(input, 4)?;
        Some(u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize)
    }
    let mut writes = Vec::new();
    while !payload.is_empty() {
        let tag = take(&mut payload, 1)?[0];
        let key_len = take_len(&mut payload)?;
        let key = take(&mut payload, key_len)?;
        match tag {
            PUT => {
                let value_len = take_len(&mut payload)?;
                writes.push((key, Some(take(&mut payload, value_len)?)));
            }
            DELETE => writes.push((key, None)),
            _ => return None,
        }
    }
    Some(writes)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: StoreId = *b"0123456789abcdef";

    fn put(k: &str, v: &str) -> Write {
        Write::Put(k.as_bytes().to_vec(), v.as_bytes().to_vec())
    }

    /// Appends one group and makes it durable.
    fn append(wal: &mut Wal, writes: Vec<Write>) {
        wal.append([writes.as_slice()].into_iter()).unwrap();
    }

    fn keys(payloads: &[Vec<u8>]) -> Vec<String> {
        payloads
            .iter()
            .flat_map(|p| writes(p).expect("a replayed record decodes"))
            .map(|(k, v)| match v {
                Some(v) => format!(
                    "put {}={}",
                    String::from_utf8_lossy(k),
                    String::from_utf8_lossy(v)
                ),
                None => format!("del {}", String::from_utf8_lossy(k)),
            })
            .collect()
    }

    #[test]
    fn an_append_returns_the_payload_it_made_durable_and_a_replay_reads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let (mut wal, _) = Wal::open(&path, 64 * 1024, ID, true).unwrap();
        let first = vec![put("r/a", "1"), Write::Delete(b"x/gone".to_vec())];
        let second = vec![put("h/a", "2")];
        let payload = wal
            .append([first.as_slice(), second.as_slice()].into_iter())
            .unwrap()
            .to_vec();
        assert_eq!(
            writes(&payload).unwrap(),
            [
                (b"r/a".as_slice(), Some(b"1".as_slice())),
                (b"x/gone".as_slice(), None),
                (b"h/a".as_slice(), Some(b"2".as_slice())),
            ]
        );
        drop(wal);
        let (_, replay) = Wal::open(&path, 64 * 1024, ID, true).unwrap();
        assert_eq!(replay, [payload]);
        // A payload cut short does not decode.
        assert_eq!(writes(&replay[0][..replay[0].len() - 1]), None);
    }

    #[test]
    fn a_log_whose_creation_was_killed_is_created_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        // What a SIGKILL during preallocation used to leave: zeros, no header.
        std::fs::write(&path, vec![0u8; 64 * 1024]).unwrap();
        let (mut wal, replay) = Wal::open(&path, 64 * 1024, ID, true).unwrap();
        assert!(replay.is_empty());
        append(&mut wal, vec![put("a", "1")]);
        drop(wal);
        let (_, replay) = Wal::open(&path, 64 * 1024, ID, true).unwrap();
        assert_eq!(keys(&replay), ["put a=1"]);
        // A fresh log is built under a temporary name and renamed into place.
        assert!(!dir.path().join("wal.new").exists());
    }

    #[test]
    fn records_survive_reopen_and_reset_empties_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let (mut wal, replay) = Wal::open(&path, 64 * 1024, ID, true).unwrap();
        assert!(replay.is_empty());
        append(&mut wal, vec![put("a", "1"), put("b", "2")]);
        append(&mut wal, vec![Write::Delete(b"a".to_vec())]);
        drop(wal);

        let (mut wal, replay) = Wal::open(&path, 64 * 1024, ID, true).unwrap();
        assert_eq!(keys(&replay), ["put a=1", "put b=2", "del a"]);
        wal.reset().unwrap();
        append(&mut wal, vec![put("c", "3")]);
        drop(wal);

        // Records of the earlier epoch past the new end are not replayed.
        let (_, replay) = Wal::open(&path, 64 * 1024, ID, true).unwrap();
        assert_eq!(keys(&replay), ["put c=3"]);
    }

    #[test]
    fn a_torn_last_record_ends_the_log() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let (mut wal, _) = Wal::open(&path, 64 * 1024, ID, true).unwrap();
        append(&mut wal, vec![put("a", "1")]);
        let torn_at = wal.end;
        append(&mut wal, vec![put("b", "2")]);
        drop(wal);
        // Garble the second record's payload, as a write cut short would.
        let file = OpenOptions::new().write(true).open(&path).unwrap();
        file.write_all_at(b"\xff\xff", torn_at + RECORD_HEADER_LEN as u64 + 2)
            .unwrap();

        let (wal, replay) = Wal::open(&path, 64 * 1024, ID, true).unwrap();
        assert_eq!(keys(&replay), ["put a=1"]);
        assert_eq!(
            wal.end, torn_at,
            "the next append overwrites the torn record"
        );
    }

    #[test]
    fn records_are_page_aligned_and_a_packed_log_of_earlier_versions_still_replays() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let (mut wal, _) = Wal::open(&path, 64 * 1024, ID, true).unwrap();
        append(&mut wal, vec![put("a", "1")]);
        assert_eq!(wal.end, 2 * PAGE, "one small record takes one whole page");
        drop(wal);

        // The earlier layout: magic ADSYNCWL, records packed back to back.
        let mut packed = vec![0u8; 64 * 1024];
        packed[0..8].copy_from_slice(MAGIC_PACKED);
        packed[8..16].copy_from_slice(&7u64.to_le_bytes());
        let crc = crc32fast::hash(&packed[0..16]);
        packed[16..20].copy_from_slice(&crc.to_le_bytes());
        let mut offset = HEADER_LEN as usize;
        for writes in [vec![put("a", "1")], vec![put("b", "2"), put("c", "3")]] {
            let mut payload = Vec::new();
            encode(&writes, &mut payload);
            let head = &mut packed[offset..offset + RECORD_HEADER_LEN];
            head[0..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
            head[4..12].copy_from_slice(&7u64.to_le_bytes());
            head[12..16].copy_from_slice(&checksum(7, &payload).to_le_bytes());
            offset += RECORD_HEADER_LEN;
            packed[offset..offset + payload.len()].copy_from_slice(&payload);
            offset += payload.len();
        }
        std::fs::write(&path, &packed).unwrap();
        let (mut wal, replay) = Wal::open(&path, 64 * 1024, ID, true).unwrap();
        assert_eq!(keys(&replay), ["put a=1", "put b=2", "put c=3"]);
        // What the store does after replaying: reset, which switches layouts.
        wal.reset().unwrap();
        append(&mut wal, vec![put("d", "4")]);
        drop(wal);
        let (wal, replay) = Wal::open(&path, 64 * 1024, ID, true).unwrap();
        assert_eq!(keys(&replay), ["put d=4"]);
        assert!(wal.aligned);
    }

    #[test]
    fn without_direct_io_appends_go_through_the_page_cache_and_still_replay() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let (mut wal, _) = Wal::open(&path, 256 * 1024, ID, true).unwrap();
        append(&mut wal, vec![put("a", "1")]);
        // As on a filesystem that refuses O_DIRECT (tmpfs).
        wal.direct = None;
        // Enough pages for the tail to pass DROP_EVERY: the cache is dropped
        // behind it, and later appends never read a dropped page back.
        for i in 0..20 {
            append(&mut wal, vec![put(&format!("k{i:02}"), &"v".repeat(100))]);
        }
        assert!(wal.dropped >= DROP_EVERY, "dropped up to {}", wal.dropped);
        drop(wal);
        let (_, replay) = Wal::open(&path, 256 * 1024, ID, true).unwrap();
        assert_eq!(replay.len(), 21);
        assert_eq!(keys(&replay[..1]), ["put a=1"]);
    }

    #[test]
    fn records_are_built_on_a_page_boundary_and_stay_there() {
        let mut pages = AlignedPages::default();
        // Growing, shrinking and growing again: each time the contents start
        // on a page boundary and hold exactly what was pushed.
        for len in [PAGE as usize, 3 * PAGE as usize, 100, 5 * PAGE as usize] {
            pages.begin(len);
            let before = pages.bytes.as_ptr();
            let record: Vec<u8> = (0..len).map(|i| i as u8).collect();
            for chunk in record.chunks(777) {
                pages.append_to().extend_from_slice(chunk);
            }
            assert_eq!(pages.bytes.as_ptr(), before, "reallocated while pushing");
            assert_eq!(pages.contents().as_ptr().addr() % PAGE as usize, 0);
            assert_eq!(pages.contents(), &record[..]);
        }
    }

    #[test]
    fn a_foreign_file_is_refused_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        std::fs::write(&path, vec![b'z'; 8192]).unwrap();
        let err = Wal::open(&path, 64 * 1024, ID, true)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("is not an adsync log") && err.contains("wal"),
            "{err}"
        );
    }

    /// Appends records of 1, 2, 1, 3 and 1 pages and returns their offsets.
    fn five_records(wal: &mut Wal) -> Vec<u64> {
        let mut offsets = Vec::new();
        for (i, size) in [10, 5000, 10, 9000, 10].into_iter().enumerate() {
            offsets.push(wal.end);
            append(wal, vec![put(&format!("k{i}"), &"v".repeat(size))]);
        }
        offsets
    }

    /// Overwrites bytes of the log at `path`.
    fn damage(path: &Path, at: u64, bytes: &[u8]) {
        let file = OpenOptions::new().write(true).open(path).unwrap();
        file.write_all_at(bytes, at).unwrap();
    }

    /// Where in a record a damage lands: its length, its epoch, its checksum,
    /// its payload, or the whole record header zeroed.
    const DAMAGES: [(u64, &[u8]); 5] = [
        (0, b"\x77\x77"),
        (4, b"\x05"),
        (12, b"\xee"),
        (
            RECORD_HEADER_LEN as u64 + 3,
            b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
        ),
        (0, &[0; RECORD_HEADER_LEN]),
    ];

    /// Each record in turn, damaged each way in turn: a damaged record that
    /// an intact one follows is refused with both offsets; the last one is
    /// dropped as a torn write, and every earlier one replays.
    #[test]
    fn a_damaged_record_is_refused_unless_it_is_the_last() {
        let dir = tempfile::tempdir().unwrap();
        let pristine = dir.path().join("pristine");
        let (mut wal, _) = Wal::open(&pristine, 128 * 1024, ID, true).unwrap();
        let offsets = five_records(&mut wal);
        drop(wal);
        let last = offsets.len() - 1;
        for (i, &offset) in offsets.iter().enumerate() {
            for (at, bytes) in DAMAGES {
                let path = dir.path().join(format!("wal-{i}-{at}"));
                std::fs::copy(&pristine, &path).unwrap();
                damage(&path, offset + at, bytes);
                let case = format!("record {i} at {offset}, damaged at +{at}");
                match Wal::open(&path, 128 * 1024, ID, true) {
                    Err(WalError::Damaged {
                        offset: bad, later, ..
                    }) => {
                        assert!(
                            i < last,
                            "{case}: the last record must be dropped, not refused"
                        );
                        assert_eq!((bad, later), (offset, offsets[i + 1]), "{case}");
                    }
                    Ok((wal, replay)) => {
                        assert_eq!(i, last, "{case}: opened, dropping {} records", last - i + 1);
                        assert_eq!(replay.len(), last, "{case}");
                        assert_eq!(wal.end, offset, "{case}: the next append overwrites it");
                    }
                    Err(e) => panic!("{case}: {e}"),
                }
            }
        }
    }

    /// After a checkpoint the log is reused: the earlier epoch's records past
    /// the new end are intact but stale. They end the search for a later
    /// record, and are never taken for one.
    #[test]
    fn stale_records_of_an_earlier_epoch_are_not_later_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let (mut wal, _) = Wal::open(&path, 128 * 1024, ID, true).unwrap();
        five_records(&mut wal);
        wal.reset().unwrap();
        let first = wal.end;
        append(&mut wal, vec![put("new", "1")]);
        let second = wal.end;
        append(&mut wal, vec![put("new", "2")]);
        drop(wal);
        let pristine = std::fs::read(&path).unwrap();

        // The last record of the new epoch, torn: dropped, although intact
        // records (of the earlier epoch) follow it.
        damage(&path, second + RECORD_HEADER_LEN as u64, b"\xff");
        let (_, replay) = Wal::open(&path, 128 * 1024, ID, true).unwrap();
        assert_eq!(keys(&replay), ["put new=1"]);

        // The first one damaged: the second, of the same epoch, is found.
        std::fs::write(&path, &pristine).unwrap();
        damage(&path, first + RECORD_HEADER_LEN as u64, b"\xff");
        match Wal::open(&path, 128 * 1024, ID, true) {
            Err(WalError::Damaged { offset, later, .. }) => {
                assert_eq!((offset, later), (first, second))
            }
            other => panic!("{:?}", other.map(|(_, r)| keys(&r))),
        }
    }

    /// The store id: a new log carries it, an earlier version's header has
    /// none, and the first reset writes it.
    #[test]
    fn the_header_carries_the_store_id_and_a_header_without_one_is_still_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        let (mut wal, _) = Wal::open(&path, 64 * 1024, ID, true).unwrap();
        assert_eq!(wal.found_id(), Some(ID));
        append(&mut wal, vec![put("a", "1")]);
        drop(wal);
        let (wal, replay) = Wal::open(&path, 64 * 1024, *b"another store id", true).unwrap();
        assert_eq!(wal.found_id(), Some(ID), "a log keeps its own id");
        assert_eq!(keys(&replay), ["put a=1"]);
        drop(wal);

        // The previous header: magic ADSYNCW2, epoch, checksum; same records.
        let mut header = [0u8; 20];
        header[0..8].copy_from_slice(MAGIC_NO_ID);
        header[8..16].copy_from_slice(&1u64.to_le_bytes());
        let crc = crc32fast::hash(&header[0..16]);
        header[16..20].copy_from_slice(&crc.to_le_bytes());
        damage(&path, 0, &[0; 64]);
        damage(&path, 0, &header);
        let (mut wal, replay) = Wal::open(&path, 64 * 1024, ID, true).unwrap();
        assert_eq!(wal.found_id(), None);
        assert_eq!(keys(&replay), ["put a=1"]);
        wal.reset().unwrap();
        drop(wal);
        let (wal, replay) = Wal::open(&path, 64 * 1024, *b"another store id", true).unwrap();
        assert_eq!(wal.found_id(), Some(ID));
        assert!(replay.is_empty());
    }

    #[test]
    fn a_blank_log_is_made_again_only_when_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("wal");
        std::fs::write(&path, vec![0u8; 64 * 1024]).unwrap();
        assert!(matches!(
            Wal::open(&path, 64 * 1024, ID, false),
            Err(WalError::Blank { .. })
        ));
        assert_eq!(std::fs::read(&path).unwrap(), vec![0u8; 64 * 1024]);
    }
}
