//! The fake's own wire types, written from `docs/platforms/amazon.md` rather
//! than imported from adsync's client, so a serialization bug in the client (a
//! misspelled field, an enum in the wrong case, a wrong media type) is
//! answered 400 or 415, or fails a test's comparison, instead of being
//! mirrored.
//!
//! Requests: unlike the client, which ignores fields it does not model so it
//! keeps working when Amazon grows, the fake rejects request fields the notes
//! do not list: a client's typo must not pass silently.
//!
//! Responses: the entities ([`Campaign`], [`AdGroup`], [`Keyword`]) carry every
//! field `docs/platforms/amazon.md` documents for them, whether adsync models
//! it or not (`dynamicBidding`, `tags`, `nativeLanguageKeyword`, …), spelled as
//! the notes spell them, plus `fakeFutureField`, which no documentation names:
//! it stands for whatever Amazon adds next, which a lossless client must keep
//! too (also inside `budget`, a nested object the client does model). The list
//! envelopes borrow the entities so a 1000-item page is serialized in one pass.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// One of the three list endpoints, and the entity type it lists. On the
/// admin API (`POST /_admin/mutations`) it is spelled `campaigns`,
/// `ad_groups` or `keywords`; it displays as its endpoint path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ListKind {
    /// `POST /sp/campaigns/list`.
    #[serde(rename = "campaigns")]
    Campaigns,
    /// `POST /sp/adGroups/list`.
    #[serde(rename = "ad_groups")]
    AdGroups,
    /// `POST /sp/keywords/list`.
    #[serde(rename = "keywords")]
    Keywords,
}

impl std::fmt::Display for ListKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(path(*self))
    }
}

/// The endpoint path of `kind`, as the notes spell it.
pub fn path(kind: ListKind) -> &'static str {
    match kind {
        ListKind::Campaigns => "/sp/campaigns/list",
        ListKind::AdGroups => "/sp/adGroups/list",
        ListKind::Keywords => "/sp/keywords/list",
    }
}

/// The vendor media type `kind`'s endpoint requires on `Content-Type` and `Accept`.
pub fn media_type(kind: ListKind) -> &'static str {
    match kind {
        ListKind::Campaigns => "application/vnd.spCampaign.v3+json",
        ListKind::AdGroups => "application/vnd.spAdGroup.v3+json",
        ListKind::Keywords => "application/vnd.spKeyword.v3+json",
    }
}

/// The response key holding `kind`'s items.
pub fn items_key(kind: ListKind) -> &'static str {
    match kind {
        ListKind::Campaigns => "campaigns",
        ListKind::AdGroups => "adGroups",
        ListKind::Keywords => "keywords",
    }
}

/// An entity state, upper case on the wire. Writes may only set the first
/// three; reads and `stateFilter` may name all six.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum State {
    /// `ENABLED`.
    #[serde(rename = "ENABLED")]
    Enabled,
    /// `PAUSED`.
    #[serde(rename = "PAUSED")]
    Paused,
    /// `ARCHIVED`.
    #[serde(rename = "ARCHIVED")]
    Archived,
    /// `ENABLING` (read only on Amazon, but filterable).
    #[serde(rename = "ENABLING")]
    Enabling,
    /// `USER_DELETED`.
    #[serde(rename = "USER_DELETED")]
    UserDeleted,
    /// `OTHER`.
    #[serde(rename = "OTHER")]
    Other,
}

impl State {
    /// Its wire spelling (what the token fingerprint hashes).
    pub fn as_str(self) -> &'static str {
        match self {
            State::Enabled => "ENABLED",
            State::Paused => "PAUSED",
            State::Archived => "ARCHIVED",
            State::Enabling => "ENABLING",
            State::UserDeleted => "USER_DELETED",
            State::Other => "OTHER",
        }
    }
}

/// A campaign's `targetingType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TargetingType {
    /// `AUTO`: Amazon picks keywords and products.
    #[serde(rename = "AUTO")]
    Auto,
    /// `MANUAL`: the advertiser picks them.
    #[serde(rename = "MANUAL")]
    Manual,
}

/// A keyword's `matchType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MatchType {
    /// `EXACT`.
    #[serde(rename = "EXACT")]
    Exact,
    /// `PHRASE`.
    #[serde(rename = "PHRASE")]
    Phrase,
    /// `BROAD`.
    #[serde(rename = "BROAD")]
    Broad,
}

/// A budget's `budgetType`; Sponsored Products only has daily budgets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BudgetType {
    /// `DAILY`.
    #[serde(rename = "DAILY")]
    Daily,
}

/// A campaign's `budget` object.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// `budgetType`.
    #[serde(rename = "budgetType")]
    pub budget_type: BudgetType,
    /// `budget`: the amount, in the marketplace currency.
    pub budget: f64,
    /// `fakeFutureField`: undocumented, fake only (see the module docs);
    /// absent when `None`.
    #[serde(
        rename = "fakeFutureField",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub fake_future_field: Option<u64>,
}

/// `dynamicBidding.strategy`: how Amazon may move a campaign's bids in the auction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BidStrategy {
    /// `LEGACY_FOR_SALES`: dynamic bids, down only.
    #[serde(rename = "LEGACY_FOR_SALES")]
    LegacyForSales,
    /// `AUTO_FOR_SALES`: dynamic bids, up and down.
    #[serde(rename = "AUTO_FOR_SALES")]
    AutoForSales,
    /// `MANUAL`: fixed bids.
    #[serde(rename = "MANUAL")]
    Manual,
    /// `RULE_BASED`: bids set by the advertiser's rules.
    #[serde(rename = "RULE_BASED")]
    RuleBased,
}

/// `dynamicBidding.placementBidding[].placement`: where on Amazon the ad shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Placement {
    /// `PLACEMENT_TOP`: top of the first search results page.
    #[serde(rename = "PLACEMENT_TOP")]
    Top,
    /// `PLACEMENT_PRODUCT_PAGE`: product detail pages.
    #[serde(rename = "PLACEMENT_PRODUCT_PAGE")]
    ProductPage,
    /// `PLACEMENT_REST_OF_SEARCH`: elsewhere in search results.
    #[serde(rename = "PLACEMENT_REST_OF_SEARCH")]
    RestOfSearch,
}

/// One `dynamicBidding.placementBidding` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlacementBidding {
    /// `placement`.
    pub placement: Placement,
    /// `percentage`: how much the bid is raised there, an integer 0–900.
    pub percentage: u32,
}

/// A campaign's `dynamicBidding` object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DynamicBidding {
    /// `strategy`.
    pub strategy: BidStrategy,
    /// `placementBidding`: at most one entry per placement; may be empty.
    #[serde(rename = "placementBidding")]
    pub placement_bidding: Vec<PlacementBidding>,
}

/// A campaign as `/sp/campaigns/list` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Campaign {
    /// `campaignId`: a numeric string.
    #[serde(rename = "campaignId")]
    pub campaign_id: String,
    /// `name`: unique within an account, at most 128 characters.
    pub name: String,
    /// `state`.
    pub state: State,
    /// `targetingType`.
    #[serde(rename = "targetingType")]
    pub targeting_type: TargetingType,
    /// `budget`.
    pub budget: Budget,
    /// `startDate`, `YYYY-MM-DD`.
    #[serde(rename = "startDate")]
    pub start_date: String,
    /// `endDate`, `YYYY-MM-DD`; absent from the JSON when the campaign has none.
    #[serde(rename = "endDate", default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<String>,
    /// `portfolioId`; absent from the JSON when the campaign is in no portfolio.
    #[serde(
        rename = "portfolioId",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub portfolio_id: Option<String>,
    /// `dynamicBidding`: bid strategy and placement adjustments; absent when `None`.
    #[serde(
        rename = "dynamicBidding",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub dynamic_bidding: Option<DynamicBidding>,
    /// `tags`: the advertiser's string labels; absent when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tags: BTreeMap<String, String>,
    /// `fakeFutureField`: undocumented, fake only (see the module docs).
    #[serde(
        rename = "fakeFutureField",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub fake_future_field: Option<u64>,
}

/// An ad group as `/sp/adGroups/list` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdGroup {
    /// `adGroupId`.
    #[serde(rename = "adGroupId")]
    pub ad_group_id: String,
    /// `campaignId` of the parent campaign.
    #[serde(rename = "campaignId")]
    pub campaign_id: String,
    /// `name`.
    pub name: String,
    /// `state`.
    pub state: State,
    /// `defaultBid`: the bid of its targets that have none of their own.
    #[serde(rename = "defaultBid")]
    pub default_bid: f64,
    /// `fakeFutureField`: undocumented, fake only (see the module docs).
    #[serde(
        rename = "fakeFutureField",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub fake_future_field: Option<u64>,
}

/// A keyword as `/sp/keywords/list` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keyword {
    /// `keywordId`.
    #[serde(rename = "keywordId")]
    pub keyword_id: String,
    /// `campaignId` of the parent ad group's campaign.
    #[serde(rename = "campaignId")]
    pub campaign_id: String,
    /// `adGroupId` of the parent ad group.
    #[serde(rename = "adGroupId")]
    pub ad_group_id: String,
    /// `keywordText`.
    #[serde(rename = "keywordText")]
    pub keyword_text: String,
    /// `matchType`.
    #[serde(rename = "matchType")]
    pub match_type: MatchType,
    /// `state`.
    pub state: State,
    /// `bid`; absent from the JSON when the keyword uses its ad group's `defaultBid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bid: Option<f64>,
    /// `nativeLanguageKeyword`: the keyword in the marketplace's own
    /// language, when it was entered in another; absent when `None`.
    #[serde(
        rename = "nativeLanguageKeyword",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub native_language_keyword: Option<String>,
    /// `nativeLanguageLocale`: the locale of `nativeLanguageKeyword` (`zh_CN`);
    /// absent when `None`.
    #[serde(
        rename = "nativeLanguageLocale",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub native_language_locale: Option<String>,
    /// `fakeFutureField`: undocumented, fake only (see the module docs).
    #[serde(
        rename = "fakeFutureField",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub fake_future_field: Option<u64>,
}

/// An entity with its own list endpoint: what paging, filtering and the
/// admin mutations need to know of it.
pub trait Entity: Serialize {
    /// Its endpoint.
    const KIND: ListKind;
    /// Its own id (the sort key of the fake's data).
    fn id(&self) -> &str;
    /// Its campaign's id (its own, for a campaign).
    fn campaign_id(&self) -> &str;
    /// Its ad group's id; `None` for a campaign.
    fn ad_group_id(&self) -> Option<&str>;
    /// Its state.
    fn state(&self) -> State;
}

impl Entity for Campaign {
    const KIND: ListKind = ListKind::Campaigns;
    fn id(&self) -> &str {
        &self.campaign_id
    }
    fn campaign_id(&self) -> &str {
        &self.campaign_id
    }
    fn ad_group_id(&self) -> Option<&str> {
        None
    }
    fn state(&self) -> State {
        self.state
    }
}

impl Entity for AdGroup {
    const KIND: ListKind = ListKind::AdGroups;
    fn id(&self) -> &str {
        &self.ad_group_id
    }
    fn campaign_id(&self) -> &str {
        &self.campaign_id
    }
    fn ad_group_id(&self) -> Option<&str> {
        Some(&self.ad_group_id)
    }
    fn state(&self) -> State {
        self.state
    }
}

impl Entity for Keyword {
    const KIND: ListKind = ListKind::Keywords;
    fn id(&self) -> &str {
        &self.keyword_id
    }
    fn campaign_id(&self) -> &str {
        &self.campaign_id
    }
    fn ad_group_id(&self) -> Option<&str> {
        Some(&self.ad_group_id)
    }
    fn state(&self) -> State {
        self.state
    }
}

/// The 200 answer of a list call, borrowing its page: `{"totalResults": n,
/// "<items>": [...], "nextToken": "..."}` in the order the notes show, where
/// `<items>` is [`items_key`] of `T`'s endpoint (`campaigns`, `adGroups`,
/// `keywords`) and `nextToken` is absent on the last page.
#[derive(Debug, Clone)]
pub struct ListResponse<'a, T> {
    /// `totalResults`: matching entities over all pages.
    pub total_results: u64,
    /// This page.
    pub items: &'a [&'a T],
    /// `nextToken`.
    pub next_token: Option<&'a str>,
}

impl<T: Entity> Serialize for ListResponse<'_, T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let fields = if self.next_token.is_some() { 3 } else { 2 };
        let mut out = serializer.serialize_struct("ListResponse", fields)?;
        out.serialize_field("totalResults", &self.total_results)?;
        out.serialize_field(items_key(T::KIND), self.items)?;
        match self.next_token {
            Some(token) => out.serialize_field("nextToken", token)?,
            None => out.skip_field("nextToken")?,
        }
        out.end()
    }
}

/// An error answer. Amazon uses two shapes and the fake serves both, so a
/// client must read either: `{"code": "THROTTLED", "message": …}` (5xx, 429,
/// injected rejections, which add `requestId`) and `{"code": "400",
/// "details": …, "requestId": …}` (the fake's own 4xx checks).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// `code`: a name (`THROTTLED`) or the status as a string (`"400"`).
    pub code: String,
    /// `message`, in the first shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// `details`, in the second shape.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<String>,
    /// `requestId`.
    #[serde(rename = "requestId", default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `value` as JSON, for comparing what adsync's client parsed with what the
/// fake holds without trusting either side's types: serialize the client's
/// entities (through the client's serde) and the fake's (through these wire
/// types) and compare the two values. A field the client drops, renames or
/// re-cases shows up as a difference. Panics if `value` cannot be serialized
/// (only tests call it).
pub fn wire_json<T: Serialize + ?Sized>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).expect("entities serialize to JSON")
}

/// `{"include": [ids]}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdFilter {
    /// Ids to keep.
    pub include: Vec<String>,
}

/// `{"include": [states]}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateFilter {
    /// States to keep.
    pub include: Vec<State>,
}

/// The body of a list call: the fields the notes list, nothing else.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListRequest {
    /// `maxResults`: page size.
    #[serde(rename = "maxResults", default)]
    pub max_results: Option<u32>,
    /// `nextToken`: where the previous page ended.
    #[serde(rename = "nextToken", default)]
    pub next_token: Option<String>,
    /// `campaignIdFilter`.
    #[serde(rename = "campaignIdFilter", default)]
    pub campaign_id_filter: Option<IdFilter>,
    /// `adGroupIdFilter` (ignored on campaigns).
    #[serde(rename = "adGroupIdFilter", default)]
    pub ad_group_id_filter: Option<IdFilter>,
    /// `stateFilter`.
    #[serde(rename = "stateFilter", default)]
    pub state_filter: Option<StateFilter>,
    /// `nameFilter`: accepted and ignored.
    #[serde(rename = "nameFilter", default)]
    pub name_filter: Option<serde_json::Value>,
}

impl ListRequest {
    /// The filters alone as compact JSON in documented field order (what the
    /// token fingerprint hashes, so a token cannot be replayed with other
    /// filters). Written out by hand: the fake's tokens must not change when
    /// a serde derive does.
    pub fn filter_key(&self) -> String {
        let quoted = |s: &str| serde_json::Value::from(s).to_string();
        let mut fields = Vec::new();
        for (name, filter) in [
            ("campaignIdFilter", &self.campaign_id_filter),
            ("adGroupIdFilter", &self.ad_group_id_filter),
        ] {
            if let Some(f) = filter {
                let ids: Vec<String> = f.include.iter().map(|id| quoted(id)).collect();
                fields.push(format!("\"{name}\":{{\"include\":[{}]}}", ids.join(",")));
            }
        }
        if let Some(f) = &self.state_filter {
            let states: Vec<String> = f.include.iter().map(|s| quoted(s.as_str())).collect();
            fields.push(format!(
                "\"stateFilter\":{{\"include\":[{}]}}",
                states.join(",")
            ));
        }
        format!("{{{}}}", fields.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The spellings below are copied from `docs/platforms/amazon.md`, not
    /// derived from any serde attribute: they are what the fake must send.
    #[test]
    fn entities_and_pages_serialize_as_the_notes_spell_them() {
        let campaign = Campaign {
            campaign_id: "1".into(),
            name: "C".into(),
            state: State::UserDeleted,
            targeting_type: TargetingType::Manual,
            budget: Budget {
                budget_type: BudgetType::Daily,
                budget: 12.5,
                fake_future_field: Some(4),
            },
            start_date: "2026-01-02".into(),
            end_date: None,
            portfolio_id: Some("9".into()),
            dynamic_bidding: Some(DynamicBidding {
                strategy: BidStrategy::AutoForSales,
                placement_bidding: vec![PlacementBidding {
                    placement: Placement::RestOfSearch,
                    percentage: 35,
                }],
            }),
            tags: BTreeMap::from([("team".to_string(), "eu".to_string())]),
            fake_future_field: Some(5),
        };
        let keyword = Keyword {
            keyword_id: "3".into(),
            campaign_id: "1".into(),
            ad_group_id: "2".into(),
            keyword_text: "k".into(),
            match_type: MatchType::Phrase,
            state: State::Enabled,
            bid: None,
            native_language_keyword: None,
            native_language_locale: None,
            fake_future_field: None,
        };
        assert_eq!(
            wire_json(&campaign),
            json!({"campaignId": "1", "name": "C", "state": "USER_DELETED",
                "targetingType": "MANUAL",
                "budget": {"budgetType": "DAILY", "budget": 12.5, "fakeFutureField": 4},
                "startDate": "2026-01-02", "portfolioId": "9",
                "dynamicBidding": {"strategy": "AUTO_FOR_SALES",
                    "placementBidding": [{"placement": "PLACEMENT_REST_OF_SEARCH", "percentage": 35}]},
                "tags": {"team": "eu"}, "fakeFutureField": 5})
        );
        let translated = Keyword {
            native_language_keyword: Some("咖啡豆".into()),
            native_language_locale: Some("zh_CN".into()),
            fake_future_field: Some(6),
            ..keyword.clone()
        };
        assert_eq!(
            wire_json(&translated),
            json!({"keywordId": "3", "campaignId": "1", "adGroupId": "2", "keywordText": "k",
                "matchType": "PHRASE", "state": "ENABLED", "nativeLanguageKeyword": "咖啡豆",
                "nativeLanguageLocale": "zh_CN", "fakeFutureField": 6})
        );
        assert_eq!(
            serde_json::to_string(&ListResponse {
                total_results: 7,
                items: &[&keyword],
                next_token: Some("t"),
            })
            .expect("serializes"),
            r#"{"totalResults":7,"keywords":[{"keywordId":"3","campaignId":"1","adGroupId":"2","keywordText":"k","matchType":"PHRASE","state":"ENABLED"}],"nextToken":"t"}"#
        );
        let last: ListResponse<'_, Keyword> = ListResponse {
            total_results: 0,
            items: &[],
            next_token: None,
        };
        assert_eq!(wire_json(&last), json!({"totalResults": 0, "keywords": []}));
    }
}
