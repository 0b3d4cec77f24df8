//! Companion Hub: a self-hosted, multi-user web application for creating AI companions and talking
//! with them.
//!
//! The library holds everything; the binary only parses the command line ([`cli`]). Tests build the
//! real application with [`App::build`] and serve it on a port-0 listener with [`App::serve`].
//! Arrows run one way: `app` → features (`home`, `accounts`, `companions`, `chat`, …) → infrastructure (`web`, `db`, `providers`, `ops`).

pub mod accounts;
pub mod app;
pub mod chat;
pub mod cli;
pub mod companions;
pub mod config;
pub mod db;
pub mod engine;
pub mod error;
pub mod export;
pub mod home;
pub mod images;
pub mod media;
pub mod ops;
pub mod providers;
pub mod state;
pub mod web;

pub use app::App;
pub use config::Config;
pub use error::AppError;

/// The version of this build, as shown in the footer and `/api/health`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
