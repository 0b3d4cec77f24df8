//! The chat JSON API: send, list, regenerate, edit, delete, cancel, retry.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::display::{ShownMessage, ShownPicture};
use super::store::{self, MessageRow, NewRun, RunKind, RunRow, RunStatus, StartError};
use super::stream::stream_run;
use crate::companions;
use crate::db::Timestamp;
use crate::error::AppError;
use crate::state::AppState;
use crate::web::PathId;
use crate::web::forms::FormErrors;
use crate::web::{Action, CorrelationId, CurrentUser};

/// Longest message a user may send.
pub const MAX_MESSAGE_CHARS: usize = 4000;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/companions/{id}/messages",
            get(list_messages).post(send_message),
        )
        .route("/api/v1/companions/{id}/regenerate", post(regenerate_reply))
        .route(
            "/api/v1/messages/{id}",
            patch(edit_message).delete(delete_message),
        )
        .route("/api/v1/messages/{id}/image/retry", post(retry_image))
        .route("/api/chat/runs/{id}/cancel", post(cancel_run))
        .route("/api/chat/runs/{id}/retry", post(retry_run))
        .route("/api/chat/stream/{id}", get(stream_run))
}

fn invalid(field: &str, message: impl Into<String>) -> AppError {
    let mut errors = FormErrors::new();
    errors.add(field, message);
    AppError::Validation {
        message: "Some fields are not valid; see the messages beside them.".into(),
        fields: errors.into_inner(),
    }
}

fn body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, AppError> {
    body.map(|Json(value)| value)
        .map_err(|rejection| AppError::BadRequest(rejection.body_text()))
}

/// A message as JSON, with its display form ([`ShownMessage`]).
pub fn message_json(message: &MessageRow) -> Value {
    let shown = ShownMessage::of(message);
    json!({
        "id": message.id,
        "role": message.role,
        "content": message.content,
        "html": shown.html,
        "image_url": shown.image.as_ref().map(|picture| picture.url.clone()),
        "image": shown.image.as_ref().map(ShownPicture::json),
        "image_error": message.image_error,
        "finish_reason": message.finish_reason,
        "created_at": message.created_at,
        "edited_at": message.edited_at,
    })
}

fn accepted(run: &RunRow) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({
            "run_id": run.id,
            "user_message_id": run.user_message_id,
            "stream_url": format!("/api/chat/stream/{}", run.id),
        })),
    )
        .into_response()
}

/// The trimmed text of a message, or 422.
fn message_text(content: &str) -> Result<String, AppError> {
    let text = content.trim();
    let length = text.chars().count();
    if length == 0 {
        return Err(invalid("content", "Write something first."));
    }
    if length > MAX_MESSAGE_CHARS {
        return Err(invalid(
            "content",
            format!(
                "A message has at most {MAX_MESSAGE_CHARS} characters (this one has {length})."
            ),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(invalid(
            "content",
            "Remove control characters from the message.",
        ));
    }
    Ok(text.to_owned())
}

/// Refuses when no model is configured, then counts the message against the chat limit.
async fn may_chat(state: &AppState, current: &CurrentUser) -> Result<(), AppError> {
    chat_available(state)?;
    state
        .rate_limiter
        .hit(Action::Chat, &current.user.id.to_string())
        .await
}

/// 503 `llm_not_configured` when no model is configured (nothing is counted).
fn chat_available(state: &AppState) -> Result<(), AppError> {
    if state.config.llm.is_none() {
        return Err(AppError::Unavailable {
            code: "llm_not_configured",
            message:
                "No language model is connected yet: set LLM_BASE_URL and LLM_MODEL and restart."
                    .into(),
        });
    }
    Ok(())
}

/// The message `id` of the current user and its companion; 404 for anything else.
async fn owned_message(
    state: &AppState,
    current: &CurrentUser,
    id: Uuid,
) -> Result<(Uuid, MessageRow), AppError> {
    let companion = store::message_companion(&state.db, current.user.id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let message = store::message(&state.db, companion, id)
        .await?
        .ok_or(AppError::NotFound)?;
    Ok((companion, message))
}

/// 409 `run_active` before anything is counted against a limit (the insert still decides races).
async fn refuse_while_active(state: &AppState, companion: Uuid) -> Result<(), AppError> {
    match store::active_run(&state.db, companion).await? {
        Some(_) => Err(run_active()),
        None => Ok(()),
    }
}

/// Creates and starts a run; 409 while another is unfinished.
pub(super) async fn start(state: &AppState, new: NewRun<'_>) -> Result<RunRow, AppError> {
    match store::start_run(&state.db, &new).await {
        Ok(run) => {
            state.engine.start(run.id);
            Ok(run)
        }
        Err(StartError::Duplicate(run)) => Ok(*run),
        Err(StartError::Active) => Err(run_active()),
        Err(StartError::Database(err)) => Err(err.into()),
    }
}

/// 409 `run_active`: another reply of this companion is unfinished.
fn run_active() -> AppError {
    AppError::Conflict {
        code: "run_active",
        message: "A reply is still being written. Wait for it, or press Stop.".into(),
    }
}

/// 409 `conflict` with a message.
fn conflict(message: &str) -> AppError {
    AppError::Conflict {
        code: "conflict",
        message: message.to_owned(),
    }
}

/// A run that answers an existing user message again (regenerate, edit, retry).
fn answer_again<'a>(
    state: &AppState,
    correlation: &'a CorrelationId,
    user: Uuid,
    companion: Uuid,
    message: Uuid,
    replaces: Option<Uuid>,
    previous_attempts: i32,
) -> NewRun<'a> {
    NewRun {
        companion,
        user,
        new_message: None,
        existing_message: Some(message),
        replaces,
        client_request_id: None,
        generate_image: false,
        correlation_id: correlation.as_str(),
        deadline: deadline(state),
        previous_attempts,
    }
}

fn deadline(state: &AppState) -> Timestamp {
    Timestamp::now() + state.config.run_deadline
}

#[derive(Debug, Deserialize)]
struct SendBody {
    content: String,
    #[serde(default)]
    generate_image: bool,
    #[serde(default)]
    client_request_id: Option<String>,
}

async fn send_message(
    State(state): State<AppState>,
    correlation: CorrelationId,
    current: CurrentUser,
    PathId(id): PathId,
    request: Result<Json<SendBody>, JsonRejection>,
) -> Result<Response, AppError> {
    let companion = companions::store::find_owned(&state.db, current.user.id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let request = body(request)?;
    let content = message_text(&request.content)?;
    if let Some(key) = &request.client_request_id {
        let valid = (1..=100).contains(&key.len())
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
        if !valid {
            return Err(invalid(
                "client_request_id",
                "Use 1–100 characters of A–Z, a–z, 0–9, - _ . :",
            ));
        }
    }
    let key = request.client_request_id.as_deref();
    if let Some(key) = key
        && let Some(existing) = store::find_run_by_request(&state.db, current.user.id, key).await?
    {
        return Ok(accepted(&existing));
    }
    // What cannot work at all is said first; then a busy companion; then the limits are counted.
    chat_available(&state)?;
    if request.generate_image {
        crate::images::pictures_available(&state)?;
    }
    if let Err(active) = refuse_while_active(&state, companion.id).await {
        // Two identical sends at once: the second meets the first's run.
        if let Some(key) = key
            && let Some(existing) =
                store::find_run_by_request(&state.db, current.user.id, key).await?
        {
            return Ok(accepted(&existing));
        }
        return Err(active);
    }
    may_chat(&state, &current).await?;
    if request.generate_image {
        crate::images::may_picture(&state, &current).await?;
    }
    let started = start(
        &state,
        NewRun {
            companion: companion.id,
            user: current.user.id,
            new_message: Some(&content),
            existing_message: None,
            replaces: None,
            client_request_id: key,
            generate_image: request.generate_image,
            correlation_id: correlation.as_str(),
            deadline: deadline(&state),
            previous_attempts: 0,
        },
    )
    .await;
    let run = match (started, key) {
        // Two identical sends at once: the loser meets the winner's run as "the unfinished one".
        (Err(AppError::Conflict { .. }), Some(key)) => {
            store::find_run_by_request(&state.db, current.user.id, key)
                .await?
                .ok_or_else(run_active)?
        }
        (started, _) => started?,
    };
    Ok(accepted(&run))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    before: Option<String>,
    limit: Option<u32>,
}

async fn list_messages(
    State(state): State<AppState>,
    current: CurrentUser,
    PathId(id): PathId,
    Query(query): Query<ListQuery>,
) -> Result<Json<Value>, AppError> {
    let companion = companions::store::find_owned(&state.db, current.user.id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let before = match query.before.as_deref().filter(|b| !b.is_empty()) {
        Some(raw) => {
            Some(Uuid::parse_str(raw).map_err(|_| invalid("before", "Not a message id."))?)
        }
        None => None,
    };
    let limit = query.limit.unwrap_or(50).clamp(1, 100);
    let mut rows = store::messages(&state.db, companion.id, before, limit + 1).await?;
    let has_more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    Ok(Json(json!({
        "messages": rows.iter().map(message_json).collect::<Vec<_>>(),
        "has_more": has_more,
    })))
}

async fn regenerate_reply(
    State(state): State<AppState>,
    correlation: CorrelationId,
    current: CurrentUser,
    PathId(id): PathId,
) -> Result<Response, AppError> {
    let companion = companions::store::find_owned(&state.db, current.user.id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let recent = store::messages(&state.db, companion.id, None, 2).await?;
    let (Some(last), Some(asked)) = (recent.first(), recent.get(1)) else {
        return Err(conflict("There is no reply to regenerate yet."));
    };
    if last.role != "assistant" || asked.role != "user" {
        return Err(conflict("Only the last reply can be regenerated."));
    }
    chat_available(&state)?;
    refuse_while_active(&state, companion.id).await?;
    may_chat(&state, &current).await?;
    let mut again = answer_again(
        &state,
        &correlation,
        current.user.id,
        companion.id,
        asked.id,
        Some(last.id),
        0,
    );
    // A reply that came with a picture (or tried to) is regenerated with one, while a backend is there.
    let had_picture = last.image_id.is_some() || last.image_error.is_some();
    if had_picture && state.imaging.client().is_some() {
        // Over the image limit, the reply is still regenerated, without a picture.
        match crate::images::may_picture(&state, &current).await {
            Ok(()) => again.generate_image = true,
            Err(AppError::RateLimited { .. }) => {}
            Err(err) => return Err(err),
        }
    }
    let run = start(&state, again).await?;
    Ok(accepted(&run))
}

#[derive(Debug, Deserialize)]
struct EditBody {
    content: String,
}

async fn edit_message(
    State(state): State<AppState>,
    correlation: CorrelationId,
    current: CurrentUser,
    PathId(id): PathId,
    request: Result<Json<EditBody>, JsonRejection>,
) -> Result<Response, AppError> {
    let (companion, message) = owned_message(&state, &current, id).await?;
    let content = message_text(&body(request)?.content)?;
    if message.role != "user" {
        return Err(invalid("content", "Only your own messages can be edited."));
    }
    refuse_while_active(&state, companion).await?;
    may_chat(&state, &current).await?;
    let pictures =
        crate::media::store::keys_after_message(&state.db, companion, message.id).await?;
    store::rewrite_from(&state.db, companion, &message, &content).await?;
    crate::media::cleanup::discard_unreferenced(&state.db, &state.media, pictures).await;
    let again = answer_again(
        &state,
        &correlation,
        current.user.id,
        companion,
        message.id,
        None,
        0,
    );
    let run = start(&state, again).await?;
    Ok(accepted(&run))
}

async fn delete_message(
    State(state): State<AppState>,
    current: CurrentUser,
    PathId(id): PathId,
) -> Result<StatusCode, AppError> {
    let companion = store::message_companion(&state.db, current.user.id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    refuse_while_active(&state, companion).await?;
    let pictures = crate::media::store::keys_of_message(&state.db, id).await?;
    if !store::delete_message(&state.db, companion, id).await? {
        return Err(AppError::NotFound);
    }
    crate::media::cleanup::discard_unreferenced(&state.db, &state.media, pictures).await;
    Ok(StatusCode::NO_CONTENT)
}

async fn cancel_run(
    State(state): State<AppState>,
    current: CurrentUser,
    PathId(id): PathId,
) -> Result<Response, AppError> {
    let run = store::find_run_owned(&state.db, current.user.id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    if !run.is_active() {
        return Ok(Json(json!({ "status": run.status })).into_response());
    }
    if state.engine.cancel(run.id) {
        return Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "status": "cancelling" })),
        )
            .into_response());
    }
    // Not executing here (waiting to be resumed): end it directly.
    store::cancel(&state.db, &run, &run.partial_text).await?;
    Ok(Json(json!({ "status": "cancelled" })).into_response())
}

async fn retry_run(
    State(state): State<AppState>,
    correlation: CorrelationId,
    current: CurrentUser,
    PathId(id): PathId,
) -> Result<Response, AppError> {
    let run = store::find_run_owned(&state.db, current.user.id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let retryable = run.status == RunStatus::Failed
        || (run.status == RunStatus::Cancelled && run.assistant_message_id.is_none());
    if !retryable {
        return Err(conflict("Only a failed or stopped reply can be retried."));
    }
    let latest = store::latest_run(&state.db, run.companion_id).await?;
    if latest.as_ref().map(|r| r.id) != Some(run.id) {
        return Err(conflict("Only the latest reply can be retried."));
    }
    if run.kind == RunKind::Image {
        let message = run
            .assistant_message_id
            .ok_or_else(|| conflict("The reply of this picture is gone."))?;
        return picture_again(&state, &correlation, &current, run.companion_id, message).await;
    }
    chat_available(&state)?;
    refuse_while_active(&state, run.companion_id).await?;
    may_chat(&state, &current).await?;
    if run.generate_image {
        crate::images::may_picture(&state, &current).await?;
    }
    let mut again = answer_again(
        &state,
        &correlation,
        current.user.id,
        run.companion_id,
        run.user_message_id,
        run.replaces_message_id,
        run.attempts,
    );
    again.generate_image = run.generate_image;
    let retry = start(&state, again).await?;
    Ok(accepted(&retry))
}

/// `POST /api/v1/messages/{id}/image/retry`: makes the picture of a reply again (its first try failed).
async fn retry_image(
    State(state): State<AppState>,
    correlation: CorrelationId,
    current: CurrentUser,
    PathId(id): PathId,
) -> Result<Response, AppError> {
    let (companion, message) = owned_message(&state, &current, id).await?;
    if message.role != "assistant" {
        return Err(conflict("Only a reply of your companion has a picture."));
    }
    if message.image_id.is_some() {
        return Err(conflict("This reply already has its picture."));
    }
    if message.image_error.is_none() {
        return Err(conflict("Only a picture that failed can be tried again."));
    }
    picture_again(&state, &correlation, &current, companion, message.id).await
}

/// Starts a picture-only run for the reply `message`.
async fn picture_again(
    state: &AppState,
    correlation: &CorrelationId,
    current: &CurrentUser,
    companion: Uuid,
    message: Uuid,
) -> Result<Response, AppError> {
    crate::images::pictures_available(state)?;
    refuse_while_active(state, companion).await?;
    crate::images::may_picture(state, current).await?;
    let run = match store::start_image_run(
        &state.db,
        current.user.id,
        companion,
        message,
        correlation.as_str(),
        deadline(state),
    )
    .await
    {
        Ok(run) => run,
        Err(StartError::Active | StartError::Duplicate(_)) => return Err(run_active()),
        Err(StartError::Database(err)) => return Err(err.into()),
    };
    state.engine.start(run.id);
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "run_id": run.id,
            "message_id": message,
            "stream_url": format!("/api/chat/stream/{}", run.id),
        })),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_trimmed_and_bounded() {
        assert_eq!(message_text("  hi  ").expect("test setup is valid"), "hi");
        assert!(message_text("   ").is_err());
        assert!(message_text(&"x".repeat(4000)).is_ok());
        assert!(message_text(&"x".repeat(4001)).is_err());
        assert!(
            message_text(&"é".repeat(4000)).is_ok(),
            "characters, not bytes"
        );
        assert!(message_text("a\u{0}b").is_err());
        assert!(message_text("two\nlines").is_ok());
    }
}
