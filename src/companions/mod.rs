//! Companions: the people a user talks with.
//!
//! Today this module owns the list page a user lands on after signing in; it shows what this instance
//! has connected (language model, image backend). The creation wizard, profiles, portraits, editing
//! and deletion arrive with the companions issue, which replaces the empty state with the real list.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;

use crate::error::AppError;
use crate::state::AppState;
use crate::web::{CurrentUser, PageContext};

/// `/companions`.
pub fn router() -> Router<AppState> {
    Router::new().route("/companions", get(list_companions))
}

/// Renders: the user's companions (for now the empty state) and the instance's connections.
#[derive(Template)]
#[template(path = "companions/list.html")]
struct CompanionsPage {
    page: PageContext,
    llm_configured: bool,
    image_backend: &'static str,
}

async fn list_companions(
    State(state): State<AppState>,
    current: CurrentUser,
) -> Result<Html<String>, AppError> {
    let page = CompanionsPage {
        page: current.page("Companions", "companions"),
        llm_configured: state.config.llm.is_some(),
        image_backend: state.config.image_backend.name(),
    };
    Ok(Html(page.render()?))
}
