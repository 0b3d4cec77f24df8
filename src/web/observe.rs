//! The outermost request middleware: correlation id, the request span, the access log line and HTTP metrics.
//!
//! Every log line emitted while handling a request is inside the `request` span, which carries the
//! correlation id, method, matched route and path (without the query string); the span gets the
//! status and latency when the response is ready. Metric labels come from small fixed sets: the route *template* (never the raw path), a
//! known method, the status code.

use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument;

use super::correlation::{self, CorrelationId};

/// Route label for requests no route matched (404s).
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Paths probed so often that their access lines are logged at debug level.
const QUIET_ROUTES: &[&str] = &["/api/live", "/api/ready", "/api/health", "/metrics"];

/// Assigns the correlation id, runs the request inside its span, logs it and records its metrics.
pub async fn observe(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let correlation_id = CorrelationId::from_header(request.headers().get(correlation::HEADER));
    request.extensions_mut().insert(correlation_id.clone());

    let method = method_label(request.method());
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| UNMATCHED_ROUTE.to_owned(), |p| p.as_str().to_owned());

    let span = tracing::info_span!(
        "request",
        correlation_id = %correlation_id,
        method,
        route = %route,
        path = %request.uri().path(),
        status = tracing::field::Empty,
        latency_ms = tracing::field::Empty,
    );
    let mut response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status();

    span.record("status", status.as_u16());
    span.record("latency_ms", elapsed.as_millis() as u64);
    span.in_scope(|| {
        if status.is_server_error() {
            tracing::warn!("request failed");
        } else if QUIET_ROUTES.contains(&route.as_str()) {
            tracing::debug!("request completed");
        } else {
            tracing::info!("request completed");
        }
    });

    metrics::counter!(
        "http_requests_total",
        "method" => method,
        "route" => route.clone(),
        "status" => status.as_u16().to_string(),
    )
    .increment(1);
    metrics::histogram!(
        "http_request_duration_seconds",
        "method" => method,
        "route" => route,
    )
    .record(elapsed.as_secs_f64());

    response
        .headers_mut()
        .insert(correlation::HEADER, correlation_id.header_value());
    response
}

/// The method as a label from a fixed set, so odd methods cannot grow the label space.
fn method_label(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "OTHER",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unusual_methods_share_one_label() {
        assert_eq!(method_label(&Method::GET), "GET");
        assert_eq!(
            method_label(&Method::from_bytes(b"PROPFIND").expect("test setup is valid")),
            "OTHER"
        );
        assert_eq!(method_label(&Method::TRACE), "OTHER");
    }
}
