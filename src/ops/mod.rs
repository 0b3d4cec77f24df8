//! Operating the service: health, metrics, logging set-up, periodic jobs and the allocator's settings.

pub mod allocator;
pub mod health;
pub mod jobs;
pub mod logging;
pub mod metrics;
pub mod routes;

pub use routes::{metrics_router, router, worker_router};
