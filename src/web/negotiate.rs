//! Content negotiation (pure): whether a request wants JSON (API clients) or HTML (browsers). A leaf
//! shared by error pages and the session extractors, which answer unauthenticated requests either way.

use axum::http::{HeaderMap, header};

/// JSON for API clients, HTML for browsers.
pub fn wants_json(headers: &HeaderMap, path: &str) -> bool {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if accept.contains("text/html") {
        return false;
    }
    if accept.contains("application/json") || accept.contains("+json") {
        return true;
    }
    let sent_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    sent_json || path.starts_with("/api/") || path == "/metrics"
}
