//! HTTP infrastructure the features use: middleware (correlation id, observation, security headers,
//! error rendering, sessions, CSRF), extractors (`CurrentUser`, `MaybeUser`, `ClientIp`), rate limits,
//! page rendering helpers and the embedded static assets.

pub mod assets;
pub mod client_ip;
pub mod correlation;
pub mod csrf;
pub mod csrf_token;
pub mod error_pages;
pub mod forms;
pub mod identity;
pub mod keys;
pub mod limits;
pub mod negotiate;
pub mod observe;
pub mod page;
pub mod path_id;
pub mod rate_limit;
pub mod security_headers;
pub mod session;
pub mod upload;

pub use client_ip::ClientIp;
pub use correlation::CorrelationId;
pub use page::{PageContext, render};
pub use path_id::PathId;
pub use rate_limit::{Action, RateLimiter};
pub use session::{CurrentUser, MaybeUser, Session, SessionUser};
