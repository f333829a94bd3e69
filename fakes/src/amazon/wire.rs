//! The fake's own wire types for list requests, written from
//! `docs/platforms/amazon.md` rather than imported from adsync's client, so a
//! serialization bug in the client (a misspelled field, an enum in the wrong
//! case, a wrong media type) is answered 400 or 415 instead of being mirrored.
//!
//! Unlike the client, which ignores fields it does not model so it keeps
//! working when Amazon grows, the fake rejects request fields the notes do not
//! list: a client's typo must not pass silently.

use adsync::amazon::ListKind;
use serde::Deserialize;

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

/// An entity state as a `stateFilter` may name it (upper case on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
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
    /// Its wire spelling.
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

    /// The same state in adsync's model of the data the fake holds; an explicit
    /// match, so the two spellings never come from one serde derive.
    pub fn to_data(self) -> adsync::amazon::State {
        use adsync::amazon::State as D;
        match self {
            State::Enabled => D::Enabled,
            State::Paused => D::Paused,
            State::Archived => D::Archived,
            State::Enabling => D::Enabling,
            State::UserDeleted => D::UserDeleted,
            State::Other => D::Other,
        }
    }
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
