//! SQL for the scene a run's analysis changes: the companion's live state, written only while the run's
//! lease holds. An execution that lost its run (taken over by another instance, or ended elsewhere) must
//! not move the scene any more than it may store a reply, so the write is fenced like every other write of
//! a run (`held_by!`), in the same statement.

use sqlx::types::Json;

use super::{Lease, RunRow};
use crate::chat::run_status::active_run_statuses;
use crate::companions::profile::LiveState;
use crate::db::{Db, Timestamp};
use crate::db_dispatch;

/// Replaces the live state of `run`'s companion with `change(current)` while `lease` holds; returns the new
/// state, or `None` when nothing was written (the lease no longer holds, or the companion is gone). When the
/// state is still `seen` (what the run read when it was claimed), one conditional write does it; when it
/// moved meanwhile (an edit came between), the current state is read and changed in a transaction, so the
/// change applies to the state as it is.
pub async fn change_scene(
    db: &Db,
    run: &RunRow,
    lease: Lease<'_>,
    seen: &LiveState,
    change: impl Fn(&LiveState) -> LiveState,
) -> Result<Option<LiveState>, sqlx::Error> {
    let next = change(seen);
    let unchanged_since = db_dispatch!(db, pool => sqlx::query(concat!(
        "UPDATE companions SET live_state = $1, updated_at = $2 \
         WHERE id = $3 AND user_id = $4 AND live_state = $5 \
           AND EXISTS (SELECT 1 FROM chat_runs WHERE id = $6",
        held_by!("$7", "$8"),
        ")"
    ))
    .bind(Json(&next))
    .bind(Timestamp::now())
    .bind(run.companion_id)
    .bind(run.user_id)
    .bind(Json(seen))
    .bind(run.id)
    .bind(lease.owner)
    .bind(lease.token)
    .execute(pool)
    .await
    .map(|done| done.rows_affected() == 1))?;
    if unchanged_since {
        return Ok(Some(next));
    }
    db_dispatch!(db, pool => async {
        let mut tx = pool.begin().await?;
        let current: Option<Json<LiveState>> = sqlx::query_scalar(
            "SELECT live_state FROM companions WHERE id = $1 AND user_id = $2",
        )
        .bind(run.companion_id)
        .bind(run.user_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(Json(current)) = current else {
            return Ok(None);
        };
        let next = change(&current);
        let written = sqlx::query(concat!(
            "UPDATE companions SET live_state = $1, updated_at = $2 WHERE id = $3 \
               AND EXISTS (SELECT 1 FROM chat_runs WHERE id = $4",
            held_by!("$5", "$6"),
            ")"
        ))
        .bind(Json(&next))
        .bind(Timestamp::now())
        .bind(run.companion_id)
        .bind(run.id)
        .bind(lease.owner)
        .bind(lease.token)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !written {
            tx.rollback().await?;
            return Ok(None);
        }
        tx.commit().await?;
        Ok(Some(next))
    }.await)
}
