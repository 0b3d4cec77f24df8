//! Operating the service: health, metrics, logging set-up and periodic jobs.

pub mod health;
pub mod jobs;
pub mod logging;
pub mod metrics;

use axum::Router;
use axum::routing::get;

use crate::state::AppState;

/// `/api/live`, `/api/ready`, `/api/health`, `/metrics`.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/api/live", get(health::get_live))
        .route("/api/ready", get(health::get_ready))
        .route("/api/health", get(health::get_health))
        .route("/metrics", get(metrics::get_metrics))
}
