//! The chat page `/companions/{id}/chat`.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::response::Html;
use axum::routing::get;

use super::display::ShownMessage;
use super::store::{self, RunKind, RunStatus};
use crate::companions;
use crate::error::AppError;
use crate::state::AppState;
use crate::web::PathId;
use crate::web::{CurrentUser, PageContext};

/// Messages shown when the page opens; older ones load on demand.
const FIRST_PAGE: u32 = 50;

pub(super) fn router() -> Router<AppState> {
    Router::new().route("/companions/{id}/chat", get(show_chat))
}

/// Renders: the conversation with one companion.
#[derive(Template)]
#[template(path = "chat/page.html")]
struct ChatPage {
    page: PageContext,
    companion_id: String,
    name: String,
    initial: String,
    portrait_url: Option<String>,
    wearing: String,
    location: String,
    action: String,
    bubbles: Vec<ShownMessage>,
    has_more: bool,
    active_run: Option<String>,
    active_picture_of: Option<String>,
    failed_run: Option<FailedRun>,
    llm_configured: bool,
    images_configured: bool,
}

/// The latest run, when it failed: shown with its reason and a Retry button, and what it had written (shown
/// as unfinished, never as a reply).
struct FailedRun {
    id: String,
    message: String,
    correlation_id: String,
    partial: Option<String>,
}

async fn show_chat(
    State(state): State<AppState>,
    current: CurrentUser,
    PathId(id): PathId,
) -> Result<Html<String>, AppError> {
    let companion = companions::store::find_owned(&state.db, current.user.id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let mut rows = store::messages(&state.db, companion.id, None, FIRST_PAGE + 1).await?;
    let has_more = rows.len() > FIRST_PAGE as usize;
    rows.truncate(FIRST_PAGE as usize);
    rows.reverse();
    let latest = store::latest_run(&state.db, companion.id).await?;
    let active_run = latest
        .as_ref()
        .filter(|run| run.is_active())
        .map(|run| run.id.to_string());
    let active_picture_of = latest
        .as_ref()
        .filter(|run| run.is_active() && run.kind == RunKind::Image)
        .and_then(|run| run.assistant_message_id)
        .map(|id| id.to_string());
    // A failed picture-only run shows on its message ("image failed"), not as a failed reply.
    let failed_run = latest
        .as_ref()
        .filter(|run| run.status == RunStatus::Failed && run.kind == RunKind::Reply)
        .map(|run| FailedRun {
            id: run.id.to_string(),
            message: run
                .error_message
                .clone()
                .unwrap_or_else(|| "The reply failed.".into()),
            correlation_id: run.correlation_id.clone(),
            partial: (!run.partial_text.is_empty()).then(|| run.partial_text.clone()),
        });
    let profile = &companion.profile.0;
    let live = &companion.live_state.0;
    let page = ChatPage {
        page: current.page(format!("Chat with {}", profile.name), "companions")?,
        companion_id: companion.id.to_string(),
        name: profile.name.clone(),
        initial: profile
            .name
            .chars()
            .next()
            .unwrap_or('?')
            .to_uppercase()
            .collect(),
        portrait_url: companion.portrait_image_id.map(|id| format!("/media/{id}")),
        wearing: live.describe_outfit(),
        location: live.location.clone(),
        action: live.action.clone(),
        bubbles: rows.iter().map(ShownMessage::of).collect(),
        has_more,
        active_run,
        active_picture_of,
        failed_run,
        llm_configured: state.config.llm.is_some(),
        images_configured: state.imaging.client().is_some(),
    };
    Ok(Html(page.render()?))
}
