//! The one error type handlers return, and the report every error response is rendered from.
//!
//! Policy: a handler returns `Result<_, AppError>`; `AppError` becomes a response that carries an
//! [`ErrorReport`] extension and a plain-text fallback body. The `web::error_pages` middleware then
//! renders the report as an HTML page or as the JSON error shape (DESIGN.md §5), depending on what the
//! client accepts, always with the correlation id. Internal errors are logged exactly once, here, inside
//! the request span (so the log line carries the correlation id), and shown as an opaque message.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// Messages per form field, e.g. `{"email": ["is already registered"]}`.
pub type FieldErrors = BTreeMap<String, Vec<String>>;

/// Everything a handler can fail with.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the request is malformed.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// 401: sign-in needed or credentials wrong.
    #[error("unauthorized: {0}")]
    Unauthorized(String),
    /// 403 with a stable code, e.g. `csrf_failed`.
    #[error("forbidden ({code}): {message}")]
    Forbidden {
        /// Stable snake_case code.
        code: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// 404: missing, or somebody else's (never tell which).
    #[error("not found")]
    NotFound,
    /// 409: conflicts with the current state, with a stable code (e.g. `run_active`).
    #[error("conflict ({code}): {message}")]
    Conflict {
        /// Stable snake_case code.
        code: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// 413: the body is over the limit.
    #[error("payload too large: {0}")]
    PayloadTooLarge(String),
    /// 422: well-formed but invalid input, with messages per field.
    #[error("validation failed: {message}")]
    Validation {
        /// Summary.
        message: String,
        /// Messages per field.
        fields: FieldErrors,
    },
    /// 423: the account is locked.
    #[error("locked: {0}")]
    Locked(String),
    /// 429: over a rate limit; retry after the given time.
    #[error("rate limited: {message}")]
    RateLimited {
        /// When the client may try again.
        retry_after: Duration,
        /// Human-readable explanation saying when.
        message: String,
    },
    /// 503 with a stable code, e.g. `llm_not_configured`.
    #[error("unavailable ({code}): {message}")]
    Unavailable {
        /// Stable snake_case code.
        code: &'static str,
        /// Human-readable explanation.
        message: String,
    },
    /// 500: a bug or an infrastructure failure; details are logged, never shown.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        Self::Internal(anyhow::Error::new(err).context("database query failed"))
    }
}

impl From<askama::Error> for AppError {
    fn from(err: askama::Error) -> Self {
        Self::Internal(anyhow::Error::new(err).context("template rendering failed"))
    }
}

/// What an error response says: the source for both the HTML page and the JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorReport {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable snake_case code, e.g. `not_found`.
    pub code: Cow<'static, str>,
    /// A sentence a person understands.
    pub message: String,
    /// Messages per field, for validation errors.
    pub fields: Option<FieldErrors>,
}

impl ErrorReport {
    /// A report for a bare status produced outside our handlers (router 404/405, body limits, timeouts).
    pub fn for_status(status: StatusCode) -> Self {
        let (code, message) = match status {
            StatusCode::BAD_REQUEST => ("bad_request", "The request could not be understood."),
            StatusCode::UNAUTHORIZED => ("unauthorized", "Please sign in to continue."),
            StatusCode::FORBIDDEN => ("forbidden", "You are not allowed to do that."),
            StatusCode::NOT_FOUND => (
                "not_found",
                "There is nothing here. The address may be mistyped, or the page was removed.",
            ),
            StatusCode::METHOD_NOT_ALLOWED => (
                "method_not_allowed",
                "This address does not accept that kind of request.",
            ),
            StatusCode::REQUEST_TIMEOUT => (
                "request_timeout",
                "The request took too long and was stopped. Please try again.",
            ),
            StatusCode::PAYLOAD_TOO_LARGE => (
                "payload_too_large",
                "What you sent is larger than this server accepts.",
            ),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => (
                "unsupported_media_type",
                "The request body has a content type this address does not accept.",
            ),
            StatusCode::UNPROCESSABLE_ENTITY => {
                ("validation_failed", "Some of what you sent is not valid.")
            }
            StatusCode::TOO_MANY_REQUESTS => (
                "rate_limited",
                "Too many requests. Please wait a moment and try again.",
            ),
            StatusCode::SERVICE_UNAVAILABLE => (
                "service_unavailable",
                "The service is temporarily unavailable. Please try again shortly.",
            ),
            status if status.is_client_error() => {
                ("bad_request", "The request could not be processed.")
            }
            _ => (
                "internal_error",
                "Something went wrong on our side. If it keeps happening, quote the reference below.",
            ),
        };
        Self {
            status,
            code: Cow::Borrowed(code),
            message: message.to_owned(),
            fields: None,
        }
    }

    fn new(status: StatusCode, code: &'static str, message: String) -> Self {
        Self {
            status,
            code: Cow::Borrowed(code),
            message,
            fields: None,
        }
    }
}

impl AppError {
    /// The report this error is shown as.
    pub fn report(&self) -> ErrorReport {
        match self {
            Self::BadRequest(message) => {
                ErrorReport::new(StatusCode::BAD_REQUEST, "bad_request", message.clone())
            }
            Self::Unauthorized(message) => {
                ErrorReport::new(StatusCode::UNAUTHORIZED, "unauthorized", message.clone())
            }
            Self::Forbidden { code, message } => {
                ErrorReport::new(StatusCode::FORBIDDEN, code, message.clone())
            }
            Self::NotFound => ErrorReport::for_status(StatusCode::NOT_FOUND),
            Self::Conflict { code, message } => {
                ErrorReport::new(StatusCode::CONFLICT, code, message.clone())
            }
            Self::PayloadTooLarge(message) => ErrorReport::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                message.clone(),
            ),
            Self::Validation { message, fields } => ErrorReport {
                fields: Some(fields.clone()),
                ..ErrorReport::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "validation_failed",
                    message.clone(),
                )
            },
            Self::Locked(message) => {
                ErrorReport::new(StatusCode::LOCKED, "account_locked", message.clone())
            }
            Self::RateLimited { message, .. } => ErrorReport::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                message.clone(),
            ),
            Self::Unavailable { code, message } => {
                ErrorReport::new(StatusCode::SERVICE_UNAVAILABLE, code, message.clone())
            }
            Self::Internal(_) => ErrorReport::for_status(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        if let Self::Internal(err) = &self {
            // Logged once, inside the request span, so the line carries the correlation id.
            tracing::error!(error = format!("{err:#}"), "internal error");
        }
        let report = self.report();
        let mut response = (report.status, report.message.clone()).into_response();
        if let Self::RateLimited { retry_after, .. } = &self {
            let seconds = retry_after.as_secs().max(1);
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
        }
        response.extensions_mut().insert(report);
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_has_the_documented_status_and_code() {
        let cases = [
            (AppError::BadRequest("x".into()), 400, "bad_request"),
            (AppError::Unauthorized("x".into()), 401, "unauthorized"),
            (
                AppError::Forbidden {
                    code: "csrf_failed",
                    message: "x".into(),
                },
                403,
                "csrf_failed",
            ),
            (AppError::NotFound, 404, "not_found"),
            (
                AppError::Conflict {
                    code: "run_active",
                    message: "x".into(),
                },
                409,
                "run_active",
            ),
            (
                AppError::PayloadTooLarge("x".into()),
                413,
                "payload_too_large",
            ),
            (
                AppError::Validation {
                    message: "x".into(),
                    fields: FieldErrors::new(),
                },
                422,
                "validation_failed",
            ),
            (AppError::Locked("x".into()), 423, "account_locked"),
            (
                AppError::RateLimited {
                    retry_after: Duration::from_secs(3),
                    message: "x".into(),
                },
                429,
                "rate_limited",
            ),
            (
                AppError::Unavailable {
                    code: "llm_not_configured",
                    message: "x".into(),
                },
                503,
                "llm_not_configured",
            ),
            (
                AppError::Internal(anyhow::anyhow!("disk on fire")),
                500,
                "internal_error",
            ),
        ];
        for (error, status, code) in cases {
            let report = error.report();
            assert_eq!(report.status.as_u16(), status);
            assert_eq!(report.code, code);
        }
    }

    #[test]
    fn internal_errors_never_show_their_cause() {
        let report = AppError::Internal(anyhow::anyhow!("password=hunter2")).report();
        assert!(!report.message.contains("hunter2"));
    }

    #[test]
    fn rate_limited_responses_carry_retry_after() {
        let response = AppError::RateLimited {
            retry_after: Duration::from_secs(90),
            message: "slow down".into(),
        }
        .into_response();
        assert_eq!(response.headers()[header::RETRY_AFTER], "90");
        assert!(response.extensions().get::<ErrorReport>().is_some());
    }
}
