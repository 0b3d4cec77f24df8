//! SQL for the gallery: albums (a companion's pictures, or the unassigned ones), keyset pages, deletion.
//! Portraits are not gallery pictures.

use uuid::Uuid;

use crate::db::{Db, Timestamp};
use crate::db_dispatch;

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
