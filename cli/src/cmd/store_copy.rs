//! `adsync store copy --from <sled dir> --to postgres://…`: moves a sled
//! store to a shared PostgreSQL store (`PgStore::import`).

use std::path::{Path, PathBuf};

use adsync::{CheckpointStore, Status, Store, StoreError};
use adsync_postgres::{CopyError, Imported, Migrated};

use crate::exit::Exit;
use crate::failure::Failure;
use crate::store_url::StoreUrl;

/// Arguments of `adsync store`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: StoreCommand,
}

#[derive(Debug, clap::Subcommand)]
enum StoreCommand {
    /// Copies every sync of a sled store (records, history, plans, staged
    /// pull pages, snapshots, schedules, cancel requests) into an empty
    /// PostgreSQL store, in one transaction, and reads it all back to
    /// compare. The sled store is only read. Unfinished syncs are then taken
    /// up by the first `adsync daemon --store …` on the database.
    Copy(CopyArgs),
}

#[derive(Debug, clap::Args)]
struct CopyArgs {
    /// The sled store to copy (its directory). No process may have it open.
    #[arg(long, value_name = "DIR")]
    from: PathBuf,
    /// The PostgreSQL store to copy into: migrated first, and it must hold
    /// nothing. Defaults to --store (ADSYNC_STORE_URL). Its password never
    /// appears in any output.
    #[arg(long, value_name = "postgres://…", value_parser = StoreUrl::parse)]
    to: Option<StoreUrl>,
    /// Print what was copied as JSON.
    #[arg(long)]
    json: bool,
}

/// `adsync store …`; `store` is the global --store, the default of `--to`.
pub async fn run(store: Option<&StoreUrl>, args: Args) -> Result<Exit, Failure> {
    let StoreCommand::Copy(args) = args.command;
    let Some(to) = args.to.as_ref().or(store) else {
        return Err(Failure::usage(
            "`adsync store copy` needs the PostgreSQL store to copy into: --to postgres://… \
             (or --store, or ADSYNC_STORE_URL)",
        ));
    };
    // The source first: a mistyped or busy directory leaves the database
    // untouched, not even migrated.
    let source = open_source(&args.from).await?;
    let (target, migrated) = to.open().await?;
    let imported = target.import(&source).await.map_err(refused)?;
    source.close();
    let to = target.location();
    if args.json {
        print_json(&args.from, &to, migrated, &imported)?;
    } else {
        print_text(&args.from, &to, migrated, &imported);
    }
    Ok(Exit::Ok)
}

/// Opens the sled store at `from` (replaying its write-ahead log), never
/// creating one.
async fn open_source(from: &Path) -> Result<Store, Failure> {
    Store::open_existing_from_async(from)
        .await
        .map_err(|e| match e {
            StoreError::NotFound { path } => Failure::usage(format!(
                "there is no adsync store at {} (--from): nothing was copied",
                path.display()
            )),
            StoreError::Locked { path, .. } => Failure {
                exit: Exit::StoreUnusable,
                message: format!(
                    "the store {} is in use by another process (a daemon, or a push or pull \
                     still running): stop it, then copy again; nothing was copied",
                    path.display()
                ),
            },
            other => other.into(),
        })
}

/// How a refused or failed copy ends.
fn refused(e: CopyError) -> Failure {
    match e {
        // The user pointed at the wrong database, or copies a second time.
        CopyError::Store(e @ StoreError::NotEmpty { .. }) => Failure::usage(format!(
            "{e}. Copy into a new database (or empty this one's tables adsync_kv and \
             adsync_syncs yourself)"
        )),
        CopyError::Store(e) => e.into(),
        e @ (CopyError::CorruptSource { .. } | CopyError::Mismatch { .. }) => Failure {
            exit: Exit::StoreUnusable,
            message: e.to_string(),
        },
    }
}

fn print_text(from: &Path, to: &str, migrated: Migrated, imported: &Imported) {
    let schema = if migrated.from == migrated.to {
        format!("schema version {}", migrated.to)
    } else {
        format!("schema version {} → {}", migrated.from, migrated.to)
    };
    outln!("copied {} → {to} ({schema})", from.display());
    let by_status: Vec<String> = imported
        .syncs
        .iter()
        .map(|(status, n)| format!("{n} {status}"))
        .collect();
    let syncs = imported.sync_count();
    if by_status.is_empty() {
        outln!("  0 syncs");
    } else {
        outln!(
            "  {syncs} sync{}: {}",
            if syncs == 1 { "" } else { "s" },
            by_status.join(", ")
        );
    }
    outln!(
        "  {} keys, {} bytes, read back identical",
        imported.keys,
        imported.bytes
    );
    let running = imported.syncs.get(&Status::Running).copied().unwrap_or(0);
    if running > 0 {
        outln!(
            "  {running} unfinished: the first `adsync daemon --store …` on this database takes \
             them up (an effect that may have been in flight is looked up, not repeated)"
        );
    }
    outln!(
        "  {} is unchanged; stop using it, or the two stores diverge",
        from.display()
    );
}

fn print_json(
    from: &Path,
    to: &str,
    migrated: Migrated,
    imported: &Imported,
) -> Result<(), Failure> {
    let value = serde_json::json!({
        "from": from.display().to_string(),
        "to": to,
        "schema": {"from": migrated.from, "to": migrated.to},
        "syncs": imported.syncs,
        "sync_count": imported.sync_count(),
        "keys": imported.keys,
        "bytes": imported.bytes,
    });
    let text = serde_json::to_string_pretty(&value)
        .map_err(|e| Failure::failed(format!("cannot encode the summary: {e}")))?;
    outln!("{text}");
    Ok(())
}
