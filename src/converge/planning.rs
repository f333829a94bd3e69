//! Planning a push against the live platform: what the store knows of a
//! campaign's entities ([`Known`]), what the platform lists under the account
//! and the campaign ([`Observed`]), and the [`plan`] of the two against the
//! set. Reads only: nothing is written to the store or the platform.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use super::fields::fields_of;
use super::plan::{plan, Desired, Known, Observed, Plan, PlanOptions};
use crate::adapter::{AdapterError, EntityKind, EntitySpec, KeywordModel, Parent, PushAdapter};
use crate::model::{CampaignSet, Keyword};
use crate::push::Pusher;
use crate::push::{known_ids_key, latest_key, EntityResult, KnownIds, PushError, PushState};

impl Pusher {
    /// Plans the push of every campaign of `set` to `account`: reads what the
    /// store knows and what the platform lists (one listing per parent), and
    /// returns one [`Plan`] per campaign. Writes nothing anywhere.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// use std::sync::Arc;
    /// use adsync::converge::{Action, PlanOptions};
    /// use adsync::memory::MemoryPlatform;
    /// use adsync::{CampaignSet, Pusher, Store, SystemClock};
    ///
    /// let clock = Arc::new(SystemClock);
    /// let platform = Arc::new(MemoryPlatform::new(clock.clone()));
    /// let pusher = Pusher::new(Store::temporary().unwrap(), platform, clock);
    /// let set = CampaignSet::from_json(
    ///     r#"{"name": "demo", "campaigns": [{"id": "c1", "name": "Spring sale",
    ///         "objective": "CLICKS", "ad_groups": []}]}"#,
    ///     "set.json",
    /// )
    /// .unwrap();
    /// let plans = pusher.plan(&set, "a2_demo", PlanOptions::default()).await.unwrap();
    /// assert_eq!(plans[0].entries[0].action, Action::Create);
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`PushError::Platform`] when a listing cannot be read (the adapter's
    /// error, naming the endpoint), [`PushError::Run`] when the store cannot.
    pub async fn plan(
        &self,
        set: &CampaignSet,
        account: &str,
        options: PlanOptions,
    ) -> Result<Vec<Plan>, PushError> {
        let adapter = self.effects().adapter();
        let model = adapter.keyword_model();
        let account_parent = Parent {
            account_id: account.to_string(),
            parent_id: None,
        };
        let campaigns = list(adapter, &account_parent, EntityKind::Campaign).await?;
        let mut plans = Vec::new();
        for campaign in &set.campaigns {
            let desired = Desired::of_campaign(campaign, model);
            let known = self.known(account, &campaign.id, model).await?;
            let mut observed: Vec<Observed> = campaigns.clone();
            // The campaigns to look under: the one adsync manages, and any of
            // the set's name (to adopt or refuse).
            let roots: BTreeSet<String> = known
                .iter()
                .filter(|k| k.kind == EntityKind::Campaign)
                .map(|k| k.id.clone())
                .chain(
                    campaigns
                        .iter()
                        .filter(|o| o.name == campaign.name)
                        .map(|o| o.id.clone()),
                )
                .collect();
            let mut groups = Vec::new();
            for root in &roots {
                let under = Parent {
                    account_id: account.to_string(),
                    parent_id: Some(root.clone()),
                };
                groups.extend(list(adapter, &under, EntityKind::AdGroup).await?);
            }
            // Groups adsync manages that were moved or listed elsewhere still
            // count: their children are looked at too.
            let mut group_ids: BTreeSet<String> = groups.iter().map(|g| g.id.clone()).collect();
            group_ids.extend(
                known
                    .iter()
                    .filter(|k| k.kind == EntityKind::AdGroup)
                    .map(|k| k.id.clone()),
            );
            observed.extend(groups);
            for group in &group_ids {
                let under = Parent {
                    account_id: account.to_string(),
                    parent_id: Some(group.clone()),
                };
                observed.extend(list(adapter, &under, EntityKind::Ad).await?);
                if model == KeywordModel::Entities {
                    observed.extend(list(adapter, &under, EntityKind::Keyword).await?);
                }
            }
            let mut seen = HashSet::new();
            observed.retain(|o| seen.insert(o.id.clone()));
            plans.push(plan(&campaign.id, &desired, &known, &observed, options));
        }
        Ok(plans)
    }

    /// The entities adsync created or adopted for `campaign` on `account`,
    /// each with the fields it last wrote: from the campaign's syncs, latest
    /// first, until every platform id the store keeps for it is accounted for.
    async fn known(
        &self,
        account: &str,
        campaign: &str,
        model: KeywordModel,
    ) -> Result<Vec<Known>, PushError> {
        let platform = self.platform().to_string();
        let (index_key, ids_key) = (
            latest_key(&platform, account, campaign),
            known_ids_key(&platform, account, campaign),
        );
        let runner = self.runner();
        let (latest, stored) = runner
            .read(move |store| Ok((store.index(&index_key)?, store.data(&ids_key)?)))
            .await?;
        let Some(latest) = latest else {
            return Ok(vec![]);
        };
        let mut ids = match stored {
            Some(bytes) => KnownIds::decode(campaign, &bytes)?.ids,
            None => BTreeMap::new(),
        };
        let generation = latest
            .rsplit('-')
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        let mut known: Vec<Known> = Vec::new();
        let mut done: HashSet<String> = HashSet::new();
        for n in (1..=generation).rev() {
            let Ok(checkpoint) = runner.get(&format!("{campaign}-{n}")).await else {
                continue;
            };
            let latest_ids = checkpoint.state.platform_ids();
            if n == generation {
                // The latest sync's ids win over the map (written at its start).
                ids.extend(latest_ids);
            }
            for k in written_entities(&checkpoint.state, model) {
                if ids.get(&k.local_id) == Some(&k.id) && done.insert(k.local_id.clone()) {
                    known.push(k);
                }
            }
            if ids.keys().all(|local| done.contains(local)) {
                break;
            }
        }
        Ok(known)
    }
}

/// The entities of a sync's state that it wrote (created, updated, adopted)
/// with the fields it wrote them with; under keyword targeting an ad group's
/// keywords are those its sync applied.
fn written_entities(state: &PushState, model: KeywordModel) -> Vec<Known> {
    let entities = state.entities();
    let written = |r: &EntityResult| {
        matches!(
            r,
            EntityResult::Created | EntityResult::Updated | EntityResult::Adopted
        )
    };
    entities
        .iter()
        .enumerate()
        .filter(|(_, e)| written(e.result()))
        .filter_map(|(n, e)| {
            let id = e.platform_id()?.to_string();
            let mut spec = e.spec().clone();
            if let EntitySpec::AdGroup(group) = &mut spec {
                group.keywords = entities
                    .iter()
                    .filter(|k| k.parent() == Some(n) && k.kind() == EntityKind::Keyword)
                    .filter(|k| matches!(k.result(), EntityResult::Applied))
                    .map(|k| Keyword {
                        id: k.local_id().to_string(),
                        text: k.spec().lookup_name().to_string(),
                    })
                    .collect();
            }
            Some(Known {
                kind: e.kind(),
                local_id: e.local_id().to_string(),
                parent: e
                    .parent()
                    .and_then(|p| entities.get(p))
                    .map(|p| p.local_id().to_string()),
                id,
                name: e.spec().lookup_name().to_string(),
                written: fields_of(&spec, model),
            })
        })
        .collect()
}

async fn list(
    adapter: &dyn PushAdapter,
    parent: &Parent,
    kind: EntityKind,
) -> Result<Vec<Observed>, PushError> {
    adapter
        .list(parent, kind)
        .await
        .map_err(|e: AdapterError| PushError::Platform {
            what: format!(
                "listing the {kind}s under {}",
                parent.parent_id.as_deref().unwrap_or(&parent.account_id)
            ),
            source: e,
        })
}
