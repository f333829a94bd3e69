//! Wire types of the Sponsored Products v3 list endpoints.
//!
//! Field names are camelCase on the wire. Decoding is strict where it matters: an
//! enum value adsync does not know, or a missing required field, is an error (see
//! [`AmazonError::Decode`](super::AmazonError::Decode)), never a silent default.
//! Fields adsync does not model (`dynamicBidding`, `tags`, whatever Amazon adds
//! next) are neither an error nor dropped: each entity, and each nested object
//! adsync models (`budget`), keeps them verbatim in an [`Extra`], so a pulled
//! entity serializes back to what the API listed (key order aside) and the pull
//! keeps working when the platform grows.

use serde::de::Error as _;
use serde::ser::{Error as _, SerializeMap};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

/// The fields of a JSON object that adsync's wire types do not model, kept
/// verbatim (names, values, nesting) and written back when the entity is
/// serialized, after the modelled fields. Used as `#[serde(flatten)]`.
///
/// Stored as one compact JSON text (`Box<RawValue>`), or nothing at all when
/// the object had no such field: a 500,000-keyword page walk holds one small
/// string per entity that has extras instead of a map of boxed values, and an
/// entity without extras pays one null pointer. Two extras are equal when they
/// hold the same fields and values, whatever their key order.
#[derive(Debug, Clone, Default)]
pub struct Extra(Option<Box<RawValue>>);

impl Extra {
    /// Whether the object had no field beyond the modelled ones.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// The extra fields as one compact JSON object text (`{}` when empty).
    pub fn as_json(&self) -> &str {
        self.0.as_deref().map_or("{}", RawValue::get)
    }

    /// The extra fields as a JSON map (parsed on each call; empty when none).
    pub fn to_map(&self) -> Map<String, Value> {
        match &self.0 {
            // Built from a `Map` in `from_map`, so it parses back as one.
            Some(raw) => serde_json::from_str(raw.get()).unwrap_or_default(),
            None => Map::new(),
        }
    }

    /// Keeps `map` as the extra fields (nothing when it is empty).
    pub fn from_map(map: Map<String, Value>) -> Result<Self, serde_json::Error> {
        if map.is_empty() {
            return Ok(Extra(None));
        }
        // A `Map` without `preserve_order` is sorted by key: one text per content.
        serde_json::value::to_raw_value(&map).map(|raw| Extra(Some(raw)))
    }
}

impl PartialEq for Extra {
    fn eq(&self, other: &Self) -> bool {
        // Equal text is the common case; otherwise the key order may differ.
        self.as_json() == other.as_json() || self.to_map() == other.to_map()
    }
}

impl Serialize for Extra {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Entries, not the raw text: a flattened field must serialize as map
        // entries, and only serde_json's own serializer understands RawValue.
        let Some(raw) = &self.0 else {
            return serializer.serialize_map(Some(0))?.end();
        };
        let map: Map<String, Value> = serde_json::from_str(raw.get()).map_err(S::Error::custom)?;
        let mut out = serializer.serialize_map(Some(map.len()))?;
        for (k, v) in &map {
            out.serialize_entry(k, v)?;
        }
        out.end()
    }
}

impl<'de> Deserialize<'de> for Extra {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let map = Map::<String, Value>::deserialize(deserializer)?;
        Extra::from_map(map).map_err(D::Error::custom)
    }
}

/// An entity's status. `ENABLED|PAUSED|ARCHIVED` can be written; the other three
/// only appear when reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// Running.
    Enabled,
    /// Paused by the advertiser.
    Paused,
    /// Archived (terminal).
    Archived,
    /// Being enabled (read only).
    Enabling,
    /// Deleted by the user (read only).
    UserDeleted,
    /// Any other platform state Amazon reports as `OTHER` (read only).
    Other,
}

/// How a campaign is targeted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TargetingType {
    /// Amazon picks keywords and products.
    Auto,
    /// The advertiser picks keywords and products.
    Manual,
}

/// How a keyword matches shopper queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MatchType {
    /// The exact query (and close variants).
    Exact,
    /// The phrase inside a longer query.
    Phrase,
    /// Any query related to the words.
    Broad,
}

/// The period a campaign budget covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BudgetType {
    /// A daily budget (the only kind Sponsored Products has).
    Daily,
}

/// A campaign budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Budget {
    /// Budget period.
    pub budget_type: BudgetType,
    /// Amount in the marketplace currency.
    pub budget: f64,
    /// The budget's other fields, verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A Sponsored Products campaign as listed by `POST /sp/campaigns/list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpCampaign {
    /// Platform id (a numeric string).
    pub campaign_id: String,
    /// Name, unique per account, at most 128 characters.
    pub name: String,
    /// Status.
    pub state: State,
    /// Targeting.
    pub targeting_type: TargetingType,
    /// Budget.
    pub budget: Budget,
    /// First day, `YYYY-MM-DD`.
    pub start_date: String,
    /// Last day, `YYYY-MM-DD`, when the campaign has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_date: Option<String>,
    /// Portfolio the campaign belongs to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portfolio_id: Option<String>,
    /// The other fields Amazon listed (`dynamicBidding`, `tags`, …), verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A Sponsored Products ad group as listed by `POST /sp/adGroups/list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpAdGroup {
    /// Platform id.
    pub ad_group_id: String,
    /// Parent campaign.
    pub campaign_id: String,
    /// Name.
    pub name: String,
    /// Status.
    pub state: State,
    /// Bid used by targets without their own bid.
    pub default_bid: f64,
    /// The other fields Amazon listed, verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

/// A Sponsored Products keyword as listed by `POST /sp/keywords/list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SpKeyword {
    /// Platform id.
    pub keyword_id: String,
    /// Campaign of the parent ad group.
    pub campaign_id: String,
    /// Parent ad group.
    pub ad_group_id: String,
    /// The keyword.
    pub keyword_text: String,
    /// Match type.
    pub match_type: MatchType,
    /// Status.
    pub state: State,
    /// Bid; Amazon omits it when the keyword uses the ad group's default bid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bid: Option<f64>,
    /// The other fields Amazon listed (`nativeLanguageKeyword`, …), verbatim.
    #[serde(flatten)]
    pub extra: Extra,
}

/// Which list endpoint to call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ListKind {
    /// `POST /sp/campaigns/list`.
    Campaigns,
    /// `POST /sp/adGroups/list`.
    AdGroups,
    /// `POST /sp/keywords/list`.
    Keywords,
}

impl ListKind {
    /// All three kinds, parents first.
    pub const ALL: [ListKind; 3] = [ListKind::Campaigns, ListKind::AdGroups, ListKind::Keywords];

    /// The endpoint path.
    pub fn path(self) -> &'static str {
        match self {
            ListKind::Campaigns => "/sp/campaigns/list",
            ListKind::AdGroups => "/sp/adGroups/list",
            ListKind::Keywords => "/sp/keywords/list",
        }
    }

    /// The vendor media type sent as `Content-Type` and `Accept`.
    pub fn media_type(self) -> &'static str {
        match self {
            ListKind::Campaigns => "application/vnd.spCampaign.v3+json",
            ListKind::AdGroups => "application/vnd.spAdGroup.v3+json",
            ListKind::Keywords => "application/vnd.spKeyword.v3+json",
        }
    }

    /// The response key holding the items (`campaigns`, `adGroups`, `keywords`).
    pub fn items_key(self) -> &'static str {
        match self {
            ListKind::Campaigns => "campaigns",
            ListKind::AdGroups => "adGroups",
            ListKind::Keywords => "keywords",
        }
    }

    /// The kind whose endpoint is `path`, if any.
    pub fn from_path(path: &str) -> Option<ListKind> {
        ListKind::ALL.into_iter().find(|k| k.path() == path)
    }
}

impl std::fmt::Display for ListKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.path())
    }
}

/// `{"include": [...]}` filter on ids.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct IdFilter {
    /// Ids to keep.
    pub include: Vec<String>,
}

/// `{"include": [...]}` filter on states.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct StateFilter {
    /// States to keep.
    pub include: Vec<State>,
}

/// The JSON body of a list call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListRequest {
    /// Page size.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_results: Option<u32>,
    /// Token from the previous page; `None` for the first page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
    /// Keep only entities of these campaigns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign_id_filter: Option<IdFilter>,
    /// Keep only entities of these ad groups (ad groups and keywords).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ad_group_id_filter: Option<IdFilter>,
    /// Keep only entities in these states.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state_filter: Option<StateFilter>,
}

impl ListRequest {
    /// A request for one page of `max_results` after `next_token`, unfiltered.
    pub fn page(next_token: Option<&str>, max_results: u32) -> Self {
        ListRequest {
            max_results: Some(max_results),
            next_token: next_token.map(str::to_owned),
            ..ListRequest::default()
        }
    }
}

/// The typed items of one page.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "items", rename_all = "snake_case")]
pub enum Items {
    /// From `/sp/campaigns/list`.
    Campaigns(Vec<SpCampaign>),
    /// From `/sp/adGroups/list`.
    AdGroups(Vec<SpAdGroup>),
    /// From `/sp/keywords/list`.
    Keywords(Vec<SpKeyword>),
}

impl Items {
    /// The endpoint these items came from.
    pub fn kind(&self) -> ListKind {
        match self {
            Items::Campaigns(_) => ListKind::Campaigns,
            Items::AdGroups(_) => ListKind::AdGroups,
            Items::Keywords(_) => ListKind::Keywords,
        }
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        match self {
            Items::Campaigns(v) => v.len(),
            Items::AdGroups(v) => v.len(),
            Items::Keywords(v) => v.len(),
        }
    }

    /// Whether the page holds no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One page of a list call, ready to be staged (it is plain JSON-serializable data).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    /// The entities on this page.
    pub items: Items,
    /// Token for the next page; `None` on the last page.
    pub next_token: Option<String>,
    /// Number of entities matching the request over all pages, when Amazon reports it.
    pub total_results: Option<u64>,
}

/// An entity type with its own list endpoint, for typed helpers such as
/// [`AmazonClient::list_page_of`](super::AmazonClient::list_page_of).
pub trait SpEntity: Sized + Clone + PartialEq + Serialize + for<'de> Deserialize<'de> {
    /// Its endpoint.
    const KIND: ListKind;
    /// The items if they are of this type.
    fn from_items(items: Items) -> Option<Vec<Self>>;
    /// The platform id.
    fn id(&self) -> &str;
}

impl SpEntity for SpCampaign {
    const KIND: ListKind = ListKind::Campaigns;
    fn from_items(items: Items) -> Option<Vec<Self>> {
        match items {
            Items::Campaigns(v) => Some(v),
            _ => None,
        }
    }
    fn id(&self) -> &str {
        &self.campaign_id
    }
}

impl SpEntity for SpAdGroup {
    const KIND: ListKind = ListKind::AdGroups;
    fn from_items(items: Items) -> Option<Vec<Self>> {
        match items {
            Items::AdGroups(v) => Some(v),
            _ => None,
        }
    }
    fn id(&self) -> &str {
        &self.ad_group_id
    }
}

impl SpEntity for SpKeyword {
    const KIND: ListKind = ListKind::Keywords;
    fn from_items(items: Items) -> Option<Vec<Self>> {
        match items {
            Items::Keywords(v) => Some(v),
            _ => None,
        }
    }
    fn id(&self) -> &str {
        &self.keyword_id
    }
}

/// Response of `/sp/campaigns/list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListCampaignsResponse {
    /// Matching entities over all pages (`totalResults`); Amazon may omit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_results: Option<u64>,
    /// The entities on this page.
    pub campaigns: Vec<SpCampaign>,
    /// The `nextToken` that requests the following page; `None` on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// Response of `/sp/adGroups/list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListAdGroupsResponse {
    /// Matching entities over all pages (`totalResults`); Amazon may omit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_results: Option<u64>,
    /// The entities on this page.
    pub ad_groups: Vec<SpAdGroup>,
    /// The `nextToken` that requests the following page; `None` on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// Response of `/sp/keywords/list`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListKeywordsResponse {
    /// Matching entities over all pages (`totalResults`); Amazon may omit it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_results: Option<u64>,
    /// The entities on this page.
    pub keywords: Vec<SpKeyword>,
    /// The `nextToken` that requests the following page; `None` on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_token: Option<String>,
}

/// Decodes a list response body of `kind` into a [`Page`]; the error carries the
/// JSON path of the offending field (e.g. `campaigns[3].state`).
pub fn decode_page(kind: ListKind, body: &[u8]) -> Result<Page, (String, String)> {
    fn de<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, (String, String)> {
        let mut jd = serde_json::Deserializer::from_slice(body);
        let value: T = serde_path_to_error::deserialize(&mut jd).map_err(|e| {
            let path = e.path().to_string();
            (path, e.into_inner().to_string())
        })?;
        jd.end().map_err(|e| (".".to_owned(), e.to_string()))?;
        Ok(value)
    }
    Ok(match kind {
        ListKind::Campaigns => {
            let r: ListCampaignsResponse = de(body)?;
            Page {
                items: Items::Campaigns(r.campaigns),
                next_token: r.next_token,
                total_results: r.total_results,
            }
        }
        ListKind::AdGroups => {
            let r: ListAdGroupsResponse = de(body)?;
            Page {
                items: Items::AdGroups(r.ad_groups),
                next_token: r.next_token,
                total_results: r.total_results,
            }
        }
        ListKind::Keywords => {
            let r: ListKeywordsResponse = de(body)?;
            Page {
                items: Items::Keywords(r.keywords),
                next_token: r.next_token,
                total_results: r.total_results,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_enum_and_missing_field_name_the_path() {
        let body = br#"{"totalResults":1,"keywords":[{"keywordId":"1","campaignId":"2","adGroupId":"3","keywordText":"x","matchType":"FUZZY","state":"ENABLED"}]}"#;
        let (path, msg) = decode_page(ListKind::Keywords, body).unwrap_err();
        assert_eq!(path, "keywords[0].matchType");
        assert!(msg.contains("FUZZY"), "{msg}");

        let body = br#"{"campaigns":[{"campaignId":"1","name":"n","state":"ENABLED","targetingType":"AUTO","budget":{"budget":1.5},"startDate":"2026-01-01"}]}"#;
        let (path, msg) = decode_page(ListKind::Campaigns, body).unwrap_err();
        assert_eq!(path, "campaigns[0].budget");
        assert!(msg.contains("budgetType"), "{msg}");
    }

    #[test]
    fn round_trips_camel_case() {
        let c = SpCampaign {
            campaign_id: "1".into(),
            name: "n".into(),
            state: State::UserDeleted,
            targeting_type: TargetingType::Manual,
            budget: Budget {
                budget_type: BudgetType::Daily,
                budget: 12.5,
                extra: Extra::default(),
            },
            start_date: "2026-01-01".into(),
            end_date: None,
            portfolio_id: Some("9".into()),
            extra: Extra::default(),
        };
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["state"], "USER_DELETED");
        assert_eq!(json["targetingType"], "MANUAL");
        assert_eq!(json["budget"]["budgetType"], "DAILY");
        assert!(json.get("endDate").is_none());
        assert_eq!(serde_json::from_value::<SpCampaign>(json).unwrap(), c);

        // A page is staged as JSON with its token and read back unchanged.
        let page = Page {
            items: Items::Campaigns(vec![c]),
            next_token: Some("abc".into()),
            total_results: Some(7),
        };
        let staged = serde_json::to_string(&page).unwrap();
        assert_eq!(serde_json::from_str::<Page>(&staged).unwrap(), page);
    }

    #[test]
    fn unmodelled_fields_survive_decode_and_serialize_at_every_level() {
        let listed = serde_json::json!({
            "campaignId": "1", "name": "n", "state": "ENABLED", "targetingType": "MANUAL",
            "budget": {"budgetType": "DAILY", "budget": 10.25, "futureBudgetField": [1, {"a": null}]},
            "startDate": "2026-01-01",
            "dynamicBidding": {"strategy": "LEGACY_FOR_SALES",
                "placementBidding": [{"placement": "PLACEMENT_TOP", "percentage": 50}]},
            "tags": {"team": "eu \"north\"", "é": "ü"},
            "big": 18446744073709551615u64, "neg": -3, "ratio": 0.1, "flag": false
        });
        let body = serde_json::to_vec(&serde_json::json!({"campaigns": [listed.clone()]})).unwrap();
        let page = decode_page(ListKind::Campaigns, &body).unwrap();
        let Items::Campaigns(campaigns) = &page.items else {
            panic!("campaigns")
        };
        let c = &campaigns[0];
        assert_eq!(c.budget.budget, 10.25);
        assert!(!c.extra.is_empty() && !c.budget.extra.is_empty());
        assert_eq!(
            c.extra.to_map()["dynamicBidding"]["strategy"],
            "LEGACY_FOR_SALES"
        );
        assert_eq!(serde_json::to_value(c).unwrap(), listed);

        // The staged form (a Page through the adjacently tagged Items) keeps them too.
        let staged = serde_json::to_string(&page).unwrap();
        let back: Page = serde_json::from_str(&staged).unwrap();
        assert_eq!(back, page);

        // An entity stored before extras existed reads with none.
        let old = br#"{"keywordId":"1","campaignId":"2","adGroupId":"3","keywordText":"x","matchType":"EXACT","state":"ENABLED"}"#;
        let k: SpKeyword = serde_json::from_slice(old).unwrap();
        assert!(k.extra.is_empty());
        assert_eq!(k.extra.as_json(), "{}");
        assert_eq!(
            serde_json::to_value(&k).unwrap(),
            serde_json::from_slice::<serde_json::Value>(old).unwrap()
        );

        // Extras do not hide a bad modelled field: the path is still named.
        let body = br#"{"adGroups":[{"adGroupId":"1","campaignId":"2","name":"g","unknownThing":{"x":1},"state":"NOPE","defaultBid":1}]}"#;
        let (path, _) = decode_page(ListKind::AdGroups, body).unwrap_err();
        assert_eq!(path, "adGroups[0].state");
    }
}
