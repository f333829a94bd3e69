//! `adsync cancel`: stops a push or pull sync for good, keeping every
//! platform id it recorded.

use std::path::Path;
use std::sync::Arc;

use adsync::{
    Cancel, Machine, PullMachine, PushMachine, RunError, Runner, SharedStore, Status, SystemClock,
};

use crate::exit::Exit;
use crate::failure::Failure;
use crate::opened::Opened;
use crate::store_url::StoreUrl;
use crate::suggest::resume_command;

/// Arguments of `adsync cancel`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The sync to cancel (push or pull; `adsync status` lists them).
    pub(crate) sync: String,
}

/// What a cancel did, said the same way for both machines.
enum Done {
    Cancelled,
    Requested,
    Settled(Status),
}

/// `adsync cancel`.
pub async fn run(
    db: &Path,
    shared: Option<&StoreUrl>,
    Args { sync }: Args,
) -> Result<Exit, Failure> {
    let opened = Opened::existing(db, shared).await?;
    let store = opened.store.clone();
    let record = {
        let id = sync.clone();
        store.read(move |s| s.record(&id)).await??
    };
    let Some(record) = record else {
        return Err(RunError::UnknownSync(sync).into());
    };
    // On sled this process holds the store, so no step of the sync is in
    // flight: a cancel lands now, unless a create may have been in flight
    // when the last process died (then it lands right after the look-up).
    // On a shared store a daemon may be running it: the runner then only
    // makes the request durable, for the holder to act on.
    let done = if record.kind == PullMachine::KIND {
        cancel::<PullMachine>(store, &sync).await?
    } else {
        cancel::<PushMachine>(store, &sync).await?
    };
    match done {
        Done::Cancelled => {
            println!("sync `{sync}` cancelled; every platform id it recorded is kept")
        }
        Done::Requested if opened.is_shared() => println!(
            "sync `{sync}`: cancel requested. The daemon that holds it (or claims it next) \
             cancels it at its next step, after looking up a create that may be in flight"
        ),
        Done::Requested => println!(
            "sync `{sync}`: cancel requested. Its last create may have been sent before the \
             process that ran it stopped; `{}` looks the entity up, records it, then cancels",
            resume_command(db, &sync)
        ),
        Done::Settled(status) => {
            return Err(Failure::usage(format!(
                "sync `{sync}` has finished ({status}); nothing to cancel"
            )))
        }
    }
    Ok(Exit::Ok)
}

async fn cancel<M: Machine + adsync::CheckpointCodec>(
    store: SharedStore,
    sync: &str,
) -> Result<Done, Failure> {
    let runner = Runner::<M>::new(store, Arc::new(SystemClock));
    Ok(match runner.cancel(sync).await? {
        Cancel::Cancelled(_) => Done::Cancelled,
        Cancel::Requested => Done::Requested,
        Cancel::AlreadySettled(status) => Done::Settled(status),
    })
}
