//! CSRF protection for every state-changing request: per-session secret, masked tokens, Origin check.
//!
//! Policy: each session has a 256-bit secret; pages carry it masked with fresh randomness
//! (`base64url(mask ‖ mask⊕secret)`), so the token differs on every page (no BREACH-style leak through
//! compression) while all of them stay valid for the session. A POST, PUT, PATCH or DELETE must carry
//! one, as the `X-CSRF-Token` header or the `csrf_token` form field (urlencoded or multipart), compared in constant time after
//! unmasking; and when the browser says where the request came from (`Origin`, else `Referer`), that
//! must be this site. Failures answer 403 `csrf_failed`, are logged with the correlation id and counted.

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

use super::session::CurrentSession;
use crate::error::AppError;
use crate::state::AppState;

/// The header JSON clients send the token in.
pub const HEADER: &str = "x-csrf-token";
/// The form field pages send the token in.
pub const FIELD: &str = "csrf_token";

/// A freshly masked token for `secret`.
pub fn mask(secret: &[u8; 32]) -> String {
    let mut mask = [0_u8; 32];
    if getrandom::fill(&mut mask).is_err() {
        // Without randomness the token is still valid, only not re-masked.
        mask = [0; 32];
    }
    let mut token = [0_u8; 64];
    token[..32].copy_from_slice(&mask);
    for (i, byte) in secret.iter().enumerate() {
        token[32 + i] = byte ^ mask[i];
    }
    URL_SAFE_NO_PAD.encode(token)
}

/// True when `token` unmasks to `secret` (constant time in the secret's content).
pub fn matches(secret: &[u8; 32], token: &str) -> bool {
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(token.trim()) else {
        return false;
    };
    if bytes.len() != 64 {
        return false;
    }
    let unmasked: Vec<u8> = bytes[..32]
        .iter()
        .zip(&bytes[32..])
        .map(|(mask, masked)| mask ^ masked)
        .collect();
    unmasked.ct_eq(secret).into()
}

/// Refuses state-changing requests without a valid token or from a foreign origin.
pub async fn verify_csrf(State(state): State<AppState>, request: Request, next: Next) -> Response {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    ) {
        return next.run(request).await;
    }
    match check(&state, request).await {
        Ok(request) => next.run(request).await,
        Err(Refusal::TooLarge) => {
            AppError::PayloadTooLarge("The form is larger than this server accepts.".into())
                .into_response()
        }
        Err(Refusal::Csrf(reason)) => {
            tracing::warn!(reason, "CSRF check failed");
            metrics::counter!("csrf_failures_total", "reason" => reason).increment(1);
            AppError::Forbidden {
                code: "csrf_failed",
                message: "This form has expired or did not come from this site. Go back, reload \
                          the page and try again."
                    .into(),
            }
            .into_response()
        }
    }
}

enum Refusal {
    Csrf(&'static str),
    TooLarge,
}

async fn check(state: &AppState, request: Request) -> Result<Request, Refusal> {
    let headers = request.headers();
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !state
            .allowed_origins
            .iter()
            .any(|allowed| allowed == origin)
        {
            return Err(Refusal::Csrf("foreign_origin"));
        }
    } else if let Some(referer) = headers.get(header::REFERER) {
        let origin = referer
            .to_str()
            .ok()
            .and_then(|r| url::Url::parse(r).ok())
            .map(|url| url.origin().ascii_serialization());
        let allowed = origin.is_some_and(|origin| state.allowed_origins.contains(&origin));
        if !allowed {
            return Err(Refusal::Csrf("foreign_referer"));
        }
    }

    let Some(session) = request
        .extensions()
        .get::<CurrentSession>()
        .and_then(|current| current.0.clone())
    else {
        return Err(Refusal::Csrf("no_session"));
    };

    if let Some(token) = request.headers().get(HEADER) {
        let valid = token
            .to_str()
            .is_ok_and(|token| session.csrf_token_matches(token));
        return if valid {
            Ok(request)
        } else {
            Err(Refusal::Csrf("bad_token"))
        };
    }

    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let (limit, multipart_boundary) =
        if content_type.starts_with("application/x-www-form-urlencoded") {
            (crate::app::MAX_FORM_BYTES, None)
        } else if content_type.starts_with("multipart/form-data") {
            let boundary = multer::parse_boundary(&content_type)
                .map_err(|_| Refusal::Csrf("missing_token"))?;
            (super::upload::MAX_MULTIPART_BYTES, Some(boundary))
        } else {
            return Err(Refusal::Csrf("missing_token"));
        };
    // Read the form to find its token, then hand the same bytes on to the handler.
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| Refusal::TooLarge)?;
    let token = match multipart_boundary {
        None => url::form_urlencoded::parse(&bytes)
            .find(|(name, _)| name == FIELD)
            .map(|(_, value)| value.into_owned()),
        Some(boundary) => multipart_token(bytes.clone(), boundary).await,
    };
    match token {
        None => Err(Refusal::Csrf("missing_token")),
        Some(token) if !session.csrf_token_matches(&token) => Err(Refusal::Csrf("bad_token")),
        Some(_) => Ok(Request::from_parts(parts, Body::from(bytes))),
    }
}

/// The `csrf_token` part of a buffered multipart body (pages put it first, so this stops early).
async fn multipart_token(bytes: bytes::Bytes, boundary: String) -> Option<String> {
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(bytes) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    while let Ok(Some(field)) = multipart.next_field().await {
        if field.name() == Some(FIELD) {
            return field.text().await.ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_tokens_differ_but_all_match() {
        let secret = [7_u8; 32];
        let a = mask(&secret);
        let b = mask(&secret);
        assert_ne!(a, b);
        assert!(matches(&secret, &a));
        assert!(matches(&secret, &b));
    }

    #[test]
    fn tokens_of_another_secret_or_malformed_ones_do_not_match() {
        let secret = [7_u8; 32];
        let other = [8_u8; 32];
        assert!(!matches(&secret, &mask(&other)));
        assert!(!matches(&secret, ""));
        assert!(!matches(&secret, "not base64 !!"));
        assert!(!matches(&secret, &URL_SAFE_NO_PAD.encode([0_u8; 63])));
        // An unmasked secret (mask of zeros) with the wrong length is refused too.
        assert!(!matches(&secret, &URL_SAFE_NO_PAD.encode(secret)));
    }
}
