//! Correlation ids: the reference that ties a request's response, log lines and outbound calls together.
//!
//! Policy: a client-supplied `X-Correlation-Id` is kept when it is 8–128 characters of
//! `[A-Za-z0-9._-]` (safe in logs and headers); anything else is replaced by a fresh UUID v7.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::HeaderValue;
use axum::http::request::Parts;

/// The header carrying the id, in both directions.
pub const HEADER: &str = "x-correlation-id";

/// A validated correlation id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CorrelationId(Arc<str>);

impl CorrelationId {
    /// Keeps a valid client id, or generates one.
    pub fn from_header(value: Option<&HeaderValue>) -> Self {
        value
            .and_then(|v| v.to_str().ok())
            .and_then(Self::parse)
            .unwrap_or_else(Self::generate)
    }

    /// Accepts 8–128 characters of `[A-Za-z0-9._-]`.
    pub fn parse(raw: &str) -> Option<Self> {
        let valid_length = (8..=128).contains(&raw.len());
        let valid_chars = raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        (valid_length && valid_chars).then(|| Self(raw.into()))
    }

    /// A fresh, time-ordered id.
    pub fn generate() -> Self {
        Self(uuid::Uuid::now_v7().to_string().into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as a header value (always valid: the character set is a subset of visible ASCII).
    pub fn header_value(&self) -> HeaderValue {
        HeaderValue::from_str(&self.0).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
    }
}

impl fmt::Display for CorrelationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CorrelationId {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        // The observe middleware always inserts one; outside it (unit tests) a fresh id is fine.
        Ok(parts
            .extensions
            .get::<CorrelationId>()
            .cloned()
            .unwrap_or_else(Self::generate))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_client_ids_are_kept() {
        for id in ["abcdefgh", "req-2026.11.25_0001", &"x".repeat(128)] {
            let value = HeaderValue::from_str(id).expect("test setup is valid");
            assert_eq!(CorrelationId::from_header(Some(&value)).as_str(), id);
        }
    }

    #[test]
    fn invalid_client_ids_are_replaced() {
        for id in [
            "short",
            &"x".repeat(129),
            "has space in it",
            "semi;colon!",
            "ünïcödé-id",
        ] {
            let Ok(value) = HeaderValue::from_str(id) else {
                continue;
            };
            let kept = CorrelationId::from_header(Some(&value));
            assert_ne!(kept.as_str(), id);
            assert!(CorrelationId::parse(kept.as_str()).is_some());
        }
        let non_utf8 = HeaderValue::from_bytes(b"abc\xffdefghij").expect("test setup is valid");
        assert!(
            CorrelationId::parse(CorrelationId::from_header(Some(&non_utf8)).as_str()).is_some()
        );
    }

    #[test]
    fn generated_ids_are_unique_and_valid() {
        let a = CorrelationId::generate();
        let b = CorrelationId::generate();
        assert_ne!(a, b);
        assert!(CorrelationId::parse(a.as_str()).is_some());
    }
}
