//! `adsync resolve`: settles a sync that needs attention, by adopting an
//! entity that exists or recording that it does not.

use std::path::Path;

use adsync::PushOutcome;
use adsync::Status;

use crate::endpoint::{endpoint_of, open_adapter};
use crate::exit::Exit;
use crate::failure::Failure;
use crate::opened::Opened;
use crate::platform_args::{Given, PlatformArgs};
use crate::pushing::read_only_runner;
use crate::store_url::StoreUrl;
use crate::suggest::resume_command;

/// Arguments of `adsync resolve`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The parked sync.
    pub(crate) sync: String,
    /// The platform id of the entity to adopt.
    #[arg(long, conflicts_with = "absent", required_unless_present = "absent")]
    pub(crate) adopt: Option<String>,
    /// The entity does not exist on the platform: create it on resume.
    #[arg(long)]
    pub(crate) absent: bool,
    /// Where to verify an adopted id: taken from the sync's checkpoint;
    /// flags stand in for syncs started before it was recorded, and must
    /// agree with it when given. Credentials come from the environment.
    #[command(flatten)]
    platform: PlatformArgs,
}

/// `adsync resolve`; `given` says which platform flags were not defaulted.
pub async fn run(
    db: &Path,
    shared: Option<&StoreUrl>,
    args: Args,
    given: Given,
) -> Result<Exit, Failure> {
    let Args {
        sync,
        adopt,
        absent,
        platform: platform_args,
    } = args;
    let opened = Opened::existing(db, shared).await?;
    let runner = read_only_runner(opened.store.clone());
    let checkpoint = runner.get(&sync).await?;
    // On a shared store the daemons continue a sync once it runs again.
    let (unfinished, next) = if opened.is_shared() {
        let daemon = "a daemon on this store continues it";
        (format!("; {daemon}"), daemon.to_string())
    } else {
        let resume = resume_command(db, &sync);
        (
            format!(", and `{resume}` continues it"),
            format!("run `{resume}` to continue"),
        )
    };
    match checkpoint.record.status {
        Status::NeedsAttention => {}
        status @ (Status::Succeeded | Status::Failed | Status::Cancelled) => {
            return Err(Failure::usage(format!(
                "sync `{sync}` has finished ({status}); nothing to resolve"
            )))
        }
        Status::Running => {
            return Err(Failure::usage(format!(
                "sync `{sync}` does not need attention: it is unfinished{unfinished}"
            )))
        }
    }
    let outcome = match (adopt, absent) {
        (Some(id), _) => {
            let endpoint = endpoint_of(db, &sync, &checkpoint.record, &platform_args, given)?;
            let adapter = open_adapter(&platform_args, &endpoint)?;
            adsync::verify_adoption(adapter.as_ref(), &checkpoint.state, &id)
                .await
                .map_err(|e| Failure {
                    exit: if e.is_refusal() {
                        Exit::BadInput
                    } else {
                        Exit::SyncFailed
                    },
                    message: format!("sync `{sync}`: not adopting {id}: {e}; nothing was recorded"),
                })?;
            PushOutcome::OperatorAdopt { id }
        }
        (None, true) => PushOutcome::OperatorAbsent,
        (None, false) => return Err(Failure::usage("pass --adopt <id> or --absent")),
    };
    let t = runner.resolve(&sync, outcome).await?;
    outln!("{sync}: {} → {}; {next}", t.from, t.to);
    Ok(Exit::Ok)
}
