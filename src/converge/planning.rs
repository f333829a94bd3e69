//! Planning a push against the live platform: what the store knows of a
//! campaign's entities ([`Known`]), what the platform lists under the account
//! and the campaign ([`Observed`]), and the [`plan`] of the two against the
//! set. Reads only: nothing is written to the store or the platform.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

use super::drift::{drift, EntityDrift};
use super::fields::fields_of;
use super::plan::{plan, Action, Desired, Known, Observed, Plan, PlanOptions, Refusal};
use crate::adapter::{AdapterError, EntityKind, EntitySpec, KeywordModel, Parent, PushAdapter};
use crate::model::{CampaignSet, Keyword};
use crate::push::Pusher;
use crate::push::{known_ids_key, latest_key, EntityResult, KnownIds, PushError, PushState};

/// The drift of one campaign adsync manages ([`Pusher::drift`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CampaignDrift {
    /// The campaign's local id.
    pub campaign: String,
    /// Its entities that drifted (empty: none).
    pub entities: Vec<EntityDrift>,
}

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
            let (known, owner) = self.known(account, &campaign.id, model).await?;
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
            let known_groups = known
                .iter()
                .filter(|k| k.kind == EntityKind::AdGroup)
                .map(|k| k.id.clone())
                .collect();
            observed.extend(observe_under(adapter, account, &roots, known_groups, model).await?);
            let mut planned = plan(&campaign.id, &desired, &known, &observed, options);
            if let Some(owner) = owner.filter(|o| *o != set.name && !options.take_over) {
                if let Some(first) = planned.entries.first_mut() {
                    first.action = Action::Refuse {
                        refusal: Refusal::OwnedByAnotherSet { set: owner },
                    };
                }
            }
            plans.push(planned);
        }
        Ok(plans)
    }

    /// The drift of every campaign adsync manages on `account` (those it
    /// created or adopted with this pusher's platform): per campaign, the
    /// entities whose platform copy differs from what adsync last wrote or
    /// that the platform no longer lists. Reads only, one listing per parent.
    ///
    /// # Errors
    ///
    /// As [`Pusher::plan`].
    pub async fn drift(&self, account: &str) -> Result<Vec<CampaignDrift>, PushError> {
        let adapter = self.effects().adapter();
        let model = adapter.keyword_model();
        let prefix = known_ids_key(self.platform(), account, "");
        let campaigns: Vec<String> = self
            .runner()
            .read(move |store| {
                store
                    .scan_data(&prefix)
                    .map(|item| {
                        item.map(|(key, _)| {
                            String::from_utf8_lossy(&key[prefix.len()..]).into_owned()
                        })
                    })
                    .collect::<Result<Vec<_>, _>>()
            })
            .await?;
        let account_parent = Parent {
            account_id: account.to_string(),
            parent_id: None,
        };
        let mut listed: Option<Vec<Observed>> = None;
        let mut out = Vec::new();
        for campaign in campaigns {
            let (known, _) = self.known(account, &campaign, model).await?;
            if known.is_empty() {
                continue;
            }
            if listed.is_none() {
                listed = Some(list(adapter, &account_parent, EntityKind::Campaign).await?);
            }
            let mut observed = listed.clone().unwrap_or_default();
            let ids_of = |kind: EntityKind| -> BTreeSet<String> {
                known
                    .iter()
                    .filter(|k| k.kind == kind)
                    .map(|k| k.id.clone())
                    .collect()
            };
            let roots = ids_of(EntityKind::Campaign);
            observed.extend(
                observe_under(adapter, account, &roots, ids_of(EntityKind::AdGroup), model).await?,
            );
            out.push(CampaignDrift {
                campaign,
                entities: drift(&known, &observed),
            });
        }
        Ok(out)
    }

    /// The entities adsync created or adopted for `campaign` on `account`,
    /// each with the fields it last wrote: from the campaign's syncs, latest
    /// first, until every platform id the store keeps for it is accounted for;
    /// and the set that pushed it last.
    async fn known(
        &self,
        account: &str,
        campaign: &str,
        model: KeywordModel,
    ) -> Result<(Vec<Known>, Option<String>), PushError> {
        let (known, owner) = self.known_with_specs(account, campaign, model).await?;
        Ok((known.into_iter().map(|(k, _)| k).collect(), owner))
    }

    /// [`Pusher::known`], each entity with the spec it was last written
    /// with (what a converging push archives a retired entity as).
    pub(crate) async fn known_with_specs(
        &self,
        account: &str,
        campaign: &str,
        model: KeywordModel,
    ) -> Result<(Vec<(Known, Arc<EntitySpec>)>, Option<String>), PushError> {
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
            return Ok((vec![], None));
        };
        let mut owner = None;
        let mut ids = match stored {
            Some(bytes) => KnownIds::decode(campaign, &bytes)?.ids,
            None => BTreeMap::new(),
        };
        let generation = latest
            .rsplit('-')
            .next()
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        let mut known: Vec<(Known, Arc<EntitySpec>)> = Vec::new();
        let mut done: HashSet<String> = HashSet::new();
        let mut fallback: Vec<(Known, Arc<EntitySpec>)> = Vec::new();
        for n in (1..=generation).rev() {
            let Ok(checkpoint) = runner.get(&format!("{campaign}-{n}")).await else {
                continue;
            };
            let latest_ids = checkpoint.state.platform_ids();
            if n == generation {
                owner = checkpoint.record.labels.get("set").cloned();
                // The latest sync's ids win over the map (written at its start).
                ids.extend(latest_ids);
                fallback = written_entities(&checkpoint.state, model, true);
            }
            for (k, spec) in written_entities(&checkpoint.state, model, false) {
                if ids.get(&k.local_id) == Some(&k.id) && done.insert(k.local_id.clone()) {
                    known.push((k, spec));
                }
            }
            if ids.keys().all(|local| done.contains(local)) {
                break;
            }
        }
        // An id no sync records a write for (its update failed, say): what
        // the latest sync wanted is the best account of it.
        for (k, spec) in fallback {
            if ids.get(&k.local_id) == Some(&k.id) && done.insert(k.local_id.clone()) {
                known.push((k, spec));
            }
        }
        Ok((known, owner))
    }
}

/// The entities of a sync's state that it wrote (created, updated, adopted)
/// with the fields it wrote them with; under keyword targeting an ad group's
/// keywords are those its sync applied.
fn written_entities(
    state: &PushState,
    model: KeywordModel,
    any: bool,
) -> Vec<(Known, Arc<EntitySpec>)> {
    let entities = state.entities();
    let written = |r: &EntityResult| {
        any || matches!(
            r,
            EntityResult::Created
                | EntityResult::Updated
                | EntityResult::Adopted
                | EntityResult::Unchanged
                | EntityResult::Replaced { .. }
                | EntityResult::Archived
                | EntityResult::Left
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
                    .filter(|k| {
                        matches!(k.result(), EntityResult::Applied | EntityResult::Unchanged)
                    })
                    .map(|k| Keyword {
                        id: k.local_id().to_string(),
                        text: k.spec().lookup_name().to_string(),
                    })
                    .collect();
            }
            let mut written = fields_of(&spec, model);
            if matches!(e.result(), EntityResult::Archived) {
                written.insert("status", serde_json::Value::from("ARCHIVED"));
            }
            let known = Known {
                kind: e.kind(),
                local_id: e.local_id().to_string(),
                parent: e
                    .parent()
                    .and_then(|p| entities.get(p))
                    .map(|p| p.local_id().to_string()),
                id,
                name: e.spec().lookup_name().to_string(),
                written,
            };
            Some((known, Arc::new(e.spec().clone())))
        })
        .collect()
}

/// What a converging push reads before its first write (the push machine's
/// `Observe` effect): the account's campaigns, then everything under the
/// campaigns adsync manages (`campaign_ids`) or that bear the campaign's
/// name (to adopt or refuse), and under the ad groups it manages
/// (`ad_group_ids`, even when listed elsewhere): one listing per parent,
/// the same walk as [`Pusher::plan`].
pub(crate) async fn observe_campaign(
    adapter: &dyn PushAdapter,
    account: &str,
    campaign_name: &str,
    campaign_ids: &[String],
    ad_group_ids: &[String],
) -> Result<Vec<Observed>, PushError> {
    let account_parent = Parent {
        account_id: account.to_string(),
        parent_id: None,
    };
    let mut observed = list(adapter, &account_parent, EntityKind::Campaign).await?;
    let roots: BTreeSet<String> = campaign_ids
        .iter()
        .cloned()
        .chain(
            observed
                .iter()
                .filter(|o| o.name == campaign_name)
                .map(|o| o.id.clone()),
        )
        .collect();
    let groups = ad_group_ids.iter().cloned().collect();
    let model = adapter.keyword_model();
    observed.extend(observe_under(adapter, account, &roots, groups, model).await?);
    Ok(observed)
}

/// Everything listed under the campaigns `roots` (their ad groups) and under
/// each of those groups and `more_groups` (their ads, and keyword entities
/// where keywords are entities): one listing per parent.
async fn observe_under(
    adapter: &dyn PushAdapter,
    account: &str,
    roots: &BTreeSet<String>,
    mut more_groups: BTreeSet<String>,
    model: KeywordModel,
) -> Result<Vec<Observed>, PushError> {
    let under = |id: &str| Parent {
        account_id: account.to_string(),
        parent_id: Some(id.to_string()),
    };
    let mut observed = Vec::new();
    for root in roots {
        observed.extend(list(adapter, &under(root), EntityKind::AdGroup).await?);
    }
    // Groups adsync manages that are listed elsewhere (moved) still count.
    more_groups.extend(observed.iter().map(|g| g.id.clone()));
    for group in &more_groups {
        observed.extend(list(adapter, &under(group), EntityKind::Ad).await?);
        if model == KeywordModel::Entities {
            observed.extend(list(adapter, &under(group), EntityKind::Keyword).await?);
        }
    }
    Ok(observed)
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
