//! Runs push effects against a [`PushAdapter`]: the only bridge from the push
//! machine to a platform.

use std::sync::Arc;

use async_trait::async_trait;

use crate::adapter::{AdapterError, EntityKind, PushAdapter};
use crate::push::machine::{PushEffect, PushMachine, PushOutcome, PushState};
use adsync_engine::Commit;
use adsync_engine::Effects;

/// [`Effects`] of the push machine, performed by a platform adapter.
pub struct AdapterEffects {
    adapter: Arc<dyn PushAdapter>,
}

impl AdapterEffects {
    /// Effects performed by `adapter`. [`Pusher::new`](crate::push::Pusher::new)
    /// builds its own; build one directly only to drive a
    /// [`Runner`](adsync_engine::Runner) of the push machine yourself.
    pub fn new(adapter: Arc<dyn PushAdapter>) -> Self {
        AdapterEffects { adapter }
    }

    /// The adapter, for reads outside the machine (planning a push).
    pub(crate) fn adapter(&self) -> &dyn PushAdapter {
        self.adapter.as_ref()
    }
}

#[async_trait]
impl Effects<PushMachine> for AdapterEffects {
    /// A push effect writes no data of its own: what it learnt (an id) is in
    /// the outcome, which the checkpoint records.
    async fn perform(&self, _sync: &str, effect: &PushEffect) -> (PushOutcome, Commit) {
        (self.outcome(effect).await, Commit::new())
    }
}

impl AdapterEffects {
    async fn outcome(&self, effect: &PushEffect) -> PushOutcome {
        let failed = |error| PushOutcome::Failed { error };
        match effect {
            PushEffect::Create { parent, spec } => match self.adapter.create(parent, spec).await {
                Ok(id) => PushOutcome::Created { id },
                Err(error) => failed(error),
            },
            PushEffect::Update {
                parent,
                id,
                spec,
                fields,
            } => {
                let updated = match fields {
                    Some(fields) => self.adapter.update_fields(parent, id, spec, fields).await,
                    None => self.adapter.update(parent, id, spec).await,
                };
                match updated {
                    Ok(()) => PushOutcome::Updated,
                    Err(error) => failed(error),
                }
            }
            PushEffect::Observe {
                parent,
                campaign_name,
                campaign_ids,
                ad_group_ids,
            } => {
                match crate::converge::observe_campaign(
                    self.adapter.as_ref(),
                    &parent.account_id,
                    campaign_name,
                    campaign_ids,
                    ad_group_ids,
                )
                .await
                {
                    Ok(entities) => PushOutcome::Observed { entities },
                    Err(crate::push::PushError::Platform { what, source }) => {
                        failed(with_context(source, &what))
                    }
                    Err(other) => failed(AdapterError::Transient {
                        message: other.to_string(),
                        retry_after: None,
                    }),
                }
            }
            PushEffect::Archive {
                parent, kind, id, ..
            } => match self.adapter.archive(parent, *kind, id).await {
                Ok(()) => PushOutcome::Archived,
                Err(error) => failed(error),
            },
            PushEffect::SetKeywords {
                parent,
                ad_group_id,
                keywords,
                ..
            } => {
                match self
                    .adapter
                    .set_ad_group_keywords(parent, ad_group_id, keywords)
                    .await
                {
                    Ok(()) => PushOutcome::KeywordsSet,
                    Err(error) => failed(error),
                }
            }
            PushEffect::Find {
                parent,
                kind,
                name,
                created_after,
                ..
            } => match self.adapter.find(parent, *kind, name, *created_after).await {
                Ok(matches) => PushOutcome::Found { matches },
                Err(error) => failed(error),
            },
        }
    }
}

/// `error` with what was being read in front of its message.
fn with_context(error: AdapterError, what: &str) -> AdapterError {
    match error {
        AdapterError::Transient {
            message,
            retry_after,
        } => AdapterError::Transient {
            message: format!("{what}: {message}"),
            retry_after,
        },
        AdapterError::Permanent { message, fields } => AdapterError::Permanent {
            message: format!("{what}: {message}"),
            fields,
        },
        AdapterError::Unknown { message } => AdapterError::Unknown {
            message: format!("{what}: {message}"),
        },
        AdapterError::NotFound { message } => AdapterError::NotFound {
            message: format!("{what}: {message}"),
        },
    }
}

/// Why an id an operator asked to adopt was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    /// The sync has no entity whose creation is undecided.
    #[error("no entity of this sync is waiting for a decision")]
    NothingPending,
    /// The platform has no entity of that kind with that id in the account.
    #[error("the platform has no {kind} {id} in account {account}")]
    Missing {
        /// The expected level.
        kind: EntityKind,
        /// The id given.
        id: String,
        /// The sync's account.
        account: String,
    },
    /// It exists, but under another parent (or account).
    #[error("{kind} {id} belongs to {found}, not to {expected}")]
    WrongParent {
        /// The level.
        kind: EntityKind,
        /// The id given.
        id: String,
        /// Where the platform says it is.
        found: String,
        /// Where the undecided entity would be.
        expected: String,
    },
    /// It exists under the right parent with another name.
    #[error("{kind} {id} is named \"{found}\", not \"{expected}\"")]
    WrongName {
        /// The level.
        kind: EntityKind,
        /// The id given.
        id: String,
        /// Its name on the platform.
        found: String,
        /// The undecided entity's name.
        expected: String,
    },
    /// The platform could not be asked.
    #[error("cannot read it from the platform: {0}")]
    Platform(#[source] AdapterError),
}

impl AdoptError {
    /// Whether the id itself was refused (as opposed to the platform not answering).
    pub fn is_refusal(&self) -> bool {
        !matches!(self, AdoptError::Platform(_))
    }
}

/// Checks on the platform that `id` is the entity `state` waits a decision
/// about: it exists, is of the right kind, under the right parent (and
/// account), with the same name. Nothing is recorded; call it before
/// [`adsync_engine::Runner::resolve`] with [`PushOutcome::OperatorAdopt`], so
/// that a mistyped id never sticks to the campaign.
///
/// # Errors
///
/// [`AdoptError::NothingPending`] if `state` waits for no decision;
/// [`AdoptError::Missing`], [`AdoptError::WrongParent`] or
/// [`AdoptError::WrongName`] if the id is refused (see
/// [`AdoptError::is_refusal`]); [`AdoptError::Platform`] if the platform
/// could not be asked.
pub async fn verify_adoption(
    adapter: &dyn PushAdapter,
    state: &PushState,
    id: &str,
) -> Result<(), AdoptError> {
    let (entity, parent) = state.undecided().ok_or(AdoptError::NothingPending)?;
    let kind = entity.kind();
    let found = adapter
        .get(&parent, kind, id)
        .await
        .map_err(AdoptError::Platform)?
        .filter(|found| found.kind == kind)
        .ok_or_else(|| AdoptError::Missing {
            kind,
            id: id.to_string(),
            account: parent.account_id.clone(),
        })?;
    let wrong_parent = |found: String, expected: String| AdoptError::WrongParent {
        kind,
        id: id.to_string(),
        found,
        expected,
    };
    if let Some(account) = &found.account_id {
        if *account != parent.account_id {
            return Err(wrong_parent(
                format!("account {account}"),
                format!("account {}", parent.account_id),
            ));
        }
    }
    if found.parent_id != parent.parent_id {
        let show = |p: &Option<String>| p.clone().unwrap_or_else(|| "no parent".into());
        return Err(wrong_parent(
            show(&found.parent_id),
            show(&parent.parent_id),
        ));
    }
    let expected = entity.spec.lookup_name();
    if found.name != expected {
        return Err(AdoptError::WrongName {
            kind,
            id: id.to_string(),
            found: found.name,
            expected: expected.to_string(),
        });
    }
    Ok(())
}
