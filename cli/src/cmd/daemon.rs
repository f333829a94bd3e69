//! `adsync daemon`: the control API (crate `adsync-daemon`) over one
//! [`adsync::Worker`] on the store, until SIGTERM or SIGINT.
//!
//! The order is chosen so that a mistake costs nothing: the flags and
//! platform settings are checked first, then the listen address is bound
//! (an address in use is reported before the store is touched), then the
//! store is opened (locked by another process: said so), and only then is
//! the address printed on stdout and the worker started.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use adsync::amazon::{AmazonConfig, DEFAULT_HOST};
use adsync::memory::MemoryPlatform;
use adsync::{Limits, PushAdapter, Secret, SharedStore, StopSignal, Store, SystemClock, Worker};
use adsync_daemon::{Config, DaemonError, DEFAULT_BODY_LIMIT, DEFAULT_LISTEN, ENV_TOKEN};
use tokio::signal::unix::{signal, SignalKind};

use crate::exit::Exit;
use crate::failure::Failure;
use crate::platform_args::RedditArgs;
use crate::pulling::{client_host, open_puller};
use crate::pushing::open_pusher;
use crate::store_url::StoreUrl;

/// Arguments of `adsync daemon`.
#[derive(Debug, clap::Args)]
#[command(after_help = format!("The bearer token comes from {ENV_TOKEN} (required for a \
non-loopback --listen). Reddit is served when ADSYNC_REDDIT_TOKEN is set; Amazon pulls when \
ADSYNC_AMAZON_TOKEN and ADSYNC_AMAZON_CLIENT_ID are set (host: ADSYNC_AMAZON_HOST). \
Exit codes: 0 stopped by SIGTERM/SIGINT; 2 bad flags, a non-loopback address without a token, \
or the listen address in use; 4 the store cannot be opened (locked by another process, corrupt)."))]
pub struct Args {
    /// Where the control API listens. Loopback by default; any other
    /// address needs a bearer token in ADSYNC_DAEMON_TOKEN.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    listen: SocketAddr,
    /// How long effects in flight may finish after SIGTERM/SIGINT (e.g.
    /// `30s`, `500ms`, `2m`; a bare number is seconds).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    shutdown_timeout: Duration,
    /// Syncs running at once, in all.
    #[arg(long, default_value_t = Limits::default().max_running, value_parser = at_least_one)]
    max_running: usize,
    /// Syncs running at once per ad account (push) or profile (pull).
    #[arg(long, default_value_t = Limits::default().max_per_account, value_parser = at_least_one)]
    max_per_account: usize,
    /// The largest request body accepted, in bytes (larger: 413).
    #[arg(long, default_value_t = DEFAULT_BODY_LIMIT, value_parser = at_least_one)]
    body_limit: usize,
    /// Also push to the in-memory platform kept in this JSON file (for
    /// trials and tests).
    #[arg(long)]
    memory_file: Option<std::path::PathBuf>,
    /// With --store: how long a claimed sync stays this daemon's without a
    /// renewal (renewed every third of it). A daemon paused longer loses
    /// its syncs to the others and can no longer write them.
    #[arg(long, default_value = "30s", value_parser = parse_positive_duration)]
    lease_ttl: Duration,
    /// With --store: how often this daemon claims due syncs (and at once
    /// after a submission to it).
    #[arg(long, default_value = "1s", value_parser = parse_positive_duration)]
    claim_every: Duration,
    /// With --store: this daemon's name in the store's leases (default:
    /// host, pid and a random suffix).
    #[arg(long)]
    owner: Option<String>,
    #[command(flatten)]
    reddit: RedditArgs,
}

fn parse_positive_duration(raw: &str) -> Result<Duration, String> {
    match parse_duration(raw)? {
        d if d.is_zero() => Err("must be more than zero".into()),
        d => Ok(d),
    }
}

fn at_least_one(raw: &str) -> Result<usize, String> {
    match raw.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

/// `30s`, `500ms`, `2m`, `1h`, or a bare number of seconds.
fn parse_duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("`{raw}` is not a duration (e.g. 30s, 500ms, 2m)"))?;
    let seconds = match unit.trim() {
        "" | "s" => number,
        "ms" => number / 1000.0,
        "m" => number * 60.0,
        "h" => number * 3600.0,
        other => return Err(format!("unknown unit `{other}` (ms, s, m, h)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{raw}`: {e}"))
}

/// `adsync daemon`.
pub async fn run(db: &Path, shared: Option<&StoreUrl>, args: Args) -> Result<Exit, Failure> {
    let token = std::env::var(ENV_TOKEN)
        .ok()
        .filter(|t| !t.trim().is_empty())
        .map(|t| Secret::new(t.trim()));
    let mut config = Config::new()
        .listen(args.listen)
        .token(token)
        .body_limit(args.body_limit);
    // Platform settings before anything is bound or opened: a bad one is a
    // usage error that leaves nothing behind.
    let mut adapters: Vec<(Arc<dyn PushAdapter>, BTreeMap<String, String>)> = Vec::new();
    if args.reddit.has_token() {
        let url = args.reddit.base_url().to_string();
        let adapter: Arc<dyn PushAdapter> = args.reddit.adapter_at(&url)?;
        adapters.push((adapter, BTreeMap::from([("base_url".to_string(), url)])));
    }
    if let Some(file) = &args.memory_file {
        let file = std::path::absolute(file).unwrap_or_else(|_| file.clone());
        let platform = MemoryPlatform::open_file(&file, Arc::new(SystemClock))
            .map_err(|e| Failure::usage(e.to_string()))?;
        adapters.push((
            Arc::new(platform),
            BTreeMap::from([(
                "memory_file".to_string(),
                file.to_string_lossy().into_owned(),
            )]),
        ));
    }
    let amazon = amazon_config()?;
    let bound = adsync_daemon::bind(config.clone())
        .await
        .map_err(daemon_failure)?;
    let addr = bound.addr();
    let (store, dir): (SharedStore, Option<PathBuf>) = match shared {
        Some(url) => (Arc::new(url.open().await?.0), None),
        None => {
            let store = open_dir(db).await?;
            let dir = store.path().to_path_buf();
            (Arc::new(store), Some(dir))
        }
    };
    // The worker gives every runner its own stop signal; this one only
    // satisfies the builders' signature.
    let unused = StopSignal::new();
    let mut builder = Worker::builder(store.clone())
        .limits(Limits {
            max_running: args.max_running,
            max_per_account: args.max_per_account,
        })
        .shutdown_timeout(args.shutdown_timeout)
        .lease_ttl(args.lease_ttl)
        .claim_every(args.claim_every);
    if let Some(owner) = &args.owner {
        builder = builder.owner(owner.clone());
    }
    let mut served = Vec::new();
    for (adapter, labels) in adapters {
        served.push(format!("push {}", adapter.platform()));
        config = config.verifier(adapter.clone());
        builder = builder.pusher(open_pusher(store.clone(), adapter, &unused).with_labels(labels));
    }
    if let Some(amazon) = amazon {
        served.push("pull amazon".to_string());
        let (puller, _client) =
            open_puller(amazon, std::future::ready(Ok(store.clone())), &unused).await?;
        builder = builder.puller(puller);
    }
    let worker = builder.build();
    let bound = bound.with_config(config);
    outln!(
        "adsync daemon: listening on http://{addr} (store {}; {})",
        store.location(),
        if served.is_empty() {
            "no platform configured".to_string()
        } else {
            served.join(", ")
        }
    );
    // A command that finds the store locked reads this to say where the
    // daemon is; a store directory we cannot write to only loses the hint.
    // A shared store has no directory: it is not locked by one process.
    let _announced = dir.and_then(|dir| {
        adsync_daemon::announce(&dir, &format!("http://{addr}"))
            .map_err(
                |e| tracing::warn!(error = %e, "cannot announce the daemon in the store directory"),
            )
            .ok()
    });
    let stopped = bound
        .serve(worker, first_signal())
        .await
        .map_err(daemon_failure)?;
    if stopped.cut_off.is_empty() {
        errln!("adsync daemon: stopped");
    } else {
        errln!(
            "adsync daemon: stopped; effects cut off at the deadline (looked up at the next start): {}",
            stopped.cut_off.join(", ")
        );
    }
    Ok(Exit::Ok)
}

/// Opens the sled store in `db`, saying what to do when it is locked.
async fn open_dir(db: &Path) -> Result<Store, Failure> {
    Store::open_from_async(db).await.map_err(|e| {
        let locked = matches!(e, adsync::StoreError::Locked { .. });
        let mut failure = Failure::from(e);
        let shown = db.display().to_string();
        if !failure.message.contains(&shown) {
            failure.message = format!("cannot open the store {shown}: {}", failure.message);
        }
        if locked && !failure.message.contains("`adsync daemon` (pid") {
            failure
                .message
                .push_str("; is another `adsync daemon` (or adsync command) running on it?");
        }
        failure
    })
}

/// The Amazon client settings when its credentials are in the environment.
fn amazon_config() -> Result<Option<AmazonConfig>, Failure> {
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
    match (env("ADSYNC_AMAZON_CLIENT_ID"), env("ADSYNC_AMAZON_TOKEN")) {
        (Some(client_id), Some(token)) => {
            let host = env("ADSYNC_AMAZON_HOST").unwrap_or_else(|| DEFAULT_HOST.to_string());
            Ok(Some(
                AmazonConfig::new(client_id, token).with_host(client_host(&host)),
            ))
        }
        (None, None) => Ok(None),
        _ => Err(Failure::usage(
            "Amazon pulls need both ADSYNC_AMAZON_TOKEN and ADSYNC_AMAZON_CLIENT_ID (or neither)",
        )),
    }
}

fn daemon_failure(e: DaemonError) -> Failure {
    match e {
        // Fixed by other flags or environment: usage.
        DaemonError::TokenRequired { .. } | DaemonError::Bind { .. } => {
            Failure::usage(e.to_string())
        }
        DaemonError::Worker(adsync::WorkerError::Run(run)) => Failure::from(run),
        DaemonError::Worker(_) | DaemonError::Serve(_) => Failure::failed(e.to_string()),
    }
}

/// Completes at the first SIGTERM or SIGINT; a second one exits at once
/// (130/143): the checkpoints make that safe, a create cut off is looked up
/// at the next start.
fn first_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    let (first, received) = tokio::sync::oneshot::channel::<()>();
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut int), Ok(mut term)) => {
            tokio::spawn(async move {
                let signal = tokio::select! {
                    _ = int.recv() => libc::SIGINT,
                    _ = term.recv() => libc::SIGTERM,
                };
                errln!("adsync daemon: stopping (signal again to exit at once)");
                let _ = first.send(());
                tokio::select! {
                    _ = int.recv() => {},
                    _ = term.recv() => {},
                }
                errln!("adsync daemon: exiting at once; the last checkpoints are durable");
                std::process::exit(i32::from(Exit::Interrupted(signal).code()));
            });
        }
        _ => {
            tracing::warn!("cannot install signal handlers; SIGTERM will exit at once");
            std::mem::forget(first);
        }
    }
    async move {
        let _ = received.await;
    }
}
