//! Companions: structured profiles, the creation wizard, editing, portraits, deletion and the memory-wipe
//! confirmation (the wipe itself is chat's), as pages and as the JSON API.
//!
//! Policy: the profile is stored as entered (a validated JSON document) and the system prompt and visual
//! tags are derived from it; every query is scoped to the owner, so another user's companion answers 404
//! exactly like a missing one; every field is validated on the server; portraits are decoded, cropped and
//! re-encoded before they are stored; creation and changes are rate limited per user.

pub mod actions;
mod api;
pub mod form;
pub mod options;
pub mod profile;
pub mod prompt;
mod routes;
pub mod store;
pub mod wardrobe;

use axum::Router;

use crate::state::AppState;

/// The companion pages and `/api/v1/companions…`.
pub fn router() -> Router<AppState> {
    routes::router().merge(api::router())
}
