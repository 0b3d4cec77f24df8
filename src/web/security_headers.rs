//! Security headers on every response, including a strict Content-Security-Policy.
//!
//! Policy: no inline scripts or styles anywhere, so the CSP never needs `unsafe-inline` or
//! `unsafe-eval`; pages cannot be framed; forms post only to us; HSTS only when the public URL is HTTPS
//! (sending it over plain HTTP would be ignored at best and lock users out at worst).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

/// The Content-Security-Policy sent with every response.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: blob:; font-src 'self'; connect-src 'self'; \
     media-src 'self'; object-src 'none'; frame-src 'none'; worker-src 'self'; \
     manifest-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

const PERMISSIONS_POLICY: &str = "accelerometer=(), camera=(), geolocation=(), gyroscope=(), \
     magnetometer=(), microphone=(), payment=(), usb=(), interest-cohort=()";

/// HSTS for two years, as recommended once a site is known to work over HTTPS.
const STRICT_TRANSPORT_SECURITY: &str = "max-age=63072000; includeSubDomains";

/// The precomputed header set.
#[derive(Clone, Debug)]
pub struct SecurityHeaders {
    headers: Arc<Vec<(HeaderName, HeaderValue)>>,
}

impl SecurityHeaders {
    /// The header set for a deployment; `https` adds HSTS and `upgrade-insecure-requests`.
    pub fn new(https: bool) -> Self {
        let csp = if https {
            format!("{CONTENT_SECURITY_POLICY}; upgrade-insecure-requests")
        } else {
            CONTENT_SECURITY_POLICY.to_owned()
        };
        let mut headers = vec![
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_str(&csp).unwrap_or_else(|_| {
                    HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'")
                }),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("same-origin"),
            ),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (
                HeaderName::from_static("permissions-policy"),
                HeaderValue::from_static(PERMISSIONS_POLICY),
            ),
            (
                HeaderName::from_static("cross-origin-opener-policy"),
                HeaderValue::from_static("same-origin"),
            ),
            (
                HeaderName::from_static("cross-origin-resource-policy"),
                HeaderValue::from_static("same-origin"),
            ),
        ];
        if https {
            headers.push((
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static(STRICT_TRANSPORT_SECURITY),
            ));
        }
        Self {
            headers: Arc::new(headers),
        }
    }
}

/// Adds the security headers to the response (a handler's own value wins).
pub async fn add_security_headers(
    State(security): State<SecurityHeaders>,
    request: Request,
    next: Next,
) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in security.headers.iter() {
        if !headers.contains_key(name) {
            headers.insert(name.clone(), value.clone());
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_never_allows_inline_or_eval() {
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-inline"));
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe-eval"));
        for directive in [
            "default-src 'self'",
            "frame-ancestors 'none'",
            "form-action 'self'",
            "base-uri 'none'",
        ] {
            assert!(CONTENT_SECURITY_POLICY.contains(directive), "{directive}");
        }
    }

    #[test]
    fn hsts_only_over_https() {
        let plain = SecurityHeaders::new(false);
        let secure = SecurityHeaders::new(true);
        let has_hsts = |set: &SecurityHeaders| {
            set.headers
                .iter()
                .any(|(name, _)| name == header::STRICT_TRANSPORT_SECURITY)
        };
        assert!(!has_hsts(&plain));
        assert!(has_hsts(&secure));
    }
}
