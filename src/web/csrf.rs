//! CSRF protection for every state-changing request: per-session secret, masked tokens, Origin check.
//!
//! Policy: each session has a 256-bit secret; pages carry it masked with fresh randomness
//! (`base64url(mask ‖ mask⊕secret)`), so the token differs on every page (no BREACH-style leak through
//! compression) while all of them stay valid for the session; without randomness there is no token (the
//! page fails), never the bare secret. A POST, PUT, PATCH or DELETE must carry one, as the `X-CSRF-Token`
//! header or the `csrf_token` form field (urlencoded or multipart), compared in constant time after
//! unmasking; and when the browser says where the request came from (`Origin`, else `Referer`), that must
//! be this site. What can be decided from the headers is decided before any body is read: a foreign
//! origin, no session, a header token, a body that is neither form type. A urlencoded form is read (at
//! most 256 KiB) to find its field; of a multipart form only the start is read, up to the `csrf_token`
//! part our forms send first (at most 64 KiB), and the rest streams on to the handler untouched. Failures
//! answer 403 `csrf_failed`, are logged with the correlation id and counted.

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

pub use super::csrf_token::{mask, matches};
use super::session::CurrentSession;
use crate::error::AppError;
use crate::state::AppState;

/// The header JSON clients send the token in.
pub const HEADER: &str = "x-csrf-token";
/// The form field pages send the token in.
pub const FIELD: &str = "csrf_token";

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
    if content_type.starts_with("application/x-www-form-urlencoded") {
        // Read the form to find its token, then hand the same bytes on to the handler.
        let (parts, body) = request.into_parts();
        let bytes = axum::body::to_bytes(body, crate::web::limits::MAX_FORM_BYTES)
            .await
            .map_err(|_| Refusal::TooLarge)?;
        let token = url::form_urlencoded::parse(&bytes)
            .find(|(name, _)| name == FIELD)
            .map(|(_, value)| value.into_owned());
        return match token {
            None => Err(Refusal::Csrf("missing_token")),
            Some(token) if !session.csrf_token_matches(&token) => Err(Refusal::Csrf("bad_token")),
            Some(_) => Ok(Request::from_parts(parts, Body::from(bytes))),
        };
    }
    if content_type.starts_with("multipart/form-data") {
        let boundary =
            multer::parse_boundary(&content_type).map_err(|_| Refusal::Csrf("missing_token"))?;
        let (parts, body) = request.into_parts();
        let (prefix, rest) = multipart_prefix_with_token(body, boundary).await?;
        return match prefix.token {
            Some(token) if session.csrf_token_matches(&token) => {
                // The bytes read so far, then the rest of the body as it arrives.
                let replay = futures_util::stream::once(async move {
                    Ok::<Bytes, axum::Error>(Bytes::from(prefix.bytes))
                });
                let body = Body::from_stream(replay.chain(rest.into_data_stream()));
                Ok(Request::from_parts(parts, body))
            }
            Some(_) => Err(Refusal::Csrf("bad_token")),
            None => Err(Refusal::Csrf("missing_token")),
        };
    }
    Err(Refusal::Csrf("missing_token"))
}

/// The start of a multipart body, read up to its `csrf_token` part.
struct MultipartPrefix {
    bytes: Vec<u8>,
    token: Option<String>,
}

/// Reads `body` until the `csrf_token` part is complete (or the body ends, or
/// [`crate::web::limits::MAX_CSRF_PREFIX_BYTES`] were read without it); returns what was read and the
/// unread rest.
async fn multipart_prefix_with_token(
    body: Body,
    boundary: String,
) -> Result<(MultipartPrefix, Body), Refusal> {
    let limit = crate::web::limits::MAX_CSRF_PREFIX_BYTES;
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    loop {
        let chunk = match stream.next().await {
            None => None,
            Some(Ok(chunk)) => Some(chunk),
            // The body limit (or a broken upload) stopped the read.
            Some(Err(_)) => return Err(Refusal::TooLarge),
        };
        let ended = chunk.is_none();
        if let Some(chunk) = chunk {
            bytes.extend_from_slice(&chunk);
        }
        // Only a token within the first `limit` bytes counts, however the body arrived in chunks.
        if let Some(token) = token_in_prefix(&bytes[..bytes.len().min(limit)], &boundary).await {
            let prefix = MultipartPrefix {
                bytes,
                token: Some(token),
            };
            return Ok((prefix, Body::from_stream(stream)));
        }
        if ended || bytes.len() > limit {
            return Ok((MultipartPrefix { bytes, token: None }, Body::empty()));
        }
    }
}

/// The `csrf_token` part of a multipart body's first bytes, once that part is complete in them.
async fn token_in_prefix(prefix: &[u8], boundary: &str) -> Option<String> {
    let bytes = Bytes::copy_from_slice(prefix);
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(bytes) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    while let Ok(Some(field)) = multipart.next_field().await {
        if field.name() == Some(FIELD) {
            // An incomplete part (its end not read yet) fails here; the caller reads more.
            return field.text().await.ok();
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn multipart(parts: &[(&str, &str)]) -> Vec<u8> {
        let mut body = String::new();
        for (name, value) in parts {
            body.push_str(&format!(
                "--XyZ\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            ));
        }
        body.push_str("--XyZ--\r\n");
        body.into_bytes()
    }

    #[tokio::test]
    async fn the_token_is_found_in_the_start_of_a_multipart_body() {
        let body = multipart(&[("csrf_token", "tok"), ("name", "Mira")]);
        // Only the part up to the token is needed; it arrives in small pieces.
        let chunks: Vec<Result<Bytes, std::io::Error>> = body
            .chunks(7)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let (prefix, rest) = multipart_prefix_with_token(
            Body::from_stream(futures_util::stream::iter(chunks)),
            "XyZ".into(),
        )
        .await
        .unwrap_or_else(|_| panic!("read"));
        assert_eq!(prefix.token.as_deref(), Some("tok"));
        assert!(prefix.bytes.len() < body.len(), "the rest was not read");
        let rest = axum::body::to_bytes(rest, usize::MAX).await.expect("rest");
        assert_eq!([prefix.bytes, rest.to_vec()].concat(), body, "nothing lost");
    }

    #[tokio::test]
    async fn a_token_after_a_large_part_is_not_looked_for() {
        let big = "x".repeat(crate::web::limits::MAX_CSRF_PREFIX_BYTES + 10);
        let body = multipart(&[("name", &big), ("csrf_token", "tok")]);
        let chunks: Vec<Result<Bytes, std::io::Error>> = body
            .chunks(4096)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let (prefix, _) = multipart_prefix_with_token(
            Body::from_stream(futures_util::stream::iter(chunks)),
            "XyZ".into(),
        )
        .await
        .unwrap_or_else(|_| panic!("read"));
        assert_eq!(prefix.token, None);
        assert!(prefix.bytes.len() <= crate::web::limits::MAX_CSRF_PREFIX_BYTES + 4096);
    }
}
