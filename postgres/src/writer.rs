//! The writer task: group commit.
//!
//! It takes every commit queued, and sends them as one transaction:
//! `BEGIN`, each commit's statements in queue order, `COMMIT`, all pipelined
//! on one connection (one round trip, one durable commit for the group).
//!
//! A fenced commit starts with a guard, `SELECT … FROM adsync_syncs WHERE
//! id = $sync AND fence = $token FOR UPDATE`, and each of its statements
//! carries the same condition (`WHERE EXISTS (…)`). When the token still
//! matches, the guard locks the sync's row until the group commits, so no
//! claim can move the token between the commit's statements: all of them
//! land. When it does not match, none of them writes anything (the token only
//! grows, so it cannot match again later in the transaction), the guard
//! returns no row, and that commit alone is answered `LeaseLost` while the
//! others of the group land. This replaces a `SAVEPOINT` per commit: a
//! savepoint needs the guard's answer before the next statement is sent,
//! one round trip per fenced commit, which the conditions avoid.

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
            let sync = key
                .strip_prefix(b"r/")
                .map(|id| String::from_utf8_lossy(id).into_owned());
            match value {
                Some(value) => {
                    if let Some(id) = sync {
                        // A record the engine encoded always probes; one that
                        // does not is kept out of claims.
                        let (status, not_before) = match serde_json::from_slice::<Probe>(value) {
                            Ok(p) => (p.status, p.not_before),
                            Err(_) => ("unreadable".to_string(), None),
                        };
                        plan.sync_ids.push(id);
                        plan.sync_statuses.push(status);
                        plan.sync_not_before.push(not_before);
                    }
                    plan.put_keys.push(key.to_vec());
                    plan.put_values.push(value.to_vec());
                }
                None => {
                    if let Some(id) = sync {
                        plan.sync_deletes.push(id);
                    }
                    plan.deletes.push(key.to_vec());
                }
            }
        }
        plan
    }
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
    mut queue: mpsc::UnboundedReceiver<Pending>,
) {
    while let Some(first) = queue.recv().await {
        let mut group = vec![first];
        while group.len() < MAX_GROUP {
            match queue.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let (answers, flushed) = run_group(&pool, &location, &group).await;
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

/// Runs one group: one answer per commit, and whether a transaction
/// committed.
async fn run_group(
    pool: &Pool,
    location: &Location,
    group: &[Pending],
) -> (Vec<Result<(), StoreError>>, bool) {
    let fail_all = |e: StoreError| (group.iter().map(|_| Err(e.clone())).collect(), false);
    let plans: Vec<Plan> = group.iter().map(|p| Plan::of(&p.commit)).collect();
    let mut tries = 0;
    loop {
        tries += 1;
        // A connection the server closed (a restart) is replaced by the pool.
        let client = match pool.get().await {
            Ok(client) => client,
            Err(e) => return fail_all(pool_error(location, e)),
        };
        let statements = match Statements::prepare(&client).await {
            Ok(s) => s,
            Err(e) => {
                discard_if_closed(client);
                return fail_all(db_error(location, "preparing the commit", e));
            }
        };
        match send(&client, &statements, &plans).await {
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
                discard_if_closed(client);
                return fail_all(db_error(location, "committing a group of checkpoints", e));
            }
        }
    }
}

/// Keeps a dead connection out of the pool: the next group connects anew.
fn discard_if_closed(client: deadpool_postgres::Object) {
    if client.is_closed() {
        drop(deadpool_postgres::Object::take(client));
    }
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
        if !plan.put_keys.is_empty() {
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&plan.put_keys, &plan.put_values];
            with_fence(&mut params, fence);
            let statement = if fence.is_some() {
                &statements.put_fenced
            } else {
                &statements.put
            };
            queries.push(Box::pin(execute(client, statement, params)));
        }
        if !plan.deletes.is_empty() {
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&plan.deletes];
            with_fence(&mut params, fence);
            let statement = if fence.is_some() {
                &statements.delete_fenced
            } else {
                &statements.delete
            };
            queries.push(Box::pin(execute(client, statement, params)));
        }
        if !plan.sync_ids.is_empty() {
            let mut params: Vec<&(dyn ToSql + Sync)> =
                vec![&plan.sync_ids, &plan.sync_statuses, &plan.sync_not_before];
            with_fence(&mut params, fence);
            let statement = if fence.is_some() {
                &statements.syncs_fenced
            } else {
                &statements.syncs
            };
            queries.push(Box::pin(execute(client, statement, params)));
        }
        if !plan.sync_deletes.is_empty() {
            let mut params: Vec<&(dyn ToSql + Sync)> = vec![&plan.sync_deletes];
            with_fence(&mut params, fence);
            let statement = if fence.is_some() {
                &statements.syncs_delete_fenced
            } else {
                &statements.syncs_delete
            };
            queries.push(Box::pin(execute(client, statement, params)));
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
