//! A large push to the memory platform, through the real `adsync` binary.
//!
//! Run: `cargo bench --bench push_scale` (add `-- --campaigns N` for another
//! size; `-- --keep DIR` keeps the set file and the store in `DIR`).
//!
//! Writes a campaign set of 100 campaigns × 1,000 entities (1 campaign, 27 ad
//! groups, each with 12 ads and 24 keywords: 100,000 entities), then runs
//! `adsync --db <store> push <set> --account a2_scale` as a child process and
//! `adsync status --json` after it. Reports, for each:
//! * wall time (informational: the machine is shared and noisy);
//! * peak RSS of the child (`ru_maxrss` from `wait4`) — target ≤ 400 MB for
//!   the push;
//! * the store's size after the push: the sum of its files' lengths, with and
//!   without the write-ahead log (`adsync.wal`, preallocated to 8 MiB and
//!   never larger) — target ≤ 5× the set file's size.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const AD_GROUPS: usize = 27;
const ADS: usize = 12;
const KEYWORDS: usize = 24;

/// Writes a realistic set (names and texts of ordinary length, every optional
/// field a push would commonly carry) to `path`, one campaign at a time, and
/// returns its size in bytes.
///
/// One campaign at a time because this process's memory is inherited by the
/// children it measures: Linux keeps the parent's resident size as the floor
/// of a forked child's `ru_maxrss`, even across `exec`. Building the whole set
/// as one JSON value first left about 180 MiB in this process, and every
/// child's peak RSS read at least that.
fn write_campaign_set(path: &Path, campaigns: usize) -> u64 {
    use std::io::Write as _;
    let mut out = std::io::BufWriter::new(std::fs::File::create(path).expect("create set file"));
    write!(
        out,
        r#"{{"name":"Spring running shoes at scale","campaigns":["#
    )
    .expect("write set");
    for c in 0..campaigns {
        if c > 0 {
            out.write_all(b",").expect("write set");
        }
        serde_json::to_writer(&mut out, &campaign(c)).expect("write set");
    }
    out.write_all(b"]}").expect("write set");
    out.into_inner()
        .expect("flush set")
        .sync_all()
        .expect("sync set");
    std::fs::metadata(path).expect("set file").len()
}

fn campaign(c: usize) -> serde_json::Value {
    let ad_groups: Vec<serde_json::Value> = (0..AD_GROUPS)
        .map(|g| {
            let ads: Vec<serde_json::Value> = (0..ADS)
                .map(|a| {
                    serde_json::json!({
                        "id": format!("c{c}-g{g}-ad{a}"),
                        "name": format!("Spring shoe video {c}-{g}-{a}"),
                        "post_id": format!("t3_p{c}x{g}x{a}"),
                        "click_url": format!("https://example.com/shoes/{c}/{g}/{a}"),
                        "status": "ACTIVE",
                    })
                })
                .collect();
            let keywords: Vec<serde_json::Value> = (0..KEYWORDS)
                .map(|k| {
                    serde_json::json!({
                        "id": format!("c{c}-g{g}-kw{k}"),
                        "text": format!("running shoes {c} {g} {k}"),
                    })
                })
                .collect();
            serde_json::json!({
                "id": format!("c{c}-g{g}"),
                "name": format!("Trail runners {c}-{g}"),
                "status": "ACTIVE",
                "bid_strategy": "MANUAL_BIDDING",
                "bid_type": "CPC",
                "bid_value_micros": 1_500_000,
                "start_time": "2026-03-01T00:00:00Z",
                "ads": ads,
                "keywords": keywords,
            })
        })
        .collect();
    serde_json::json!({
        "id": format!("c{c}"),
        "name": format!("Spring launch {c}"),
        "objective": "CLICKS",
        "status": "ACTIVE",
        "goal": { "type": "DAILY_SPEND", "value_micros": 50_000_000 },
        "ad_groups": ad_groups,
    })
}

struct Run {
    wall: Duration,
    max_rss_kb: u64,
    code: i32,
}

/// Runs `adsync` with `args` (stdout and stderr to files in `dir`) and
/// measures it with `wait4`.
fn run(dir: &Path, label: &str, args: &[&str]) -> Run {
    let out = std::fs::File::create(dir.join(format!("{label}.stdout"))).expect("stdout file");
    let err = std::fs::File::create(dir.join(format!("{label}.stderr"))).expect("stderr file");
    let start = Instant::now();
    let child = Command::new(env!("CARGO_BIN_EXE_adsync"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("ADSYNC_DB")
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .expect("spawn adsync");
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `pid` is our own child, not yet reaped; the pointers are valid.
    let waited = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
    let wall = start.elapsed();
    assert_eq!(waited, pid, "wait4: {}", std::io::Error::last_os_error());
    // `child` is not waited on again (it was reaped above); dropping it is fine.
    drop(child);
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -libc::WTERMSIG(status)
    };
    Run {
        wall,
        max_rss_kb: usage.ru_maxrss as u64,
        code,
    }
}

/// (sum of file lengths, of which the write-ahead log, sum of allocated bytes).
fn store_size(dir: &Path) -> (u64, u64, u64) {
    use std::os::unix::fs::MetadataExt as _;
    let mut total = (0, 0, 0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).expect("read store dir").flatten() {
            let meta = entry.metadata().expect("metadata");
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                total.0 += meta.len();
                if entry.file_name() == "adsync.wal" {
                    total.1 += meta.len();
                }
                total.2 += meta.blocks() * 512;
            }
        }
    }
    total
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn main() {
    let mut campaigns = 100;
    let mut keep: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--campaigns" => {
                campaigns = args
                    .next()
                    .and_then(|n| n.parse().ok())
                    .expect("--campaigns N")
            }
            "--keep" => keep = Some(args.next().expect("--keep DIR").into()),
            // `cargo bench` passes `--bench`.
            _ => {}
        }
    }
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = keep.unwrap_or_else(|| temp.path().to_path_buf());
    std::fs::create_dir_all(&dir).expect("bench dir");
    let set_path = dir.join("set.json");
    let db = dir.join("adsync.db");
    let _ = std::fs::remove_dir_all(&db);
    let set_len = write_campaign_set(&set_path, campaigns);
    let entities = campaigns * (1 + AD_GROUPS * (1 + ADS + KEYWORDS));
    println!(
        "set: {campaigns} campaigns, {entities} entities, {} bytes of JSON ({:.1} MiB)",
        set_len,
        mb(set_len)
    );

    let (set_arg, db_arg) = (set_path.to_string_lossy(), db.to_string_lossy());
    let push = run(
        &dir,
        "push",
        &[
            "--db",
            &db_arg,
            "push",
            &set_arg,
            "--account",
            "a2_scale",
            "--json",
        ],
    );
    // Only each campaign's status is decoded: a whole report as a
    // `serde_json::Value` would grow this process, and with it the next
    // child's measured peak (see `write_campaign_set`).
    #[derive(serde::Deserialize)]
    struct Report {
        campaigns: Vec<CampaignStatus>,
    }
    #[derive(serde::Deserialize)]
    struct CampaignStatus {
        status: String,
    }
    let synced = std::fs::File::open(dir.join("push.stdout"))
        .ok()
        .and_then(|f| serde_json::from_reader::<_, Report>(std::io::BufReader::new(f)).ok())
        .map(|r| {
            r.campaigns
                .iter()
                .filter(|c| c.status == "succeeded")
                .count()
        })
        .unwrap_or(0);
    let (bytes, wal, allocated) = store_size(&db);
    println!(
        "push: exit {}, {synced}/{campaigns} campaigns synced, {:.1} s, peak RSS {:.1} MiB",
        push.code,
        push.wall.as_secs_f64(),
        mb(push.max_rss_kb * 1024)
    );
    println!(
        "store: {:.1} MiB of files ({:.1} MiB without the log: {:.2}× the set; with it: {:.2}×), {:.1} MiB allocated",
        mb(bytes),
        mb(bytes - wal),
        (bytes - wal) as f64 / set_len as f64,
        bytes as f64 / set_len as f64,
        mb(allocated)
    );
    let status = run(&dir, "status", &["--db", &db_arg, "status", "--json"]);
    println!(
        "status --json: exit {}, {:.1} s, peak RSS {:.1} MiB",
        status.code,
        status.wall.as_secs_f64(),
        mb(status.max_rss_kb * 1024)
    );
    if push.code != 0 || synced != campaigns {
        eprintln!(
            "the push did not sync every campaign; see {}",
            dir.join("push.stderr").display()
        );
        std::process::exit(1);
    }
}
