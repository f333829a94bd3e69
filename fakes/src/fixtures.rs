//! Campaign sets shared by the tests, the benches and `adsync demo`, and the
//! small Amazon profile the fake's and the client's tests share, so each is
//! written once.

use adsync::{Ad, AdGroup, Campaign, CampaignSet, ConfiguredStatus, Keyword, Objective};

use crate::Generator;

/// The Amazon profile id the fake's and the client's tests serve their
/// generated data under (a 16-digit id, shaped like Amazon's).
pub const AMAZON_PROFILE: &str = "3141592653589793";

/// A small Amazon profile: 40 campaigns × 4 ad groups × 8 keywords (1,280
/// keywords, seed 7), big enough to page through at sizes that leave a
/// partial last page, small enough to generate per test.
pub fn small_profile() -> Generator {
    Generator {
        campaigns: 40,
        ad_groups_per_campaign: 4,
        keywords_per_ad_group: 8,
        seed: 7,
    }
}

/// The JSON of `examples/campaign_set.json`, the set the README and the demo push.
pub const EXAMPLE_SET_JSON: &str = include_str!("../../examples/campaign_set.json");

/// [`EXAMPLE_SET_JSON`] parsed.
pub fn example_set() -> CampaignSet {
    CampaignSet::from_json(EXAMPLE_SET_JSON, "examples/campaign_set.json")
        .expect("the example set parses")
}

/// A two-campaign set (9 entities) for the tests that kill a real push: c1 →
/// {g1 → a1, k1; g2 → a2}, c2 → g3 → k3.
pub const TWO_CAMPAIGNS: &str = r#"{"name": "crash", "campaigns": [
  {"id": "c1", "name": "Campaign one", "objective": "CLICKS", "ad_groups": [
    {"id": "g1", "name": "Group one", "ads": [{"id": "a1", "name": "Ad one", "post_id": "t3_1"}],
     "keywords": [{"id": "k1", "text": "shoes"}]},
    {"id": "g2", "name": "Group two", "ads": [{"id": "a2", "name": "Ad two", "post_id": "t3_2"}]}]},
  {"id": "c2", "name": "Campaign two", "objective": "IMPRESSIONS", "ad_groups": [
    {"id": "g3", "name": "Group three", "keywords": [{"id": "k3", "text": "boots"}]}]}]}"#;

/// A one-campaign set: campaign c1 → ad group g1 → ad a1, keywords k1, k2.
pub fn small_set() -> CampaignSet {
    CampaignSet::from_json(
        r#"{"name": "small", "campaigns": [{"id": "c1", "name": "Campaign one", "objective": "CLICKS",
            "ad_groups": [{"id": "g1", "name": "Group one",
                "ads": [{"id": "a1", "name": "Ad one", "post_id": "t3_one"}],
                "keywords": [{"id": "k1", "text": "shoes"}, {"id": "k2", "text": "boots"}]}]}]}"#,
        "small.json",
    )
    .expect("small set parses")
}

/// How many children [`campaign`] gives each level.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shape {
    /// Ad groups per campaign.
    pub ad_groups: usize,
    /// Ads per ad group.
    pub ads: usize,
    /// Keywords per ad group.
    pub keywords: usize,
}

/// Campaign number `i` of a generated set, every entity paused: ids `c{i}`,
/// `c{i}g{g}`, `c{i}g{g}a{a}`, `c{i}g{g}k{k}` (unique across campaigns) and a
/// distinct post per ad, so a fake never sees two equal creates.
pub fn campaign(i: usize, shape: Shape) -> Campaign {
    Campaign {
        id: format!("c{i}"),
        name: format!("Campaign {i}"),
        objective: Objective::Clicks,
        status: ConfiguredStatus::Paused,
        goal: None,
        ad_groups: (0..shape.ad_groups)
            .map(|g| AdGroup {
                id: format!("c{i}g{g}"),
                name: format!("Group {g}"),
                status: ConfiguredStatus::Paused,
                bid_strategy: None,
                bid_type: None,
                bid_value_micros: None,
                start_time: None,
                end_time: None,
                ads: (0..shape.ads)
                    .map(|a| Ad {
                        id: format!("c{i}g{g}a{a}"),
                        name: format!("Ad {a}"),
                        post_id: format!("t3_{i}x{g}x{a}"),
                        click_url: None,
                        status: ConfiguredStatus::Paused,
                    })
                    .collect(),
                keywords: (0..shape.keywords)
                    .map(|k| Keyword {
                        id: format!("c{i}g{g}k{k}"),
                        text: format!("keyword {k}"),
                    })
                    .collect(),
            })
            .collect(),
    }
}
