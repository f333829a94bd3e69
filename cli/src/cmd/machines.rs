//! `adsync machines`: a machine's transition table, Mermaid diagram or
//! Markdown definition.

use adsync::PullMachine;
use adsync::PushMachine;
use adsync::TransitionTable;

use crate::exit::Exit;
use crate::failure::Failure;

/// Arguments of `adsync machines`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print the Mermaid diagram only.
    #[arg(long, conflicts_with = "markdown")]
    mermaid: bool,
    /// Print the full Markdown definition (as in `state_machines/`).
    #[arg(long)]
    markdown: bool,
    /// Which machine.
    #[arg(default_value = "push")]
    machine: String,
}

/// `adsync machines`.
pub fn run(args: Args) -> Result<Exit, Failure> {
    let Args {
        mermaid,
        markdown,
        machine,
    } = args;
    let derived = match machine.as_str() {
        "push" => TransitionTable::derive::<PushMachine>(),
        "pull" => TransitionTable::derive::<PullMachine>(),
        _ => {
            return Err(Failure::usage(format!(
                "unknown machine `{machine}` (known: push, pull)"
            )))
        }
    };
    let table = derived.map_err(|e| Failure::failed(e.to_string()))?;
    if mermaid {
        out!("{}", table.to_mermaid());
    } else if markdown && machine == "pull" {
        out!("{}", adsync::PullMachine::definition_markdown());
    } else if markdown {
        out!("{}", adsync::PushMachine::definition_markdown());
    } else {
        out!("{}", table.to_markdown());
    }
    Ok(Exit::Ok)
}
