//! Deterministic Sponsored Products profiles of any size, for the fake server
//! and for tests.
//!
//! Ids are 15-digit numeric strings (like Amazon's) assigned in order, so the
//! generated vectors are already sorted by id and building 500,000 keywords is a
//! single linear pass. The same seed always gives the same profile (a private
//! SplitMix64, independent of `rand`'s algorithm choices).
//!
//! Every documented field of the three entity kinds appears (the optional
//! ones on some entities only), and the undocumented `fakeFutureField` too.
//! The fields adsync does not model are drawn from a second random stream, so
//! adding them did not change any value the first stream gives.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::amazon::wire::{
    AdGroup, BidStrategy, Budget, BudgetType, Campaign, DynamicBidding, Keyword, MatchType,
    Placement, PlacementBidding, State, TargetingType,
};

/// Every entity of one profile, each vector sorted by id, in the fake's own
/// wire types (not the client's). To check what a client read against it,
/// compare both sides as JSON with [`wire_json`](crate::amazon::wire_json).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ProfileData {
    /// Campaigns, sorted by `campaign_id`.
    pub campaigns: Vec<Campaign>,
    /// Ad groups, sorted by `ad_group_id`.
    pub ad_groups: Vec<AdGroup>,
    /// Keywords, sorted by `keyword_id`.
    pub keywords: Vec<Keyword>,
}

/// Shape of a generated profile: `campaigns × ad_groups_per_campaign ×
/// keywords_per_ad_group`.
///
/// ```
/// use adsync_fakes::generator::Generator;
/// let data = Generator { campaigns: 3, ad_groups_per_campaign: 2, keywords_per_ad_group: 4, seed: 7 }
///     .generate();
/// assert_eq!((data.campaigns.len(), data.ad_groups.len(), data.keywords.len()), (3, 6, 24));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generator {
    /// Number of campaigns.
    pub campaigns: usize,
    /// Ad groups in each campaign.
    pub ad_groups_per_campaign: usize,
    /// Keywords in each ad group.
    pub keywords_per_ad_group: usize,
    /// Seed; equal seeds give equal profiles.
    pub seed: u64,
}

/// First campaign id; ad groups and keywords use their own ranges.
pub const CAMPAIGN_ID_BASE: u64 = 100_000_000_000_000;
/// First ad group id.
pub const AD_GROUP_ID_BASE: u64 = 200_000_000_000_000;
/// First keyword id.
pub const KEYWORD_ID_BASE: u64 = 300_000_000_000_000;

struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// A price with two decimals in `[lo, hi]` cents (exact through JSON).
    fn cents(&mut self, lo: u64, hi: u64) -> f64 {
        (lo + self.below(hi - lo + 1)) as f64 / 100.0
    }

    fn state(&mut self) -> State {
        match self.below(100) {
            0..=79 => State::Enabled,
            80..=94 => State::Paused,
            _ => State::Archived,
        }
    }
}

/// The `dynamicBidding` of a campaign: a strategy and zero to three placement
/// adjustments (each placement at most once, in a fixed order).
fn dynamic_bidding(rng: &mut SplitMix) -> DynamicBidding {
    let strategy = match rng.below(4) {
        0 => BidStrategy::LegacyForSales,
        1 => BidStrategy::AutoForSales,
        2 => BidStrategy::Manual,
        _ => BidStrategy::RuleBased,
    };
    let placements = [
        Placement::Top,
        Placement::ProductPage,
        Placement::RestOfSearch,
    ];
    let mask = rng.below(8);
    let placement_bidding = placements
        .into_iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, placement)| PlacementBidding {
            placement,
            percentage: rng.below(901) as u32,
        })
        .collect();
    DynamicBidding {
        strategy,
        placement_bidding,
    }
}

const TEAMS: [&str; 4] = ["brand", "performance", "eu \"north\"", "équipe"];
const NATIVE: [(&str, &str); 4] = [
    ("咖啡豆", "zh_CN"),
    ("Kaffeebohnen", "de_DE"),
    ("grains de café", "fr_FR"),
    ("コーヒー豆", "ja_JP"),
];

const ADJECTIVES: [&str; 16] = [
    "organic",
    "wireless",
    "bamboo",
    "stainless",
    "vegan",
    "compact",
    "heavy duty",
    "kids",
    "premium",
    "portable",
    "waterproof",
    "ergonomic",
    "vintage",
    "smart",
    "eco",
    "mini",
];
const NOUNS: [&str; 16] = [
    "coffee beans",
    "earbuds",
    "toothbrush",
    "water bottle",
    "protein powder",
    "backpack",
    "desk lamp",
    "yoga mat",
    "phone case",
    "dog leash",
    "tea kettle",
    "notebook",
    "sneakers",
    "blender",
    "garden hose",
    "headphones",
];

impl Generator {
    /// Builds the profile.
    pub fn generate(&self) -> ProfileData {
        let mut rng = SplitMix(self.seed ^ 0xADD5_11C0);
        // The fields adsync does not model: their own stream (see the module docs).
        let mut more = SplitMix(self.seed ^ 0xF1DE_117E);
        let n_ag = self.campaigns * self.ad_groups_per_campaign;
        let mut data = ProfileData {
            campaigns: Vec::with_capacity(self.campaigns),
            ad_groups: Vec::with_capacity(n_ag),
            keywords: Vec::with_capacity(n_ag * self.keywords_per_ad_group),
        };
        let mut ag_index = 0u64;
        let mut kw_index = 0u64;
        for c in 0..self.campaigns {
            let campaign_id = (CAMPAIGN_ID_BASE + c as u64).to_string();
            let day = 1 + rng.below(28);
            let month = 1 + rng.below(12);
            data.campaigns.push(Campaign {
                campaign_id: campaign_id.clone(),
                name: format!("Campaign {c:06} {}", NOUNS[rng.below(16) as usize]),
                state: rng.state(),
                targeting_type: if rng.below(4) == 0 {
                    TargetingType::Auto
                } else {
                    TargetingType::Manual
                },
                budget: Budget {
                    budget_type: BudgetType::Daily,
                    budget: rng.cents(100, 50_000),
                    fake_future_field: (more.below(2) == 0).then(|| more.below(1000)),
                },
                start_date: format!("2026-{month:02}-{day:02}"),
                end_date: (rng.below(5) == 0).then(|| format!("2027-{month:02}-{day:02}")),
                portfolio_id: (rng.below(3) == 0)
                    .then(|| (900_000_000_000_000 + rng.below(50)).to_string()),
                dynamic_bidding: Some(dynamic_bidding(&mut more)),
                tags: match more.below(3) {
                    0 => BTreeMap::from([
                        (
                            "team".to_string(),
                            TEAMS[more.below(4) as usize].to_string(),
                        ),
                        ("season".to_string(), format!("2026-q{}", 1 + more.below(4))),
                    ]),
                    _ => BTreeMap::new(),
                },
                fake_future_field: Some(more.next() >> 11),
            });
            for g in 0..self.ad_groups_per_campaign {
                let ad_group_id = (AD_GROUP_ID_BASE + ag_index).to_string();
                ag_index += 1;
                data.ad_groups.push(AdGroup {
                    ad_group_id: ad_group_id.clone(),
                    campaign_id: campaign_id.clone(),
                    name: format!("Ad group {c:06}-{g:03}"),
                    state: rng.state(),
                    default_bid: rng.cents(2, 500),
                    fake_future_field: (more.below(2) == 0).then(|| more.below(1000)),
                });
                for k in 0..self.keywords_per_ad_group {
                    let r = rng.next();
                    // One draw of the second stream per keyword: a 500,000-keyword
                    // profile stays a single cheap pass.
                    let m = more.next();
                    let native = (m & 0xF == 0).then(|| NATIVE[((m >> 4) & 3) as usize]);
                    data.keywords.push(Keyword {
                        keyword_id: (KEYWORD_ID_BASE + kw_index).to_string(),
                        campaign_id: campaign_id.clone(),
                        ad_group_id: ad_group_id.clone(),
                        keyword_text: format!(
                            "{} {} {k}",
                            ADJECTIVES[(r & 15) as usize],
                            NOUNS[((r >> 4) & 15) as usize]
                        ),
                        match_type: match (r >> 8) % 3 {
                            0 => MatchType::Exact,
                            1 => MatchType::Phrase,
                            _ => MatchType::Broad,
                        },
                        state: rng.state(),
                        bid: ((r >> 12) % 4 != 0)
                            .then_some(2.0 + ((r >> 16) % 999) as f64)
                            .map(|cents| cents / 100.0),
                        native_language_keyword: native.map(|(text, _)| text.to_string()),
                        native_language_locale: native.map(|(_, locale)| locale.to_string()),
                        fake_future_field: (m & 0x70 == 0).then_some((m >> 8) & 0xFFFF),
                    });
                    kw_index += 1;
                }
            }
        }
        data
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deterministic_sorted_and_sized() {
        let g = Generator {
            campaigns: 5,
            ad_groups_per_campaign: 3,
            keywords_per_ad_group: 7,
            seed: 42,
        };
        let a = g.generate();
        assert_eq!(a, g.generate());
        assert_ne!(a, Generator { seed: 43, ..g }.generate());
        assert_eq!(a.keywords.len(), 105);
        assert!(a
            .campaigns
            .windows(2)
            .all(|w| w[0].campaign_id < w[1].campaign_id));
        assert!(a
            .ad_groups
            .windows(2)
            .all(|w| w[0].ad_group_id < w[1].ad_group_id));
        assert!(a
            .keywords
            .windows(2)
            .all(|w| w[0].keyword_id < w[1].keyword_id));
        // Parents exist.
        for k in &a.keywords {
            let ag = a
                .ad_groups
                .iter()
                .find(|g| g.ad_group_id == k.ad_group_id)
                .unwrap();
            assert_eq!(ag.campaign_id, k.campaign_id);
        }
    }

    #[test]
    fn every_documented_field_and_the_undocumented_one_appear() {
        let data = Generator {
            campaigns: 40,
            ad_groups_per_campaign: 2,
            keywords_per_ad_group: 20,
            seed: 3,
        }
        .generate();
        let c = &data.campaigns;
        assert!(c.iter().all(|c| c.dynamic_bidding.is_some()));
        assert!(c.iter().any(|c| c
            .dynamic_bidding
            .as_ref()
            .is_some_and(|d| !d.placement_bidding.is_empty())));
        assert!(c.iter().any(|c| !c.tags.is_empty()));
        assert!(c.iter().any(|c| c.end_date.is_some()));
        assert!(c.iter().any(|c| c.portfolio_id.is_some()));
        assert!(c.iter().any(|c| c.budget.fake_future_field.is_some()));
        assert!(c.iter().all(|c| c.fake_future_field.is_some()));
        assert!(data.ad_groups.iter().any(|g| g.fake_future_field.is_some()));
        let k = &data.keywords;
        assert!(k.iter().any(|k| k.bid.is_none()) && k.iter().any(|k| k.bid.is_some()));
        assert!(k
            .iter()
            .any(|k| k.native_language_keyword.is_some() && k.native_language_locale.is_some()));
        assert!(k.iter().any(|k| k.fake_future_field.is_some()));
    }
}
