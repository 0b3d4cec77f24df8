//! Making one picture: ask the configured backend, check and re-encode what it sent (like an upload), store
//! the file under its content hash, record the row. Knows nothing of what the picture shows (the prompt is
//! the caller's); shared by the chat's image step, its retry and the generator.

use std::sync::Arc;

use tokio::sync::Semaphore;
use uuid::Uuid;

use super::store::{NewImage, Source};
use super::{self as media, MediaStorage};
use crate::config::ImageSettings;
use crate::db::Db;
use crate::providers::images::{GenerationRequest, ImageClient, ImageGenError};

/// Generated pictures are kept at most this many pixels on their longer side.
pub const MAX_SIDE: u32 = 1920;
/// Gallery thumbnails fit this width (and one and a half times it in height).
pub const THUMBNAIL_WIDTH: u32 = 480;
/// Backend calls in flight at once on this instance: each may hold an answer of up to 48 MB.
const CONCURRENT_CALLS: usize = 4;

/// Everything needed to make pictures; cheap to clone.
#[derive(Clone)]
pub struct Imaging {
    db: Db,
    media: MediaStorage,
    client: Option<ImageClient>,
    /// Timeout and per-style settings.
    pub settings: Arc<ImageSettings>,
    calls: Arc<Semaphore>,
}

/// A stored picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Generated {
    /// The image row (`/media/{id}`).
    pub image_id: Uuid,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl Generated {
    /// The `image` event's data: `{"url","width","height"}` (plus the id).
    pub fn event(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.image_id,
            "url": format!("/media/{}", self.image_id),
            "width": self.width,
            "height": self.height,
        })
    }
}

/// Why no picture was made; [`GenerateError::user_message`] says it for people.
#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    /// No backend is configured.
    #[error("no image backend is configured")]
    NotConfigured,
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] ImageGenError),
    /// The backend's bytes are not a usable image.
    #[error("the image backend sent an unusable image: {0}")]
    NotAnImage(#[from] media::ImageError),
    /// The image could not be prepared for storing (the decode slots, a worker thread).
    #[error("cannot store the image: {0}")]
    Storage(anyhow::Error),
    /// The media store did not take the file (a bucket or disk that is away or refuses).
    #[error("the media storage is unavailable: {0}")]
    StorageUnavailable(anyhow::Error),
    /// Recording failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl GenerateError {
    /// A stable code for logs, metrics and error payloads.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotConfigured => "image_backend_not_configured",
            Self::Backend(ImageGenError::Rejected { .. }) => "image_rejected",
            Self::Backend(ImageGenError::Unavailable { .. }) => "image_backend_unavailable",
            Self::Backend(ImageGenError::TooLarge | ImageGenError::Malformed(_))
            | Self::NotAnImage(_) => "image_invalid",
            Self::StorageUnavailable(_) => media::storage::STORAGE_UNAVAILABLE,
            Self::Storage(_) | Self::Database(_) => "internal_error",
        }
    }

    /// What the person sees.
    pub fn user_message(&self) -> String {
        match self {
            Self::NotConfigured => {
                "No image backend is configured (SD_API_URL or IMAGE_BACKEND=openai).".into()
            }
            Self::Backend(ImageGenError::Rejected { status, .. }) => {
                format!("The image backend refused the request (HTTP {status}).")
            }
            Self::Backend(ImageGenError::Unavailable { .. }) => {
                "The image backend is not answering right now. Try again in a moment.".into()
            }
            Self::Backend(ImageGenError::TooLarge) => {
                "The image backend sent an answer that is too large to be an image.".into()
            }
            Self::Backend(ImageGenError::Malformed(_)) => {
                "The image backend answered in a way we could not read.".into()
            }
            Self::NotAnImage(err) => format!("The image backend sent an unusable image. {err}"),
            Self::StorageUnavailable(_) => {
                "The picture could not be saved: the media storage is not answering. Try again in a \
                 moment."
                    .into()
            }
            Self::Storage(_) | Self::Database(_) => {
                "Something went wrong while saving the picture.".into()
            }
        }
    }

    /// Whether trying again may help.
    pub fn retryable(&self) -> bool {
        !matches!(self, Self::NotConfigured)
    }
}

/// A store failure: logged with its cause here (the person is told only that the storage is away).
fn storage_unavailable(err: anyhow::Error) -> GenerateError {
    tracing::warn!(
        error = format!("{err:#}"),
        "the media storage refused a picture"
    );
    GenerateError::StorageUnavailable(err)
}

/// Who the picture is for and where it belongs.
#[derive(Debug, Clone, Copy)]
pub struct Destination {
    /// The owner.
    pub owner: Uuid,
    /// The companion it belongs to, if any.
    pub companion: Option<Uuid>,
    /// Chat or generator.
    pub source: Source,
}

impl Imaging {
    /// The image service over the configured backend (`client` is `None` when there is none).
    pub fn new(
        db: Db,
        media: MediaStorage,
        client: Option<ImageClient>,
        settings: ImageSettings,
    ) -> Self {
        Self {
            db,
            media,
            client,
            settings: Arc::new(settings),
            calls: Arc::new(Semaphore::new(CONCURRENT_CALLS)),
        }
    }

    /// Deletes the files of `keys` that no row refers to any more (after their rows were deleted).
    pub async fn discard(&self, keys: Vec<String>) {
        super::cleanup::discard_unreferenced(&self.db, &self.media, keys).await;
    }

    /// The backend client, when one is configured.
    pub fn client(&self) -> Option<&ImageClient> {
        self.client.as_ref()
    }

    /// Generates, checks, stores and records one picture.
    pub async fn generate(
        &self,
        request: &GenerationRequest,
        destination: Destination,
        correlation_id: &str,
    ) -> Result<Generated, GenerateError> {
        let client = self.client.as_ref().ok_or(GenerateError::NotConfigured)?;
        let started = std::time::Instant::now();
        let result = self
            .make(client, request, destination, correlation_id)
            .await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(err) => err.code(),
        };
        metrics::counter!("images_generated_total", "outcome" => outcome).increment(1);
        metrics::histogram!("image_generation_duration_seconds")
            .record(started.elapsed().as_secs_f64());
        if let Err(err) = &result {
            tracing::warn!(error = %err, code = err.code(), "image generation failed");
        }
        result
    }

    async fn make(
        &self,
        client: &ImageClient,
        request: &GenerationRequest,
        destination: Destination,
        correlation_id: &str,
    ) -> Result<Generated, GenerateError> {
        // Each call may hold a large answer in memory: only a few run at once on this instance (a Stable
        // Diffusion server paints one picture at a time anyway; the rest wait their turn here).
        let raw = {
            let _turn = self
                .calls
                .acquire()
                .await
                .map_err(|err| GenerateError::Storage(err.into()))?;
            client.generate(request, correlation_id).await?
        };
        // One of the process's decode slots, shared with portrait uploads.
        let processed = media::process::off_runtime(move || {
            media::process::fit_with_thumbnail(&raw, MAX_SIDE, THUMBNAIL_WIDTH)
        })
        .await
        .map_err(|err| GenerateError::Storage(err.into()))??;
        let (processed, thumbnail) = processed;
        let key = MediaStorage::key_for(destination.owner, &processed.sha256, processed.extension);
        let (width, height, size, mime) = (
            processed.width,
            processed.height,
            processed.bytes.len(),
            processed.mime,
        );
        // The file is written before the row that references it; a crash in between leaves an
        // unreferenced file for the orphan cleanup, never a row without its file.
        let bytes = processed.bytes;
        self.media
            .put(&key, bytes.clone())
            .await
            .map_err(storage_unavailable)?;
        // Without its thumbnail the gallery shows the picture itself, so this failure is only logged.
        if let Err(err) = self
            .media
            .put(&MediaStorage::thumbnail_key(&key), thumbnail.bytes)
            .await
        {
            tracing::warn!(error = %err, "cannot store a picture's thumbnail");
        }
        let image_id = media::store::insert(
            &self.db,
            &NewImage {
                owner: destination.owner,
                companion: destination.companion,
                key: &key,
                mime,
                width,
                height,
                bytes: size,
                source: destination.source,
                prompt: Some(&request.prompt),
            },
        )
        .await?;
        // Identical bytes share a file: a deletion of another row with this key may have removed it between
        // the write and the insert. Now that our row refers to it, nothing removes it again.
        if !self.media.exists(&key).await.map_err(storage_unavailable)? {
            self.media
                .put(&key, bytes)
                .await
                .map_err(storage_unavailable)?;
        }
        Ok(Generated {
            image_id,
            width,
            height,
        })
    }
}
