//! Reads: a group of sync reads on tokio's blocking pool, over one pooled
//! connection in one `REPEATABLE READ, READ ONLY` transaction.

use std::collections::VecDeque;

use adsync_engine::{LayoutReader, RawRead, ReadIter, Reads, StoreError};
use tokio::runtime::Handle;

use crate::location::Location;
use crate::store::{db_error, PgStore};

/// Rows a scan fetches per query: memory stays bounded however long the scan.
const PAGE: i64 = 500;

const GET: &str = "SELECT value FROM adsync_kv WHERE key = $1";
const FIRST_PAGE: &str =
    "SELECT key, value FROM adsync_kv WHERE key >= $1 AND key < $2 ORDER BY key LIMIT $3";
const NEXT_PAGE: &str =
    "SELECT key, value FROM adsync_kv WHERE key > $1 AND key < $2 ORDER BY key LIMIT $3";
const FIRST_PAGE_OPEN: &str =
    "SELECT key, value FROM adsync_kv WHERE key >= $1 ORDER BY key LIMIT $2";
const NEXT_PAGE_OPEN: &str =
    "SELECT key, value FROM adsync_kv WHERE key > $1 ORDER BY key LIMIT $2";

pub(crate) async fn read_with(store: &PgStore, reads: Reads) -> Result<(), StoreError> {
    read_raw(store, move |raw| reads(&LayoutReader(raw))).await
}

/// Runs `reads` with the store's keys as stored (what `PgStore::import`
/// compares with its source), in one read transaction on the blocking pool.
pub(crate) async fn read_raw(
    store: &PgStore,
    reads: impl for<'a> FnOnce(PgRaw<'a>) + Send + 'static,
) -> Result<(), StoreError> {
    let client = store.client().await?;
    let location = store.inner.location.clone();
    let handle = Handle::current();
    let task = tokio::task::spawn_blocking(move || {
        let mut guard = Checkout(Some(client));
        let client = guard.0.as_ref().expect("checked out above");
        handle
            .block_on(client.batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"))
            .map_err(|e| db_error(&location, "starting a read", e))?;
        let raw = PgRaw {
            client,
            handle: &handle,
            location: &location,
        };
        reads(raw);
        handle
            .block_on(client.batch_execute("COMMIT"))
            .map_err(|e| db_error(&location, "ending a read", e))?;
        guard.0.take();
        Ok(())
    });
    task.await.map_err(|e| StoreError::Backend {
        store: store.location_text(),
        message: format!("a read task failed: {e}"),
        source: None,
    })?
}

/// A checked-out connection that goes back to the pool only once its read
/// transaction has ended; if the reads panic or fail half-way, the
/// connection is closed instead of being handed out inside a transaction.
struct Checkout(Option<deadpool_postgres::Object>);

impl Drop for Checkout {
    fn drop(&mut self) {
        if let Some(client) = self.0.take() {
            drop(deadpool_postgres::Object::take(client));
        }
    }
}

/// [`RawRead`] over one connection, blocking on the runtime's handle (the
/// reads run on the blocking pool, where that is allowed).
pub(crate) struct PgRaw<'a> {
    client: &'a deadpool_postgres::Client,
    handle: &'a Handle,
    location: &'a Location,
}

impl PgRaw<'_> {
    fn query(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, StoreError> {
        self.handle
            .block_on(async {
                let statement = self.client.prepare_cached(sql).await?;
                self.client.query(&statement, params).await
            })
            .map_err(|e| db_error(self.location, "reading", e))
    }
}

impl RawRead for PgRaw<'_> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .query(GET, &[&key])?
            .into_iter()
            .next()
            .map(|row| row.get(0)))
    }

    fn scan(&self, prefix: &[u8]) -> ReadIter<'_, (Vec<u8>, Vec<u8>)> {
        Box::new(Scan {
            raw: self,
            after: None,
            prefix: prefix.to_vec(),
            end: prefix_end(prefix),
            page: VecDeque::new(),
            done: false,
        })
    }
}

/// A prefix scan, one page of keys at a time (keyset paging).
struct Scan<'r, 'a> {
    raw: &'r PgRaw<'a>,
    /// The last key returned so far.
    after: Option<Vec<u8>>,
    prefix: Vec<u8>,
    /// The first key past the prefix; `None` when there is none (all `0xff`).
    end: Option<Vec<u8>>,
    page: VecDeque<(Vec<u8>, Vec<u8>)>,
    done: bool,
}

impl Scan<'_, '_> {
    fn fetch(&mut self) -> Result<(), StoreError> {
        let from = self.after.as_ref().unwrap_or(&self.prefix);
        let rows = match (&self.after, &self.end) {
            (None, Some(end)) => self.raw.query(FIRST_PAGE, &[from, end, &PAGE])?,
            (Some(_), Some(end)) => self.raw.query(NEXT_PAGE, &[from, end, &PAGE])?,
            (None, None) => self.raw.query(FIRST_PAGE_OPEN, &[from, &PAGE])?,
            (Some(_), None) => self.raw.query(NEXT_PAGE_OPEN, &[from, &PAGE])?,
        };
        if (rows.len() as i64) < PAGE {
            self.done = true;
        }
        for row in rows {
            let key: Vec<u8> = row.get(0);
            // Without an upper bound, the prefix itself bounds the scan.
            if self.end.is_none() && !key.starts_with(&self.prefix) {
                self.done = true;
                break;
            }
            self.page.push_back((key, row.get(1)));
        }
        if let Some((key, _)) = self.page.back() {
            self.after = Some(key.clone());
        }
        Ok(())
    }
}

impl Iterator for Scan<'_, '_> {
    type Item = Result<(Vec<u8>, Vec<u8>), StoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.page.is_empty() && !self.done {
            if let Err(e) = self.fetch() {
                self.done = true;
                return Some(Err(e));
            }
        }
        self.page.pop_front().map(Ok)
    }
}

/// The smallest key greater than every key starting with `prefix`, if any:
/// the prefix without its trailing `0xff` bytes, last byte incremented.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::prefix_end;

    #[test]
    fn a_prefix_ends_before_its_successor() {
        assert_eq!(prefix_end(b"r/"), Some(b"r0".to_vec()));
        assert_eq!(prefix_end(&[b'x', 0xff, 0xff]), Some(vec![b'y']));
        assert_eq!(prefix_end(&[0xff]), None);
        assert_eq!(prefix_end(b""), None);
    }
}
