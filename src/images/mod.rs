//! Pictures: the scene prompt, the generator page and the gallery (making and storing one picture through the
//! backend is `media::generate`; the `images` table and the file cleanup are `media`'s too).

pub mod gallery;
pub mod generator;
pub mod prompt;

use crate::error::AppError;
use crate::state::AppState;
use crate::web::{Action, CurrentUser};

/// The gallery's routes.
pub fn router() -> axum::Router<AppState> {
    gallery::router()
}

/// The generator's routes: they wait for the image backend, so they are not under the request timeout.
pub fn generator_router() -> axum::Router<AppState> {
    generator::router()
}

/// Refuses when no image backend is configured, then counts the picture against the image limit.
pub async fn may_picture(state: &AppState, current: &CurrentUser) -> Result<(), AppError> {
    pictures_available(state)?;
    state
        .rate_limiter
        .hit(Action::Image, &current.user.id.to_string())
        .await
}

/// 503 `image_backend_not_configured` when no image backend is configured (nothing is counted).
pub fn pictures_available(state: &AppState) -> Result<(), AppError> {
    if state.imaging.client().is_none() {
        return Err(AppError::Unavailable {
            code: "image_backend_not_configured",
            message:
                "No image backend is connected yet: set SD_API_URL (AUTOMATIC1111 / Forge) or \
                      IMAGE_BACKEND=openai with IMAGE_API_URL, and restart."
                    .into(),
        });
    }
    Ok(())
}
