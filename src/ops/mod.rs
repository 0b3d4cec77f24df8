//! Operating the service: health, metrics, logging set-up and periodic jobs.

pub mod health;
pub mod jobs;
pub mod logging;
pub mod metrics;
pub mod routes;

pub use routes::{metrics_router, router};
