//! SQL for `messages`: pages of a conversation, single messages, edits and deletions, the export's pages.

use sqlx::types::Json;
use uuid::Uuid;

use crate::db::{Db, Timestamp};
use crate::db_dispatch;

/// A stored message.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MessageRow {
    /// Id.
    pub id: Uuid,
    /// `user` or `assistant`.
    pub role: String,
    /// Plain text.
    pub content: String,
    /// An attached image, if any.
    pub image_id: Option<Uuid>,
    /// Why the picture asked for with this reply could not be made.
    pub image_error: Option<String>,
    /// The attached image's width.
    pub image_width: Option<i32>,
    /// The attached image's height.
    pub image_height: Option<i32>,
    /// How a reply ended (`stop`, `length`, `content_filter`); `None` for user messages.
    pub finish_reason: Option<String>,
    /// When it was written.
    pub created_at: Timestamp,
    /// When it was last edited.
    pub edited_at: Option<Timestamp>,
}

const MESSAGE_COLUMNS: &str = "m.id, m.role, m.content, m.image_id, m.image_error, m.finish_reason, \
     (SELECT i.width FROM images i WHERE i.id = m.image_id) AS image_width, \
     (SELECT i.height FROM images i WHERE i.id = m.image_id) AS image_height, m.created_at, m.edited_at";

/// A page of messages, newest first, older than `before` when given.
pub async fn messages(
    db: &Db,
    companion: Uuid,
    before: Option<Uuid>,
    limit: u32,
) -> Result<Vec<MessageRow>, sqlx::Error> {
    let limit = i64::from(limit);
    match before {
        None => {
            let sql = format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.companion_id = $1 \
                 ORDER BY created_at DESC, id DESC LIMIT $2"
            );
            db_dispatch!(db, pool => sqlx::query_as(&sql).bind(companion).bind(limit).fetch_all(pool).await)
        }
        Some(cursor) => {
            let sql = format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages m WHERE companion_id = $1 AND EXISTS ( \
                     SELECT 1 FROM messages c WHERE c.id = $2 AND c.companion_id = $1 \
                       AND (m.created_at < c.created_at OR (m.created_at = c.created_at AND m.id < c.id))) \
                 ORDER BY created_at DESC, id DESC LIMIT $3"
            );
            db_dispatch!(db, pool => sqlx::query_as(&sql)
                .bind(companion)
                .bind(cursor)
                .bind(limit)
                .fetch_all(pool)
                .await)
        }
    }
}

/// Messages written before `message` (oldest first), at most `limit` of the newest ones.
pub async fn history_before(
    db: &Db,
    companion: Uuid,
    message: Uuid,
    limit: u32,
) -> Result<Vec<HistoryMessage>, sqlx::Error> {
    // Only what a prompt needs: no picture columns, and the token count stored with each message.
    let sql = "SELECT m.id, m.role, m.content, m.tokens FROM messages m WHERE companion_id = $1 AND EXISTS ( \
                 SELECT 1 FROM messages c WHERE c.id = $2 AND c.companion_id = $1 \
                   AND (m.created_at < c.created_at OR (m.created_at = c.created_at AND m.id < c.id))) \
               ORDER BY created_at DESC, id DESC LIMIT $3";
    let mut rows: Vec<HistoryMessage> = db_dispatch!(db, pool => sqlx::query_as(sql)
        .bind(companion)
        .bind(message)
        .bind(i64::from(limit))
        .fetch_all(pool)
        .await)?;
    rows.reverse();
    Ok(rows)
}

/// A message of the history, as a prompt needs it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct HistoryMessage {
    /// Id.
    pub id: Uuid,
    /// `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
    /// Its prompt cost, counted when it was written (`None` for messages written before counts were kept).
    pub tokens: Option<i32>,
}

/// One message of a companion.
pub async fn message(
    db: &Db,
    companion: Uuid,
    id: Uuid,
) -> Result<Option<MessageRow>, sqlx::Error> {
    let sql =
        format!("SELECT {MESSAGE_COLUMNS} FROM messages m WHERE m.id = $1 AND m.companion_id = $2");
    db_dispatch!(db, pool => sqlx::query_as(&sql).bind(id).bind(companion).fetch_optional(pool).await)
}

/// The companion a message belongs to, when its owner is `user`.
pub async fn message_companion(
    db: &Db,
    user: Uuid,
    message: Uuid,
) -> Result<Option<Uuid>, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query_scalar(
        "SELECT m.companion_id FROM messages m JOIN companions c ON c.id = m.companion_id \
         WHERE m.id = $1 AND c.user_id = $2",
    )
    .bind(message)
    .bind(user)
    .fetch_optional(pool)
    .await)
}

/// Changes a user message and deletes everything written after it (the conversation restarts there).
pub async fn rewrite_from(
    db: &Db,
    companion: Uuid,
    message: &MessageRow,
    content: &str,
) -> Result<(), sqlx::Error> {
    let now = Timestamp::now();
    // Counted before the transaction, so the write lock is not held while the tokenizer runs.
    let cost = super::prompt_cost(content);
    db_dispatch!(db, pool => async {
        let mut tx = pool.begin().await?;
        sqlx::query(
            "DELETE FROM messages WHERE companion_id = $1 \
               AND (created_at > $2 OR (created_at = $2 AND id > $3))",
        )
        .bind(companion)
        .bind(message.created_at)
        .bind(message.id)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE messages SET content = $1, tokens = $2, edited_at = $3 WHERE id = $4")
            .bind(content)
            .bind(cost)
            .bind(now)
            .bind(message.id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await
    }.await)
}

/// Deletes one message.
pub async fn delete_message(db: &Db, companion: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query("DELETE FROM messages WHERE id = $1 AND companion_id = $2")
        .bind(id)
        .bind(companion)
        .execute(pool)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// One message as the export writes it: the message, its picture, and for a reply the scene its run left.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ExportedMessage {
    /// Id.
    pub id: Uuid,
    /// `user` or `assistant`.
    pub role: String,
    /// Plain text.
    pub content: String,
    /// The attached picture, if any.
    pub image_id: Option<Uuid>,
    /// Why the picture asked for with this reply could not be made.
    pub image_error: Option<String>,
    /// How a reply ended.
    pub finish_reason: Option<String>,
    /// The live state after this reply (from its run), if the analysis ran.
    pub scene: Option<Json<serde_json::Value>>,
    /// When it was written.
    pub created_at: Timestamp,
    /// When it was last edited.
    pub edited_at: Option<Timestamp>,
}

/// The next `limit` messages of a conversation after `after` (`(created_at, id)`), oldest first, for the
/// export (the companion was found owned by the caller).
pub async fn export_page(
    db: &Db,
    companion: Uuid,
    after: Option<(Timestamp, Uuid)>,
    limit: u32,
) -> Result<Vec<ExportedMessage>, sqlx::Error> {
    let (after_time, after_id) = match after {
        Some((time, id)) => (Some(time), id),
        None => (None, Uuid::nil()),
    };
    db_dispatch!(db, pool => sqlx::query_as(
        "SELECT m.id, m.role, m.content, m.image_id, m.image_error, m.finish_reason, \
             (SELECT r.state_after FROM chat_runs r WHERE r.assistant_message_id = m.id \
              ORDER BY r.created_at DESC LIMIT 1) AS scene, m.created_at, m.edited_at \
         FROM messages m WHERE m.companion_id = $1 \
           AND ($2 IS NULL OR m.created_at > $2 OR (m.created_at = $2 AND m.id > $3)) \
         ORDER BY m.created_at, m.id LIMIT $4",
    )
    .bind(companion)
    .bind(after_time)
    .bind(after_id)
    .bind(i64::from(limit))
    .fetch_all(pool)
    .await)
}

/// Deletes a companion's whole conversation (its runs go with the user messages they answer).
pub async fn delete_conversation(db: &Db, companion: Uuid) -> Result<(), sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query("DELETE FROM messages WHERE companion_id = $1")
        .bind(companion)
        .execute(pool)
        .await
        .map(|_| ()))
}
