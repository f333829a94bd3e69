//! `adsync show`: what the last completed pull of a profile persisted.

use std::path::Path;

use adsync::amazon::{Items, ListKind, SpAdGroup, SpCampaign, SpKeyword};
use adsync::{ProfileSnapshot, PullReader};
use clap::ValueEnum;

use crate::exit::Exit;
use crate::failure::Failure;
use crate::opened::Opened;
use crate::platform_args::{ProfileArgs, PullPlatform};
use crate::pulling::{print_shown, ShownPull};
use crate::store_url::StoreUrl;

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
    pub(crate) pulled: ProfileArgs,
    /// What to print (default: summary).
    #[arg(long, value_enum)]
    pub(crate) kind: Option<ShowKind>,
    /// Only the entity with this platform id; without --kind (or with
    /// --kind summary) it is looked for among campaigns, ad groups and
    /// keywords.
    #[arg(long)]
    pub(crate) id: Option<String>,
    /// At most this many entities.
    #[arg(long)]
    pub(crate) limit: Option<usize>,
    /// Print JSON. When nothing is found (exit 6) it is an object
    /// `{"found": false, "error": …, "profile": …, "kind": …, "id": …}`.
    #[arg(long)]
    pub(crate) json: bool,
}

/// `adsync show`.
///
/// One rule for everything asked for that is not there — a profile never
/// pulled, a profile whose pulls never completed (asked for entities), an
/// entity id the current snapshot lacks: a message on stderr, the
/// `{"found": false, …}` object on stdout with `--json`, and
/// [`Exit::NotFound`]. An empty list is printed only for a completed pull
/// that persisted none of that kind.
pub async fn run(db: &Path, shared: Option<&StoreUrl>, args: Args) -> Result<Exit, Failure> {
    let PullPlatform::Amazon = args.pulled.platform;
    let opened = Opened::existing(db, shared).await?;
    let store = opened.store.clone();
    let reader = PullReader::new(store.clone());
    let profile = args.pulled.profile.as_str();
    let limit = args.limit.unwrap_or(usize::MAX);
    let id = args.id.as_deref();
    let kind = args.kind.unwrap_or(ShowKind::Summary);
    let missing = Missing {
        profile,
        kind: args.kind,
        id,
        json: args.json,
    };
    // Validates the profile id (a bad one is a usage error) before any read.
    let Some(status) = reader.status(profile).await? else {
        return Ok(missing.report(&format!(
            "profile {profile} was never pulled (`adsync pull --platform amazon --profile {profile}` pulls it)"
        )));
    };
    // The record again, for whether the pull is interrupted (its time).
    let sync = status.sync.clone();
    let record = store.read(move |store| store.record(&sync)).await??;
    let watch = opened.watch().await?;
    let shown = record
        .as_ref()
        .and_then(|r| ShownPull::from_record(r, &watch))
        // Unreadable as a pull after `status` read it: what `status` said.
        .unwrap_or(ShownPull {
            status,
            activity: crate::activity::Activity::Settled,
        });
    if kind == ShowKind::Summary && id.is_none() {
        print_shown(std::slice::from_ref(&shown), args.json);
        return Ok(Exit::Ok);
    }
    let status = &shown.status;
    if status.counts.is_none() {
        let next = if opened.is_shared() {
            "a daemon on this store continues it".to_string()
        } else {
            format!("`adsync resume {}` continues it", status.sync)
        };
        return Ok(missing.report(&format!(
            "profile {profile} has no completed pull (its pull `{}` is {}; {next})",
            status.sync,
            shown.state(),
        )));
    }
    let source = Entities::Store(&reader);
    let what = format!(
        "pull #{} of {}",
        status.run,
        crate::format::rfc3339_or_dash(status.last_success_at)
    );
    print_entities(&source, &missing, kind, limit, &what).await
}

/// `show --daemon`: the same output, from the daemon's answers. `summary`
/// is the line it printed for the profile's pull, `None` if never pulled;
/// `snapshot` its current snapshot, `None` if no pull completed.
pub(crate) async fn from_daemon(
    args: Args,
    summary: Option<String>,
    snapshot: Option<ProfileSnapshot>,
) -> Result<Exit, Failure> {
    let profile = args.pulled.profile.as_str();
    let id = args.id.as_deref();
    let kind = args.kind.unwrap_or(ShowKind::Summary);
    let missing = Missing {
        profile,
        kind: args.kind,
        id,
        json: args.json,
    };
    let Some(summary) = summary else {
        return Ok(missing.report(&format!(
            "profile {profile} was never pulled (`adsync pull --platform amazon --profile {profile}` pulls it)"
        )));
    };
    if kind == ShowKind::Summary && id.is_none() {
        outln!("{summary}");
        return Ok(Exit::Ok);
    }
    let Some(snapshot) = snapshot else {
        return Ok(missing.report(&format!(
            "profile {profile} has no completed pull ({summary})"
        )));
    };
    let what = format!(
        "generation {} of {}",
        snapshot.info.generation,
        crate::format::rfc3339(snapshot.info.completed_at)
    );
    let source = Entities::Snapshot(&snapshot);
    print_entities(
        &source,
        &missing,
        kind,
        args.limit.unwrap_or(usize::MAX),
        &what,
    )
    .await
}

/// Prints the entities asked for, or says which is missing.
async fn print_entities(
    source: &Entities<'_>,
    missing: &Missing<'_>,
    kind: ShowKind,
    limit: usize,
    what: &str,
) -> Result<Exit, Failure> {
    let (profile, id, json) = (missing.profile, missing.id, missing.json);
    let printed = match kind {
        ShowKind::Summary => {
            // `--id` alone: the entity of whichever kind has that id.
            show_kind(source, ShowKind::Campaigns, profile, id, limit, json).await?
                || show_kind(source, ShowKind::AdGroups, profile, id, limit, json).await?
                || show_kind(source, ShowKind::Keywords, profile, id, limit, json).await?
        }
        kind => show_kind(source, kind, profile, id, limit, json).await?,
    };
    match (printed, id) {
        (false, Some(id)) => {
            let kind_name = match kind {
                ShowKind::Campaigns => "campaign",
                ShowKind::AdGroups => "ad group",
                ShowKind::Keywords => "keyword",
                ShowKind::Summary => "campaign, ad group or keyword",
            };
            Ok(missing.report(&format!(
                "no {kind_name} with id {id} in the current snapshot of profile {profile} ({what})"
            )))
        }
        _ => Ok(Exit::Ok),
    }
}

/// What `show` was asked for, to say that it is not there.
struct Missing<'a> {
    profile: &'a str,
    kind: Option<ShowKind>,
    id: Option<&'a str>,
    json: bool,
}

impl Missing<'_> {
    /// Says `message` on stderr (and as JSON on stdout with `--json`): the
    /// not-found exit.
    fn report(&self, message: &str) -> Exit {
        if self.json {
            let kind = self
                .kind
                .and_then(|k| k.to_possible_value())
                .map(|v| v.get_name().to_string());
            let value = serde_json::json!({
                "found": false,
                "error": message,
                "profile": self.profile,
                "kind": kind,
                "id": self.id,
            });
            outln!(
                "{}",
                serde_json::to_string_pretty(&value).unwrap_or_default()
            );
        }
        errln!("error: {message}");
        Exit::NotFound
    }
}

/// Prints the entities of `kind` (all up to `limit`, or the one with `id`);
/// whether any was there to print. With `--id`, nothing is printed when it
/// is not found (the caller says so); without, an empty list is printed.
async fn show_kind(
    reader: &Entities<'_>,
    kind: ShowKind,
    profile: &str,
    id: Option<&str>,
    limit: usize,
    json: bool,
) -> Result<bool, Failure> {
    match kind {
        ShowKind::Summary => Ok(false),
        ShowKind::Campaigns => {
            let items = select::<SpCampaign>(reader, profile, id, limit).await?;
            Ok(print_items(&items, id, json, |c| {
                format!(
                    "{:<16} {:<13} {:<7} {:>10.2} {}",
                    c.campaign_id,
                    enum_text(&c.state),
                    enum_text(&c.targeting_type),
                    c.budget.budget,
                    c.name
                )
            }))
        }
        ShowKind::AdGroups => {
            let items = select::<SpAdGroup>(reader, profile, id, limit).await?;
            Ok(print_items(&items, id, json, |g| {
                format!(
                    "{:<16} {:<16} {:<13} {:>8.2} {}",
                    g.ad_group_id,
                    g.campaign_id,
                    enum_text(&g.state),
                    g.default_bid,
                    g.name
                )
            }))
        }
        ShowKind::Keywords => {
            let items = select::<SpKeyword>(reader, profile, id, limit).await?;
            Ok(print_items(&items, id, json, |k| {
                format!(
                    "{:<16} {:<16} {:<13} {:<6} {:>8} {}",
                    k.keyword_id,
                    k.ad_group_id,
                    enum_text(&k.state),
                    enum_text(&k.match_type),
                    k.bid.map_or("default".to_string(), |b| format!("{b:.2}")),
                    k.keyword_text
                )
            }))
        }
    }
}

fn enum_text<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_value(v)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Where `show` reads entities: the store, or the snapshot a daemon sent.
pub(crate) enum Entities<'a> {
    /// The store, through a reader.
    Store(&'a PullReader),
    /// A whole snapshot (`GET /v1/snapshots/...`).
    Snapshot(&'a ProfileSnapshot),
}

async fn select<T: adsync::amazon::SpEntity + Send + 'static>(
    source: &Entities<'_>,
    profile: &str,
    id: Option<&str>,
    limit: usize,
) -> Result<Vec<T>, Failure> {
    let reader = match source {
        Entities::Store(reader) => reader,
        Entities::Snapshot(snapshot) => {
            let items = match T::KIND {
                ListKind::Campaigns => Items::Campaigns(snapshot.campaigns.clone()),
                ListKind::AdGroups => Items::AdGroups(snapshot.ad_groups.clone()),
                ListKind::Keywords => Items::Keywords(snapshot.keywords.clone()),
            };
            let all = T::from_items(items).unwrap_or_default();
            return Ok(match id {
                Some(id) => all.into_iter().filter(|e| e.id() == id).collect(),
                None => all.into_iter().take(limit).collect(),
            });
        }
    };
    Ok(match id {
        Some(id) => reader.find::<T>(profile, id).await?.into_iter().collect(),
        None => {
            let mut items = reader.entities::<T>(profile).await?;
            items.truncate(limit);
            items
        }
    })
}

/// Prints `items` (nothing when looking for `id` and it is not among them);
/// whether anything was printed.
fn print_items<T: serde::Serialize>(
    items: &[T],
    id: Option<&str>,
    json: bool,
    line: impl Fn(&T) -> String,
) -> bool {
    if id.is_some() && items.is_empty() {
        return false;
    }
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
    true
}
