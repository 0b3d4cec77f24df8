//! The state every handler can reach: configuration, database, clients, health checks, metrics.
//!
//! Imports infrastructure only; features never put their own types here beyond what they need
//! from shared services.

use std::sync::Arc;

use metrics_exporter_prometheus::PrometheusHandle;

use crate::config::Config;
use crate::db::Db;
use crate::engine::{Engine, StreamHub};
use crate::media::MediaStorage;
use crate::media::generate::Imaging;
use crate::ops::health::HealthChecks;
use crate::ops::metrics::AppCounters;
use crate::web::RateLimiter;
use crate::web::keys::ServerKeys;

/// Cheap to clone: every field is shared.
#[derive(Clone)]
pub struct AppState {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The database pool.
    pub db: Db,
    /// Renders the Prometheus metrics.
    pub metrics: PrometheusHandle,
    /// This app's own counters (tests read them per app).
    pub counters: Arc<AppCounters>,
    /// The dependency checks behind `/api/health`.
    pub health: Arc<HealthChecks>,
    /// The shared client for outbound HTTP calls.
    pub http: reqwest::Client,
    /// Browser origins accepted for state-changing requests.
    pub allowed_origins: Arc<Vec<String>>,
    /// Per-action rate limits, counted in the database.
    pub rate_limiter: RateLimiter,
    /// The server's secret and the keys derived from it.
    pub keys: Arc<ServerKeys>,
    /// Where image files are stored.
    pub media: MediaStorage,
    /// Makes pictures through the configured backend.
    pub imaging: Imaging,
    /// Runs chat runs.
    pub engine: Engine,
    /// Carries run events to stream subscribers.
    pub hub: Arc<StreamHub>,
    /// Follows runs executed on other instances (PostgreSQL; `None` on SQLite).
    pub relay: Option<Arc<crate::engine::Relay>>,
    /// The database's time as this instance knows it: run deadlines are set by it, so a host whose clock
    /// jumped neither cuts a run short nor lets one run long.
    pub clock: Arc<crate::db::DbClock>,
}
