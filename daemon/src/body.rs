//! Request bodies: parsed strictly (unknown fields refused), with errors in
//! the words of `adsync validate` — `origin:line:column: at `path`: message`
//! — where the origin is the request body and line, column and path point
//! into it.

use adsync::{CampaignSet, InputError};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::ApiError;

/// How errors name the input.
pub const ORIGIN: &str = "<request body>";

/// The body as text; a body that is not UTF-8 is bad input.
pub fn text(bytes: &[u8]) -> Result<&str, ApiError> {
    std::str::from_utf8(bytes)
        .map_err(|e| ApiError::bad_request(format!("{ORIGIN}: the body is not UTF-8 text: {e}")))
}

/// Parses `text` as a `T`, refusing trailing text.
pub fn parse<T: DeserializeOwned>(text: &str) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| syntax(e.path().to_string(), e.into_inner()))?;
    de.end().map_err(|e| syntax(".".to_string(), e))?;
    Ok(value)
}

fn syntax(json_path: String, e: serde_json::Error) -> ApiError {
    InputError::Syntax {
        origin: ORIGIN.to_string(),
        line: e.line(),
        column: e.column(),
        json_path,
        message: strip_position(&e.to_string()),
    }
    .into()
}

/// serde_json ends its messages with " at line L column C", which the
/// `origin:line:column` prefix already says (as `adsync validate` does).
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message.to_string(),
    }
}

/// `POST /v1/pushes`: a campaign set for an account of a platform.
#[derive(Debug)]
pub struct PushBody {
    /// The set, parsed and validated.
    pub set: CampaignSet,
    /// The ad account.
    pub account: String,
    /// The platform (`reddit`, `memory`).
    pub platform: String,
    /// `adopt_existing`, `prune`, `take_over` (each `false` when left out).
    pub options: adsync::converge::PlanOptions,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PushEnvelope<'a> {
    #[serde(borrow)]
    set: &'a RawValue,
    account: String,
    platform: String,
    #[serde(default)]
    adopt_existing: bool,
    #[serde(default)]
    prune: bool,
    #[serde(default)]
    take_over: bool,
}

impl PushBody {
    /// Parses and validates a push body; the set's errors are those of
    /// `adsync validate`, located in the body (path `set.…`).
    pub fn parse(text: &str) -> Result<PushBody, ApiError> {
        let mut de = serde_json::Deserializer::from_str(text);
        let envelope: PushEnvelope<'_> = match serde_path_to_error::deserialize(&mut de) {
            Ok(envelope) => envelope,
            Err(e) => {
                let path = e.path().to_string();
                if path == "set" || path.starts_with("set.") || path.starts_with("set[") {
                    // Malformed JSON inside the set: parse it as a set to
                    // name the place inside it, as `validate` would.
                    typed_set_error(text)?;
                }
                return Err(syntax(path, e.into_inner()));
            }
        };
        de.end().map_err(|e| syntax(".".to_string(), e))?;
        let raw = envelope.set.get();
        // The raw value borrows from `text`: where it starts there is where
        // the set's own line and column numbers start.
        let offset = (raw.as_ptr() as usize).saturating_sub(text.as_ptr() as usize);
        let set = CampaignSet::from_json(raw, ORIGIN)
            .map_err(|e| ApiError::from(rebase(e, text.get(..offset).unwrap_or(""))))?;
        if envelope.account.trim().is_empty() {
            return Err(ApiError::bad_request(format!(
                "{ORIGIN}: at `account`: must name an ad account, not be empty"
            ))
            .with("path", "account"));
        }
        Ok(PushBody {
            set,
            account: envelope.account,
            platform: envelope.platform,
            options: adsync::converge::PlanOptions {
                adopt_existing: envelope.adopt_existing,
                prune: envelope.prune,
                take_over: envelope.take_over,
            },
        })
    }
}

/// The error of `text` read with the set typed, if any: its path goes down
/// into the set where the raw read stopped at `set`.
fn typed_set_error(text: &str) -> Result<(), ApiError> {
    #[derive(Deserialize)]
    #[allow(dead_code)] // Only the error is wanted.
    struct Typed {
        set: CampaignSet,
        account: serde::de::IgnoredAny,
        platform: serde::de::IgnoredAny,
        #[serde(default)]
        adopt_existing: serde::de::IgnoredAny,
        #[serde(default)]
        prune: serde::de::IgnoredAny,
        #[serde(default)]
        take_over: serde::de::IgnoredAny,
    }
    let mut de = serde_json::Deserializer::from_str(text);
    match serde_path_to_error::deserialize::<_, Typed>(&mut de) {
        Ok(_) => Ok(()),
        Err(e) => Err(syntax(e.path().to_string(), e.into_inner())),
    }
}

/// An error of the set parsed on its own, moved to where the set sits in
/// the body (`before` is the body's text before the set).
fn rebase(e: InputError, before: &str) -> InputError {
    let start_line = before.matches('\n').count() + 1;
    let start_column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    let path = |p: String| {
        if p == "." || p.is_empty() {
            "set".to_string()
        } else {
            format!("set.{p}")
        }
    };
    match e {
        InputError::Syntax {
            origin,
            line,
            column,
            json_path,
            message,
        } => InputError::Syntax {
            origin,
            column: if line == 1 {
                column + start_column - 1
            } else {
                column
            },
            line: line + start_line - 1,
            json_path: path(json_path),
            message,
        },
        InputError::Invalid {
            origin,
            json_path,
            message,
        } => InputError::Invalid {
            origin,
            json_path: path(json_path),
            message,
        },
        read @ InputError::Read { .. } => read,
    }
}

/// `POST /v1/pulls`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullBody {
    /// The advertising profile.
    pub profile: String,
    /// The platform (`amazon`).
    pub platform: String,
}

/// `POST /v1/schedules`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleBody {
    /// The platform pulled from.
    pub platform: String,
    /// The profile pulled.
    pub profile: String,
    /// How often.
    pub cadence: adsync::Cadence,
}

/// `POST /v1/syncs/{id}/resolve`: exactly one of the two.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResolveBody {
    /// The platform id of the entity to adopt.
    #[serde(default)]
    pub adopt: Option<String>,
    /// The entity does not exist: create it.
    #[serde(default)]
    pub absent: bool,
}
