//! The bearer-token check: with a token configured, every request must carry
//! `Authorization: Bearer <token>`; the comparison takes the same time
//! wherever the first differing byte is.

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;

use adsync::Secret;

use crate::error::ApiError;

/// `routes` behind the token check, or unchanged without a token.
pub fn layer(routes: Router, token: Option<Secret>) -> Router {
    match token {
        Some(token) => routes.layer(axum::middleware::from_fn_with_state(token, check)),
        None => routes,
    }
}

async fn check(State(token): State<Secret>, request: Request, next: Next) -> Response {
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(given) if constant_time_eq(given.as_bytes(), token.expose().as_bytes()) => {
            next.run(request).await
        }
        // Neither the expected nor the given token is ever echoed.
        _ => {
            let mut response = ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (Authorization: Bearer <ADSYNC_DAEMON_TOKEN>)",
            )
            .into_response();
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"adsync\""),
            );
            response
        }
    }
}

/// Equal, in a time that depends on the lengths only: every byte pair is
/// compared, so a client cannot learn a prefix of the token from timings.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for (i, &x) in a.iter().enumerate() {
        // Index `b` cyclically so the loop's length is `a`'s whatever `b` is.
        let y = if b.is_empty() { 0 } else { b[i % b.len()] };
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn equal_only_when_same_bytes_and_length() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcabc"));
        assert!(!constant_time_eq(b"abcabc", b"abc"));
        assert!(!constant_time_eq(b"", b"abc"));
        assert!(!constant_time_eq(b"abc", b""));
        assert!(constant_time_eq(b"", b""));
    }
}
