//! Wire types of the Reddit Ads API v3 (see `docs/platforms/reddit.md`).
//!
//! Requests are wrapped as `{"data": {...}}`, single responses as `{"data": {...}}`,
//! lists as `{"data": [...], "pagination": {"next_url", "previous_url"}}` and errors
//! as `{"error": {"code", "message", "fields": [{"field", "message"}]}}`. Money is in
//! micros (1 USD = 1,000,000).
//!
//! Write bodies use the crate's model enums (their serde names are Reddit's);
//! response types keep enums as plain strings so that a value Reddit adds later
//! does not make a whole response unreadable.

use serde::{Deserialize, Serialize};

use crate::model::{self, BidStrategy, BidType, ConfiguredStatus, GoalType, Objective};

/// The request and single-object response envelope: `{"data": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// The wrapped object.
    pub data: T,
}

/// A list response: `{"data": [...], "pagination": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ListEnvelope<T> {
    /// This page's objects.
    pub data: Vec<T>,
    /// Links to the neighbouring pages, if any.
    #[serde(default)]
    pub pagination: Option<Pagination>,
}

/// Page links of a list response; both are absolute URLs, followed exactly as given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pagination {
    /// The next page, absent or null on the last page.
    #[serde(default)]
    pub next_url: Option<String>,
    /// The previous page, absent or null on the first page.
    #[serde(default)]
    pub previous_url: Option<String>,
}

/// An error response: `{"error": {...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorEnvelope {
    /// The error.
    pub error: ApiError,
}

/// The body of an error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiError {
    /// The HTTP status, repeated (a number; kept loose in case it is a string).
    #[serde(default)]
    pub code: Option<serde_json::Value>,
    /// A short message such as `Bad Request`.
    #[serde(default)]
    pub message: Option<String>,
    /// Per-field validation messages.
    #[serde(default)]
    pub fields: Vec<ApiFieldError>,
}

/// One rejected field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiFieldError {
    /// The field, as Reddit names it.
    pub field: String,
    /// Why it was rejected.
    pub message: String,
}

/// The fields adsync writes on a campaign (create and update).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CampaignWrite {
    /// Name (at least 3 characters).
    pub name: String,
    /// Objective.
    pub objective: Objective,
    /// Desired status.
    pub configured_status: ConfiguredStatus,
    /// Spend goal kind.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal_type: Option<GoalType>,
    /// Spend goal in micros.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal_value: Option<u64>,
}

impl From<&model::Campaign> for CampaignWrite {
    fn from(c: &model::Campaign) -> Self {
        CampaignWrite {
            name: c.name.clone(),
            objective: c.objective,
            configured_status: c.status,
            goal_type: c.goal.as_ref().map(|g| g.goal_type),
            goal_value: c.goal.as_ref().map(|g| g.value_micros),
        }
    }
}

/// The fields adsync writes on an ad group. Targeting is never sent here (an
/// update would otherwise wipe keywords); keywords go through their own PATCH.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdGroupWrite {
    /// Parent campaign: sent on create only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id: Option<String>,
    /// Name (at least 3 characters).
    pub name: String,
    /// Desired status.
    pub configured_status: ConfiguredStatus,
    /// Bid strategy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bid_strategy: Option<BidStrategy>,
    /// Bid type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bid_type: Option<BidType>,
    /// Bid in micros.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bid_value: Option<u64>,
    /// ISO 8601 start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// ISO 8601 end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
}

impl AdGroupWrite {
    /// The write body for `g`; `campaign_id` is `Some` for a create only.
    pub fn new(g: &model::AdGroup, campaign_id: Option<String>) -> Self {
        AdGroupWrite {
            campaign_id,
            name: g.name.clone(),
            configured_status: g.status,
            bid_strategy: g.bid_strategy,
            bid_type: g.bid_type,
            bid_value: g.bid_value_micros,
            start_time: g.start_time.clone(),
            end_time: g.end_time.clone(),
        }
    }
}

/// The fields adsync writes on an ad.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AdWrite {
    /// Parent ad group: sent on create only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad_group_id: Option<String>,
    /// Name (at least 3 characters).
    pub name: String,
    /// Promoted post (`t3_…`).
    pub post_id: String,
    /// Landing page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub click_url: Option<String>,
    /// Desired status.
    pub configured_status: ConfiguredStatus,
}

impl AdWrite {
    /// The write body for `a`; `ad_group_id` is `Some` for a create only.
    pub fn new(a: &model::Ad, ad_group_id: Option<String>) -> Self {
        AdWrite {
            ad_group_id,
            name: a.name.clone(),
            post_id: a.post_id.clone(),
            click_url: a.click_url.clone(),
            configured_status: a.status,
        }
    }
}

/// The PATCH body that sets an ad group's whole targeting object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetingWrite {
    /// The full targeting object (keywords replaced, everything else kept).
    pub targeting: Targeting,
}

/// Ad group targeting. Only the keyword lists are typed; every other key
/// (communities, geolocations, interests, devices, …) is kept as received.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Targeting {
    /// Targeted keywords (plain strings: no ids, no bids).
    #[serde(default)]
    pub keywords: Vec<String>,
    /// Excluded keywords.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excluded_keywords: Option<Vec<String>>,
    /// Everything else, untouched.
    #[serde(flatten)]
    pub other: serde_json::Map<String, serde_json::Value>,
}

/// The fields every listed entity shares, enough for look-ups after an unknown create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntitySummary {
    /// Platform id.
    pub id: String,
    /// Name.
    pub name: String,
    /// RFC 3339 creation time.
    #[serde(default)]
    pub created_at: Option<String>,
}

/// The part of a create response adsync needs: the new id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Created {
    /// The new entity's platform id.
    pub id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targeting_keeps_unknown_keys_and_round_trips() {
        let raw = serde_json::json!({
            "keywords": ["a"], "communities": ["r/rust"], "devices": [{"os": "IOS"}]
        });
        let mut t: Targeting = serde_json::from_value(raw).expect("parses");
        t.keywords = vec!["b".into(), "c".into()];
        let back = serde_json::to_value(&t).expect("serializes");
        assert_eq!(
            back,
            serde_json::json!({"keywords": ["b", "c"], "communities": ["r/rust"], "devices": [{"os": "IOS"}]})
        );
    }

    #[test]
    fn campaign_write_uses_reddit_names_and_micros() {
        let c = model::Campaign {
            id: "c1".into(),
            name: "Spring".into(),
            objective: Objective::LeadGeneration,
            status: ConfiguredStatus::Paused,
            goal: Some(model::SpendGoal {
                goal_type: GoalType::DailySpend,
                value_micros: 5_000_000,
            }),
            ad_groups: vec![],
        };
        let body = serde_json::to_value(Envelope {
            data: CampaignWrite::from(&c),
        })
        .expect("serializes");
        assert_eq!(
            body,
            serde_json::json!({"data": {"name": "Spring", "objective": "LEAD_GENERATION",
                "configured_status": "PAUSED", "goal_type": "DAILY_SPEND", "goal_value": 5000000}})
        );
    }
}
