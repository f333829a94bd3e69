//! Runs pull effects against Amazon Ads and the store: the only bridge from the
//! pull machine to the platform.

use std::sync::Arc;

use async_trait::async_trait;

use crate::platform::amazon::{AmazonClient, AmazonError, ListKind};
use crate::pull::machine::{PullEffect, PullMachine, PullOutcome};
use crate::pull::snapshot;
use adsync_engine::Clock;
use adsync_engine::Effects;
use adsync_engine::{Commit, IntoStore, SharedStore, StoreRead};

/// The platform name used in keys, labels and sync ids.
pub const AMAZON: &str = "amazon";

/// [`Effects`] of the pull machine for Amazon Ads: list calls through one shared
/// [`AmazonClient`] (so every request of every pull passes one rate limiter),
/// staging and persisting through the checkpoint store.
pub struct AmazonPullEffects {
    client: AmazonClient,
    store: SharedStore,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for AmazonPullEffects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmazonPullEffects")
            .field("host", &self.client.config().host)
            .finish_non_exhaustive()
    }
}

impl AmazonPullEffects {
    /// Effects calling Amazon with `client` and writing to `store`, which must
    /// be the store the pull's runner checkpoints in: a page is staged in the
    /// same commit as the checkpoint recording its `nextToken`.
    /// [`Puller::new`](crate::pull::Puller::new) builds its own.
    pub fn new(client: AmazonClient, store: impl IntoStore, clock: Arc<dyn Clock>) -> Self {
        AmazonPullEffects {
            client,
            store: store.into_store(),
            clock,
        }
    }

    /// The client (shared: clones count against the same rate).
    pub fn client(&self) -> &AmazonClient {
        &self.client
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn StoreRead) -> Result<T, snapshot::SnapshotError> + Send + 'static,
    ) -> Result<T, String> {
        match self.store.read(f).await {
            Ok(result) => result.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
}

fn retry_after_ms(error: &AmazonError) -> Option<u64> {
    match error {
        AmazonError::Throttled {
            retry_after: Some(d),
            ..
        } => Some(d.as_millis() as u64),
        _ => None,
    }
}

/// The error a failed fetch records. A garbled body also names the page's
/// number in this pull (as the history's effects do): its `nextToken` alone
/// is opaque to whoever reads the error.
fn describe_fetch_error(error: &AmazonError, kind: ListKind, page: u64) -> String {
    match error {
        AmazonError::Garbled { .. } => format!("{kind} page {page}: {error}"),
        _ => error.to_string(),
    }
}

#[async_trait]
impl Effects<PullMachine> for AmazonPullEffects {
    async fn perform(&self, _sync: &str, effect: &PullEffect) -> (PullOutcome, Commit) {
        match effect {
            PullEffect::ClearStaging { profile_id, keep } => {
                let (profile, keep) = (profile_id.clone(), *keep);
                match self
                    .blocking(move |store| {
                        snapshot::leftover_deletes(store, AMAZON, &profile, keep)
                    })
                    .await
                {
                    Ok((commit, removed)) => (PullOutcome::StagingCleared { removed }, commit),
                    Err(error) => (
                        PullOutcome::StoreFailed {
                            error: format!("clearing leftovers: {error}"),
                        },
                        Commit::new(),
                    ),
                }
            }
            PullEffect::FetchPage {
                profile_id,
                kind,
                next_token,
                page,
                generation,
                page_size,
            } => {
                let result = self
                    .client
                    .list_page(profile_id, *kind, next_token.as_deref(), *page_size)
                    .await;
                match result {
                    Ok(fetched) => match snapshot::encode_items(&fetched.items)
                        .map_err(|e| e.to_string())
                        .and_then(|bytes| {
                            snapshot::stage_writes(
                                AMAZON,
                                profile_id,
                                *generation,
                                *kind,
                                *page,
                                &bytes,
                            )
                        }) {
                        Ok(commit) => {
                            let items = fetched.items.len() as u64;
                            (
                                PullOutcome::PageFetched {
                                    kind: *kind,
                                    items,
                                    next_token: fetched.next_token,
                                    total_results: fetched.total_results,
                                },
                                commit,
                            )
                        }
                        Err(e) => (
                            PullOutcome::FetchFailed {
                                kind: *kind,
                                error: format!("encoding a page for staging: {e}"),
                                transient: false,
                                retry_after_ms: None,
                            },
                            Commit::new(),
                        ),
                    },
                    Err(error) => (
                        PullOutcome::FetchFailed {
                            kind: *kind,
                            transient: error.is_transient(),
                            retry_after_ms: retry_after_ms(&error),
                            error: describe_fetch_error(&error, *kind, *page),
                        },
                        Commit::new(),
                    ),
                }
            }
            PullEffect::Persist {
                profile_id,
                generation,
                pages,
                previous,
            } => {
                let (profile, generation, pages, previous) =
                    (profile_id.clone(), *generation, *pages, previous.clone());
                let now = self.clock.now();
                let writes = self.store.clone();
                let result = self
                    .blocking(move |store| {
                        let built = snapshot::build_generation(
                            store, &*writes, AMAZON, &profile, generation, &pages, now,
                        )?;
                        let snapshot = built.snapshot.clone();
                        let writes = snapshot::completion_writes(
                            store,
                            AMAZON,
                            &profile,
                            built,
                            previous.as_ref(),
                            &pages,
                        )?;
                        Ok((snapshot, writes))
                    })
                    .await;
                match result {
                    Ok((snapshot, writes)) => (PullOutcome::Persisted { snapshot }, writes),
                    Err(error) => (PullOutcome::StoreFailed { error }, Commit::new()),
                }
            }
        }
    }
}
