//! Operating the service: health, metrics, logging set-up and periodic jobs.

pub mod health;
pub mod jobs;
pub mod logging;
pub mod metrics;

use axum::Router;
use axum::routing::get;

use crate::state::AppState;

/// `/api/live`, `/api/ready`, `/api/health`, and `/metrics` unless it has a listener of its own.
pub fn router(with_metrics: bool) -> Router<AppState> {
    let router = Router::new()
        .route("/api/live", get(health::get_live))
        .route("/api/ready", get(health::get_ready))
        .route("/api/health", get(health::get_health));
    if with_metrics {
        router.route("/metrics", get(metrics::get_metrics))
    } else {
        router
    }
}

/// The whole app of the separate metrics listener (`METRICS_LISTEN_ADDR`): `/metrics` and nothing else.
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics::get_metrics))
        .with_state(state)
}
