//! Chat: messages, durable runs, the run's steps, the event stream, the chat page.
//!
//! Policy: a message and its run are stored in one transaction; one unfinished run per companion (the
//! database refuses a second); the reply is streamed token by token, persisted at least every 250 ms, and
//! stored as a message exactly once, in the transaction that completes the run; a dropped connection resumes
//! at its byte offset; model output and user text are shown as text with a small markdown subset.

mod actions;
mod analysis;
mod api;
pub mod display;
mod memory;
pub mod prompt;
pub mod render;
mod reply_text;
mod routes;
pub mod run_status;
pub mod runner;
pub mod store;
mod stream;
#[cfg(feature = "temporal")]
pub mod temporal;

use axum::Router;

use crate::state::AppState;

/// The chat page and APIs.
pub fn router() -> Router<AppState> {
    routes::router()
        .merge(api::router())
        .merge(memory::router())
}
