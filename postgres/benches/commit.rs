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
//!    ≤ 1.5×);
//! 3. 64 syncs committing at once: checkpoints per second, as a ratio to the
//!    raw serial rate (target ≥ 8×), and how many commits shared a
//!    transaction.
//!
//! Phases 1 and 2 alternate in ten short rounds (the machine's load moves
//! within seconds); each round's ratio is printed as a range and a median.
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
    let store: Arc<dyn CheckpointStore> = Arc::new(PgStore::connect(&url).await.expect("connects"));
    let rounds = 10u32;
    let round = phase / rounds;
    let (mut raw_n, mut raw_time, mut seq, mut serial_time) =
        (0i64, Duration::ZERO, 0u64, Duration::ZERO);
    let mut ratios = Vec::new();
    for _ in 0..rounds {
        let start = Instant::now();
        let first = raw_n;
        while start.elapsed() < round {
            client
                .execute(&insert, &[&raw_n, &row])
                .await
                .expect("inserts");
            raw_n += 1;
        }
        let raw_round = start.elapsed();
        raw_time += raw_round;
        let raw_each = raw_round.as_secs_f64() / (raw_n - first) as f64;

        let start = Instant::now();
        let first = seq;
        while start.elapsed() < round {
            store
                .commit(checkpoint("serial", seq, &state))
                .await
                .expect("commits");
            seq += 1;
        }
        let serial_round = start.elapsed();
        serial_time += serial_round;
        ratios.push(serial_round.as_secs_f64() / (seq - first) as f64 / raw_each);
    }
    ratios.sort_by(f64::total_cmp);
    let raw = raw_time / raw_n as u32;
    let raw_rate = raw_n as f64 / raw_time.as_secs_f64();
    println!(
        "raw INSERT+COMMIT, serial:          {raw_rate:>8.0}/s  ({:.3} ms each, rows of {size} bytes)",
        ms(raw)
    );
    let serial = serial_time / seq as u32;
    println!(
        "PgStore, one sync, serial:          {:>8.0}/s  ({:.3} ms per checkpoint = {:.2}x raw; \
         rounds' ratios {:.2}-{:.2}x, median {:.2}x; target <= 1.5x)",
        seq as f64 / serial_time.as_secs_f64(),
        ms(serial),
        serial.as_secs_f64() / raw.as_secs_f64(),
        ratios[0],
        ratios[ratios.len() - 1],
        ratios[ratios.len() / 2],
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
