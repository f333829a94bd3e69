//! Access tokens: a redacting wrapper and a pluggable source.
//!
//! The adapter asks its [`TokenSource`] for a token before every request and
//! calls [`TokenSource::refresh`] once when Reddit answers 401. An OAuth2
//! refresh-token source (`POST https://www.reddit.com/api/v1/access_token`) can
//! implement the trait; [`StaticToken`] serves a fixed token (env var, tests).

use crate::secret::Secret;
use std::fmt;

use async_trait::async_trait;

use crate::adapter::AdapterError;

/// Where the adapter gets bearer tokens from: asked before every request, and
/// asked to refresh once when the platform answers 401. Implementations must
/// never put the exposed token into a log, an error or a checkpoint.
#[async_trait]
pub trait TokenSource: Send + Sync + fmt::Debug + 'static {
    /// The current token (may be cached).
    async fn token(&self) -> Result<Secret, AdapterError>;

    /// Obtains a fresh token after the platform rejected the current one with 401,
    /// and returns it. Errors should be [`AdapterError::Permanent`] when the
    /// credentials themselves are bad, [`AdapterError::Transient`] otherwise.
    async fn refresh(&self) -> Result<Secret, AdapterError>;

    /// Whether [`TokenSource::refresh`] can yield a different token. Either
    /// way a request answered 401 is sent once more (for a fixed token, in case
    /// the rejection was a blip); this only decides what the permanent error
    /// after a second 401 tells the operator to check.
    fn can_refresh(&self) -> bool {
        true
    }
}

/// A fixed token; it cannot be refreshed, so a request answered 401 is
/// retried once with the same token, and a second 401 fails permanently.
#[derive(Debug, Clone)]
pub struct StaticToken(Secret);

impl StaticToken {
    /// A source always answering `token`.
    pub fn new(token: Secret) -> Self {
        StaticToken(token)
    }
}

#[async_trait]
impl TokenSource for StaticToken {
    async fn token(&self) -> Result<Secret, AdapterError> {
        Ok(self.0.clone())
    }

    async fn refresh(&self) -> Result<Secret, AdapterError> {
        Ok(self.0.clone())
    }

    fn can_refresh(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_redact_the_secret() {
        let t = Secret::new("s3cr3t-value");
        assert!(!format!("{t:?}").contains("s3cr3t"));
        assert!(!format!("{t}").contains("s3cr3t"));
        assert!(!format!("{:?}", StaticToken::new(t.clone())).contains("s3cr3t"));
        assert_eq!(t.expose(), "s3cr3t-value");
    }
}
