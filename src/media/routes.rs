//! `GET /media/{image_id}`: an image, to its owner only, cached for good.

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use uuid::Uuid;

use super::store;
use crate::error::AppError;
use crate::state::AppState;
use crate::web::CurrentUser;

/// `/media/{image_id}`.
pub fn router() -> Router<AppState> {
    Router::new().route("/media/{image_id}", get(show_image))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MediaQuery {
    download: Option<String>,
}

async fn show_image(
    State(state): State<AppState>,
    current: CurrentUser,
    Path(image_id): Path<String>,
    Query(query): Query<MediaQuery>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    // Malformed ids are simply not found, like other people's.
    let id = Uuid::parse_str(&image_id).map_err(|_| AppError::NotFound)?;
    let image = store::find_owned(&state.db, current.user.id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let etag = HeaderValue::from_str(&format!("\"{}\"", image.sha256()))
        .map_err(|err| AppError::Internal(err.into()))?;
    let cache = HeaderValue::from_static("private, max-age=31536000, immutable");
    let revalidating = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|t| t.trim().trim_start_matches("W/") == etag)
        });
    if revalidating {
        return Ok((
            StatusCode::NOT_MODIFIED,
            [(header::ETAG, etag), (header::CACHE_CONTROL, cache)],
        )
            .into_response());
    }
    // Streamed from the store: a large picture is never held in memory whole.
    let Some((length, stream)) = state
        .media
        .open_stream(&image.storage_key)
        .await
        .map_err(|err| AppError::Internal(err.context("reading a stored image")))?
    else {
        tracing::warn!(image_id = %id, "an image row refers to a missing file");
        return Err(AppError::NotFound);
    };
    let content_type =
        HeaderValue::from_str(&image.mime).map_err(|err| AppError::Internal(err.into()))?;
    let mut response = (
        [
            (header::CONTENT_TYPE, content_type),
            (header::ETAG, etag),
            (header::CACHE_CONTROL, cache),
            (header::CONTENT_LENGTH, HeaderValue::from(length)),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response();
    if query.download.is_some() {
        let extension = image.storage_key.rsplit('.').next().unwrap_or("jpg");
        if let Ok(value) =
            HeaderValue::from_str(&format!("attachment; filename=\"image-{id}.{extension}\""))
        {
            response
                .headers_mut()
                .insert(header::CONTENT_DISPOSITION, value);
        }
    }
    Ok(response)
}
