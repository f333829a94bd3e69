//! `adsync show`: what the last completed pull of a profile persisted.

use std::path::Path;

use adsync::amazon::{SpAdGroup, SpCampaign, SpKeyword};
use adsync::PullReader;
use adsync::Store;
use clap::ValueEnum;

use crate::exit::Exit;
use crate::failure::Failure;
use crate::platform_args::{ProfileArgs, PullPlatform};
use crate::pulling::print_statuses;

/// What `adsync show` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ShowKind {
    /// Counts and sync status only.
    Summary,
    /// Campaigns.
    Campaigns,
    /// Ad groups.
    AdGroups,
    /// Keywords.
    Keywords,
}

/// Arguments of `adsync show`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pulled: ProfileArgs,
    /// What to print.
    #[arg(long, value_enum, default_value = "summary")]
    kind: ShowKind,
    /// Only the entity with this platform id (with --kind).
    #[arg(long)]
    id: Option<String>,
    /// At most this many entities.
    #[arg(long)]
    limit: Option<usize>,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// `adsync show`.
pub async fn run(db: &Path, args: Args) -> Result<Exit, Failure> {
    let PullPlatform::Amazon = args.pulled.platform;
    let store = Store::open_existing_from_async(db)
        .await
        .map_err(Failure::from)?;
    let reader = PullReader::new(store);
    let profile = args.pulled.profile.as_str();
    let limit = args.limit.unwrap_or(usize::MAX);
    let status = reader.status(profile).await?;
    match args.kind {
        ShowKind::Summary => {
            let Some(status) = status else {
                return Err(Failure::usage(format!(
                    "profile {profile} was never pulled"
                )));
            };
            print_statuses(&[status], args.json);
            Ok(Exit::Ok)
        }
        ShowKind::Campaigns => {
            let items = select::<SpCampaign>(&reader, profile, args.id.as_deref(), limit).await?;
            print_items(&items, args.json, |c| {
                format!(
                    "{:<16} {:<13} {:<7} {:>10.2} {}",
                    c.campaign_id,
                    enum_text(&c.state),
                    enum_text(&c.targeting_type),
                    c.budget.budget,
                    c.name
                )
            });
            Ok(found(args.id.as_deref(), items.len()))
        }
        ShowKind::AdGroups => {
            let items = select::<SpAdGroup>(&reader, profile, args.id.as_deref(), limit).await?;
            print_items(&items, args.json, |g| {
                format!(
                    "{:<16} {:<16} {:<13} {:>8.2} {}",
                    g.ad_group_id,
                    g.campaign_id,
                    enum_text(&g.state),
                    g.default_bid,
                    g.name
                )
            });
            Ok(found(args.id.as_deref(), items.len()))
        }
        ShowKind::Keywords => {
            let items = select::<SpKeyword>(&reader, profile, args.id.as_deref(), limit).await?;
            print_items(&items, args.json, |k| {
                format!(
                    "{:<16} {:<16} {:<13} {:<6} {:>8} {}",
                    k.keyword_id,
                    k.ad_group_id,
                    enum_text(&k.state),
                    enum_text(&k.match_type),
                    k.bid.map_or("default".to_string(), |b| format!("{b:.2}")),
                    k.keyword_text
                )
            });
            Ok(found(args.id.as_deref(), items.len()))
        }
    }
}

/// Asked for one entity by id and it is not there: exit 1, like a failed look-up.
fn found(id: Option<&str>, n: usize) -> Exit {
    match (id, n) {
        (Some(_), 0) => Exit::SyncFailed,
        _ => Exit::Ok,
    }
}

fn enum_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

async fn select<T: adsync::amazon::SpEntity + Send + 'static>(
    reader: &PullReader,
    profile: &str,
    id: Option<&str>,
    limit: usize,
) -> Result<Vec<T>, Failure> {
    Ok(match id {
        Some(id) => reader.find::<T>(profile, id).await?.into_iter().collect(),
        None => {
            let mut items = reader.entities::<T>(profile).await?;
            items.truncate(limit);
            items
        }
    })
}

fn print_items<T: serde::Serialize>(items: &[T], json: bool, line: impl Fn(&T) -> String) {
    if json {
        outln!(
            "{}",
            serde_json::to_string_pretty(items).unwrap_or_default()
        );
    } else {
        for item in items {
            outln!("{}", line(item));
        }
    }
}
