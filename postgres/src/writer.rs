//! The writer tasks: group commit.
//!
//! A few writers share the queue (`WRITERS` in `store.rs`); each takes every
//! commit queued when its turn comes and makes them durable together, in one
//! round trip and one durable commit:
//!
//! * usually (no key written by two commits of the group) as **one
//!   statement** run on its own (`GROUP`: autocommit, so the statement and
//!   its commit are one message, as a raw `INSERT`), with one row per write;
//! * otherwise commit by commit: `BEGIN`, each commit's statements in queue
//!   order, `COMMIT`, all pipelined on one connection.
//!
//! **Fencing.** A fenced commit's rows land only while its sync's fencing
//! token still equals the commit's. In `GROUP`, a `guard` (`SELECT … FOR
//! UPDATE`) locks each fenced sync's row whose token matches, and every row
//! is conditioned on `guard`'s answer. Commit by commit, a fenced commit
//! starts with the same guard and each of its statements carries the
//! condition (`WHERE EXISTS (…)`; the guard's lock keeps it true for the
//! rest of the transaction, and a token that did not match never matches
//! later: tokens only grow). Either way a stale commit writes nothing and is
//! answered `LeaseLost`, and the rest of its group lands. This replaces a
//! `SAVEPOINT` per commit, which needs the guard's answer before the next
//! statement is sent: one round trip per fenced commit.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use adsync_engine::{Commit, StoreError, Write, WriterStats};
use deadpool_postgres::Pool;
use parking_lot::Mutex;
use serde::Deserialize;
use time::OffsetDateTime;
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::ToSql;
use tokio_postgres::Statement;

use crate::location::Location;
use crate::store::{db_error, pool_error};

/// A commit waiting for the writer.
pub(crate) struct Pending {
    pub(crate) commit: Commit,
    pub(crate) reply: oneshot::Sender<Result<(), StoreError>>,
}

/// Commits per group at most (bounds one transaction's size).
const MAX_GROUP: usize = 512;

/// Tries of a group the server aborted for a deadlock or a serialization
/// conflict (two processes' groups touching the same keys).
const CONFLICT_TRIES: usize = 5;

const PUT: &str = "INSERT INTO adsync_kv (key, value) \
     SELECT k, v FROM unnest($1::bytea[], $2::bytea[]) AS w(k, v) \
     ON CONFLICT (key) DO UPDATE SET value = excluded.value";
const PUT_FENCED: &str = "INSERT INTO adsync_kv (key, value) \
     SELECT k, v FROM unnest($1::bytea[], $2::bytea[]) AS w(k, v) \
     WHERE EXISTS (SELECT 1 FROM adsync_syncs f WHERE f.id = $3 AND f.fence = $4) \
     ON CONFLICT (key) DO UPDATE SET value = excluded.value";
const DELETE: &str = "DELETE FROM adsync_kv WHERE key = ANY($1::bytea[])";
const DELETE_FENCED: &str = "DELETE FROM adsync_kv WHERE key = ANY($1::bytea[]) \
     AND EXISTS (SELECT 1 FROM adsync_syncs f WHERE f.id = $2 AND f.fence = $3)";
const SYNCS: &str = "INSERT INTO adsync_syncs (id, status, not_before) \
     SELECT i, s, n FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS w(i, s, n) \
     ON CONFLICT (id) DO UPDATE SET status = excluded.status, not_before = excluded.not_before";
const SYNCS_FENCED: &str = "INSERT INTO adsync_syncs (id, status, not_before) \
     SELECT i, s, n FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS w(i, s, n) \
     WHERE EXISTS (SELECT 1 FROM adsync_syncs f WHERE f.id = $4 AND f.fence = $5) \
     ON CONFLICT (id) DO UPDATE SET status = excluded.status, not_before = excluded.not_before";
const SYNCS_DELETE: &str = "DELETE FROM adsync_syncs WHERE id = ANY($1::text[])";
const SYNCS_DELETE_FENCED: &str = "DELETE FROM adsync_syncs WHERE id = ANY($1::text[]) \
     AND EXISTS (SELECT 1 FROM adsync_syncs f WHERE f.id = $2 AND f.fence = $3)";
const GUARD: &str = "SELECT fence FROM adsync_syncs WHERE id = $1 AND fence = $2 FOR UPDATE";

// A whole group in one statement (see `Batch`), run on its own (autocommit:
// the statement and its COMMIT in one round trip, as a raw INSERT). Each row
// carries its commit's fence (NULL for an unfenced commit) and lands only if
// `guard` returned that fence: `guard` locks every fenced sync's row whose
// token still matches, re-checking the newest version of the row if a claim
// committed meanwhile (the conditions read `guard`'s rows, not the
// statement's snapshot, which could predate that claim).
const GROUP: &str = "WITH guard AS ( \
         SELECT s.id, s.fence FROM adsync_syncs s \
         JOIN unnest($1::text[], $2::bigint[]) AS g(id, fence) ON s.id = g.id AND s.fence = g.fence \
         FOR UPDATE OF s), \
     put AS ( \
         INSERT INTO adsync_kv (key, value) \
         SELECT k, v FROM unnest($3::bytea[], $4::bytea[], $5::text[], $6::bigint[]) AS w(k, v, fs, ft) \
         WHERE w.fs IS NULL OR (w.fs, w.ft) IN (SELECT id, fence FROM guard) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value), \
     del AS ( \
         DELETE FROM adsync_kv AS t USING unnest($7::bytea[], $8::text[], $9::bigint[]) AS w(k, fs, ft) \
         WHERE t.key = w.k AND (w.fs IS NULL OR (w.fs, w.ft) IN (SELECT id, fence FROM guard))), \
     syncs AS ( \
         INSERT INTO adsync_syncs (id, status, not_before) \
         SELECT i, s, n FROM unnest($10::text[], $11::text[], $12::timestamptz[], $13::text[], $14::bigint[]) \
             AS w(i, s, n, fs, ft) \
         WHERE w.fs IS NULL OR (w.fs, w.ft) IN (SELECT id, fence FROM guard) \
         ON CONFLICT (id) DO UPDATE SET status = excluded.status, not_before = excluded.not_before \
         WHERE (adsync_syncs.status, adsync_syncs.not_before) \
             IS DISTINCT FROM (excluded.status, excluded.not_before)), \
     syncs_del AS ( \
         DELETE FROM adsync_syncs AS t USING unnest($15::text[], $16::text[], $17::bigint[]) AS w(i, fs, ft) \
         WHERE t.id = w.i AND (w.fs IS NULL OR (w.fs, w.ft) IN (SELECT id, fence FROM guard))) \
     SELECT id, fence FROM guard";

/// `GROUP` for a group that deletes nothing (most: checkpoints only put):
/// fewer parts for the server to run.
const GROUP_PUTS: &str = "WITH guard AS ( \
         SELECT s.id, s.fence FROM adsync_syncs s \
         JOIN unnest($1::text[], $2::bigint[]) AS g(id, fence) ON s.id = g.id AND s.fence = g.fence \
         FOR UPDATE OF s), \
     put AS ( \
         INSERT INTO adsync_kv (key, value) \
         SELECT k, v FROM unnest($3::bytea[], $4::bytea[], $5::text[], $6::bigint[]) AS w(k, v, fs, ft) \
         WHERE w.fs IS NULL OR (w.fs, w.ft) IN (SELECT id, fence FROM guard) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value), \
     syncs AS ( \
         INSERT INTO adsync_syncs (id, status, not_before) \
         SELECT i, s, n FROM unnest($7::text[], $8::text[], $9::timestamptz[], $10::text[], $11::bigint[]) \
             AS w(i, s, n, fs, ft) \
         WHERE w.fs IS NULL OR (w.fs, w.ft) IN (SELECT id, fence FROM guard) \
         ON CONFLICT (id) DO UPDATE SET status = excluded.status, not_before = excluded.not_before \
         WHERE (adsync_syncs.status, adsync_syncs.not_before) \
             IS DISTINCT FROM (excluded.status, excluded.not_before)) \
     SELECT id, fence FROM guard";

/// The statements, prepared on the writer's connection.
struct Statements {
    begin: Statement,
    commit: Statement,
    put: Statement,
    put_fenced: Statement,
    delete: Statement,
    delete_fenced: Statement,
    syncs: Statement,
    syncs_fenced: Statement,
    syncs_delete: Statement,
    syncs_delete_fenced: Statement,
    guard: Statement,
    group: Statement,
    group_puts: Statement,
}

impl Statements {
    async fn prepare(client: &deadpool_postgres::Client) -> Result<Self, tokio_postgres::Error> {
        let p = |sql: &'static str| client.prepare_cached(sql);
        Ok(Statements {
            begin: p("BEGIN").await?,
            commit: p("COMMIT").await?,
            put: p(PUT).await?,
            put_fenced: p(PUT_FENCED).await?,
            delete: p(DELETE).await?,
            delete_fenced: p(DELETE_FENCED).await?,
            syncs: p(SYNCS).await?,
            syncs_fenced: p(SYNCS_FENCED).await?,
            syncs_delete: p(SYNCS_DELETE).await?,
            syncs_delete_fenced: p(SYNCS_DELETE_FENCED).await?,
            guard: p(GUARD).await?,
            group: p(GROUP).await?,
            group_puts: p(GROUP_PUTS).await?,
        })
    }
}

/// One commit, as the rows its statements send.
struct Plan {
    fence: Option<(String, i64)>,
    put_keys: Vec<Vec<u8>>,
    put_values: Vec<Vec<u8>>,
    deletes: Vec<Vec<u8>>,
    sync_ids: Vec<String>,
    sync_statuses: Vec<String>,
    sync_not_before: Vec<Option<OffsetDateTime>>,
    sync_deletes: Vec<String>,
}

/// The two fields of a record the `adsync_syncs` row keeps (both formats of
/// the engine's record carry them at the top level).
#[derive(Deserialize)]
struct Probe {
    status: String,
    #[serde(default, with = "time::serde::rfc3339::option")]
    not_before: Option<OffsetDateTime>,
}

impl Plan {
    fn of(commit: &Commit) -> Plan {
        // Within one commit the last write of a key wins (one statement
        // cannot touch a row twice).
        let mut last: BTreeMap<&[u8], Option<&[u8]>> = BTreeMap::new();
        for write in commit.writes() {
            match write {
                Write::Put(k, v) => last.insert(k, Some(v)),
                Write::Delete(k) => last.insert(k, None),
            };
        }
        let mut plan = Plan {
            fence: commit
                .fence()
                .map(|(s, f)| (s.to_string(), i64::try_from(f).unwrap_or(i64::MAX))),
            put_keys: Vec::new(),
            put_values: Vec::new(),
            deletes: Vec::new(),
            sync_ids: Vec::new(),
            sync_statuses: Vec::new(),
            sync_not_before: Vec::new(),
            sync_deletes: Vec::new(),
        };
        for (key, value) in last {
            match value {
                Some(value) => {
                    if let Some(row) = RecordRow::of(key, value) {
                        plan.sync_ids.push(row.id);
                        plan.sync_statuses.push(row.status);
                        plan.sync_not_before.push(row.not_before);
                    }
                    plan.put_keys.push(key.to_vec());
                    plan.put_values.push(value.to_vec());
                }
                None => {
                    if let Some(id) = key.strip_prefix(b"r/") {
                        plan.sync_deletes
                            .push(String::from_utf8_lossy(id).into_owned());
                    }
                    plan.deletes.push(key.to_vec());
                }
            }
        }
        plan
    }
}

/// The `adsync_syncs` row that writing `value` at `key` keeps up to date:
/// one for a record (`r/<sync>`), none for any other key. Every path that
/// puts records (commits, `PgStore::import`) derives it here, so claims see
/// the same rows however the records arrived.
pub(crate) struct RecordRow {
    pub(crate) id: String,
    pub(crate) status: String,
    pub(crate) not_before: Option<OffsetDateTime>,
}

impl RecordRow {
    pub(crate) fn of(key: &[u8], value: &[u8]) -> Option<RecordRow> {
        let id = String::from_utf8_lossy(key.strip_prefix(b"r/")?).into_owned();
        // A record the engine encoded always probes; one that does not is
        // kept out of claims.
        let (status, not_before) = match serde_json::from_slice::<Probe>(value) {
            Ok(p) => (p.status, p.not_before),
            Err(_) => ("unreadable".to_string(), None),
        };
        Some(RecordRow {
            id,
            status,
            not_before,
        })
    }
}

/// A whole group as one statement (`GROUP`), each row carrying its
/// commit's fence: what a group whose commits write disjoint keys (the usual
/// case: each sync writes its own keys) sends instead of statements per
/// commit. Where two commits write one key, the later must win only if its
/// fence holds, which rows of one statement cannot express: such a group
/// goes commit by commit ([`send`]).
struct Batch {
    put_keys: Vec<Vec<u8>>,
    put_values: Vec<Vec<u8>>,
    put_fences: Fences,
    deletes: Vec<Vec<u8>>,
    delete_fences: Fences,
    sync_ids: Vec<String>,
    sync_statuses: Vec<String>,
    sync_not_before: Vec<Option<OffsetDateTime>>,
    sync_fences: Fences,
    sync_deletes: Vec<String>,
    sync_delete_fences: Fences,
    guard_ids: Vec<String>,
    guard_tokens: Vec<i64>,
}

/// A commit's fence as its statements' parameters take it.
type Fence = Option<(String, i64)>;

/// An `adsync_syncs` row of a batch: id, status, `not_before`, fence.
type SyncRow<'a> = (
    &'a String,
    &'a String,
    &'a Option<OffsetDateTime>,
    &'a Fence,
);

/// Per row, the fence of the commit it belongs to (`NULL`s for none).
#[derive(Default)]
struct Fences {
    syncs: Vec<Option<String>>,
    tokens: Vec<Option<i64>>,
}

impl Fences {
    fn push(&mut self, fence: &Option<(String, i64)>) {
        self.syncs.push(fence.as_ref().map(|(s, _)| s.clone()));
        self.tokens.push(fence.as_ref().map(|(_, t)| *t));
    }
}

impl Batch {
    fn of(plans: &[Plan]) -> Option<Batch> {
        let mut keys = std::collections::HashSet::new();
        for plan in plans {
            for key in plan.put_keys.iter().chain(&plan.deletes) {
                if !keys.insert(key.as_slice()) {
                    return None;
                }
            }
        }
        // Rows in key order: concurrent groups (several writers, several
        // processes) then lock shared keys in one order and cannot deadlock
        // on them.
        let mut puts: Vec<(&Vec<u8>, &Vec<u8>, &Fence)> = plans
            .iter()
            .flat_map(|p| {
                p.put_keys
                    .iter()
                    .zip(&p.put_values)
                    .map(move |(k, v)| (k, v, &p.fence))
            })
            .collect();
        puts.sort_by(|a, b| a.0.cmp(b.0));
        let mut deletes: Vec<(&Vec<u8>, &Fence)> = plans
            .iter()
            .flat_map(|p| p.deletes.iter().map(move |k| (k, &p.fence)))
            .collect();
        deletes.sort_by(|a, b| a.0.cmp(b.0));
        let mut syncs: Vec<SyncRow<'_>> = plans
            .iter()
            .flat_map(|p| {
                p.sync_ids
                    .iter()
                    .zip(&p.sync_statuses)
                    .zip(&p.sync_not_before)
                    .map(move |((i, s), n)| (i, s, n, &p.fence))
            })
            .collect();
        syncs.sort_by(|a, b| a.0.cmp(b.0));
        let mut sync_deletes: Vec<(&String, &Fence)> = plans
            .iter()
            .flat_map(|p| p.sync_deletes.iter().map(move |i| (i, &p.fence)))
            .collect();
        sync_deletes.sort_by(|a, b| a.0.cmp(b.0));
        let mut guards: Vec<(String, i64)> = plans.iter().filter_map(|p| p.fence.clone()).collect();
        guards.sort();

        let mut batch = Batch {
            put_keys: Vec::with_capacity(puts.len()),
            put_values: Vec::with_capacity(puts.len()),
            put_fences: Fences::default(),
            deletes: Vec::with_capacity(deletes.len()),
            delete_fences: Fences::default(),
            sync_ids: Vec::with_capacity(syncs.len()),
            sync_statuses: Vec::with_capacity(syncs.len()),
            sync_not_before: Vec::with_capacity(syncs.len()),
            sync_fences: Fences::default(),
            sync_deletes: Vec::with_capacity(sync_deletes.len()),
            sync_delete_fences: Fences::default(),
            guard_ids: Vec::with_capacity(guards.len()),
            guard_tokens: Vec::with_capacity(guards.len()),
        };
        for (key, value, fence) in puts {
            batch.put_keys.push(key.clone());
            batch.put_values.push(value.clone());
            batch.put_fences.push(fence);
        }
        for (key, fence) in deletes {
            batch.deletes.push(key.clone());
            batch.delete_fences.push(fence);
        }
        for (id, status, not_before, fence) in syncs {
            batch.sync_ids.push(id.clone());
            batch.sync_statuses.push(status.clone());
            batch.sync_not_before.push(*not_before);
            batch.sync_fences.push(fence);
        }
        for (id, fence) in sync_deletes {
            batch.sync_deletes.push(id.clone());
            batch.sync_delete_fences.push(fence);
        }
        for (id, token) in guards {
            batch.guard_ids.push(id);
            batch.guard_tokens.push(token);
        }
        Some(batch)
    }
}

/// Sends a [`Batch`]: one statement, committed on its own.
async fn send_batch(
    client: &deadpool_postgres::Client,
    statements: &Statements,
    plans: &[Plan],
    batch: &Batch,
) -> Outcome {
    let answer = if batch.deletes.is_empty() && batch.sync_deletes.is_empty() {
        let params: [&(dyn ToSql + Sync); 11] = [
            &batch.guard_ids,
            &batch.guard_tokens,
            &batch.put_keys,
            &batch.put_values,
            &batch.put_fences.syncs,
            &batch.put_fences.tokens,
            &batch.sync_ids,
            &batch.sync_statuses,
            &batch.sync_not_before,
            &batch.sync_fences.syncs,
            &batch.sync_fences.tokens,
        ];
        client.query(&statements.group_puts, &params).await
    } else {
        let params: [&(dyn ToSql + Sync); 17] = [
            &batch.guard_ids,
            &batch.guard_tokens,
            &batch.put_keys,
            &batch.put_values,
            &batch.put_fences.syncs,
            &batch.put_fences.tokens,
            &batch.deletes,
            &batch.delete_fences.syncs,
            &batch.delete_fences.tokens,
            &batch.sync_ids,
            &batch.sync_statuses,
            &batch.sync_not_before,
            &batch.sync_fences.syncs,
            &batch.sync_fences.tokens,
            &batch.sync_deletes,
            &batch.sync_delete_fences.syncs,
            &batch.sync_delete_fences.tokens,
        ];
        client.query(&statements.group, &params).await
    };
    let held = match answer {
        Ok(rows) => rows,
        Err(e) => return Outcome::Failed(e),
    };
    let held: std::collections::HashSet<(String, i64)> = held
        .into_iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1)))
        .collect();
    Outcome::Committed(
        plans
            .iter()
            .map(|plan| plan.fence.as_ref().is_none_or(|f| held.contains(f)))
            .collect(),
    )
}

type Query<'a> = Pin<Box<dyn Future<Output = Result<u64, tokio_postgres::Error>> + Send + 'a>>;

/// What happened to a group.
enum Outcome {
    /// Committed; per commit, whether its fence held.
    Committed(Vec<bool>),
    /// Not committed: nothing of it is in the database.
    Failed(tokio_postgres::Error),
}

pub(crate) async fn writer_task(
    pool: Pool,
    location: Location,
    stats: Arc<Mutex<WriterStats>>,
    queue: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Pending>>>,
) {
    // The writer's own connection and its prepared statements, kept from
    // group to group (checking one out and looking its statements up for
    // every group cost a lone commit a good part of a round trip).
    let mut connection: Option<Connection> = None;
    loop {
        // One writer at a time takes what is queued; it lets go of the queue
        // before its group goes out, so the next writer gathers the next
        // group while this one waits for its COMMIT.
        let group = {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else {
                return;
            };
            let mut group = vec![first];
            while group.len() < MAX_GROUP {
                match queue.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
            group
        };
        let (answers, flushed) = run_group(&pool, &location, &mut connection, &group).await;
        // Counted before anyone is answered: a committer that reads the
        // stats after its commit returns sees its commit in them.
        {
            let mut stats = stats.lock();
            stats.commits += answers.iter().filter(|a| a.is_ok()).count() as u64;
            stats.flushes += u64::from(flushed);
        }
        for (pending, answer) in group.into_iter().zip(answers) {
            let _ = pending.reply.send(answer);
        }
    }
}

/// A writer's connection, with its statements prepared.
type Connection = (deadpool_postgres::Object, Statements);

/// Runs one group: one answer per commit, and whether a transaction
/// committed.
async fn run_group(
    pool: &Pool,
    location: &Location,
    connection: &mut Option<Connection>,
    group: &[Pending],
) -> (Vec<Result<(), StoreError>>, bool) {
    let fail_all = |e: StoreError| (group.iter().map(|_| Err(e.clone())).collect(), false);
    let plans: Vec<Plan> = group.iter().map(|p| Plan::of(&p.commit)).collect();
    let batch = Batch::of(&plans);
    let mut tries = 0;
    loop {
        tries += 1;
        // A connection the server closed (a restart) is replaced.
        if let Some((client, _)) = connection.take_if(|(client, _)| client.is_closed()) {
            discard(client);
        }
        if connection.is_none() {
            let client = match pool.get().await {
                Ok(client) => client,
                Err(e) => return fail_all(pool_error(location, e)),
            };
            match Statements::prepare(&client).await {
                Ok(statements) => *connection = Some((client, statements)),
                Err(e) => {
                    if client.is_closed() {
                        discard(client);
                    }
                    return fail_all(db_error(location, "preparing the commit", e));
                }
            }
        }
        let Some((client, statements)) = connection.as_ref() else {
            continue;
        };
        let outcome = match &batch {
            Some(batch) => send_batch(client, statements, &plans, batch).await,
            None => send(client, statements, &plans).await,
        };
        match outcome {
            Outcome::Committed(held) => {
                let answers = held
                    .into_iter()
                    .zip(&plans)
                    .map(|(held, plan)| match (&plan.fence, held) {
                        (Some((sync, fence)), false) => Err(StoreError::LeaseLost {
                            sync: sync.clone(),
                            fence: u64::try_from(*fence).unwrap_or_default(),
                        }),
                        _ => Ok(()),
                    })
                    .collect();
                return (answers, true);
            }
            Outcome::Failed(e) => {
                let conflict = e.code().is_some_and(|c| {
                    *c == tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED
                        || *c == tokio_postgres::error::SqlState::T_R_SERIALIZATION_FAILURE
                });
                if conflict && tries < CONFLICT_TRIES {
                    continue;
                }
                if let Some((client, _)) = connection.take_if(|(client, _)| client.is_closed()) {
                    discard(client);
                }
                return fail_all(db_error(location, "committing a group of checkpoints", e));
            }
        }
    }
}

/// Keeps a dead connection out of the pool: the next group connects anew.
fn discard(client: deadpool_postgres::Object) {
    drop(deadpool_postgres::Object::take(client));
}

/// Sends the group's transaction, pipelined, and reads every answer.
async fn send(
    client: &deadpool_postgres::Client,
    statements: &Statements,
    plans: &[Plan],
) -> Outcome {
    let mut queries: Vec<Query<'_>> = Vec::with_capacity(2 + plans.len() * 3);
    // Where each fenced commit's guard answer is, in `queries`.
    let mut guards: Vec<Option<usize>> = Vec::with_capacity(plans.len());
    queries.push(Box::pin(client.execute(&statements.begin, &[])));
    for plan in plans {
        let fence: Option<(&String, &i64)> = plan.fence.as_ref().map(|(s, f)| (s, f));
        match fence {
            Some((sync, token)) => {
                guards.push(Some(queries.len()));
                let params: Vec<&(dyn ToSql + Sync)> = vec![sync, token];
                queries.push(Box::pin(execute(client, &statements.guard, params)));
            }
            None => guards.push(None),
        }
        // Each part of the commit, fenced or not (then it lands only while
        // the guard above found the token current).
        let parts: [(bool, Vec<&(dyn ToSql + Sync)>, &Statement, &Statement); 4] = [
            (
                !plan.put_keys.is_empty(),
                vec![&plan.put_keys, &plan.put_values],
                &statements.put,
                &statements.put_fenced,
            ),
            (
                !plan.deletes.is_empty(),
                vec![&plan.deletes],
                &statements.delete,
                &statements.delete_fenced,
            ),
            (
                !plan.sync_ids.is_empty(),
                vec![&plan.sync_ids, &plan.sync_statuses, &plan.sync_not_before],
                &statements.syncs,
                &statements.syncs_fenced,
            ),
            (
                !plan.sync_deletes.is_empty(),
                vec![&plan.sync_deletes],
                &statements.syncs_delete,
                &statements.syncs_delete_fenced,
            ),
        ];
        for (wanted, mut params, plain, fenced) in parts {
            if wanted {
                with_fence(&mut params, fence);
                let statement = if fence.is_some() { fenced } else { plain };
                queries.push(Box::pin(execute(client, statement, params)));
            }
        }
    }
    queries.push(Box::pin(client.execute(&statements.commit, &[])));
    // Polled together, the requests go out back to back (tokio-postgres
    // pipelines concurrent requests on a connection). After a failed
    // statement the server refuses the rest and `COMMIT` rolls back.
    let answers = futures_util::future::join_all(queries).await;
    let mut rows = Vec::with_capacity(answers.len());
    for answer in answers {
        match answer {
            Ok(n) => rows.push(n),
            Err(e) => return Outcome::Failed(e),
        }
    }
    Outcome::Committed(
        guards
            .into_iter()
            .map(|guard| guard.is_none_or(|i| rows[i] == 1))
            .collect(),
    )
}

/// Adds a fenced statement's two last parameters.
fn with_fence<'a>(params: &mut Vec<&'a (dyn ToSql + Sync)>, fence: Option<(&'a String, &'a i64)>) {
    if let Some((sync, token)) = fence {
        params.push(sync);
        params.push(token);
    }
}

async fn execute<'a>(
    client: &'a deadpool_postgres::Client,
    statement: &'a Statement,
    params: Vec<&'a (dyn ToSql + Sync)>,
) -> Result<u64, tokio_postgres::Error> {
    client.execute(statement, &params).await
}
