//! Wiping a companion's memory (`POST /companions/{id}/reset`, asked for on the companion's confirmation
//! page): the reply being written is stopped, the conversation and its runs go, pictures nothing else uses are
//! deleted, and the companion's live state is back to its defaults (the default outfit, the living room,
//! "looking at viewer"). The profile and the portrait stay. Chat owns this because the conversation is its.

use axum::Router;
use axum::extract::State;
use axum::response::Redirect;
use axum::routing::post;
use uuid::Uuid;

use super::store;
use crate::companions::actions as companions;
use crate::companions::profile::LiveState;
use crate::error::AppError;
use crate::state::AppState;
use crate::web::{CurrentUser, PathId, SessionUser};

/// The wipe's form target (the confirmation page is the companions' own).
pub(super) fn router() -> Router<AppState> {
    Router::new().route("/companions/{id}/reset", post(submit_reset))
}

async fn submit_reset(
    State(state): State<AppState>,
    current: CurrentUser,
    PathId(id): PathId,
) -> Result<Redirect, AppError> {
    companions::find(&state, &current.user, id).await?;
    companions::count_change(&state, &current.user).await?;
    wipe(&state, &current.user, id).await?;
    Ok(Redirect::to(&format!("/companions/{id}/edit?reset=1")))
}

/// Wipes the memory of the user's companion `id` (404 for someone else's).
pub async fn wipe(state: &AppState, user: &SessionUser, id: Uuid) -> Result<(), AppError> {
    let record = companions::find(state, user, id).await?;
    if let Some(run) = store::active_run(&state.db, id).await? {
        state.engine.cancel(run).await;
    }
    let pictures = crate::media::store::keys_of_conversation(&state.db, id).await?;
    store::delete_conversation(&state.db, id).await?;
    crate::media::cleanup::discard_unreferenced(&state.db, &state.media, pictures).await;
    let initial = LiveState::initial(&record.profile);
    if !crate::companions::store::reset_live_state(&state.db, user.id, id, &initial).await? {
        return Err(AppError::NotFound);
    }
    tracing::info!(companion_id = %id, "companion memory reset");
    Ok(())
}
