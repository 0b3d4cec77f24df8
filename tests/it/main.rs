//! Integration tests: the real application over HTTP, on SQLite and (with TEST_DATABASE_URL) PostgreSQL.
//!
//! One test binary (faster to build and link than one per file); modules group by feature.

mod support;

mod accounts;
mod browser;
mod chat;
mod companions;
mod images;
mod platform;
