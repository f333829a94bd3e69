//! What a checkpoint costs on PostgreSQL, beside the cheapest durable write
//! the same server offers, in one run against one throwaway server
//! (`adsync_fakes::postgres::TestServer`; `ADSYNC_TEST_POSTGRES_URL` to use
//! another), `synchronous_commit` on (the server's default):
//!
//! 1. raw: a loop of single-row `INSERT`s, each its own transaction
//!    (autocommit: the `INSERT` and its `COMMIT` in one round trip), rows of a
//!    checkpoint's size, on one connection;
//! 2. one sync's checkpoints through `PgStore::commit`, one after the other
//!    (a record and its history entry per commit, as the runner writes before
//!    each side effect): the cost per side effect, as a ratio to raw (target
//!    ≤ 1.5×), and the same for a claimed sync whose checkpoints carry its
//!    fencing token (what a worker sharing the database writes);
//! 3. 64 syncs committing at once: checkpoints per second, as a ratio to the
//!    raw serial rate (target ≥ 8×), and how many commits shared a
//!    transaction.
//!
//! Phases 1 and 2 alternate commit by commit (the machine's load moves
//! within seconds, so both must see the same), for twice a phase's length.
//! `ADSYNC_BENCH_SECS` (default 5) sets each phase's length.
//! Run: `cargo bench -p adsync-postgres --bench commit`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use adsync_engine::{CheckpointStore, Commit, HistoryEntry, Record, Status, RECORD_FORMAT};
use adsync_fakes::postgres::TestServer;
use adsync_postgres::PgStore;
use serde_json::value::RawValue;
use time::OffsetDateTime;

/// Syncs committing at once in phase 3.
const CONCURRENT: usize = 64;

fn main() {
    let secs: u64 = std::env::var("ADSYNC_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let phase = Duration::from_secs(secs);
    let server = TestServer::start();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(server.url(), phase));
}

async fn run(url: String, phase: Duration) {
    let state = "x".repeat(600);
    let size = checkpoint("size", 1, &state)
        .writes()
        .iter()
        .map(|w| match w {
            adsync_engine::Write::Put(k, v) => k.len() + v.len(),
            adsync_engine::Write::Delete(k) => k.len(),
        })
        .sum::<usize>();

    // 1 and 2, interleaved in short rounds: on a shared machine the load
    // moves within seconds, and each round's ratio compares neighbours.
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .expect("connects");
    tokio::spawn(connection);
    client
        .batch_execute("CREATE TABLE raw_commit (id bigint PRIMARY KEY, value bytea NOT NULL)")
        .await
        .expect("creates the raw table");
    let insert = client
        .prepare("INSERT INTO raw_commit (id, value) VALUES ($1, $2)")
        .await
        .expect("prepares");
    let row = vec![7u8; size];
    let pg = PgStore::connect(&url).await.expect("connects");
    let store: Arc<dyn CheckpointStore> = Arc::new(pg.clone());
    // A sync claimed by this "worker": its checkpoints carry the fence.
    store
        .commit(checkpoint("fenced", 0, &state))
        .await
        .expect("commits");
    let claims = pg
        .claim("bench", Duration::from_secs(3600), 1)
        .await
        .expect("claims");
    let fence = claims.first().expect("the sync is claimed").fence;
    let mut fenced_times = Vec::new();
    // One raw commit, then one checkpoint, and so on: both see the same
    // load, whatever it does meanwhile.
    let mut raw_times = Vec::new();
    let mut serial_times = Vec::new();
    let start = Instant::now();
    let mut seq = 0u64;
    while start.elapsed() < phase * 2 {
        let t = Instant::now();
        client
            .execute(&insert, &[&(seq as i64), &row])
            .await
            .expect("inserts");
        raw_times.push(t.elapsed());
        let t = Instant::now();
        store
            .commit(checkpoint("serial", seq, &state))
            .await
            .expect("commits");
        serial_times.push(t.elapsed());
        let t = Instant::now();
        store
            .commit(checkpoint("fenced", seq + 1, &state).fenced("fenced", fence))
            .await
            .expect("a fenced commit");
        fenced_times.push(t.elapsed());
        seq += 1;
    }
    let total = |times: &[Duration]| times.iter().sum::<Duration>();
    let raw_total = total(&raw_times);
    let serial_total = total(&serial_times);
    raw_times.sort();
    serial_times.sort();
    let fenced_total = total(&fenced_times);
    fenced_times.sort();
    let median = |times: &[Duration]| times[times.len() / 2];
    let raw_rate = raw_times.len() as f64 / raw_total.as_secs_f64();
    println!(
        "raw INSERT+COMMIT, serial:          {raw_rate:>8.0}/s  (mean {:.3} ms, median {:.3} ms; rows of {size} bytes)",
        ms(raw_total / raw_times.len() as u32),
        ms(median(&raw_times)),
    );
    println!(
        "PgStore, one sync, serial:          {:>8.0}/s  (mean {:.3} ms = {:.2}x raw, median {:.3} ms = {:.2}x raw; target <= 1.5x)",
        serial_times.len() as f64 / serial_total.as_secs_f64(),
        ms(serial_total / serial_times.len() as u32),
        serial_total.as_secs_f64() / raw_total.as_secs_f64(),
        ms(median(&serial_times)),
        median(&serial_times).as_secs_f64() / median(&raw_times).as_secs_f64(),
    );
    println!(
        "PgStore, one claimed sync, fenced:  {:>8.0}/s  (mean {:.3} ms = {:.2}x raw, median {:.3} ms = {:.2}x raw)",
        fenced_times.len() as f64 / fenced_total.as_secs_f64(),
        ms(fenced_total / fenced_times.len() as u32),
        fenced_total.as_secs_f64() / raw_total.as_secs_f64(),
        ms(median(&fenced_times)),
        median(&fenced_times).as_secs_f64() / median(&raw_times).as_secs_f64(),
    );

    // 3. 64 syncs at once.
    let before = store.writer_stats();
    let start = Instant::now();
    let tasks: Vec<_> = (0..CONCURRENT)
        .map(|n| {
            let store = store.clone();
            let state = state.clone();
            tokio::spawn(async move {
                let id = format!("sync-{n:02}");
                let mut seq = 0u64;
                while start.elapsed() < phase {
                    store
                        .commit(checkpoint(&id, seq, &state))
                        .await
                        .expect("commits");
                    seq += 1;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("a committer");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let after = store.writer_stats();
    let commits = after.commits - before.commits;
    let groups = after.flushes - before.flushes;
    let rate = commits as f64 / elapsed;
    println!(
        "PgStore, {CONCURRENT} syncs at once:          {rate:>8.0}/s  (= {:.1}x the raw serial rate; target >= 8x; {:.1} commits per transaction)",
        rate / raw_rate,
        commits as f64 / groups.max(1) as f64
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Checkpoint `seq` of sync `id`: its record and its history entry.
fn checkpoint(id: &str, seq: u64, state: &str) -> Commit {
    let record = Record {
        format: RECORD_FORMAT,
        id: id.to_string(),
        kind: "push".to_string(),
        state_version: 1,
        seq,
        phase: "creating".to_string(),
        status: Status::Running,
        effects_run: seq,
        failed_effects: 0,
        last_error: None,
        not_before: None,
        created_at: OffsetDateTime::UNIX_EPOCH,
        updated_at: OffsetDateTime::UNIX_EPOCH,
        labels: BTreeMap::from([("campaign".to_string(), "c1".to_string())]),
        state: RawValue::from_string(format!(r#"{{"step":{seq},"pad":"{state}"}}"#))
            .expect("valid JSON"),
        plan: None,
        segments: Vec::new(),
    };
    let entry = HistoryEntry {
        seq,
        at: OffsetDateTime::UNIX_EPOCH,
        from: "creating".to_string(),
        effect: Some("create_ad_group".to_string()),
        outcome: "created".to_string(),
        to: "creating".to_string(),
    };
    Commit::new()
        .record(&record)
        .expect("encodes")
        .history(id, &entry)
        .expect("encodes")
}
