//! Drift: where the platform no longer holds what adsync last wrote,
//! whatever a set says now (`adsync drift`). Someone changed a bid in the
//! platform's UI, paused an ad, or deleted an ad group.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::plan::{Known, Observed};
use crate::adapter::EntityKind;

/// One entity adsync manages whose platform copy differs from what it wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntityDrift {
    /// Its level.
    pub kind: EntityKind,
    /// Its local id in the set that pushed it.
    pub local_id: String,
    /// Its name when adsync wrote it.
    pub name: String,
    /// Its platform id.
    pub id: String,
    /// How it differs.
    #[serde(flatten)]
    pub drift: Drift,
}

/// How an entity's platform copy differs from what adsync wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "drift", rename_all = "snake_case")]
pub enum Drift {
    /// These fields have other values on the platform.
    Changed {
        /// The fields, with both values.
        fields: Vec<DriftedField>,
    },
    /// The platform no longer lists it (deleted there); a push creates it again.
    Gone,
}

/// A field whose platform value is not the one adsync wrote.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftedField {
    /// The set file's name for it.
    pub field: &'static str,
    /// What adsync wrote.
    pub written: Value,
    /// What the platform holds now.
    pub platform: Value,
}

/// The drift of the entities adsync manages (`known`) against what the
/// platform lists (`observed`, which must include every known entity's
/// parent's listing: an entity missing from it is reported gone).
pub fn drift(known: &[Known], observed: &[Observed]) -> Vec<EntityDrift> {
    let listed: HashMap<&str, &Observed> = observed.iter().map(|o| (o.id.as_str(), o)).collect();
    known
        .iter()
        .filter_map(|k| {
            let drift = match listed.get(k.id.as_str()) {
                None => Drift::Gone,
                Some(o) => {
                    let fields: Vec<DriftedField> = k
                        .written
                        .iter()
                        .filter_map(|(field, wrote)| {
                            let have = o.fields.get(field).cloned().unwrap_or(Value::Null);
                            (have != *wrote).then(|| DriftedField {
                                field,
                                written: wrote.clone(),
                                platform: have,
                            })
                        })
                        .collect();
                    if fields.is_empty() {
                        return None;
                    }
                    Drift::Changed { fields }
                }
            };
            Some(EntityDrift {
                kind: k.kind,
                local_id: k.local_id.clone(),
                name: k.name.clone(),
                id: k.id.clone(),
                drift,
            })
        })
        .collect()
}

impl fmt::Display for EntityDrift {
    /// `~ ad_group g1 "Name" (id)` with `field: written → platform` lines, or
    /// `- … gone from the platform`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = format!(
            "{} {} {:?} ({})",
            self.kind, self.local_id, self.name, self.id
        );
        match &self.drift {
            Drift::Gone => write!(f, "- {what}: gone from the platform"),
            Drift::Changed { fields } => {
                write!(f, "~ {what}")?;
                for d in fields {
                    write!(
                        f,
                        "\n      {}: adsync wrote {}, the platform has {}",
                        d.field, d.written, d.platform
                    )?;
                }
                Ok(())
            }
        }
    }
}
