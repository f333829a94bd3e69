//! The pull machine: its states, effects, outcomes and pure transitions.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use strum::{Display, EnumIter};

use crate::platform::amazon::ListKind;
use adsync_engine::Backoff;
use adsync_engine::Timestamp;
use adsync_engine::{
    reject, CheckpointCodec, Context, Machine, MachineDocs, Next, Status, TransitionError,
};

/// The pull machine (a type-level definition; see [`Machine`]).
#[derive(Debug, Clone, Copy)]
pub struct PullMachine;

/// Where a pull stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Display, EnumIter)]
pub enum PullPhase {
    /// A pull was requested; leftovers of earlier attempts are not cleared yet.
    Idle,
    /// Fetching campaign pages.
    FetchingCampaigns,
    /// Fetching ad group pages.
    FetchingAdGroups,
    /// Fetching keyword pages.
    FetchingKeywords,
    /// Every page is staged; the new snapshot is being written.
    Persisting,
    /// The new snapshot is the profile's current one.
    Completed,
    /// Stopped on an error; staged pages are kept for a resume.
    Failed,
    /// Stopped for good on request; staged pages are kept for a resume.
    Cancelled,
}

impl PullPhase {
    /// The list endpoint a fetching phase calls.
    pub fn list_kind(self) -> Option<ListKind> {
        match self {
            PullPhase::FetchingCampaigns => Some(ListKind::Campaigns),
            PullPhase::FetchingAdGroups => Some(ListKind::AdGroups),
            PullPhase::FetchingKeywords => Some(ListKind::Keywords),
            _ => None,
        }
    }

    fn after_fetch(kind: ListKind) -> PullPhase {
        match kind {
            ListKind::Campaigns => PullPhase::FetchingAdGroups,
            ListKind::AdGroups => PullPhase::FetchingKeywords,
            ListKind::Keywords => PullPhase::Persisting,
        }
    }
}

/// The kinds of outcome (rows of the transition table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Display, EnumIter)]
pub enum PullOutcomeKind {
    /// Leftovers of earlier attempts removed.
    StagingCleared,
    /// A page was staged and another follows.
    PageFetched,
    /// The last page of an endpoint was staged.
    LastPageFetched,
    /// A fetch failed but may succeed later (429, 5xx, network).
    FetchTransient,
    /// A fetch failed for good (bad response, 4xx).
    FetchPermanent,
    /// The new snapshot is written and made current.
    Persisted,
    /// The store failed (cleaning up or writing the snapshot).
    StoreFailed,
    /// A new pull was asked for (from the beginning).
    PullRequested,
    /// A failed pull was asked to continue where it stopped.
    ResumeRequested,
    /// The pull was cancelled at a step boundary.
    Cancelled,
}

/// Entity counts per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullCounts {
    /// Campaigns.
    pub campaigns: u64,
    /// Ad groups.
    pub ad_groups: u64,
    /// Keywords.
    pub keywords: u64,
}

impl PullCounts {
    /// The count of `kind`.
    pub fn get(&self, kind: ListKind) -> u64 {
        match kind {
            ListKind::Campaigns => self.campaigns,
            ListKind::AdGroups => self.ad_groups,
            ListKind::Keywords => self.keywords,
        }
    }

    /// Adds `n` to the count of `kind`.
    pub fn add(&mut self, kind: ListKind, n: u64) {
        match kind {
            ListKind::Campaigns => self.campaigns += n,
            ListKind::AdGroups => self.ad_groups += n,
            ListKind::Keywords => self.keywords += n,
        }
    }

    /// All kinds together.
    pub fn total(&self) -> u64 {
        self.campaigns + self.ad_groups + self.keywords
    }
}

impl std::fmt::Display for PullCounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} campaigns, {} ad groups, {} keywords",
            self.campaigns, self.ad_groups, self.keywords
        )
    }
}

/// A persisted snapshot of a profile: which generation of chunks is current.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRef {
    /// The generation (the number of the pull that wrote it).
    pub generation: u64,
    /// Entities in it, per kind.
    pub counts: PullCounts,
    /// Stored values in it (parts), per kind.
    pub chunks: PullCounts,
    /// When it became current.
    #[serde(with = "time::serde::rfc3339")]
    pub completed_at: Timestamp,
    /// How the generation is stored (`crate::pull::snapshot`'s "Layout
    /// versions"): 1 for a pointer written before the field existed, whose
    /// generation is rewritten chunks; 2 for one whose generation is the pull's
    /// staged parts.
    #[serde(default = "layout_one")]
    pub layout: u32,
}

fn layout_one() -> u32 {
    1
}

/// Retry settings of a pull, on top of the HTTP client's own bounded retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullPolicy {
    /// Entities per page (`maxResults`).
    pub page_size: u32,
    /// How often one page's transient failure (after the client gave up) is
    /// retried later by the machine, with `backoff` (or the platform's
    /// `Retry-After`), before the pull fails.
    pub backoff: Backoff,
}

impl Default for PullPolicy {
    fn default() -> Self {
        PullPolicy {
            page_size: crate::platform::amazon::DEFAULT_MAX_RESULTS,
            backoff: Backoff {
                base: Duration::from_secs(5),
                max: Duration::from_secs(300),
                max_attempts: 3,
            },
        }
    }
}

/// The checkpointed state of the pull of one profile. Never holds entity data
/// (staged pages live beside it in the store) nor any credential.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PullState {
    /// Platform (`amazon`).
    pub platform: String,
    /// Profile id.
    pub profile_id: String,
    /// Phase.
    pub phase: PullPhase,
    /// Number of the current (or last) pull of this profile, from 1; also the
    /// generation its snapshot is written under.
    pub run: u64,
    /// Retry and page settings.
    pub policy: PullPolicy,
    /// In a fetching phase: the `nextToken` of the next page (`None` = first page).
    pub cursor: Option<String>,
    /// Pages staged in this pull, per kind.
    pub pages: PullCounts,
    /// Entities staged in this pull, per kind (before de-duplication).
    pub fetched: PullCounts,
    /// Failed attempts of the current page (machine-level retries).
    pub attempts: u32,
    /// When the current page may be retried (backoff); `None`: at once.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub retry_at: Option<Timestamp>,
    /// When this pull started.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: Timestamp,
    /// When this pull completed or failed.
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub finished_at: Option<Timestamp>,
    /// The error that failed this pull (or the last retried one).
    pub last_error: Option<String>,
    /// The phase a failed pull stopped in (where a resume continues).
    pub failed_in: Option<PullPhase>,
    /// The profile's current persisted snapshot; `None` until a pull of it
    /// completes. A running or failed pull leaves it as it was.
    pub snapshot: Option<SnapshotRef>,
}

impl PullState {
    /// The state of the first pull of a profile's sync, phase `Idle`, at
    /// `now`. `previous` is a snapshot already current for the profile (left
    /// by an earlier sync): it stays current, and this pull's generation
    /// follows it.
    pub fn new(
        platform: &str,
        profile_id: &str,
        policy: PullPolicy,
        previous: Option<SnapshotRef>,
        now: Timestamp,
    ) -> Self {
        PullState {
            platform: platform.to_string(),
            profile_id: profile_id.to_string(),
            phase: PullPhase::Idle,
            run: previous.as_ref().map_or(1, |s| s.generation + 1),
            policy,
            cursor: None,
            pages: PullCounts::default(),
            fetched: PullCounts::default(),
            attempts: 0,
            retry_at: None,
            started_at: now,
            finished_at: None,
            last_error: None,
            failed_in: None,
            snapshot: previous,
        }
    }

    /// The generation the current pull writes.
    pub fn generation(&self) -> u64 {
        self.run
    }

    fn restart(&self, policy: PullPolicy, now: Timestamp) -> Self {
        PullState {
            run: self.run + 1,
            ..PullState::new(
                &self.platform,
                &self.profile_id,
                policy,
                self.snapshot.clone(),
                now,
            )
        }
    }

    fn cancel(mut self, ctx: &Context) -> Self {
        self.failed_in = Some(self.phase);
        self.phase = PullPhase::Cancelled;
        self.last_error = Some("cancelled".to_string());
        self.finished_at = Some(ctx.now);
        self.retry_at = None;
        self
    }

    fn fail(mut self, error: String, ctx: &Context) -> Self {
        self.failed_in = Some(self.phase);
        self.phase = PullPhase::Failed;
        self.last_error = Some(error);
        self.finished_at = Some(ctx.now);
        self.retry_at = None;
        self
    }
}

/// An effect of the pull machine.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, strum::IntoStaticStr)]
#[serde(tag = "effect", rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum PullEffect {
    /// Remove pages staged by earlier, abandoned attempts and chunks of
    /// generations that never became current (keeping `keep`, the current one).
    ClearStaging {
        /// Profile.
        profile_id: String,
        /// The current generation, which stays.
        keep: Option<u64>,
    },
    /// Fetch one page and stage it with the checkpoint recording its `nextToken`.
    FetchPage {
        /// Profile.
        profile_id: String,
        /// Endpoint.
        kind: ListKind,
        /// `nextToken` (`None` = first page).
        next_token: Option<String>,
        /// The page's number in this pull (0-based, per kind): its staging key.
        page: u64,
        /// The generation this pull writes: the page's parts are stored under it.
        generation: u64,
        /// `maxResults`.
        page_size: u32,
    },
    /// Build generation `generation` from the staged pages, then make it current
    /// (in the checkpoint's commit) and drop the previous one.
    Persist {
        /// Profile.
        profile_id: String,
        /// The generation to write.
        generation: u64,
        /// Pages staged, per kind.
        pages: PullCounts,
        /// The snapshot it replaces.
        previous: Option<SnapshotRef>,
    },
}

/// The result of a pull effect, or a request from the caller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum PullOutcome {
    /// Leftovers removed.
    StagingCleared {
        /// Keys removed.
        removed: u64,
    },
    /// A page was fetched and staged.
    PageFetched {
        /// Endpoint.
        kind: ListKind,
        /// Entities on the page.
        items: u64,
        /// The token of the following page; `None` on the last page.
        next_token: Option<String>,
        /// `totalResults`, when reported.
        total_results: Option<u64>,
    },
    /// A fetch failed.
    FetchFailed {
        /// Endpoint.
        kind: ListKind,
        /// What went wrong (never contains credentials).
        error: String,
        /// Whether retrying later may succeed.
        transient: bool,
        /// The platform's `Retry-After`, in milliseconds, when given.
        retry_after_ms: Option<u64>,
    },
    /// The snapshot is written; the commit of this outcome makes it current.
    Persisted {
        /// The new current snapshot.
        snapshot: SnapshotRef,
    },
    /// The store failed: cleaning up leftovers, or writing the snapshot
    /// (store error, unreadable staging).
    StoreFailed {
        /// What went wrong.
        error: String,
    },
    /// Start a new pull from the beginning (after a completed or failed one),
    /// with these settings.
    PullRequested {
        /// Page size and retry settings of the new pull.
        policy: PullPolicy,
    },
    /// Continue a failed pull where it stopped, keeping its staged pages.
    ResumeRequested,
    /// Stop for good, at a step boundary ([`adsync_engine::Runner::cancel`]).
    Cancelled,
}

impl Machine for PullMachine {
    const KIND: &'static str = "pull";
    const STATE_VERSION: u32 = 1;
    type State = PullState;
    type Effect = PullEffect;
    type Outcome = PullOutcome;
    type Phase = PullPhase;

    fn phase(state: &PullState) -> PullPhase {
        state.phase
    }

    fn next(state: &PullState) -> Next<PullEffect> {
        match state.phase {
            PullPhase::Idle => Next::Effect(PullEffect::ClearStaging {
                profile_id: state.profile_id.clone(),
                keep: state.snapshot.as_ref().map(|s| s.generation),
            }),
            PullPhase::FetchingCampaigns
            | PullPhase::FetchingAdGroups
            | PullPhase::FetchingKeywords => {
                let Some(kind) = state.phase.list_kind() else {
                    return Next::Settled(Status::Failed);
                };
                Next::Effect(PullEffect::FetchPage {
                    profile_id: state.profile_id.clone(),
                    kind,
                    next_token: state.cursor.clone(),
                    page: state.pages.get(kind),
                    generation: state.generation(),
                    page_size: state.policy.page_size,
                })
            }
            PullPhase::Persisting => Next::Effect(PullEffect::Persist {
                profile_id: state.profile_id.clone(),
                generation: state.generation(),
                pages: state.pages,
                previous: state.snapshot.clone(),
            }),
            PullPhase::Completed => Next::Settled(Status::Succeeded),
            PullPhase::Failed => Next::Settled(Status::Failed),
            PullPhase::Cancelled => Next::Settled(Status::Cancelled),
        }
    }

    fn transition(
        state: &PullState,
        outcome: &PullOutcome,
        ctx: &Context,
    ) -> Result<PullState, TransitionError> {
        let phase = state.phase;
        match (phase, outcome) {
            (PullPhase::Idle, PullOutcome::StagingCleared { .. }) => Ok(PullState {
                phase: PullPhase::FetchingCampaigns,
                cursor: None,
                ..state.clone()
            }),
            (
                PullPhase::FetchingCampaigns
                | PullPhase::FetchingAdGroups
                | PullPhase::FetchingKeywords,
                PullOutcome::PageFetched {
                    kind,
                    items,
                    next_token,
                    ..
                },
            ) => {
                if phase.list_kind() != Some(*kind) {
                    return reject::<Self>(state, outcome, "a page of another endpoint");
                }
                if next_token.is_some() && *next_token == state.cursor {
                    // A platform fault, not an impossible outcome: fail clearly
                    // rather than loop on one page.
                    return Ok(state.clone().fail(
                        format!(
                            "{}: the platform answered nextToken {} with the same nextToken (pagination loop)",
                            kind.path(),
                            short_token(next_token.as_deref())
                        ),
                        ctx,
                    ));
                }
                let mut next = state.clone();
                next.pages.add(*kind, 1);
                next.fetched.add(*kind, *items);
                next.attempts = 0;
                next.retry_at = None;
                match next_token {
                    Some(token) => next.cursor = Some(token.clone()),
                    None => {
                        next.cursor = None;
                        next.phase = PullPhase::after_fetch(*kind);
                    }
                }
                Ok(next)
            }
            (
                PullPhase::FetchingCampaigns
                | PullPhase::FetchingAdGroups
                | PullPhase::FetchingKeywords,
                PullOutcome::FetchFailed {
                    kind,
                    error,
                    transient,
                    retry_after_ms,
                },
            ) => {
                if phase.list_kind() != Some(*kind) {
                    return reject::<Self>(state, outcome, "a failure of another endpoint");
                }
                let attempts = state.attempts + 1;
                if *transient && state.policy.backoff.allows_retry(attempts) {
                    let wait = match retry_after_ms {
                        Some(ms) => Duration::from_millis(*ms),
                        None => state.policy.backoff.delay_with_jitter(attempts, ctx.jitter),
                    };
                    Ok(PullState {
                        attempts,
                        retry_at: Some(ctx.now + wait),
                        last_error: Some(error.clone()),
                        ..state.clone()
                    })
                } else {
                    let error = if *transient {
                        format!("{error} (gave up after {attempts} attempt(s); staged pages are kept: pull again to resume)")
                    } else {
                        error.clone()
                    };
                    Ok(PullState {
                        attempts,
                        ..state.clone()
                    }
                    .fail(error, ctx))
                }
            }
            (PullPhase::Persisting, PullOutcome::Persisted { snapshot }) => {
                if snapshot.generation != state.generation() {
                    return reject::<Self>(state, outcome, "a snapshot of another generation");
                }
                Ok(PullState {
                    phase: PullPhase::Completed,
                    snapshot: Some(snapshot.clone()),
                    finished_at: Some(ctx.now),
                    last_error: None,
                    failed_in: None,
                    ..state.clone()
                })
            }
            (PullPhase::Idle | PullPhase::Persisting, PullOutcome::StoreFailed { error }) => {
                Ok(state.clone().fail(error.clone(), ctx))
            }
            (
                PullPhase::Idle
                | PullPhase::FetchingCampaigns
                | PullPhase::FetchingAdGroups
                | PullPhase::FetchingKeywords,
                PullOutcome::Cancelled,
            ) => Ok(state.clone().cancel(ctx)),
            (PullPhase::Persisting, PullOutcome::Cancelled) => reject::<Self>(
                state,
                outcome,
                "persisting is a few local writes; it completes, and is not cancelled",
            ),
            (
                PullPhase::Completed | PullPhase::Failed | PullPhase::Cancelled,
                PullOutcome::PullRequested { policy },
            ) => Ok(state.restart(*policy, ctx.now)),
            (PullPhase::Failed | PullPhase::Cancelled, PullOutcome::ResumeRequested) => {
                match state.failed_in {
                    Some(
                        resume @ (PullPhase::FetchingCampaigns
                        | PullPhase::FetchingAdGroups
                        | PullPhase::FetchingKeywords
                        | PullPhase::Persisting),
                    ) => Ok(PullState {
                        phase: resume,
                        attempts: 0,
                        retry_at: None,
                        finished_at: None,
                        failed_in: None,
                        ..state.clone()
                    }),
                    _ => reject::<Self>(
                        state,
                        outcome,
                        "the pull did not stop in a fetch or persist phase; request a new pull",
                    ),
                }
            }
            (PullPhase::Completed, PullOutcome::ResumeRequested) => {
                reject::<Self>(state, outcome, "the pull completed; request a new pull")
            }
            (
                PullPhase::Idle
                | PullPhase::FetchingCampaigns
                | PullPhase::FetchingAdGroups
                | PullPhase::FetchingKeywords
                | PullPhase::Persisting,
                PullOutcome::PullRequested { .. } | PullOutcome::ResumeRequested,
            ) => reject::<Self>(state, outcome, "a pull is in progress; resume it instead"),
            (PullPhase::Completed | PullPhase::Failed | PullPhase::Cancelled, _) => {
                reject::<Self>(state, outcome, "the pull is finished")
            }
            (PullPhase::Idle, _) => {
                reject::<Self>(state, outcome, "only staging cleanup leaves Idle")
            }
            (
                PullPhase::FetchingCampaigns
                | PullPhase::FetchingAdGroups
                | PullPhase::FetchingKeywords,
                _,
            ) => reject::<Self>(
                state,
                outcome,
                "a fetch phase expects a page or a fetch failure",
            ),
            (PullPhase::Persisting, _) => {
                reject::<Self>(state, outcome, "persisting expects the persist result")
            }
        }
    }

    fn on_restart(_state: &PullState) -> Option<PullOutcome> {
        // Every pull effect is repeatable: list calls are reads, staging keys are
        // fixed by the page number, and persist rewrites the same generation.
        None
    }

    fn on_cancel(state: &PullState) -> Option<PullOutcome> {
        matches!(
            state.phase,
            PullPhase::Idle
                | PullPhase::FetchingCampaigns
                | PullPhase::FetchingAdGroups
                | PullPhase::FetchingKeywords
        )
        .then_some(PullOutcome::Cancelled)
    }

    fn not_before(state: &PullState) -> Option<Timestamp> {
        state.retry_at
    }

    fn is_failure(outcome: &PullOutcome) -> bool {
        matches!(
            outcome,
            PullOutcome::FetchFailed { .. } | PullOutcome::StoreFailed { .. }
        )
    }

    fn last_error(state: &PullState) -> Option<String> {
        state.last_error.clone()
    }

    fn effect_name(effect: &PullEffect) -> &'static str {
        effect.into()
    }

    fn describe_effect(effect: &PullEffect) -> String {
        match effect {
            PullEffect::ClearStaging { profile_id, keep } => format!(
                "clear staging of profile {profile_id} (keep generation {})",
                keep.map_or("none".to_string(), |g| g.to_string())
            ),
            PullEffect::FetchPage {
                kind,
                next_token,
                page,
                page_size,
                ..
            } => format!(
                "POST {} page {page} (maxResults {page_size}, nextToken {})",
                kind.path(),
                short_token(next_token.as_deref())
            ),
            PullEffect::Persist {
                generation,
                pages,
                previous,
                ..
            } => format!(
                "persist generation {generation} from {} staged pages (replacing {})",
                pages.total(),
                previous.as_ref().map_or("nothing".to_string(), |p| format!(
                    "generation {}",
                    p.generation
                ))
            ),
        }
    }

    fn describe_outcome(outcome: &PullOutcome) -> String {
        match outcome {
            PullOutcome::StagingCleared { removed } => format!("staging cleared ({removed} keys)"),
            PullOutcome::PageFetched {
                kind,
                items,
                next_token,
                total_results,
            } => format!(
                "{items} {} staged{}; next {}",
                kind_name(*kind),
                total_results.map_or(String::new(), |t| format!(" (of {t})")),
                match next_token {
                    Some(t) => format!("nextToken {}", short_token(Some(t))),
                    None => "none (last page)".to_string(),
                }
            ),
            PullOutcome::FetchFailed {
                error, transient, ..
            } => format!(
                "{} failure: {error}",
                if *transient { "transient" } else { "permanent" }
            ),
            PullOutcome::Persisted { snapshot } => format!(
                "generation {} is current: {}",
                snapshot.generation, snapshot.counts
            ),
            PullOutcome::StoreFailed { error } => format!("store failed: {error}"),
            PullOutcome::PullRequested { policy } => {
                format!("new pull requested (maxResults {})", policy.page_size)
            }
            PullOutcome::ResumeRequested => "resume requested".to_string(),
            PullOutcome::Cancelled => "cancelled".to_string(),
        }
    }
}

impl CheckpointCodec for PullMachine {}

impl MachineDocs for PullMachine {
    type OutcomeKind = PullOutcomeKind;

    fn outcome_kind(outcome: &PullOutcome) -> PullOutcomeKind {
        match outcome {
            PullOutcome::StagingCleared { .. } => PullOutcomeKind::StagingCleared,
            PullOutcome::PageFetched {
                next_token: Some(_),
                ..
            } => PullOutcomeKind::PageFetched,
            PullOutcome::PageFetched {
                next_token: None, ..
            } => PullOutcomeKind::LastPageFetched,
            PullOutcome::FetchFailed {
                transient: true, ..
            } => PullOutcomeKind::FetchTransient,
            PullOutcome::FetchFailed {
                transient: false, ..
            } => PullOutcomeKind::FetchPermanent,
            PullOutcome::Persisted { .. } => PullOutcomeKind::Persisted,
            PullOutcome::StoreFailed { .. } => PullOutcomeKind::StoreFailed,
            PullOutcome::PullRequested { .. } => PullOutcomeKind::PullRequested,
            PullOutcome::ResumeRequested => PullOutcomeKind::ResumeRequested,
            PullOutcome::Cancelled => PullOutcomeKind::Cancelled,
        }
    }

    fn describe_phase(phase: PullPhase) -> &'static str {
        match phase {
            PullPhase::Idle => "A pull was requested. Effect: clear pages staged by abandoned attempts and chunks of generations that never became current.",
            PullPhase::FetchingCampaigns => "Effect: `POST /sp/campaigns/list` for the page at the recorded `nextToken`; the page is staged in the same commit as the checkpoint recording the following token.",
            PullPhase::FetchingAdGroups => "Effect: `POST /sp/adGroups/list`, one page per checkpoint, as above.",
            PullPhase::FetchingKeywords => "Effect: `POST /sp/keywords/list`, one page per checkpoint, as above.",
            PullPhase::Persisting => "Every page is staged. Effect: build the new generation from staging (no platform request): the staged pages as they are, in id order, merging only pages that overlap; the checkpoint to Completed writes its directory, flips the generation pointer, drops the previous generation and the staging, atomically.",
            PullPhase::Completed => "Final: the pulled snapshot is the profile's current one. A new pull request restarts at Idle.",
            PullPhase::Failed => "Final: the pull stopped on an error; the previous snapshot is untouched and staged pages are kept. A resume request continues where it stopped; a new pull request starts over.",
            PullPhase::Cancelled => "Final: the pull was cancelled at a step boundary (the page in flight, if any, was staged first); the previous snapshot is untouched and staged pages are kept. A resume request continues where it stopped; a new pull request starts over.",
        }
    }

    fn sample_states() -> Vec<(String, PullState)> {
        samples::states()
    }

    fn sample_outcomes() -> Vec<PullOutcome> {
        samples::outcomes()
    }
}

/// A kind in words, for traces.
fn kind_name(kind: ListKind) -> &'static str {
    match kind {
        ListKind::Campaigns => "campaigns",
        ListKind::AdGroups => "ad groups",
        ListKind::Keywords => "keywords",
    }
}

/// The first characters of a `nextToken`, for logs and traces.
fn short_token(token: Option<&str>) -> String {
    match token {
        None => "none".to_string(),
        Some(t) if t.len() <= 12 => t.to_string(),
        Some(t) => format!("{}…", t.chars().take(12).collect::<String>()),
    }
}

mod samples {
    use super::*;

    fn base(phase: PullPhase) -> PullState {
        let mut s = PullState::new(
            "amazon",
            "1234",
            PullPolicy::default(),
            None,
            time::macros::datetime!(2026-01-01 00:00 UTC),
        );
        s.phase = phase;
        s
    }

    pub(super) fn states() -> Vec<(String, PullState)> {
        let mut out = vec![(String::new(), base(PullPhase::Idle))];
        for phase in [
            PullPhase::FetchingCampaigns,
            PullPhase::FetchingAdGroups,
            PullPhase::FetchingKeywords,
        ] {
            out.push(("retries left".to_string(), base(phase)));
            let mut looping = base(phase);
            looping.cursor = Some("t".into());
            out.push(("nextToken t (a repeat is a loop)".to_string(), looping));
            let mut last = base(phase);
            last.attempts = last.policy.backoff.max_attempts - 1;
            out.push(("last attempt".to_string(), last));
        }
        out.push((String::new(), base(PullPhase::Persisting)));
        out.push((String::new(), base(PullPhase::Completed)));
        for stopped in [
            PullPhase::FetchingCampaigns,
            PullPhase::FetchingAdGroups,
            PullPhase::FetchingKeywords,
            PullPhase::Persisting,
        ] {
            let mut failed = base(PullPhase::Failed);
            failed.failed_in = Some(stopped);
            out.push((format!("stopped in {stopped}"), failed));
        }
        let mut failed_idle = base(PullPhase::Failed);
        failed_idle.failed_in = None;
        out.push(("stopped elsewhere".to_string(), failed_idle));
        let mut cancelled = base(PullPhase::Cancelled);
        cancelled.failed_in = Some(PullPhase::FetchingKeywords);
        out.push(("stopped in FetchingKeywords".to_string(), cancelled));
        let mut cancelled_idle = base(PullPhase::Cancelled);
        cancelled_idle.failed_in = Some(PullPhase::Idle);
        out.push(("stopped in Idle".to_string(), cancelled_idle));
        out
    }

    pub(super) fn outcomes() -> Vec<PullOutcome> {
        // Grouped by outcome kind, so rows that differ only in the endpoint and
        // get the same answer collapse into one row of the table.
        let mut out = vec![PullOutcome::StagingCleared { removed: 0 }];
        let fetched = |kind, next_token: Option<&str>| PullOutcome::PageFetched {
            kind,
            items: 100,
            next_token: next_token.map(str::to_string),
            total_results: None,
        };
        let failed = |kind, transient| PullOutcome::FetchFailed {
            kind,
            error: if transient { "429" } else { "bad response" }.into(),
            transient,
            retry_after_ms: None,
        };
        out.extend(ListKind::ALL.map(|k| fetched(k, Some("t"))));
        out.extend(ListKind::ALL.map(|k| fetched(k, None)));
        out.extend(ListKind::ALL.map(|k| failed(k, true)));
        out.extend(ListKind::ALL.map(|k| failed(k, false)));
        out.push(PullOutcome::Persisted {
            snapshot: SnapshotRef {
                generation: 1,
                counts: PullCounts::default(),
                chunks: PullCounts::default(),
                completed_at: time::macros::datetime!(2026-01-01 00:00 UTC),
                layout: 2,
            },
        });
        out.push(PullOutcome::StoreFailed {
            error: "store".into(),
        });
        out.push(PullOutcome::PullRequested {
            policy: PullPolicy::default(),
        });
        out.push(PullOutcome::ResumeRequested);
        out.push(PullOutcome::Cancelled);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Context {
        Context {
            now: time::macros::datetime!(2026-01-01 00:00 UTC),
            jitter: 0.5,
        }
    }

    #[test]
    fn a_repeated_next_token_fails_the_pull_instead_of_looping() {
        let mut state = samples::states()
            .into_iter()
            .map(|(_, s)| s)
            .find(|s| s.phase == PullPhase::FetchingKeywords)
            .unwrap();
        state.cursor = Some("abc".into());
        let outcome = PullOutcome::PageFetched {
            kind: ListKind::Keywords,
            items: 10,
            next_token: Some("abc".into()),
            total_results: None,
        };
        let next = PullMachine::transition(&state, &outcome, &ctx()).unwrap();
        assert_eq!(next.phase, PullPhase::Failed);
        assert_eq!(next.failed_in, Some(PullPhase::FetchingKeywords));
        assert!(next.last_error.unwrap().contains("pagination loop"));
    }

    #[test]
    fn transient_failures_wait_for_retry_after_then_give_up() {
        let state = samples::states()
            .into_iter()
            .map(|(_, s)| s)
            .find(|s| s.phase == PullPhase::FetchingAdGroups)
            .unwrap();
        let outcome = PullOutcome::FetchFailed {
            kind: ListKind::AdGroups,
            error: "429".into(),
            transient: true,
            retry_after_ms: Some(7000),
        };
        let mut s = state;
        for attempt in 1..s.policy.backoff.max_attempts {
            s = PullMachine::transition(&s, &outcome, &ctx()).unwrap();
            assert_eq!(s.phase, PullPhase::FetchingAdGroups);
            assert_eq!(s.attempts, attempt);
            assert_eq!(s.retry_at, Some(ctx().now + Duration::from_secs(7)));
        }
        let failed = PullMachine::transition(&s, &outcome, &ctx()).unwrap();
        assert_eq!(failed.phase, PullPhase::Failed);
        assert!(failed
            .last_error
            .as_deref()
            .unwrap_or_default()
            .contains("staged pages are kept"));
        // A resume goes back to the page that failed, with fresh attempts.
        let resumed =
            PullMachine::transition(&failed, &PullOutcome::ResumeRequested, &ctx()).unwrap();
        assert_eq!(resumed.phase, PullPhase::FetchingAdGroups);
        assert_eq!((resumed.attempts, resumed.retry_at), (0, None));
    }
}
