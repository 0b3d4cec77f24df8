//! Accounts: registration, sign-in with lockout, sign-out, and the settings page (display name, password,
//! sessions, data export, account deletion).
//!
//! Policy: passwords follow [`password_policy`] and are hashed with Argon2id off the runtime; a failed
//! sign-in says the same thing, after the same work, whether or not the account exists, and locks the
//! same way ([`sign_in`]: per identifier, with device cookies for browsers that signed in before), recorded
//! in the database; sign-in rotates the session (new token, new CSRF secret); changing the password ends
//! every other session and gives the current one a new token. Sessions, CSRF and rate limits themselves
//! live in `web/`.

pub mod device;
pub mod guards;
pub mod password;
pub mod password_policy;
mod routes;
mod settings;
pub mod sign_in;
pub mod store;
pub mod validation;

use axum::Router;

use crate::state::AppState;

/// `/register`, `/login`, `/logout`, `/logout-everywhere`, `/settings…`.
pub fn router() -> Router<AppState> {
    routes::router().merge(settings::router())
}
