//! Runs push effects against a [`PushAdapter`]: the only bridge from the push
//! machine to a platform.

use std::sync::Arc;

use async_trait::async_trait;

use crate::adapter::PushAdapter;
use crate::push::machine::{PushEffect, PushMachine, PushOutcome};
use crate::runner::Effects;

/// [`Effects`] of the push machine, performed by a platform adapter.
pub struct AdapterEffects {
    adapter: Arc<dyn PushAdapter>,
}

impl AdapterEffects {
    /// Effects performed by `adapter`.
    pub fn new(adapter: Arc<dyn PushAdapter>) -> Self {
        AdapterEffects { adapter }
    }
}

#[async_trait]
impl Effects<PushMachine> for AdapterEffects {
    async fn perform(&self, _sync: &str, effect: &PushEffect) -> PushOutcome {
        let failed = |error| PushOutcome::Failed { error };
        match effect {
            PushEffect::Create { parent, spec } => match self.adapter.create(parent, spec).await {
                Ok(id) => PushOutcome::Created { id },
                Err(error) => failed(error),
            },
            PushEffect::Update { parent, id, spec } => {
                match self.adapter.update(parent, id, spec).await {
                    Ok(()) => PushOutcome::Updated,
                    Err(error) => failed(error),
                }
            }
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
