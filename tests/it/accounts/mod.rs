//! Accounts and security: registration, sign-in, lockout, sessions, CSRF, rate limits, settings.

mod csrf;
mod login;
mod register;
mod sessions;
mod settings;
