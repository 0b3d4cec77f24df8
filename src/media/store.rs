//! SQL for the `images` table.

use uuid::Uuid;

use crate::db::{Db, Timestamp};
use crate::db_dispatch;

/// Where an image came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A companion's portrait.
    Portrait,
    /// Generated in a chat.
    Chat,
    /// Made on the generator page.
    Generator,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Self::Portrait => "portrait",
            Self::Chat => "chat",
            Self::Generator => "generator",
        }
    }
}

/// An image about to be recorded.
pub struct NewImage<'a> {
    /// Owner.
    pub owner: Uuid,
    /// The companion it belongs to, if any.
    pub companion: Option<Uuid>,
    /// Storage key.
    pub key: &'a str,
    /// MIME type.
    pub mime: &'a str,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Size in bytes.
    pub bytes: usize,
    /// Where it came from.
    pub source: Source,
    /// The prompt that made it, for generated images.
    pub prompt: Option<&'a str>,
}

/// A recorded image.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ImageRow {
    /// Id (the `/media/{id}` URL).
    pub id: Uuid,
    /// Storage key (`<owner>/<sha256>.<ext>`).
    pub storage_key: String,
    /// MIME type.
    pub mime: String,
    /// Width in pixels.
    pub width: i32,
    /// Height in pixels.
    pub height: i32,
}

impl ImageRow {
    /// The content hash, from the key.
    pub fn sha256(&self) -> &str {
        let file = self.storage_key.rsplit('/').next().unwrap_or("");
        file.split('.').next().unwrap_or(file)
    }
}

/// Records an image; returns its id.
pub async fn insert(db: &Db, image: &NewImage<'_>) -> Result<Uuid, sqlx::Error> {
    let id = Uuid::now_v7();
    db_dispatch!(db, pool => sqlx::query(
        "INSERT INTO images (id, owner_id, companion_id, storage_key, mime, width, height, bytes, \
             source, prompt, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(id)
    .bind(image.owner)
    .bind(image.companion)
    .bind(image.key)
    .bind(image.mime)
    .bind(i32::try_from(image.width).unwrap_or(i32::MAX))
    .bind(i32::try_from(image.height).unwrap_or(i32::MAX))
    .bind(i64::try_from(image.bytes).unwrap_or(i64::MAX))
    .bind(image.source.as_str())
    .bind(image.prompt)
    .bind(Timestamp::now())
    .execute(pool)
    .await
    .map(|_| ()))?;
    Ok(id)
}

/// The image `id` when `owner` owns it.
pub async fn find_owned(db: &Db, owner: Uuid, id: Uuid) -> Result<Option<ImageRow>, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query_as(
        "SELECT id, storage_key, mime, width, height FROM images WHERE id = $1 AND owner_id = $2",
    )
    .bind(id)
    .bind(owner)
    .fetch_optional(pool)
    .await)
}

/// The storage keys of a companion's images.
pub async fn keys_of_companion(db: &Db, companion: Uuid) -> Result<Vec<String>, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query_scalar(
        "SELECT DISTINCT storage_key FROM images WHERE companion_id = $1",
    )
    .bind(companion)
    .fetch_all(pool)
    .await)
}

/// The storage keys of the pictures in a companion's conversation (they go with it).
pub async fn keys_of_conversation(db: &Db, companion: Uuid) -> Result<Vec<String>, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query_scalar(
        "SELECT DISTINCT storage_key FROM images WHERE companion_id = $1 AND message_id IS NOT NULL",
    )
    .bind(companion)
    .fetch_all(pool)
    .await)
}

/// The storage keys of the pictures of one message (they go with it).
pub async fn keys_of_message(db: &Db, message: Uuid) -> Result<Vec<String>, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query_scalar(
        "SELECT DISTINCT storage_key FROM images WHERE message_id = $1",
    )
    .bind(message)
    .fetch_all(pool)
    .await)
}

/// The storage keys of the pictures of a companion's messages written after `message` (an edit drops them).
pub async fn keys_after_message(
    db: &Db,
    companion: Uuid,
    message: Uuid,
) -> Result<Vec<String>, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query_scalar(
        "SELECT DISTINCT i.storage_key FROM images i \
         JOIN messages m ON m.id = i.message_id \
         JOIN messages e ON e.id = $2 AND e.companion_id = $1 \
         WHERE m.companion_id = $1 \
           AND (m.created_at > e.created_at OR (m.created_at = e.created_at AND m.id > e.id))",
    )
    .bind(companion)
    .bind(message)
    .fetch_all(pool)
    .await)
}

/// Deletes picture `id` when it belongs to no message (its run ended without it); returns its key.
pub async fn delete_unattached(db: &Db, id: Uuid) -> Result<Option<String>, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query_scalar(
        "DELETE FROM images WHERE id = $1 AND message_id IS NULL AND source = 'chat' RETURNING storage_key",
    )
    .bind(id)
    .fetch_optional(pool)
    .await)
}

/// True when some image row still refers to `key`.
pub async fn is_referenced(db: &Db, key: &str) -> Result<bool, sqlx::Error> {
    let count: i64 = db_dispatch!(db, pool => sqlx::query_scalar(
        "SELECT COUNT(*) FROM images WHERE storage_key = $1",
    )
    .bind(key)
    .fetch_one(pool)
    .await)?;
    Ok(count > 0)
}
