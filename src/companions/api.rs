//! The companions JSON API under `/api/v1/companions`.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use uuid::Uuid;

use super::actions::{self, invalid};
use super::form;
use super::profile::{LiveState, Profile};
use super::prompt;
use super::store::{self, CompanionRecord};
use crate::db::Timestamp;
use crate::error::AppError;
use crate::state::AppState;
use crate::web::CurrentUser;
use crate::web::PathId;
use crate::web::forms::FormErrors;
use crate::web::upload::FormSubmission;

/// Companions per page of the list.
pub const PER_PAGE: u32 = 24;

pub(super) fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/api/v1/companions",
            get(list_companions).post(create_companion),
        )
        .route("/api/v1/companions/preview", post(preview_companion))
        .route(
            "/api/v1/companions/{id}",
            get(show_companion)
                .patch(update_companion)
                .delete(delete_companion),
        )
        .route(
            "/api/v1/companions/{id}/portrait",
            post(upload_portrait).layer(axum::extract::DefaultBodyLimit::max(
                crate::web::upload::MAX_MULTIPART_BYTES,
            )),
        )
}

/// A companion as the API shows it.
#[derive(Debug, Serialize)]
pub struct CompanionJson {
    /// Id.
    pub id: Uuid,
    /// Name (also in the profile).
    pub name: String,
    /// The structured profile, exactly as stored.
    pub profile: Profile,
    /// Current outfit, location and action.
    pub live_state: LiveState,
    /// `/media/{id}` of the portrait, if any.
    pub portrait_url: Option<String>,
    /// The system prompt derived from the profile.
    pub system_prompt: String,
    /// The visual tags derived from the profile.
    pub visual_tags: Vec<String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

impl From<CompanionRecord> for CompanionJson {
    fn from(record: CompanionRecord) -> Self {
        let profile = record.profile.0;
        Self {
            id: record.id,
            name: profile.name.clone(),
            system_prompt: prompt::system_prompt(&profile),
            visual_tags: prompt::visual_tags(&profile),
            profile,
            live_state: record.live_state.0,
            portrait_url: record.portrait_image_id.map(|id| format!("/media/{id}")),
            created_at: record.created_at,
            updated_at: record.updated_at,
        }
    }
}

fn object(body: Value) -> Result<Map<String, Value>, AppError> {
    match body {
        Value::Object(map) => Ok(map),
        _ => Err(AppError::BadRequest(
            "Send a JSON object with the profile fields.".into(),
        )),
    }
}

fn json_body(
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Map<String, Value>, AppError> {
    match body {
        Ok(Json(value)) => object(value),
        Err(rejection) => Err(AppError::BadRequest(rejection.body_text())),
    }
}

#[derive(Debug, Deserialize)]
struct PageQuery {
    #[serde(default = "first_page")]
    page: u32,
}

fn first_page() -> u32 {
    1
}

async fn list_companions(
    State(state): State<AppState>,
    current: CurrentUser,
    Query(query): Query<PageQuery>,
) -> Result<Json<Value>, AppError> {
    let page = query.page.clamp(1, 100_000);
    let total = store::count(&state.db, current.user.id).await?;
    let records = store::list(&state.db, current.user.id, PER_PAGE, (page - 1) * PER_PAGE).await?;
    let companions: Vec<CompanionJson> = records.into_iter().map(CompanionJson::from).collect();
    Ok(Json(serde_json::json!({
        "companions": companions,
        "page": page,
        "per_page": PER_PAGE,
        "total": total,
    })))
}

async fn create_companion(
    State(state): State<AppState>,
    current: CurrentUser,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, AppError> {
    let changes = json_body(body)?;
    let mut missing = FormErrors::new();
    for required in ["name", "age"] {
        if !changes.contains_key(required) {
            missing.add(required, "This field is required.");
        }
    }
    if !missing.is_empty() {
        return Err(invalid(missing));
    }
    let profile = Profile::from_merge(Profile::defaults_json(), &changes).map_err(invalid)?;
    let record = actions::create(&state, &current.user, &profile, None).await?;
    Ok((StatusCode::CREATED, Json(CompanionJson::from(record))).into_response())
}

async fn show_companion(
    State(state): State<AppState>,
    current: CurrentUser,
    PathId(id): PathId,
) -> Result<Json<CompanionJson>, AppError> {
    let record = actions::find(&state, &current.user, id).await?;
    Ok(Json(record.into()))
}

async fn update_companion(
    State(state): State<AppState>,
    current: CurrentUser,
    PathId(id): PathId,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<CompanionJson>, AppError> {
    let existing = actions::find(&state, &current.user, id).await?;
    let changes = json_body(body)?;
    let base =
        serde_json::to_value(&existing.profile.0).map_err(|err| AppError::Internal(err.into()))?;
    let profile = Profile::from_merge(base, &changes).map_err(invalid)?;
    actions::count_change(&state, &current.user).await?;
    if !store::update_profile(&state.db, current.user.id, id, &profile).await? {
        return Err(AppError::NotFound);
    }
    let record = actions::find(&state, &current.user, id).await?;
    Ok(Json(record.into()))
}

async fn delete_companion(
    State(state): State<AppState>,
    current: CurrentUser,
    PathId(id): PathId,
) -> Result<StatusCode, AppError> {
    actions::find(&state, &current.user, id).await?;
    actions::count_change(&state, &current.user).await?;
    actions::delete(&state, &current.user, id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn upload_portrait(
    State(state): State<AppState>,
    current: CurrentUser,
    PathId(id): PathId,
    submission: FormSubmission,
) -> Result<Json<CompanionJson>, AppError> {
    actions::find(&state, &current.user, id).await?;
    let Some(file) = submission.file.filter(|f| f.field == "image") else {
        let mut errors = FormErrors::new();
        errors.add(
            "image",
            "Send the picture as the multipart file field `image`.",
        );
        return Err(invalid(errors));
    };
    let crop = actions::crop_from_fields(&submission.fields)?;
    actions::count_change(&state, &current.user).await?;
    let processed = actions::process_portrait(file.bytes, crop).await?;
    actions::store_portrait(&state, &current.user, id, processed).await?;
    let record = actions::find(&state, &current.user, id).await?;
    Ok(Json(record.into()))
}

/// The derived prompt and tags of a form being filled in (the wizard's Finish step).
async fn preview_companion(
    _current: CurrentUser,
    submission: FormSubmission,
) -> Result<Json<Value>, AppError> {
    let mut fields = submission.fields;
    if fields.get("name").is_none_or(|n| n.trim().is_empty()) {
        fields.insert("name".into(), "Your companion".into());
    }
    let profile = form::to_profile(&fields).map_err(invalid)?;
    Ok(Json(serde_json::json!({
        "system_prompt": prompt::system_prompt(&profile),
        "visual_tags": prompt::visual_tags(&profile),
    })))
}
