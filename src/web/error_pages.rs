//! Turns every error response into an HTML page or the JSON error shape, with the correlation id.
//!
//! Errors come from two places: our handlers (an [`ErrorReport`] extension set by `AppError`) and the
//! framework (router 404/405, body-limit 413, extractor rejections, timeouts), which answer with a bare
//! status and at most a line of plain text. Both get the same treatment here, so a client never sees
//! an error without a readable message and a reference. Deliberate non-error bodies with an error
//! status (e.g. `/api/health` answering 503 with its JSON report) pass through untouched.

use askama::Template;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::correlation::CorrelationId;
pub use super::negotiate::wants_json;
use super::page::PageContext;
use crate::error::ErrorReport;

/// Framework messages longer than this are replaced by our generic text.
const MAX_FRAMEWORK_MESSAGE: usize = 1024;

/// The HTML error page.
#[derive(Template)]
#[template(path = "errors/error.html")]
struct ErrorPage<'a> {
    page: PageContext,
    status: u16,
    reason: &'a str,
    message: &'a str,
    correlation_id: &'a str,
}

/// Renders error responses; must sit inside `observe` (which provides the correlation id).
pub async fn render_errors(request: Request, next: Next) -> Response {
    let json = wants_json(request.headers(), request.uri().path());
    let correlation_id = request
        .extensions()
        .get::<CorrelationId>()
        .cloned()
        .unwrap_or_else(CorrelationId::generate);
    let response = next.run(request).await;

    if let Some(report) = response.extensions().get::<ErrorReport>().cloned() {
        let (parts, _) = response.into_parts();
        return render(report, json, &correlation_id, parts.headers);
    }
    if !is_bare_error(&response) {
        return response;
    }
    let status = response.status();
    let (parts, body) = response.into_parts();
    let mut report = ErrorReport::for_status(status);
    // Extractor rejections explain what was wrong with the request; keep that explanation.
    if matches!(
        status,
        StatusCode::BAD_REQUEST
            | StatusCode::UNSUPPORTED_MEDIA_TYPE
            | StatusCode::UNPROCESSABLE_ENTITY
    ) && let Ok(bytes) = axum::body::to_bytes(body, MAX_FRAMEWORK_MESSAGE).await
        && let Ok(text) = std::str::from_utf8(&bytes)
        && !text.trim().is_empty()
    {
        report.message = text.trim().to_owned();
    }
    render(report, json, &correlation_id, parts.headers)
}

/// An error status whose body is empty or plain text: produced by the framework, not by us.
fn is_bare_error(response: &Response) -> bool {
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return false;
    }
    match response.headers().get(header::CONTENT_TYPE) {
        None => true,
        Some(value) => value.to_str().is_ok_and(|ct| ct.starts_with("text/plain")),
    }
}

fn render(
    report: ErrorReport,
    json: bool,
    correlation_id: &CorrelationId,
    original_headers: HeaderMap,
) -> Response {
    let mut response = if json {
        let mut error = json!({
            "code": report.code,
            "message": report.message,
            "correlation_id": correlation_id.as_str(),
        });
        if let Some(fields) = &report.fields {
            error["fields"] = json!(fields);
        }
        (report.status, axum::Json(json!({ "error": error }))).into_response()
    } else {
        let page = ErrorPage {
            page: PageContext::new(reason(report.status), "error"),
            status: report.status.as_u16(),
            reason: reason(report.status),
            message: &report.message,
            correlation_id: correlation_id.as_str(),
        };
        match page.render() {
            Ok(html) => (report.status, axum::response::Html(html)).into_response(),
            Err(err) => {
                tracing::error!(error = %err, "error page template failed");
                let text = format!(
                    "{}\n\nReference: {}\n",
                    report.message,
                    correlation_id.as_str()
                );
                (report.status, text).into_response()
            }
        }
    };
    // Keep what the original response said about retrying, allowed methods or authentication.
    for name in [
        header::RETRY_AFTER,
        header::ALLOW,
        header::WWW_AUTHENTICATE,
        header::SET_COOKIE,
        header::LOCATION,
    ] {
        for value in original_headers.get_all(&name) {
            response.headers_mut().append(name.clone(), value.clone());
        }
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response.extensions_mut().insert(report);
    response
}

fn reason(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(
                name.clone(),
                HeaderValue::from_str(value).expect("test setup is valid"),
            );
        }
        map
    }

    #[test]
    fn browsers_get_html_and_api_clients_json() {
        let browser = headers(&[(header::ACCEPT, "text/html,application/xhtml+xml,*/*;q=0.8")]);
        assert!(!wants_json(&browser, "/api/v1/companions"));
        let api = headers(&[(header::ACCEPT, "application/json")]);
        assert!(wants_json(&api, "/companions"));
        let none = HeaderMap::new();
        assert!(wants_json(&none, "/api/health"));
        assert!(!wants_json(&none, "/companions"));
        let fetch = headers(&[(header::CONTENT_TYPE, "application/json")]);
        assert!(wants_json(&fetch, "/companions"));
    }
}
