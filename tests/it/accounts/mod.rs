//! Accounts and security: registration, sign-in, lockout, sessions, CSRF, rate limits, settings.

mod csrf;
mod lockout;
mod login;
mod rate_keys;
mod register;
mod sessions;
mod settings;
