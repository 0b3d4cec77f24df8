//! What pages and the JSON API both do to companions: create, update, portraits, delete (the memory wipe is
//! chat's, `chat::memory`).

use uuid::Uuid;

use super::profile::Profile;
use super::store::{self, CompanionRecord};
use crate::error::AppError;
use crate::media::{self, Crop, MediaStorage};
use crate::state::AppState;
use crate::web::forms::FormErrors;
use crate::web::{Action, SessionUser};

/// Portraits are stored at most this large.
pub const PORTRAIT_SIDE: u32 = 800;

/// 422 with the messages per field.
pub fn invalid(errors: FormErrors) -> AppError {
    errors.into_error()
}

/// Creates a companion (counted against the creation limit), with a portrait when given.
pub async fn create(
    state: &AppState,
    user: &SessionUser,
    profile: &Profile,
    portrait: Option<(Vec<u8>, Option<Crop>)>,
) -> Result<CompanionRecord, AppError> {
    state
        .rate_limiter
        .hit(Action::CompanionCreate, &user.id.to_string())
        .await?;
    // Decode the portrait before storing anything, so a bad image creates nothing.
    let processed = match portrait {
        Some((bytes, crop)) => Some(process_portrait(bytes, crop).await?),
        None => None,
    };
    let mut record = store::create(&state.db, user.id, profile).await?;
    if let Some(processed) = processed {
        record.portrait_image_id = Some(store_portrait(state, user, record.id, processed).await?);
    }
    tracing::info!(companion_id = %record.id, "companion created");
    Ok(record)
}

/// Counts one change (edit, portrait, reset, delete) against the owner's limit.
pub async fn count_change(state: &AppState, user: &SessionUser) -> Result<(), AppError> {
    state
        .rate_limiter
        .hit(Action::CompanionChange, &user.id.to_string())
        .await
}

/// The owner's companion, or 404.
pub async fn find(
    state: &AppState,
    user: &SessionUser,
    id: Uuid,
) -> Result<CompanionRecord, AppError> {
    store::find_owned(&state.db, user.id, id)
        .await?
        .ok_or(AppError::NotFound)
}

/// Decodes, crops and re-encodes an uploaded portrait off the async runtime, in one of the process's
/// decode slots.
pub async fn process_portrait(
    bytes: Vec<u8>,
    crop: Option<Crop>,
) -> Result<media::Processed, AppError> {
    media::process::off_runtime(move || media::process::portrait(&bytes, crop, PORTRAIT_SIDE))
        .await
        .map_err(|err| AppError::Internal(anyhow::anyhow!("portrait task failed: {err}")))?
        .map_err(|err| {
            let mut errors = FormErrors::new();
            errors.add("portrait", err.to_string());
            invalid(errors)
        })
}

/// Stores a processed portrait and makes it the companion's; returns the image id.
pub async fn store_portrait(
    state: &AppState,
    user: &SessionUser,
    companion: Uuid,
    processed: media::Processed,
) -> Result<Uuid, AppError> {
    let key = MediaStorage::key_for(user.id, &processed.sha256, processed.extension);
    let (width, height, size, mime) = (
        processed.width,
        processed.height,
        processed.bytes.len(),
        processed.mime,
    );
    state
        .media
        .put(&key, processed.bytes)
        .await
        .map_err(|err| {
            tracing::warn!(
                error = format!("{err:#}"),
                "the media storage refused a portrait"
            );
            AppError::Unavailable {
                code: media::storage::STORAGE_UNAVAILABLE,
                message: "The portrait could not be saved: the media storage is not answering. \
                          Try again in a moment."
                    .into(),
            }
        })?;
    let image = media::store::insert(
        &state.db,
        &media::store::NewImage {
            owner: user.id,
            companion: Some(companion),
            key: &key,
            mime,
            width,
            height,
            bytes: size,
            source: media::store::Source::Portrait,
            prompt: None,
        },
    )
    .await?;
    if !store::set_portrait(&state.db, user.id, companion, image).await? {
        return Err(AppError::NotFound);
    }
    Ok(image)
}

/// Stops the reply being written for a companion, if any.
async fn stop_active_run(state: &AppState, id: Uuid) -> Result<(), AppError> {
    if let Some(run) = store::active_run(&state.db, id).await? {
        state.engine.cancel(run).await;
    }
    Ok(())
}

/// Deletes the companion, its messages, runs and image rows, and the files nothing else refers to; a
/// reply being written is stopped.
pub async fn delete(state: &AppState, user: &SessionUser, id: Uuid) -> Result<(), AppError> {
    stop_active_run(state, id).await?;
    let keys = media::store::keys_of_companion(&state.db, id).await?;
    if !store::delete(&state.db, user.id, id).await? {
        return Err(AppError::NotFound);
    }
    // The same picture may be used elsewhere by the same owner (content-addressed keys).
    crate::media::cleanup::discard_unreferenced(&state.db, &state.media, keys).await;
    tracing::info!(companion_id = %id, "companion deleted");
    Ok(())
}

/// Reads the optional crop fields (`crop_x`, `crop_y`, `crop_size`); all three or none.
pub fn crop_from_fields(
    fields: &std::collections::HashMap<String, String>,
) -> Result<Option<Crop>, AppError> {
    let get = |name: &str| fields.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    match (get("crop_x"), get("crop_y"), get("crop_size")) {
        (None, None, None) => Ok(None),
        (Some(x), Some(y), Some(size)) => {
            let parse = |v: &str| v.parse::<f64>().ok().filter(|n| n.is_finite() && *n >= 0.0);
            match (parse(x), parse(y), parse(size)) {
                (Some(x), Some(y), Some(size)) if size >= 1.0 => Ok(Some(Crop {
                    x: x.round() as u32,
                    y: y.round() as u32,
                    size: size.round() as u32,
                })),
                _ => {
                    let mut errors = FormErrors::new();
                    errors.add(
                        "portrait",
                        "The crop area is not valid; choose the crop again.",
                    );
                    Err(invalid(errors))
                }
            }
        }
        _ => {
            let mut errors = FormErrors::new();
            errors.add(
                "portrait",
                "Send crop_x, crop_y and crop_size together, or none of them.",
            );
            Err(invalid(errors))
        }
    }
}
