//! What every HTML page shares (title, CSRF slot, navigation state) and the helper that renders a page.

use askama::Template;
use axum::response::Html;

use super::assets;
use super::identity::SessionUser;
use crate::error::AppError;

/// The layout's data, carried by every page template as its `page` field.
#[derive(Debug, Clone, Default)]
pub struct PageContext {
    /// The `<title>` and the page heading's context.
    pub title: String,
    /// The masked CSRF token for `<meta name="csrf-token">` and forms; empty before a session exists.
    pub csrf_token: String,
    /// The navigation entry to highlight (`home`, `companions`, …).
    pub section: &'static str,
    /// The signed-in user, for the navigation.
    pub user: Option<SessionUser>,
}

impl PageContext {
    /// A page with a title and no session.
    pub fn new(title: impl Into<String>, section: &'static str) -> Self {
        Self {
            title: title.into(),
            csrf_token: String::new(),
            section,
            user: None,
        }
    }

    /// The hashed URL of an embedded asset, for templates: `{{ page.asset("css/app.css") }}`.
    pub fn asset(&self, name: &str) -> String {
        assets::asset_url(name)
    }

    /// `aria-current="page"` for the active navigation entry.
    pub fn is_section(&self, section: &str) -> bool {
        self.section == section
    }
}

/// Renders a template into an HTML response.
pub fn render(template: &impl Template) -> Result<Html<String>, AppError> {
    Ok(Html(template.render()?))
}
