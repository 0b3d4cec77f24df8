//! The landing page at `/`.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;

use crate::error::AppError;
use crate::state::AppState;
use crate::web::{PageContext, render};

/// Renders `/`: what this instance is and what is connected.
#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    page: PageContext,
    llm_configured: bool,
    image_backend: &'static str,
}

/// `/`.
pub fn router() -> Router<AppState> {
    Router::new().route("/", get(show_home))
}

async fn show_home(State(state): State<AppState>) -> Result<Html<String>, AppError> {
    render(&HomePage {
        page: PageContext::new("Companion Hub", "home"),
        llm_configured: state.config.llm.is_some(),
        image_backend: state.config.image_backend.name(),
    })
}
