//! The `adsync` command line: the same engine as the library, with a store on
//! disk. This file parses the command line and dispatches to one function per
//! command (`cmd/`); how it ends is an [`exit::Exit`].

#[macro_use]
mod stdout;
mod activity;
mod cmd;
mod crash_hook;
mod daemon_client;
mod endpoint;
mod exit;
mod failure;
mod format;
mod logs;
mod opened;
mod platform_args;
mod progress;
mod pulling;
mod pushing;
mod report;
mod signals;
mod store_url;
mod suggest;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::exit::Exit;
use crate::failure::Failure;
use crate::platform_args::Given;

/// mimalloc instead of the system allocator: a sync step makes a few dozen
/// small allocations, and glibc's malloc made them a large share of a step's CPU.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// mimalloc's `purge_delay` option: its index in `mi_option_t` (the same in
/// mimalloc v2 and v3), and its defaults in milliseconds (v2: 10, v3: 1000).
const MI_OPTION_PURGE_DELAY: i32 = 15;
const MI_PURGE_DELAY_DEFAULTS: [std::os::raw::c_long; 2] = [10, 1000];

extern "C" {
    fn mi_option_get(option: i32) -> std::os::raw::c_long;
    fn mi_option_set(option: i32, value: std::os::raw::c_long);
}

/// Makes mimalloc give freed memory back to the system at once, not after
/// its purge delay (a second in the mimalloc linked here). A pull frees a few
/// buffers of a page's size on several threads for every page, and sled's
/// cache replaces the values it holds; with the delay, what was freed but not
/// yet given back was about a quarter of the pull's peak RSS
/// (docs/performance.md, "Pull memory"). Left alone when
/// `MIMALLOC_PURGE_DELAY` is set, or when the option holds neither default (a
/// mimalloc whose option list differs).
fn purge_freed_memory_at_once() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: plain calls into the allocator linked above (libmimalloc-sys),
    // which reads and sets an integer option; any index is accepted.
    unsafe {
        if MI_PURGE_DELAY_DEFAULTS.contains(&mi_option_get(MI_OPTION_PURGE_DELAY)) {
            mi_option_set(MI_OPTION_PURGE_DELAY, 0);
        }
    }
}

/// Keeps advertising campaigns in sync with ad platforms, checkpointing every step.
#[derive(Debug, Parser)]
#[command(
    name = "adsync",
    version,
    about,
    after_help = format!("{}\n\
Environment: ADSYNC_DB (store), ADSYNC_STORE_URL (shared store), ADSYNC_REDDIT_BASE_URL, ADSYNC_REDDIT_TOKEN, \
ADSYNC_REDDIT_USER_AGENT (--platform reddit), ADSYNC_AMAZON_HOST, ADSYNC_AMAZON_CLIENT_ID, \
ADSYNC_AMAZON_TOKEN (pull), RUST_LOG (log filter).", Exit::help_paragraph())
)]
struct Cli {
    /// The checkpoint store (a sled directory).
    #[arg(long, global = true, env = "ADSYNC_DB", default_value = "adsync.db")]
    db: PathBuf,
    /// A PostgreSQL store that several daemons share, instead of --db:
    /// `daemon` and `migrate` run on it; `status`, `show`, `history`,
    /// `cancel`, `resolve`, `plan` and `drift` read and settle its syncs
    /// directly; `store copy` fills it; `push`, `pull` and `resume` go
    /// through a daemon (--daemon). Its password never appears in any output.
    #[arg(
        long,
        global = true,
        env = "ADSYNC_STORE_URL",
        value_name = "postgres://…",
        value_parser = store_url::StoreUrl::parse,
        hide_env_values = true
    )]
    store: Option<store_url::StoreUrl>,
    /// Talk to the `adsync daemon` at this URL instead of opening the store
    /// (push, pull, status, show, history, cancel, resolve). Its token, when it listens
    /// beyond loopback, comes from ADSYNC_DAEMON_TOKEN.
    #[arg(long, global = true, env = "ADSYNC_DAEMON_URL", value_name = "URL")]
    daemon: Option<String>,
    /// More logs on stderr (-v: info, -vv: debug).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Pushes the example campaign set over HTTP to an in-process fake Reddit Ads
    /// server, with a lost response and a simulated crash, resumes, and shows
    /// there are no duplicates.
    Demo,
    /// Pushes a campaign-set file: one sync per campaign.
    Push(cmd::push::Args),
    /// Shows what `push` of a set would do, entity by entity (create, update
    /// field by field with drift, adopt, replace, prune, refuse), from what
    /// the platform lists now. Writes nothing.
    Plan(cmd::plan::Args),
    /// Shows where the platform no longer holds what adsync last wrote, for
    /// every campaign it manages on an account (no set file). Writes nothing.
    Drift(cmd::drift::Args),
    /// Resumes interrupted syncs (push or pull), or all of them. Platform,
    /// account and API base URL come from each sync's checkpoint; credentials
    /// from the environment (or flags). Flags, when given, must agree.
    Resume(cmd::resume::Args),
    /// Settles a sync that needs attention: the entity exists (adopt its id) or not.
    Resolve(cmd::resolve::Args),
    /// Cancels a push or pull sync for good, keeping every platform id it
    /// recorded. Never while a create's outcome is unknown: that is looked
    /// up first (by `resume`).
    Cancel(cmd::cancel::Args),
    /// Lists every sync with its status.
    Status(cmd::status::Args),
    /// Shows the transitions of one sync.
    History(cmd::history::Args),
    /// Prints a machine's definition: its transition table, or a Mermaid diagram.
    Machines(cmd::machines::Args),
    /// Checks a campaign-set file without touching the store.
    Validate(cmd::validate::Args),
    /// Pulls a profile's campaigns, ad groups and keywords into the store
    /// (resumes an interrupted or failed pull of the profile).
    Pull(cmd::pull::Args),
    /// Shows what the last completed pull of a profile persisted.
    Show(cmd::show::Args),
    /// Runs the control API (HTTP, JSON) and a worker over the store until
    /// SIGTERM/SIGINT: submissions, schedules, cancel, resolve, metrics.
    Daemon(cmd::daemon::Args),
    /// Runs a local fake of a platform's API (127.0.0.1 only) until Ctrl-C.
    FakeServer(cmd::fake_server::Args),
    /// Applies the schema migrations of a shared store (--store); `adsync
    /// daemon` applies them too when it starts.
    Migrate,
    /// Moves a store: `adsync store copy --from <sled dir> --to postgres://…`
    /// copies every sync into an empty shared store.
    Store(cmd::store_copy::Args),
}

fn main() -> ExitCode {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let cli = match <Cli as clap::FromArgMatches>::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let given = Given::of(&matches);
    if matches!(cli.command, Command::Pull(_)) {
        purge_freed_memory_at_once();
    }
    logs::init_logs(cli.verbose);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            errln!("error: cannot start the async runtime: {e}");
            return Exit::StoreUnusable.into();
        }
    };
    match runtime.block_on(run(cli, given)) {
        Ok(exit) => exit.into(),
        Err(f) => {
            errln!("error: {}", f.message);
            f.exit.into()
        }
    }
}

/// Runs the command `cli` names.
async fn run(cli: Cli, given: Given) -> Result<Exit, Failure> {
    // Commands that never open the store run here whatever --daemon says.
    let local_only = matches!(
        cli.command,
        Command::Demo
            | Command::Machines(_)
            | Command::Validate(_)
            | Command::FakeServer(_)
            | Command::Daemon(_)
            | Command::Migrate
            | Command::Store(_)
    );
    if let (Some(url), false) = (&cli.daemon, local_only) {
        return via_daemon(url, cli.command).await;
    }
    let db = cli.db.as_path();
    let store = cli.store.as_ref();
    // On a shared store the daemons run syncs: a one-shot process running
    // one beside them would hold no lease.
    let runs_syncs = matches!(
        cli.command,
        Command::Push(_) | Command::Pull(_) | Command::Resume(_)
    );
    if store.is_some() && runs_syncs {
        return Err(Failure::usage(format!(
            "`adsync {}` does not run syncs on a shared store (--store) itself: the daemons on \
             that store run them. Send it to one with --daemon URL (or ADSYNC_DAEMON_URL)",
            command_name(&cli.command)
        )));
    }
    match cli.command {
        Command::Demo => cmd::demo::run().await,
        Command::Push(args) => cmd::push::run(db, args).await,
        Command::Plan(args) => cmd::plan::run(db, store, args).await,
        Command::Drift(args) => cmd::drift::run(db, store, args).await,
        Command::Resume(args) => cmd::resume::run(db, args, given).await,
        Command::Resolve(args) => cmd::resolve::run(db, store, args, given).await,
        Command::Cancel(args) => cmd::cancel::run(db, store, args).await,
        Command::Status(args) => cmd::status::run(db, store, args).await,
        Command::History(args) => cmd::history::run(db, store, args).await,
        Command::Machines(args) => cmd::machines::run(args),
        Command::Validate(args) => cmd::validate::run(args),
        Command::Pull(args) => cmd::pull::run(db, args).await,
        Command::Show(args) => cmd::show::run(db, store, args).await,
        Command::Daemon(args) => cmd::daemon::run(db, store, args).await,
        Command::Migrate => cmd::migrate::run(store).await,
        Command::Store(args) => cmd::store_copy::run(store, args).await,
        Command::FakeServer(args) => cmd::fake_server::run(args).await,
    }
}

/// Runs the command `command` names through the daemon at `url`.
async fn via_daemon(url: &str, command: Command) -> Result<Exit, Failure> {
    use cmd::via_daemon;
    let client = daemon_client::DaemonClient::new(url)?;
    match command {
        Command::Push(args) => via_daemon::push(&client, args).await,
        Command::Status(args) => via_daemon::status(&client, args).await,
        Command::History(args) => via_daemon::history(&client, args).await,
        Command::Cancel(args) => via_daemon::cancel(&client, args).await,
        Command::Resolve(args) => via_daemon::resolve(&client, args, ).await,
        Command::Pull(args) => via_daemon::pull(&client, args).await,
        Command::Show(args) => via_daemon::show(&client, args).await,
        Command::Resume(_) => Err(Failure::usage(
            "the daemon resumes unfinished syncs itself when it starts; `resume` is for a store no daemon holds",
        )),
        other => Err(Failure::usage(format!(
            "`{}` does not talk to a daemon yet; run it without --daemon (and without ADSYNC_DAEMON_URL) on a store no daemon holds",
            command_name(&other)
        ))),
    }
}

/// The subcommand's name as typed.
fn command_name(command: &Command) -> &'static str {
    match command {
        Command::Demo => "demo",
        Command::Push(_) => "push",
        Command::Plan(_) => "plan",
        Command::Drift(_) => "drift",
        Command::Resume(_) => "resume",
        Command::Resolve(_) => "resolve",
        Command::Cancel(_) => "cancel",
        Command::Status(_) => "status",
        Command::History(_) => "history",
        Command::Machines(_) => "machines",
        Command::Validate(_) => "validate",
        Command::Pull(_) => "pull",
        Command::Show(_) => "show",
        Command::FakeServer(_) => "fake-server",
        Command::Daemon(_) => "daemon",
        Command::Migrate => "migrate",
        Command::Store(_) => "store",
    }
}
