//! SQL for the `companions` table; every query is scoped to the owner, so another user's companion is
//! indistinguishable from a missing one.

use sqlx::types::Json;
use uuid::Uuid;

use super::profile::{LiveState, Profile};
use crate::db::{Db, Timestamp};
use crate::db_dispatch;

/// A stored companion.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct CompanionRecord {
    /// Id.
    pub id: Uuid,
    /// The structured profile, exactly as entered.
    pub profile: Json<Profile>,
    /// What the companion wears, where it is and what it does.
    pub live_state: Json<LiveState>,
    /// The current portrait, if any.
    pub portrait_image_id: Option<Uuid>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

const COLUMNS: &str = "id, profile, live_state, portrait_image_id, created_at, updated_at";

/// Stores a new companion in its initial live state.
pub async fn create(
    db: &Db,
    owner: Uuid,
    profile: &Profile,
) -> Result<CompanionRecord, sqlx::Error> {
    let now = Timestamp::now();
    let record = CompanionRecord {
        id: Uuid::now_v7(),
        profile: Json(profile.clone()),
        live_state: Json(LiveState::initial(profile)),
        portrait_image_id: None,
        created_at: now,
        updated_at: now,
    };
    db_dispatch!(db, pool => sqlx::query(
        "INSERT INTO companions (id, user_id, profile, live_state, portrait_image_id, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, NULL, $5, $6)",
    )
    .bind(record.id)
    .bind(owner)
    .bind(&record.profile)
    .bind(&record.live_state)
    .bind(now)
    .bind(now)
    .execute(pool)
    .await
    .map(|_| ()))?;
    Ok(record)
}

/// The companion `id` of `owner`.
pub async fn find_owned(
    db: &Db,
    owner: Uuid,
    id: Uuid,
) -> Result<Option<CompanionRecord>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM companions WHERE id = $1 AND user_id = $2");
    db_dispatch!(db, pool => sqlx::query_as(&sql)
        .bind(id)
        .bind(owner)
        .fetch_optional(pool)
        .await)
}

/// A page of the owner's companions, newest first.
pub async fn list(
    db: &Db,
    owner: Uuid,
    limit: u32,
    offset: u32,
) -> Result<Vec<CompanionRecord>, sqlx::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM companions WHERE user_id = $1 \
         ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
    );
    db_dispatch!(db, pool => sqlx::query_as(&sql)
        .bind(owner)
        .bind(i64::from(limit))
        .bind(i64::from(offset))
        .fetch_all(pool)
        .await)
}

/// How many companions the owner has.
pub async fn count(db: &Db, owner: Uuid) -> Result<i64, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query_scalar("SELECT COUNT(*) FROM companions WHERE user_id = $1")
        .bind(owner)
        .fetch_one(pool)
        .await)
}

/// Replaces the profile; false when the companion is not the owner's.
pub async fn update_profile(
    db: &Db,
    owner: Uuid,
    id: Uuid,
    profile: &Profile,
) -> Result<bool, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query(
        "UPDATE companions SET profile = $1, updated_at = $2 WHERE id = $3 AND user_id = $4",
    )
    .bind(Json(profile))
    .bind(Timestamp::now())
    .bind(id)
    .bind(owner)
    .execute(pool)
    .await
    .map(|r| r.rows_affected() == 1))
}

/// Points the companion at a new portrait (the old file stays for the orphan cleanup).
pub async fn set_portrait(
    db: &Db,
    owner: Uuid,
    id: Uuid,
    image: Uuid,
) -> Result<bool, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query(
        "UPDATE companions SET portrait_image_id = $1, updated_at = $2 WHERE id = $3 AND user_id = $4",
    )
    .bind(image)
    .bind(Timestamp::now())
    .bind(id)
    .bind(owner)
    .execute(pool)
    .await
    .map(|r| r.rows_affected() == 1))
}

/// Restores the initial live state (after wiping the conversation).
pub async fn reset_live_state(
    db: &Db,
    owner: Uuid,
    id: Uuid,
    state: &LiveState,
) -> Result<bool, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query(
        "UPDATE companions SET live_state = $1, updated_at = $2 WHERE id = $3 AND user_id = $4",
    )
    .bind(Json(state))
    .bind(Timestamp::now())
    .bind(id)
    .bind(owner)
    .execute(pool)
    .await
    .map(|r| r.rows_affected() == 1))
}

/// Deletes the companion (its image rows go with it); false when it is not the owner's.
pub async fn delete(db: &Db, owner: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query("DELETE FROM companions WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(owner)
        .execute(pool)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// The unfinished chat run of a companion, if any, to stop it when the companion is deleted. (Chat's table:
/// companions cannot import chat, which builds on it; the status list is the one in chat's `run_status`.)
pub async fn active_run(db: &Db, id: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query_scalar(
        "SELECT id FROM chat_runs WHERE companion_id = $1 \
           AND status IN ('queued', 'responding', 'analyzing', 'imaging')",
    )
    .bind(id)
    .fetch_optional(pool)
    .await)
}
