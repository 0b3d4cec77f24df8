//! HTTP infrastructure the features use: middleware (correlation id, observation, security headers,
//! error rendering), page rendering helpers and the embedded static assets.

pub mod assets;
pub mod correlation;
pub mod error_pages;
pub mod observe;
pub mod page;
pub mod security_headers;

pub use correlation::CorrelationId;
pub use page::{PageContext, render};
