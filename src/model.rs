//! The campaign-set file: what the user wants to exist on a platform.

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use serde::{Deserialize, Serialize};
use strum::{Display, EnumIter, EnumString, IntoStaticStr};

/// The campaign-set file: what the user wants to exist on a platform.
///
/// A set is a tree Campaign → Ad Group → (Ads, Keywords). Every entity has a
/// *local* id chosen by the user (stable across edits of the file) and, once it
/// exists on the platform, a *platform* id that adsync learns and checkpoints.
///
/// Parsing is strict: unknown fields, unknown enum values and missing fields are
/// errors that name the file position and the JSON path, and nothing is written
/// anywhere until the whole file parses and validates.
///
/// A campaign set as read from a JSON file: the input of a push. Unknown
/// fields are refused, and [`CampaignSet::from_json`] validates what serde
/// cannot, so a set that parses is one the platform should accept.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignSet {
    /// A human name for the set (shown in status output).
    pub name: String,
    /// The campaigns to sync; each becomes its own sync.
    pub campaigns: Vec<Campaign>,
}

/// A campaign and its children.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Campaign {
    /// Local id, unique in the set.
    pub id: String,
    /// Name on the platform (at least 3 characters).
    pub name: String,
    /// What the campaign optimizes for.
    pub objective: Objective,
    /// Desired delivery status; `PAUSED` when the file leaves it out, so
    /// nothing starts spending unless the file says so.
    #[serde(default = "ConfiguredStatus::paused")]
    pub status: ConfiguredStatus,
    /// Spend goal; `None` leaves the platform's default (no goal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub goal: Option<SpendGoal>,
    /// Ad groups under this campaign.
    #[serde(default)]
    pub ad_groups: Vec<AdGroup>,
}

/// A spend goal; money is in micros (1 USD = 1,000,000).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SpendGoal {
    /// Daily or lifetime (the JSON field is `type`).
    #[serde(rename = "type")]
    pub goal_type: GoalType,
    /// Amount in micros of the ad account's currency.
    pub value_micros: u64,
}

/// An ad group with its ads and keywords.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdGroup {
    /// Local id, unique in the set.
    pub id: String,
    /// Name on the platform (at least 3 characters).
    pub name: String,
    /// Desired delivery status; `PAUSED` when the file leaves it out, so
    /// nothing starts spending unless the file says so.
    #[serde(default = "ConfiguredStatus::paused")]
    pub status: ConfiguredStatus,
    /// How bids are placed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bid_strategy: Option<BidStrategy>,
    /// What a bid pays for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bid_type: Option<BidType>,
    /// Bid in micros of the ad account's currency, per [`AdGroup::bid_type`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bid_value_micros: Option<u64>,
    /// Start time, RFC 3339 (the ISO 8601 form Reddit takes); validated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<String>,
    /// End time, RFC 3339; validated to be after `start_time` when both are set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<String>,
    /// Ads in this group.
    #[serde(default)]
    pub ads: Vec<Ad>,
    /// Keywords targeted by this group.
    #[serde(default)]
    pub keywords: Vec<Keyword>,
}

/// An ad promoting a post.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ad {
    /// Local id, unique in the set.
    pub id: String,
    /// Name on the platform (at least 3 characters).
    pub name: String,
    /// The promoted post (`t3_…`).
    pub post_id: String,
    /// Landing page: an absolute http(s) URL (validated).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub click_url: Option<String>,
    /// Desired delivery status; `PAUSED` when the file leaves it out, so
    /// nothing starts spending unless the file says so.
    #[serde(default = "ConfiguredStatus::paused")]
    pub status: ConfiguredStatus,
}

/// A targeted keyword.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keyword {
    /// Local id, unique in the set.
    pub id: String,
    /// The keyword as targeted; also what a look-up matches it by, so it is
    /// unique in its ad group.
    pub text: String,
}

/// Campaign objectives (Reddit Ads v3 names).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Display,
    EnumIter,
    EnumString,
    IntoStaticStr,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)]
pub enum Objective {
    AppInstalls,
    CatalogSales,
    Clicks,
    Conversions,
    Impressions,
    LeadGeneration,
    VideoViewableImpressions,
}

/// Desired delivery status of an entity.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Display,
    EnumIter,
    EnumString,
    IntoStaticStr,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)]
pub enum ConfiguredStatus {
    Active,
    Paused,
    Archived,
    Deleted,
}

impl ConfiguredStatus {
    fn paused() -> Self {
        ConfiguredStatus::Paused
    }
}

/// What a [`SpendGoal`] caps: spend per day or over the campaign's life.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Display,
    EnumIter,
    EnumString,
    IntoStaticStr,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)]
pub enum GoalType {
    DailySpend,
    LifetimeSpend,
}

/// How the platform places an ad group's bids (Reddit Ads v3 names): with no
/// bid, a manual bid, maximized volume, or a target cost per result.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Display,
    EnumIter,
    EnumString,
    IntoStaticStr,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)]
pub enum BidStrategy {
    Bidless,
    ManualBidding,
    MaximizeVolume,
    TargetCpx,
}

/// What a bid pays for: per click, per thousand impressions, or per view.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    Display,
    EnumIter,
    EnumString,
    IntoStaticStr,
)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[strum(serialize_all = "SCREAMING_SNAKE_CASE")]
#[allow(missing_docs)]
pub enum BidType {
    Cpc,
    Cpm,
    Cpv,
}

/// Why a campaign-set file was rejected. Every variant says where.
#[derive(Debug, thiserror::Error)]
pub enum InputError {
    /// The file could not be read (missing, unreadable, not UTF-8).
    #[error("cannot read {path}: {source}")]
    Read {
        /// The path as given.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The JSON is malformed, has an unknown field or enum value, or misses a field.
    #[error("{origin}:{line}:{column}: at `{json_path}`: {message}")]
    Syntax {
        /// File name (or `<input>`).
        origin: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// Where in the document, e.g. `campaigns[0].objective`.
        json_path: String,
        /// What is wrong.
        message: String,
    },
    /// The JSON is well-formed but breaks a rule of the model.
    #[error("{origin}: at `{json_path}`: {message}")]
    Invalid {
        /// File name (or `<input>`).
        origin: String,
        /// Where in the document.
        json_path: String,
        /// What is wrong.
        message: String,
    },
}

/// Shortest name the platforms accept (Reddit: "at least 3 characters"),
/// counted after trimming surrounding whitespace.
pub const MIN_NAME_LEN: usize = 3;
/// Longest name accepted, in characters. Reddit's own documentation seen so far
/// states no maximum; 500 is the limit a public Reddit Ads API v3 client
/// declares for names (the `reddit-ads-mcp-api` tool schema: "1-500
/// characters"), unconfirmed by Reddit, so treat it as a ceiling, not a promise.
pub const MAX_NAME_LEN: usize = 500;
/// Reddit's cap on keywords per ad group.
pub const MAX_KEYWORDS_PER_AD_GROUP: usize = 1000;

impl CampaignSet {
    /// How many entities the set holds: campaigns, ad groups, ads and keywords.
    pub fn entity_count(&self) -> usize {
        self.campaigns
            .iter()
            .map(|c| {
                1 + c
                    .ad_groups
                    .iter()
                    .map(|g| 1 + g.ads.len() + g.keywords.len())
                    .sum::<usize>()
            })
            .sum()
    }

    /// Reads and validates a campaign-set file; errors name it by `path`.
    ///
    /// # Errors
    ///
    /// [`InputError::Read`] if the file cannot be read; otherwise as
    /// [`CampaignSet::from_json`].
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, InputError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| InputError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_json(&text, &path.display().to_string())
    }

    /// Parses and validates a campaign set; `origin` names the input in errors.
    ///
    /// ```
    /// let err = adsync::CampaignSet::from_json(
    ///     r#"{"name": "x", "campaigns": [{"id": "c1", "name": "Spring", "objective": "SHOUTING"}]}"#,
    ///     "set.json",
    /// ).unwrap_err();
    /// assert!(err.to_string().starts_with("set.json:1:"));
    /// assert!(err.to_string().contains("campaigns[0].objective"));
    /// ```
    ///
    /// A UTF-8 byte-order mark at the start (editors on Windows write one) is skipped.
    ///
    /// # Errors
    ///
    /// [`InputError::Syntax`] (with line, column and JSON path) for malformed
    /// JSON, an unknown field or enum value, a missing field or trailing text;
    /// [`InputError::Invalid`] for a rule [`CampaignSet::validate`] checks.
    pub fn from_json(text: &str, origin: &str) -> Result<Self, InputError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        // serde would say "invalid type: sequence, expected struct CampaignSet";
        // say what the file should hold instead.
        if text.trim_start().starts_with('[') {
            return Err(InputError::Invalid {
                origin: origin.to_string(),
                json_path: ".".to_string(),
                message: "expected a campaign-set object ({\"name\": …, \"campaigns\": […]}), found an array".to_string(),
            });
        }
        let syntax = |json_path: String, e: serde_json::Error| InputError::Syntax {
            origin: origin.to_string(),
            line: e.line(),
            column: e.column(),
            json_path,
            message: strip_position(&e.to_string()),
        };
        let mut de = serde_json::Deserializer::from_str(text);
        let set: CampaignSet = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let json_path = e.path().to_string();
            syntax(json_path, e.into_inner())
        })?;
        // Trailing garbage after the document is an error too.
        de.end().map_err(|e| syntax(".".to_string(), e))?;
        set.validate(origin)?;
        Ok(set)
    }

    /// Checks the rules serde cannot, so that a push never fails halfway on
    /// input the platform would reject: at least one campaign; names neither
    /// blank nor shorter than [`MIN_NAME_LEN`] nor longer than [`MAX_NAME_LEN`];
    /// unique local ids; unique sibling names (a look-up by name after a lost
    /// response must be unambiguous); RFC 3339 times with `end_time` after
    /// `start_time`; absolute http(s) click URLs; `t3_` post ids.
    ///
    /// # Errors
    ///
    /// [`InputError::Invalid`] naming the JSON path of the first rule broken.
    pub fn validate(&self, origin: &str) -> Result<(), InputError> {
        let invalid = |json_path: String, message: String| InputError::Invalid {
            origin: origin.to_string(),
            json_path,
            message,
        };
        let mut ids = HashSet::new();
        let mut check_entity =
            |path: &str, id: &str, name: &str, what: &str| -> Result<(), InputError> {
                claim_id(&mut ids, id, what).map_err(|m| invalid(format!("{path}.id"), m))?;
                check_name(name, what).map_err(|m| invalid(format!("{path}.name"), m))
            };
        if self.campaigns.is_empty() {
            return Err(invalid(
                "campaigns".to_string(),
                "the set has no campaigns; nothing to push".to_string(),
            ));
        }
        let mut campaign_names = BTreeSet::new();
        for (ci, c) in self.campaigns.iter().enumerate() {
            let cp = format!("campaigns[{ci}]");
            check_entity(&cp, &c.id, &c.name, "campaign")?;
            if !campaign_names.insert(c.name.as_str()) {
                return Err(invalid(
                    format!("{cp}.name"),
                    format!("two campaigns are named `{}`", c.name),
                ));
            }
            let mut group_names = BTreeSet::new();
            for (gi, g) in c.ad_groups.iter().enumerate() {
                let gp = format!("{cp}.ad_groups[{gi}]");
                check_entity(&gp, &g.id, &g.name, "ad group")?;
                if !group_names.insert(g.name.as_str()) {
                    return Err(invalid(
                        format!("{gp}.name"),
                        format!("two ad groups of `{}` are named `{}`", c.id, g.name),
                    ));
                }
                check_times(g).map_err(|(field, m)| invalid(format!("{gp}.{field}"), m))?;
                if g.keywords.len() > MAX_KEYWORDS_PER_AD_GROUP {
                    return Err(invalid(
                        format!("{gp}.keywords"),
                        format!(
                            "{} keywords; at most {MAX_KEYWORDS_PER_AD_GROUP} per ad group",
                            g.keywords.len()
                        ),
                    ));
                }
                let mut ad_names = BTreeSet::new();
                for (ai, a) in g.ads.iter().enumerate() {
                    let ap = format!("{gp}.ads[{ai}]");
                    check_entity(&ap, &a.id, &a.name, "ad")?;
                    if !(a.post_id.starts_with("t3_") && a.post_id.len() > 3) {
                        return Err(invalid(
                            format!("{ap}.post_id"),
                            format!("`{}` is not a post id like `t3_abc`", a.post_id),
                        ));
                    }
                    if let Some(url) = &a.click_url {
                        check_url(url).map_err(|m| invalid(format!("{ap}.click_url"), m))?;
                    }
                    if !ad_names.insert(a.name.as_str()) {
                        return Err(invalid(
                            format!("{ap}.name"),
                            format!("two ads of `{}` are named `{}`", g.id, a.name),
                        ));
                    }
                }
                let mut texts = BTreeSet::new();
                for (ki, k) in g.keywords.iter().enumerate() {
                    let kp = format!("{gp}.keywords[{ki}]");
                    // Keywords have no name rule; their text is checked below.
                    check_entity(&kp, &k.id, "keyword", "keyword")?;
                    if k.text.trim().is_empty() {
                        return Err(invalid(
                            format!("{kp}.text"),
                            "keyword text must not be empty".into(),
                        ));
                    }
                    if !texts.insert(k.text.as_str()) {
                        return Err(invalid(
                            format!("{kp}.text"),
                            format!("keyword `{}` appears twice in `{}`", k.text, g.id),
                        ));
                    }
                }
            }
        }
        Ok(())
    }
}

fn check_name(name: &str, what: &str) -> Result<(), String> {
    let trimmed = name.trim();
    if trimmed.is_empty() {
        return Err(format!("{what} name must not be blank"));
    }
    let len = trimmed.chars().count();
    if len < MIN_NAME_LEN {
        return Err(format!(
            "{what} name `{name}` is shorter than {MIN_NAME_LEN} characters"
        ));
    }
    if name.chars().count() > MAX_NAME_LEN {
        return Err(format!(
            "{what} name has {} characters; at most {MAX_NAME_LEN}",
            name.chars().count()
        ));
    }
    Ok(())
}

/// The ad group's times parse as RFC 3339 (what Reddit's ISO 8601 fields
/// take) and, when both are set, end after they start. Errors name the field.
fn check_times(g: &AdGroup) -> Result<(), (&'static str, String)> {
    use time::format_description::well_known::Rfc3339;
    let parse = |field: &'static str, value: &Option<String>| match value {
        None => Ok(None),
        Some(v) => time::OffsetDateTime::parse(v, &Rfc3339)
            .map(Some)
            .map_err(|e| {
                (
                    field,
                    format!("`{v}` is not an RFC 3339 date-time like 2026-03-01T09:00:00Z ({e})"),
                )
            }),
    };
    let start = parse("start_time", &g.start_time)?;
    let end = parse("end_time", &g.end_time)?;
    if let (Some(start), Some(end)) = (start, end) {
        if end <= start {
            return Err((
                "end_time",
                format!(
                    "end_time `{}` is not after start_time `{}`",
                    g.end_time.as_deref().unwrap_or_default(),
                    g.start_time.as_deref().unwrap_or_default()
                ),
            ));
        }
    }
    Ok(())
}

/// A landing page must be an absolute http(s) URL with a host.
fn check_url(url: &str) -> Result<(), String> {
    let parsed =
        reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not an absolute URL ({e})"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!(
            "`{url}` is not an http(s) URL (scheme `{}`)",
            parsed.scheme()
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(format!("`{url}` has no host"));
    }
    Ok(())
}

fn claim_id(ids: &mut HashSet<String>, id: &str, what: &str) -> Result<(), String> {
    if id.trim().is_empty() {
        return Err(format!("{what} id must not be empty"));
    }
    if !ids.insert(id.to_string()) {
        return Err(format!("local id `{id}` is used twice in the set"));
    }
    Ok(())
}

/// serde_json appends " at line L column C" to its messages; we report the
/// position in our own fields, so drop the duplicate.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}
