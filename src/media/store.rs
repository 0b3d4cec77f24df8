//! SQL for the `images` table, its one owner: recording and finding images, and the gallery's queries —
//! albums (the pictures of one `companion_id`, or the unassigned ones), keyset pages, deletion. Portraits
//! are not gallery pictures.

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

// The gallery's queries.

/// How many gallery pictures each album has (`None` = the generator's unassigned pictures).
pub async fn album_counts(db: &Db, owner: Uuid) -> Result<Vec<(Option<Uuid>, i64)>, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query_as(
        "SELECT companion_id, COUNT(*) FROM images WHERE owner_id = $1 AND source <> 'portrait' \
         GROUP BY companion_id",
    )
    .bind(owner)
    .fetch_all(pool)
    .await)
}

/// One picture of an album page.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct GalleryItem {
    /// Id (`/media/{id}`).
    pub id: Uuid,
    /// Width in pixels.
    pub width: i32,
    /// Height in pixels.
    pub height: i32,
    /// When it was made.
    pub created_at: Timestamp,
    /// `chat` or `generator`.
    pub source: String,
    /// The prompt that made it.
    pub prompt: Option<String>,
    /// The reply it illustrates, for chat pictures.
    pub message_text: Option<String>,
}

/// An album's pictures newest first (by their time-ordered ids), older than the picture `before` when given.
pub async fn album_page(
    db: &Db,
    owner: Uuid,
    companion: Option<Uuid>,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<GalleryItem>, sqlx::Error> {
    let mut next = 2;
    let mut placeholder = || {
        next += 1;
        format!("${}", next - 1)
    };
    let album = match companion {
        Some(_) => format!("i.companion_id = {}", placeholder()),
        None => "i.companion_id IS NULL".to_owned(),
    };
    // Ids are UUID v7 (time-ordered), so the cursor needs no row: a deleted picture still marks its place.
    let keyset = match before {
        Some(_) => format!("AND i.id < {}", placeholder()),
        None => String::new(),
    };
    let limit_at = placeholder();
    let sql = format!(
        "SELECT i.id, i.width, i.height, i.created_at, i.source, i.prompt, m.content AS message_text \
         FROM images i LEFT JOIN messages m ON m.id = i.message_id \
         WHERE i.owner_id = $1 AND i.source <> 'portrait' AND {album} {keyset} \
         ORDER BY i.id DESC LIMIT {limit_at}"
    );
    db_dispatch!(db, pool => {
        let mut query = sqlx::query_as(&sql).bind(owner);
        if let Some(companion) = companion {
            query = query.bind(companion);
        }
        if let Some(before) = before {
            query = query.bind(before);
        }
        query.bind(i64::from(limit)).fetch_all(pool).await
    })
}

/// Deletes the owner's gallery picture `id`; returns its storage key (`None` when not theirs).
pub async fn delete_owned(db: &Db, owner: Uuid, id: Uuid) -> Result<Option<String>, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query_scalar(
        "DELETE FROM images WHERE id = $1 AND owner_id = $2 AND source <> 'portrait' \
         RETURNING storage_key",
    )
    .bind(id)
    .bind(owner)
    .fetch_optional(pool)
    .await)
}

/// One image row as the export lists it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExportedImage {
    /// Id.
    pub id: Uuid,
    /// Where the file is stored.
    pub storage_key: String,
    /// MIME type.
    pub mime: String,
    /// Width in pixels.
    pub width: i32,
    /// Height in pixels.
    pub height: i32,
    /// `portrait`, `chat` or `generator`.
    pub source: String,
    /// The companion it shows or belongs to.
    pub companion_id: Option<Uuid>,
    /// The prompt it was made from (generated pictures).
    pub prompt: Option<String>,
    /// When it was recorded.
    pub created_at: Timestamp,
}

/// The owner's next `limit` images after `after` (by id, which is time-ordered), for the export.
pub async fn export_page(
    db: &Db,
    owner: Uuid,
    after: Option<Uuid>,
    limit: u32,
) -> Result<Vec<ExportedImage>, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query_as(
        "SELECT id, storage_key, mime, width, height, source, companion_id, prompt, created_at \
         FROM images WHERE owner_id = $1 AND id > $2 ORDER BY id LIMIT $3",
    )
    .bind(owner)
    .bind(after.unwrap_or_else(Uuid::nil))
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await)
}
