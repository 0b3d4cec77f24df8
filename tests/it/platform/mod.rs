//! The platform: HTTP surface, database and migrations, health, metrics, logs, command line.

mod architecture;
mod cli;
mod database;
mod health;
mod http;
mod instances;
mod load_balancer;
mod logging;
mod metrics;
mod relay_bus;
#[cfg(feature = "temporal")]
mod temporal;
