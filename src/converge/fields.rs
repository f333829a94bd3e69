//! The fields a push controls, as comparable values.
//!
//! A set file is the desired state: every field it can set is compared, and a
//! field it leaves out is compared as `null` ("cleared": the platform's default),
//! so removing `goal` from a file clears the goal instead of leaving the old one
//! in place. What the platform lists is turned into the same map by its
//! adapter (through an [`EntitySpec`] built from the listing), so the set, the
//! platform and the values adsync last wrote are compared in one vocabulary:
//! the set file's own field names and JSON values.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::adapter::{EntityKind, EntitySpec, KeywordModel};

/// An entity's controlled fields by name, in a stable order. Identity (local
/// id, platform id, parent) and children are not fields.
pub type Fields = BTreeMap<&'static str, Value>;

/// The fields `spec` sets, with the ones it leaves out as `null`.
///
/// Times are compared as instants (`2026-03-01T09:00:00Z` equals
/// `2026-03-01T10:00:00+01:00`); under [`KeywordModel::AdGroupTargeting`] an ad
/// group's `keywords` are one field, compared as a set of texts (order and
/// repeats do not count); under [`KeywordModel::Entities`] keywords are
/// entities of their own and not a field of the group.
pub fn fields_of(spec: &EntitySpec, model: KeywordModel) -> Fields {
    let mut f = Fields::new();
    match spec {
        EntitySpec::Campaign(c) => {
            f.insert("name", Value::from(c.name.as_str()));
            f.insert("objective", json(&c.objective));
            f.insert("status", json(&c.status));
            f.insert("goal", json(&c.goal));
        }
        EntitySpec::AdGroup(g) => {
            f.insert("name", Value::from(g.name.as_str()));
            f.insert("status", json(&g.status));
            f.insert("bid_strategy", json(&g.bid_strategy));
            f.insert("bid_type", json(&g.bid_type));
            f.insert("bid_value_micros", json(&g.bid_value_micros));
            f.insert("start_time", instant(g.start_time.as_deref()));
            f.insert("end_time", instant(g.end_time.as_deref()));
            if model == KeywordModel::AdGroupTargeting {
                let texts: std::collections::BTreeSet<&str> =
                    g.keywords.iter().map(|k| k.text.as_str()).collect();
                f.insert("keywords", texts.into_iter().collect());
            }
        }
        EntitySpec::Ad(a) => {
            f.insert("name", Value::from(a.name.as_str()));
            f.insert("post_id", Value::from(a.post_id.as_str()));
            f.insert("click_url", json(&a.click_url));
            f.insert("status", json(&a.status));
        }
        EntitySpec::Keyword(k) => {
            f.insert("text", Value::from(k.text.as_str()));
        }
    }
    f
}

/// Every field name [`fields_of`] uses, so that stored fields read back as
/// the same `&'static str` keys.
const NAMES: &[&str] = &[
    "bid_strategy",
    "bid_type",
    "bid_value_micros",
    "click_url",
    "end_time",
    "goal",
    "keywords",
    "name",
    "objective",
    "post_id",
    "start_time",
    "status",
    "text",
];

/// The `&'static` name of field `name`, if it is one of [`fields_of`]'s.
pub(crate) fn field_name(name: &str) -> Option<&'static str> {
    NAMES.iter().copied().find(|n| *n == name)
}

/// Reads [`Fields`] written by serde (checkpoints, outcomes): an unknown
/// field name is an error naming it, never dropped.
pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Fields, D::Error> {
    use serde::Deserialize as _;
    let raw = BTreeMap::<String, Value>::deserialize(d)?;
    raw.into_iter()
        .map(|(name, value)| match field_name(&name) {
            Some(name) => Ok((name, value)),
            None => Err(serde::de::Error::custom(format!(
                "unknown field `{name}` (known: {})",
                NAMES.join(", ")
            ))),
        })
        .collect()
}

/// Fields that cannot be changed in place: an entity whose value differs is
/// replaced (a new one created, the old one archived), never updated. An
/// ad's post is what the ad *is* on Reddit; a keyword entity is its text.
pub fn immutable(kind: EntityKind) -> &'static [&'static str] {
    match kind {
        EntityKind::Ad => &["post_id"],
        EntityKind::Keyword => &["text"],
        EntityKind::Campaign | EntityKind::AdGroup => &[],
    }
}

fn json<T: serde::Serialize>(value: &T) -> Value {
    // The model's types are plain data: serializing them cannot fail.
    serde_json::to_value(value).unwrap_or(Value::Null)
}

/// An RFC 3339 time as a canonical UTC string; text that does not parse is
/// kept as it is (the set was validated; a platform's odd value then simply
/// differs).
pub(crate) fn instant(text: Option<&str>) -> Value {
    let Some(text) = text else {
        return Value::Null;
    };
    let format = time::format_description::well_known::Rfc3339;
    match time::OffsetDateTime::parse(text, &format)
        .ok()
        .and_then(|t| t.to_offset(time::UtcOffset::UTC).format(&format).ok())
    {
        Some(canonical) => Value::from(canonical),
        None => Value::from(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AdGroup, ConfiguredStatus, Keyword};

    fn group(keywords: &[&str], start: Option<&str>) -> EntitySpec {
        EntitySpec::AdGroup(AdGroup {
            id: "g1".into(),
            name: "Group one".into(),
            status: ConfiguredStatus::Paused,
            bid_strategy: None,
            bid_type: None,
            bid_value_micros: Some(1_500_000),
            start_time: start.map(str::to_string),
            end_time: None,
            ads: vec![],
            keywords: keywords
                .iter()
                .enumerate()
                .map(|(n, t)| Keyword {
                    id: format!("k{n}"),
                    text: (*t).to_string(),
                })
                .collect(),
        })
    }

    #[test]
    fn left_out_fields_are_null_and_times_compare_as_instants() {
        let a = fields_of(
            &group(&[], Some("2026-03-01T10:00:00+01:00")),
            KeywordModel::Entities,
        );
        let b = fields_of(
            &group(&[], Some("2026-03-01T09:00:00Z")),
            KeywordModel::Entities,
        );
        assert_eq!(a, b);
        assert_eq!(a["bid_type"], Value::Null);
        assert_eq!(a["end_time"], Value::Null);
        assert_eq!(a["bid_value_micros"], Value::from(1_500_000));
        assert!(!a.contains_key("keywords"), "keywords are entities here");
    }

    #[test]
    fn targeting_keywords_are_one_field_compared_as_a_set() {
        let model = KeywordModel::AdGroupTargeting;
        let a = fields_of(&group(&["rust", "sled", "rust"], None), model);
        let b = fields_of(&group(&["sled", "rust"], None), model);
        assert_eq!(a, b);
        assert_eq!(a["keywords"], serde_json::json!(["rust", "sled"]));
        let none = fields_of(&group(&[], None), model);
        assert_eq!(none["keywords"], serde_json::json!([]));
    }
}
