//! The `adsync` command line: the same engine as the library, with a store on disk.
//!
//! Exit codes: 0 everything synced; 1 a sync failed; 2 bad input or usage;
//! 3 a sync needs attention; 4 the store could not be used (locked, corrupt);
//! 5 a sync stopped unfinished because the platform was unavailable (resume it later);
//! 130/143 stopped by SIGINT/SIGTERM at a durable checkpoint (the printed command continues).

#[macro_use]
mod stdout;
mod demo;
mod output;
mod pull_cli;
mod reddit_cli;
mod signals;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use adsync::adapter::PushAdapter;
use adsync::clock::{Clock, SystemClock};
use adsync::machine::Status;
use adsync::model::CampaignSet;
use adsync::platform::memory::MemoryPlatform;
use adsync::push::{PushError, PushMachine, PushOutcome, Pusher, SetReport};
#[cfg(feature = "test-hooks")]
use adsync::runner::{HookPoint, HookWhen};
use adsync::runner::{RunError, Runner};
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
3 a sync needs attention; 4 the store could not be used (locked, corrupt); \
5 a sync stopped unfinished because the platform was unavailable (resume it later); \
130/143 stopped by SIGINT/SIGTERM at a durable checkpoint (the printed command continues).\n\
Environment: ADSYNC_DB (store), ADSYNC_REDDIT_BASE_URL, ADSYNC_REDDIT_TOKEN, \
ADSYNC_REDDIT_USER_AGENT (--platform reddit), ADSYNC_AMAZON_HOST, ADSYNC_AMAZON_CLIENT_ID, \
ADSYNC_AMAZON_TOKEN (pull), RUST_LOG (log filter)."
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
    /// The in-memory platform, kept in a JSON file beside the store
    /// (`<db>.memory-platform.json`) unless `--memory-file` names another.
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
    /// Resumes interrupted syncs (push or pull), or all of them. Platform,
    /// account and API base URL come from each sync's checkpoint; credentials
    /// from the environment (or flags). Flags, when given, must agree.
    Resume {
        /// The syncs to resume.
        syncs: Vec<String>,
        /// Resume every unfinished sync, push and pull, and name those that
        /// need attention.
        #[arg(long, conflicts_with = "syncs")]
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
        /// Where to verify an adopted id: taken from the sync's checkpoint;
        /// flags stand in for syncs started before it was recorded, and must
        /// agree with it when given. Credentials come from the environment.
        #[command(flatten)]
        platform: PlatformArgs,
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
            // Nothing failed: the push was refused before it started.
            PushError::Unfinished { .. } => Failure::usage(e.to_string()),
            PushError::NeedsAttention { .. } => Failure {
                code: 3,
                message: e.to_string(),
            },
        }
    }
}

fn main() -> ExitCode {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let given = Given::of(&matches);
    init_logs(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            errln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(4);
        }
    };
    match runtime.block_on(run(cli, given)) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            errln!("error: {}", f.message);
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
    // Colour codes only for a terminal: piped or captured logs stay plain text.
    // A failed log write is dropped rather than reported on stderr again,
    // which would panic when stderr is the closed end of a pipe.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .log_internal_errors(false)
        .try_init();
}

/// Which platform flags of `resume` were given (on the command line or in
/// the environment) rather than defaulted: only those must agree with a
/// checkpoint.
#[derive(Debug, Default, Clone, Copy)]
struct Given {
    platform: bool,
    reddit_base_url: bool,
}

impl Given {
    fn of(matches: &clap::ArgMatches) -> Self {
        let Some(("resume" | "resolve", sub)) = matches.subcommand() else {
            return Given::default();
        };
        let given = |id: &str| {
            matches!(
                sub.value_source(id),
                Some(
                    clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable
                )
            )
        };
        Given {
            platform: given("platform"),
            reddit_base_url: given("base_url"),
        }
    }
}

async fn run(cli: Cli, given: Given) -> Result<u8, Failure> {
    match cli.command {
        Command::Demo => demo::run().await,
        Command::FakeServer {
            platform: FakeServerPlatform::Reddit(args),
        } => args.run().await,
        Command::Validate { set } => {
            let set = CampaignSet::from_file(&set).map_err(|e| Failure::usage(e.to_string()))?;
            let entities = set.entity_count();
            outln!(
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
                out!("{}", table.to_mermaid());
            } else if markdown && machine == "pull" {
                out!("{}", adsync::pull::definition_markdown());
            } else if markdown {
                out!("{}", adsync::push::definition_markdown());
            } else {
                out!("{}", table.to_markdown());
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
            let parsed = CampaignSet::from_file(&set).map_err(|e| Failure::usage(e.to_string()))?;
            if account.trim().is_empty() {
                return Err(Failure::usage(
                    "--account must name an ad account, not be empty",
                ));
            }
            let endpoint = Endpoint::of_flags(&cli.db, &platform);
            let adapter = open_adapter(&platform, &endpoint)?;
            let store = Store::open_from_async(&cli.db).await?;
            let set_file = std::path::absolute(&set).unwrap_or(set);
            // Every sync records its endpoint, so `resume --all` needs no flags.
            let db = absolute(store.path());
            let interrupts = signals::Interrupts::install(
                adsync::runner::StopSignal::new(),
                signals::command_line(["adsync", "--db", db.as_str(), "resume", "--all"]),
            );
            let pusher = open_pusher(store, adapter, interrupts.stop_signal())
                .with_labels(endpoint.labels(&set_file.to_string_lossy()));
            let ids = pusher.start(&parsed, &account).await?;
            let observer = progress_observer(&pusher, &ids, json).await;
            let report = pusher.run_all_observed(&ids, observer).await;
            let code = finish(&report, json)?;
            Ok(interrupts.finish().unwrap_or(code))
        }
        Command::Resume {
            syncs,
            all,
            platform,
            json,
        } => resume(&cli.db, syncs, all, &platform, given, json).await,
        Command::Resolve {
            sync,
            adopt,
            absent,
            platform: platform_args,
        } => {
            let store = Store::open_existing_from_async(&cli.db).await?;
            let runner = read_only_runner(store);
            let checkpoint = runner.get(&sync).await?;
            let resume = resume_command(&cli.db, &sync);
            match checkpoint.record.status {
                Status::NeedsAttention => {}
                status @ (Status::Succeeded | Status::Failed) => {
                    return Err(Failure::usage(format!(
                        "sync `{sync}` has finished ({status}); nothing to resolve"
                    )))
                }
                Status::Running => {
                    return Err(Failure::usage(format!(
                        "sync `{sync}` does not need attention: it is unfinished, and `{resume}` continues it"
                    )))
                }
            }
            let outcome = match (adopt, absent) {
                (Some(id), _) => {
                    let endpoint =
                        endpoint_of(&cli.db, &sync, &checkpoint.record, &platform_args, given)?;
                    let adapter = open_adapter(&platform_args, &endpoint)?;
                    adsync::push::verify_adoption(adapter.as_ref(), &checkpoint.state, &id)
                        .await
                        .map_err(|e| Failure {
                            code: if e.is_refusal() { 2 } else { 1 },
                            message: format!(
                                "sync `{sync}`: not adopting {id}: {e}; nothing was recorded"
                            ),
                        })?;
                    PushOutcome::OperatorAdopt { id }
                }
                (None, true) => PushOutcome::OperatorAbsent,
                (None, false) => return Err(Failure::usage("pass --adopt <id> or --absent")),
            };
            let t = runner.resolve(&sync, outcome).await?;
            outln!("{sync}: {} → {}; run `{resume}` to continue", t.from, t.to);
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

/// `path` made absolute (so a suggested command works from any directory).
pub(crate) fn absolute(path: &std::path::Path) -> String {
    std::path::absolute(path)
        .unwrap_or_else(|_| path.to_path_buf())
        .display()
        .to_string()
}

/// A runner for commands that apply outcomes but never perform effects.
fn read_only_runner(store: Arc<Store>) -> Runner<PushMachine> {
    Runner::new(store, Arc::new(SystemClock))
}

/// The command that resumes sync `id`, pushed to `platform`.
/// The command that continues sync `id` (its platform comes from its checkpoint).
fn resume_command(db: &std::path::Path, id: &str) -> String {
    let db = std::path::absolute(db).unwrap_or_else(|_| db.to_path_buf());
    adsync::push::resume_command(&db, &[id.to_string()])
}

/// The name a platform's adapter records in checkpoints.
fn platform_name(platform: Platform) -> &'static str {
    match platform {
        Platform::Memory => "memory",
        Platform::Reddit => "reddit",
    }
}

/// Where a push's platform is: recorded in its syncs' labels at start (never
/// a credential) so that `resume` finds it again without flags.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Endpoint {
    /// The memory platform kept in this file.
    Memory(PathBuf),
    /// Reddit at this API base URL.
    Reddit(String),
}

/// The memory platform's file when `--memory-file` is not given: beside the
/// store (not inside sled's directory), so that pushing twice updates what the
/// first push created instead of forgetting it.
fn default_memory_file(db: &std::path::Path) -> PathBuf {
    match db.file_name() {
        Some(name) => db.with_file_name(format!("{}.memory-platform.json", name.to_string_lossy())),
        None => db.join("memory-platform.json"),
    }
}

impl Endpoint {
    fn of_flags(db: &std::path::Path, args: &PlatformArgs) -> Self {
        match args.platform {
            Platform::Memory => {
                let file = args
                    .memory_file
                    .clone()
                    .unwrap_or_else(|| default_memory_file(db));
                Endpoint::Memory(std::path::absolute(&file).unwrap_or(file))
            }
            Platform::Reddit => Endpoint::Reddit(args.reddit.base_url().to_string()),
        }
    }

    fn platform(&self) -> &'static str {
        match self {
            Endpoint::Memory(_) => "memory",
            Endpoint::Reddit(_) => "reddit",
        }
    }

    fn labels(&self, set_file: &str) -> std::collections::BTreeMap<String, String> {
        let (key, value) = match self {
            Endpoint::Memory(file) => ("memory_file", file.to_string_lossy().into_owned()),
            Endpoint::Reddit(url) => ("base_url", url.clone()),
        };
        std::collections::BTreeMap::from([
            (key.to_string(), value),
            ("set_file".to_string(), set_file.to_string()),
        ])
    }

    /// The flags that name this endpoint again (for suggested commands).
    fn flags(&self) -> String {
        match self {
            Endpoint::Memory(file) => format!(
                "--platform memory --memory-file {}",
                adsync::push::shell_quote(&file.to_string_lossy())
            ),
            Endpoint::Reddit(url) => format!(
                "--platform reddit --reddit-base-url {}",
                adsync::push::shell_quote(url)
            ),
        }
    }
}

/// The adapter for `endpoint`: a bad flag or variable is a usage error, found
/// before the store is opened or any request is sent.
fn open_adapter(args: &PlatformArgs, endpoint: &Endpoint) -> Result<Arc<dyn PushAdapter>, Failure> {
    Ok(match endpoint {
        Endpoint::Memory(path) => Arc::new(
            MemoryPlatform::open_file(path, Arc::new(SystemClock))
                .map_err(|e| Failure::usage(e.to_string()))?,
        ),
        Endpoint::Reddit(url) => args.reddit.adapter_at(url)?,
    })
}

fn open_pusher(
    store: Arc<Store>,
    adapter: Arc<dyn PushAdapter>,
    stop: &adsync::runner::StopSignal,
) -> Pusher {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Pusher::new(store, adapter, clock).with_runner(|mut runner| {
        if let Some(hook) = crash_hook_from_env() {
            runner = runner.with_hook(hook);
        }
        runner.with_stop(stop.clone())
    })
}

/// The endpoint a push sync was started against, from its labels; flags that
/// were given must agree (a mismatch names both). A sync started before
/// endpoints were recorded takes the flags'.
fn endpoint_of(
    db: &std::path::Path,
    id: &str,
    record: &adsync::store::Record,
    args: &PlatformArgs,
    given: Given,
) -> Result<Endpoint, Failure> {
    let platform = record
        .labels
        .get("platform")
        .map(String::as_str)
        .unwrap_or("memory");
    let flagged = platform_name(args.platform);
    if given.platform && flagged != platform {
        return Err(Failure::usage(format!(
            "sync `{id}` was pushed to {platform}, but --platform {flagged} was given: drop the flag or pass --platform {platform}"
        )));
    }
    match platform {
        "reddit" => {
            let flag = args.reddit.base_url();
            match record.labels.get("base_url") {
                Some(url) if given.reddit_base_url && url != flag => Err(Failure::usage(format!(
                    "sync `{id}` was pushed to {url}, but the Reddit base URL given (--reddit-base-url or {}) is {flag}: drop it or give {url}",
                    adsync::platform::reddit::ENV_BASE_URL
                ))),
                Some(url) => Ok(Endpoint::Reddit(url.clone())),
                None => Ok(Endpoint::Reddit(flag.to_string())),
            }
        }
        "memory" => {
            let recorded = record.labels.get("memory_file").map(PathBuf::from);
            let flag = args
                .memory_file
                .as_ref()
                .map(|f| std::path::absolute(f).unwrap_or_else(|_| f.clone()));
            match (recorded, flag) {
                (Some(file), Some(flag)) if file != flag => Err(Failure::usage(format!(
                    "sync `{id}` was pushed to the memory platform in {}, but --memory-file {} was given: drop the flag or give that file",
                    file.display(),
                    flag.display()
                ))),
                (Some(file), _) | (None, Some(file)) => Ok(Endpoint::Memory(file)),
                (None, None) => Ok(Endpoint::Memory(default_memory_file(db))),
            }
        }
        other => Err(Failure::usage(format!(
            "sync `{id}` was pushed to platform `{other}`, which this adsync cannot reach"
        ))),
    }
}

/// `adsync resume`: the named syncs, or with `--all` every unfinished one.
async fn resume(
    db: &std::path::Path,
    syncs: Vec<String>,
    all: bool,
    args: &PlatformArgs,
    given: Given,
    json: bool,
) -> Result<u8, Failure> {
    use adsync::machine::Machine as _;
    let store = Store::open_existing_from_async(db).await?;
    let db = store.path().to_path_buf();
    let shown_db = absolute(&db);
    let mut again = vec!["adsync", "--db", shown_db.as_str(), "resume"];
    if all {
        again.push("--all");
    } else {
        again.extend(syncs.iter().map(String::as_str));
    }
    let interrupts = signals::Interrupts::install(
        adsync::runner::StopSignal::new(),
        signals::command_line(again),
    );
    let mut records = Vec::new();
    let mut attention = Vec::new();
    if all {
        let found = store
            .blocking(|store| {
                let mut found = Vec::new();
                for record in store.records(false) {
                    let record = record?;
                    if matches!(record.status, Status::Running | Status::NeedsAttention) {
                        found.push((record.id, record.kind, record.status, record.last_error));
                    }
                }
                Ok::<_, StoreError>(found)
            })
            .await??;
        for (id, kind, status, reason) in found {
            if status == Status::NeedsAttention {
                attention.push((id, reason));
            } else {
                records.push((id, kind));
            }
        }
    } else if syncs.is_empty() {
        return Err(Failure::usage("name a sync to resume, or pass --all"));
    } else {
        for id in syncs {
            let key = id.clone();
            let record = store
                .blocking(move |store| store.record(&key))
                .await??
                .ok_or_else(|| Failure::usage(format!("no sync `{id}` in {}", db.display())))?;
            // A failed pull is resumed (its staged pages are kept); a failed push is final.
            if record.status == Status::Failed && record.kind == PushMachine::KIND {
                return Err(failed_is_final(&db, &id, &record));
            }
            records.push((id, record.kind));
        }
    }
    // Push syncs grouped by where they push to: one adapter per endpoint.
    let mut pushes: std::collections::BTreeMap<Endpoint, Vec<String>> = Default::default();
    let mut pulls = Vec::new();
    for (id, kind) in records {
        if kind == PushMachine::KIND {
            let key = id.clone();
            let record = store
                .blocking(move |store| store.record(&key))
                .await??
                .ok_or_else(|| Failure::usage(format!("no sync `{id}` in {}", db.display())))?;
            let endpoint = endpoint_of(&db, &id, &record, args, given)?;
            pushes.entry(endpoint).or_default().push(id);
        } else if kind == adsync::pull::PullMachine::KIND {
            pulls.push(id);
        } else {
            return Err(Failure::usage(format!(
                "sync `{id}` is a `{kind}` sync, which resume does not know"
            )));
        }
    }
    let mut report = SetReport {
        campaigns: Vec::new(),
        errors: Vec::new(),
    };
    let mut cannot_run = Vec::new();
    for (endpoint, ids) in pushes {
        let pusher = match open_adapter(args, &endpoint) {
            Ok(adapter) => open_pusher(store.clone(), adapter, interrupts.stop_signal()),
            Err(f) => {
                cannot_run.push(format!(
                    "{} ({}: {})",
                    ids.join(", "),
                    endpoint.platform(),
                    f.message
                ));
                continue;
            }
        };
        let observer = progress_observer(&pusher, &ids, json).await;
        let part = pusher.run_all_observed(&ids, observer).await;
        report.campaigns.extend(part.campaigns);
        report.errors.extend(part.errors);
    }
    let mut code = if pushes_ran(&report) {
        finish(&report, json)?
    } else {
        0
    };
    if all && pulls.is_empty() && !pushes_ran(&report) && cannot_run.is_empty() && !json {
        outln!("nothing to resume in {}", db.display());
    }
    for id in pulls {
        match pull_cli::resume(store.clone(), &id, json, &interrupts).await {
            Ok(pulled) => code = worst(code, pulled),
            Err(f) if f.code == 2 => cannot_run.push(format!("{id} (pull: {})", f.message)),
            Err(f) => return Err(f),
        }
    }
    for (id, reason) in &attention {
        // The reason names the candidates (several matches) or the rejection.
        let db = adsync::push::shell_quote(&db.to_string_lossy());
        errln!(
            "needs attention: `{id}`: {}; settle it with `adsync --db {db} resolve {id} --adopt <platform id>` or `adsync --db {db} resolve {id} --absent` (`adsync --db {db} history {id}` shows how it got there)",
            reason.as_deref().unwrap_or("no reason recorded"),
        );
    }
    for c in &cannot_run {
        errln!("cannot resume: {c}");
    }
    if !attention.is_empty() {
        code = worst(code, 3);
    }
    if !cannot_run.is_empty() {
        code = worst(code, 2);
    }
    Ok(interrupts.finish().unwrap_or(code))
}

fn pushes_ran(report: &SetReport) -> bool {
    !report.campaigns.is_empty() || !report.errors.is_empty()
}

/// The exit code that says more: attention (3) over a failure (1) over a
/// sync that could not be run (2) over success.
fn worst(a: u8, b: u8) -> u8 {
    let rank = |c: u8| match c {
        0 => 0,
        2 => 1,
        1 => 2,
        3 => 3,
        _ => 4,
    };
    if rank(b) > rank(a) {
        b
    } else {
        a
    }
}

/// `resume` of a failed sync: failed syncs are final; say how to push again.
fn failed_is_final(db: &std::path::Path, id: &str, record: &adsync::store::Record) -> Failure {
    let labels = &record.labels;
    let endpoint = match (labels.get("base_url"), labels.get("memory_file")) {
        (Some(url), _) => Some(Endpoint::Reddit(url.clone())),
        (None, Some(file)) => Some(Endpoint::Memory(PathBuf::from(file))),
        _ => None,
    };
    let command = match (labels.get("set_file"), labels.get("account"), endpoint) {
        (Some(file), Some(account), Some(endpoint)) => format!(
            "`adsync --db {} push {} --account {} {}`",
            adsync::push::shell_quote(&db.to_string_lossy()),
            adsync::push::shell_quote(file),
            adsync::push::shell_quote(account),
            endpoint.flags()
        ),
        _ => "`adsync push <set file> --account <account>` with the same set".to_string(),
    };
    Failure {
        code: 1,
        message: format!(
            "sync `{id}` failed ({}); failed syncs are final and are not resumed. Push the set again, which starts a new sync and updates what exists: {command}",
            record.last_error.as_deref().unwrap_or("no error recorded")
        ),
    }
}

/// Test-only crash points: `ADSYNC_TEST_CRASH_AT=<n>:<before|after>` kills this
/// process with SIGKILL at the n-th checkpoint write (1-based, all syncs),
/// just before it or just after it is durable. Used by the crash tests, which
/// build the binary with the `test-hooks` feature; release builds have no such
/// hook, so no environment variable can make a user's push kill itself.
#[cfg(not(feature = "test-hooks"))]
fn crash_hook_from_env() -> Option<adsync::runner::Hook> {
    None
}

/// See the other `crash_hook_from_env`: this one is compiled in with the
/// `test-hooks` feature.
#[cfg(feature = "test-hooks")]
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
    for c in report
        .campaigns
        .iter()
        .filter(|c| c.status == Status::Running)
    {
        // Stopped at a durable checkpoint with nothing lost (the platform was
        // unavailable): a later resume continues it.
        errln!(
            "note: sync `{}` stopped unfinished; resume it later with `adsync resume {}`",
            c.sync,
            c.sync
        );
    }
    Ok(if any(Status::NeedsAttention) {
        3
    } else if !report.errors.is_empty() || any(Status::Failed) {
        1
    } else if any(Status::Running) {
        5
    } else {
        0
    })
}
