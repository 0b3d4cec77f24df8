//! The chat JSON API: send, list, regenerate, edit, delete, cancel, retry. Handlers read the request and
//! shape the answer; what is allowed, in which order it is refused, is decided in `chat::actions`.

use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use super::actions::{self, Started, Stopped};
use super::display::{ShownMessage, ShownPicture};
use super::store::{self, MessageRow, RunRow};
use super::stream::stream_run;
use crate::companions;
use crate::error::AppError;
use crate::state::AppState;
use crate::web::PathId;
use crate::web::{CorrelationId, CurrentUser};

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

/// 202 with where to follow the run.
fn accepted(started: &Started) -> Response {
    let run = &started.run;
    let mut answer = json!({
        "run_id": run.id,
        "stream_url": format!("/api/chat/stream/{}", run.id),
    });
    match started.picture_of {
        Some(message) => answer["message_id"] = json!(message),
        None => answer["user_message_id"] = json!(run.user_message_id),
    }
    (StatusCode::ACCEPTED, Json(answer)).into_response()
}

fn reply(run: RunRow) -> Started {
    Started {
        run,
        picture_of: None,
    }
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
    // The companion is looked up before the body is read: someone else's companion is 404, whatever was sent.
    let companion = companions::store::find_owned(&state.db, current.user.id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let request = body(request)?;
    let send = actions::Send {
        content: &request.content,
        generate_image: request.generate_image,
        client_request_id: request.client_request_id.as_deref(),
    };
    let run = actions::send(&state, &correlation, &current, &companion, send).await?;
    Ok(accepted(&reply(run)))
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
        Some(raw) => Some(
            Uuid::parse_str(raw).map_err(|_| actions::invalid("before", "Not a message id."))?,
        ),
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
    let run = actions::regenerate(&state, &correlation, &current, id).await?;
    Ok(accepted(&reply(run)))
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
    let content = body(request)?.content;
    let run = actions::edit(&state, &correlation, &current, id, &content).await?;
    Ok(accepted(&reply(run)))
}

async fn delete_message(
    State(state): State<AppState>,
    current: CurrentUser,
    PathId(id): PathId,
) -> Result<StatusCode, AppError> {
    actions::delete_message(&state, &current, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn cancel_run(
    State(state): State<AppState>,
    current: CurrentUser,
    PathId(id): PathId,
) -> Result<Response, AppError> {
    Ok(match actions::stop(&state, &current, id).await? {
        Stopped::AlreadyEnded(status) => Json(json!({ "status": status })).into_response(),
        Stopped::Stopping => (
            StatusCode::ACCEPTED,
            Json(json!({ "status": "cancelling" })),
        )
            .into_response(),
        Stopped::Cancelled => Json(json!({ "status": "cancelled" })).into_response(),
    })
}

async fn retry_run(
    State(state): State<AppState>,
    correlation: CorrelationId,
    current: CurrentUser,
    PathId(id): PathId,
) -> Result<Response, AppError> {
    let started = actions::retry(&state, &correlation, &current, id).await?;
    Ok(accepted(&started))
}

/// `POST /api/v1/messages/{id}/image/retry`: makes the picture of a reply again (its first try failed).
async fn retry_image(
    State(state): State<AppState>,
    correlation: CorrelationId,
    current: CurrentUser,
    PathId(id): PathId,
) -> Result<Response, AppError> {
    let started = actions::retry_picture(&state, &correlation, &current, id).await?;
    Ok(accepted(&started))
}
