//! The `adsync` command line: the same engine as the library, with a store on disk.
//!
//! Exit codes: 0 everything synced; 1 a sync failed; 2 bad input or usage;
//! 3 a sync needs attention; 4 the store could not be used (locked, corrupt).

mod demo;
mod output;
mod pull_cli;
mod reddit_cli;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use adsync::adapter::PushAdapter;
use adsync::clock::{Clock, SystemClock};
use adsync::machine::Status;
use adsync::model::CampaignSet;
use adsync::platform::memory::MemoryPlatform;
use adsync::push::{AdapterEffects, PushError, PushMachine, PushOutcome, Pusher, SetReport};
use adsync::runner::{HookPoint, HookWhen, RunError, Runner};
use adsync::store::{Store, StoreError};
use clap::{Parser, Subcommand, ValueEnum};

/// mimalloc instead of the system allocator. A sync step makes a few dozen
/// small allocations (strings of the state, the record's JSON, the commit),
/// and glibc's malloc spent about a third of a step's user-space CPU on them;
/// with mimalloc one push step went from 12–14 µs to 8.5–10 µs of CPU
/// between two log writes (README, Performance).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps advertising campaigns in sync with ad platforms, checkpointing every step.
#[derive(Debug, Parser)]
#[command(
    name = "adsync",
    version,
    about,
    after_help = "Exit codes: 0 everything synced; 1 a sync failed; 2 bad input or usage; \
3 a sync needs attention; 4 the store could not be used (locked, corrupt).\n\
Environment: ADSYNC_DB (store), ADSYNC_REDDIT_BASE_URL, ADSYNC_REDDIT_TOKEN, \
ADSYNC_REDDIT_USER_AGENT (--platform reddit), RUST_LOG (log filter)."
)]
struct Cli {
    /// The checkpoint store (a sled directory).
    #[arg(long, global = true, env = "ADSYNC_DB", default_value = "adsync.db")]
    db: PathBuf,
    /// More logs on stderr (-v: info, -vv: debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Platform {
    /// The in-memory platform (kept in `--memory-file` when given).
    Memory,
    /// Reddit Ads API v3 over HTTP (see the `--reddit-*` flags).
    Reddit,
}

#[derive(Debug, clap::Args)]
struct PlatformArgs {
    /// Where to push.
    #[arg(long, value_enum, default_value = "memory")]
    platform: Platform,
    /// For `--platform memory`: keep the platform in this JSON file across runs.
    #[arg(long)]
    memory_file: Option<PathBuf>,
    #[command(flatten)]
    reddit: reddit_cli::RedditArgs,
}

#[derive(Debug, Subcommand)]
enum FakeServerPlatform {
    /// A local Reddit Ads API v3 on 127.0.0.1, with fault injection.
    Reddit(reddit_cli::FakeServerArgs),
    /// A local Amazon Ads Sponsored Products v3 (list endpoints, `/_admin`).
    Amazon(pull_cli::FakeAmazonArgs),
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Pushes the example campaign set over HTTP to an in-process fake Reddit Ads
    /// server, with a lost response and a simulated crash, resumes, and shows
    /// there are no duplicates.
    Demo,
    /// Pushes a campaign-set file: one sync per campaign.
    Push {
        /// The campaign-set JSON file.
        set: PathBuf,
        /// The ad account to push to.
        #[arg(long)]
        account: String,
        #[command(flatten)]
        platform: PlatformArgs,
        /// Print the final report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Resumes an interrupted sync, or all of them.
    Resume {
        /// The sync to resume.
        sync: Option<String>,
        /// Resume every unfinished push sync of `--platform`.
        #[arg(long, conflicts_with = "sync")]
        all: bool,
        #[command(flatten)]
        platform: PlatformArgs,
        /// Print the final report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Settles a sync that needs attention: the entity exists (adopt its id) or not.
    Resolve {
        /// The parked sync.
        sync: String,
        /// The platform id of the entity to adopt.
        #[arg(long, conflicts_with = "absent", required_unless_present = "absent")]
        adopt: Option<String>,
        /// The entity does not exist on the platform: create it on resume.
        #[arg(long)]
        absent: bool,
    },
    /// Lists every sync with its status.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Shows the transitions of one sync.
    History {
        /// The sync.
        sync: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Prints a machine's definition: its transition table, or a Mermaid diagram.
    Machines {
        /// Print the Mermaid diagram only.
        #[arg(long, conflicts_with = "markdown")]
        mermaid: bool,
        /// Print the full Markdown definition (as in `state_machines/`).
        #[arg(long)]
        markdown: bool,
        /// Which machine.
        #[arg(default_value = "push")]
        machine: String,
    },
    /// Checks a campaign-set file without touching the store.
    Validate {
        /// The campaign-set JSON file.
        set: PathBuf,
    },
    /// Pulls a profile's campaigns, ad groups and keywords into the store
    /// (resumes an interrupted or failed pull of the profile).
    Pull(pull_cli::PullArgs),
    /// Shows what the last completed pull of a profile persisted.
    Show(pull_cli::ShowArgs),
    /// Runs a local fake of a platform's API (127.0.0.1 only) until Ctrl-C.
    FakeServer {
        #[command(subcommand)]
        platform: FakeServerPlatform,
    },
}

/// An error with the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: message.into(),
        }
    }
}

impl From<RunError> for Failure {
    fn from(e: RunError) -> Self {
        let code = match &e {
            RunError::Store(_) | RunError::CorruptState { .. } | RunError::StateVersion { .. } => 4,
            RunError::UnknownSync(_) | RunError::WrongKind { .. } => 2,
            _ => 1,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        // No store at the path given is a mistyped --db: a usage error, not
        // a store that cannot be used.
        let code = match e {
            StoreError::NotFound { .. } => 2,
            _ => 4,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

impl From<PushError> for Failure {
    fn from(e: PushError) -> Self {
        match e {
            PushError::Run(e) => e.into(),
            PushError::InProgress { .. } => Failure {
                code: 1,
                message: e.to_string(),
            },
            PushError::NeedsAttention { .. } => Failure {
                code: 3,
                message: e.to_string(),
            },
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logs(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(4);
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn init_logs(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("adsync={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

async fn run(cli: Cli) -> Result<u8, Failure> {
    match cli.command {
        Command::Demo => demo::run().await,
        Command::FakeServer {
            platform: FakeServerPlatform::Reddit(args),
        } => args.run().await,
        Command::Validate { set } => {
            let set = CampaignSet::from_file(&set).map_err(|e| Failure::usage(e.to_string()))?;
            let entities = set.entity_count();
            println!(
                "ok: `{}`: {} campaigns, {entities} entities",
                set.name,
                set.campaigns.len()
            );
            Ok(0)
        }
        Command::Machines {
            mermaid,
            markdown,
            machine,
        } => {
            let derived = match machine.as_str() {
                "push" => adsync::machine::TransitionTable::derive::<PushMachine>(),
                "pull" => adsync::machine::TransitionTable::derive::<adsync::pull::PullMachine>(),
                _ => {
                    return Err(Failure::usage(format!(
                        "unknown machine `{machine}` (known: push, pull)"
                    )))
                }
            };
            let table = derived.map_err(|e| Failure {
                code: 1,
                message: e.to_string(),
            })?;
            if mermaid {
                print!("{}", table.to_mermaid());
            } else if markdown && machine == "pull" {
                print!("{}", adsync::pull::definition_markdown());
            } else if markdown {
                print!("{}", adsync::push::definition_markdown());
            } else {
                print!("{}", table.to_markdown());
            }
            Ok(0)
        }
        Command::Push {
            set,
            account,
            platform,
            json,
        } => {
            // Parse and validate everything before the store is even opened:
            // bad input writes nothing.
            let set = CampaignSet::from_file(&set).map_err(|e| Failure::usage(e.to_string()))?;
            let pusher = open_pusher(&cli.db, &platform).await?;
            let ids = pusher.start(&set, &account).await?;
            let observer = progress_observer(&pusher, &ids, json).await;
            let report = pusher.run_all_observed(&ids, observer).await;
            finish(&report, json)
        }
        Command::Resume {
            sync,
            all,
            platform,
            json,
        } => {
            let pusher = open_pusher(&cli.db, &platform).await?;
            let ids = match (sync, all) {
                (Some(id), _) => vec![id],
                (None, true) => pusher.unfinished().await?,
                (None, false) => {
                    return Err(Failure::usage("name a sync to resume, or pass --all"))
                }
            };
            // Fail early and clearly on unknown or foreign ids, and never run a
            // sync against another platform than the one it was pushed to.
            let wanted = platform_name(platform.platform);
            let mut mine = Vec::new();
            let mut others = Vec::new();
            for id in ids {
                let checkpoint = pusher.runner().get(&id).await?;
                let theirs = &checkpoint.state.target.platform;
                if theirs == wanted {
                    mine.push(id);
                } else if all {
                    others.push(format!("{id} ({theirs})"));
                } else {
                    return Err(Failure::usage(format!(
                        "sync `{id}` was pushed to {theirs}, not {wanted}: resume it with --platform {theirs}"
                    )));
                }
            }
            if !others.is_empty() {
                eprintln!(
                    "note: not resuming unfinished syncs of other platforms (pass their --platform): {}",
                    others.join(", ")
                );
            }
            let ids = mine;
            let observer = progress_observer(&pusher, &ids, json).await;
            let report = pusher.run_all_observed(&ids, observer).await;
            finish(&report, json)
        }
        Command::Resolve {
            sync,
            adopt,
            absent,
        } => {
            let store = Store::open_from_async(&cli.db).await?;
            let runner = read_only_runner(store);
            let outcome = match (adopt, absent) {
                (Some(id), _) => PushOutcome::OperatorAdopt { id },
                (None, true) => PushOutcome::OperatorAbsent,
                (None, false) => return Err(Failure::usage("pass --adopt <id> or --absent")),
            };
            let t = runner.resolve(&sync, outcome).await?;
            println!(
                "{sync}: {} → {}; run `adsync resume {sync}` to continue",
                t.from, t.to
            );
            Ok(0)
        }
        Command::Status { json } => {
            let store = Store::open_existing_from_async(&cli.db).await?;
            store
                .blocking(move |store| output::status(store, json))
                .await?
        }
        Command::Pull(args) => pull_cli::pull(&cli.db, args).await,
        Command::Show(args) => pull_cli::show(&cli.db, args).await,
        Command::FakeServer {
            platform: FakeServerPlatform::Amazon(args),
        } => pull_cli::fake_server_amazon(args).await,
        Command::History { sync, json } => {
            let store = Store::open_existing_from_async(&cli.db).await?;
            store
                .blocking(move |store| output::history(store, &sync, json))
                .await?
        }
    }
}

/// Prints transitions, with a progress bar over the syncs' entities on a terminal.
async fn progress_observer(pusher: &Pusher, ids: &[String], json: bool) -> adsync::push::Observer {
    let mut syncs = Vec::new();
    for id in ids {
        if let Ok(c) = pusher.runner().get(id).await {
            syncs.push((
                id.clone(),
                c.state.entities.len() as u64,
                output::settled(&c.state),
            ));
        }
    }
    output::printer_with_progress(json, &syncs)
}

/// A runner for commands that apply outcomes but never perform effects.
fn read_only_runner(store: Arc<Store>) -> Runner<PushMachine> {
    struct NoEffects;
    #[async_trait::async_trait]
    impl adsync::runner::Effects<PushMachine> for NoEffects {
        async fn perform(&self, _sync: &str, _effect: &adsync::push::PushEffect) -> PushOutcome {
            PushOutcome::Failed {
                error: adsync::adapter::AdapterError::Transient {
                    message: "no platform configured".into(),
                    retry_after: None,
                },
            }
        }
    }
    Runner::new(store, Arc::new(NoEffects), Arc::new(SystemClock))
}

/// The name a platform's adapter records in checkpoints.
fn platform_name(platform: Platform) -> &'static str {
    match platform {
        Platform::Memory => "memory",
        Platform::Reddit => "reddit",
    }
}

async fn open_pusher(db: &std::path::Path, args: &PlatformArgs) -> Result<Pusher, Failure> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let adapter: Arc<dyn PushAdapter> = match args.platform {
        Platform::Memory => Arc::new(match &args.memory_file {
            Some(path) => MemoryPlatform::open_file(path, clock.clone())
                .map_err(|e| Failure::usage(e.to_string()))?,
            None => MemoryPlatform::new(clock.clone()),
        }),
        Platform::Reddit => args.reddit.adapter()?,
    };
    let store = Store::open_from_async(db).await?;
    let mut runner = Runner::new(
        store,
        Arc::new(AdapterEffects::new(adapter.clone())),
        clock.clone(),
    );
    if let Some(hook) = crash_hook_from_env() {
        runner = runner.with_hook(hook);
    }
    Ok(Pusher::new(Arc::new(runner), adapter.as_ref(), clock))
}

/// Test-only crash points: `ADSYNC_TEST_CRASH_AT=<n>:<before|after>` kills this
/// process with SIGKILL at the n-th checkpoint write (1-based, all syncs),
/// just before it or just after it is durable. Used by the crash tests.
fn crash_hook_from_env() -> Option<adsync::runner::Hook> {
    let spec = std::env::var("ADSYNC_TEST_CRASH_AT").ok()?;
    let (n, when) = spec.split_once(':')?;
    let n: u64 = n.parse().ok()?;
    let when = match when {
        "before" => HookWhen::BeforeCommit,
        "after" => HookWhen::AfterCommit,
        _ => return None,
    };
    // Concurrent syncs interleave their boundaries, so the n-th "before" is
    // remembered by (sync, seq) and its own "after" is the one that kills.
    let seen = std::sync::atomic::AtomicU64::new(0);
    let target = std::sync::Mutex::new(None::<(String, u64)>);
    Some(Arc::new(move |point: &HookPoint| {
        let kill = || {
            // SAFETY: raising a signal on our own process has no memory-safety preconditions.
            unsafe {
                libc::raise(libc::SIGKILL);
            }
        };
        match point.when {
            HookWhen::BeforeCommit => {
                if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1 == n {
                    if when == HookWhen::BeforeCommit {
                        kill();
                    }
                    *target.lock().unwrap_or_else(|p| p.into_inner()) =
                        Some((point.sync.clone(), point.seq));
                }
            }
            HookWhen::AfterCommit => {
                let target = target.lock().unwrap_or_else(|p| p.into_inner());
                if target.as_ref() == Some(&(point.sync.clone(), point.seq)) {
                    kill();
                }
            }
        }
    }))
}

fn finish(report: &SetReport, json: bool) -> Result<u8, Failure> {
    output::report(report, json);
    let any = |s: Status| report.campaigns.iter().any(|c| c.status == s);
    Ok(if any(Status::NeedsAttention) {
        3
    } else if !report.errors.is_empty() || any(Status::Failed) || any(Status::Running) {
        1
    } else {
        0
    })
}
