//! `GET /media/{image_id}`: an image, to its owner only, cached for good.

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::{MediaStorage, store};
use crate::error::AppError;
use crate::state::AppState;
use crate::web::CurrentUser;
use crate::web::PathId;

/// `/media/{image_id}`.
pub fn router() -> Router<AppState> {
    Router::new().route("/media/{image_id}", get(show_image))
}

/// The store did not answer: 503 with a plain reason (the cause is logged).
fn unreadable(err: anyhow::Error) -> AppError {
    tracing::warn!(
        error = format!("{err:#}"),
        "the media storage cannot be read"
    );
    AppError::Unavailable {
        code: super::storage::STORAGE_UNAVAILABLE,
        message: "The picture cannot be shown right now: the media storage is not answering."
            .into(),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MediaQuery {
    download: Option<String>,
    /// `thumb` for the gallery thumbnail (the picture itself when it has none).
    size: Option<String>,
}

async fn show_image(
    State(state): State<AppState>,
    current: CurrentUser,
    PathId(id): PathId,
    Query(query): Query<MediaQuery>,
    headers: HeaderMap,
) -> Result<Response, AppError> {
    // Malformed ids are simply not found, like other people's (PathId).
    let image = store::find_owned(&state.db, current.user.id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let thumbnail = query.size.as_deref() == Some("thumb") && query.download.is_none();
    let etag = if thumbnail {
        format!("\"{}-thumb\"", image.sha256())
    } else {
        format!("\"{}\"", image.sha256())
    };
    let etag = HeaderValue::from_str(&etag).map_err(|err| AppError::Internal(err.into()))?;
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
    let thumbnail_file = if thumbnail {
        state
            .media
            .open_stream(&MediaStorage::thumbnail_key(&image.storage_key))
            .await
            .map_err(unreadable)?
    } else {
        None
    };
    let file = match thumbnail_file {
        Some(file) => Some(file),
        None => state
            .media
            .open_stream(&image.storage_key)
            .await
            .map_err(unreadable)?,
    };
    let Some((length, stream)) = file else {
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
