//! Secrets (access tokens) that cannot leak through formatting.

use std::fmt;

/// Secrets (access tokens) that cannot leak through formatting.
///
/// Principle: a secret never reaches logs, checkpoints or snapshots. A token is
/// therefore never a bare `String`: it is a [`Secret`], whose `Debug` and
/// `Display` print `<redacted>`, which has no `Serialize`, and whose value comes
/// out only through [`Secret::expose`], called where a request header is built.
///
/// A secret value (bearer token, API key).
///
/// ```
/// let token = adsync::Secret::new("Atza|abc");
/// assert_eq!(format!("{token} {token:?}"), "<redacted> Secret(<redacted>)");
/// assert_eq!(token.expose(), "Atza|abc");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`; from here on it formats as `<redacted>` and cannot be
    /// serialized.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret itself: only for building an `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}
