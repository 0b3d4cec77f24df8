//! The `login_guards` table: failure counts and locks of sign-in identifiers and device cookies.
//!
//! A guard is keyed by a keyed hash ([`crate::web::keys::Purpose::LoginGuard`]) of what it protects, so
//! the table names no identifier and no cookie. Every statement is one atomic upsert or delete, so
//! concurrent attempts (on any instance) never lose a count.

use std::time::Duration;

use uuid::Uuid;

use crate::db::{Db, Timestamp};
use crate::db_dispatch;

/// When the guard `key` is locked now: the lock's end.
pub async fn locked_until(
    db: &Db,
    key: &[u8],
    now: Timestamp,
) -> Result<Option<Timestamp>, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query_scalar(
        "SELECT locked_until FROM login_guards WHERE key_hash = $1 AND locked_until > $2",
    )
    .bind(key)
    .bind(now)
    .fetch_optional(pool)
    .await)
}

/// Counts a failure of the guard `key` (of account `user`, when there is one). Failures are forgotten
/// `window` after the last one; at `threshold` failures the guard locks for `window` and the count starts
/// again. Returns the lock's end when this failure locked it.
pub async fn record_failure(
    db: &Db,
    key: &[u8],
    user: Option<Uuid>,
    threshold: u32,
    window: Duration,
    now: Timestamp,
) -> Result<Option<Timestamp>, sqlx::Error> {
    let until = now + window;
    let threshold = i64::from(threshold);
    // F = the count including this failure (1 when the row had lapsed); at the threshold: lock, reset.
    let (failures, locked): (i64, Option<Timestamp>) = db_dispatch!(db, pool => sqlx::query_as(
        "INSERT INTO login_guards (key_hash, user_id, failures, locked_until, expires_at) \
         VALUES ($1, $2, CASE WHEN 1 >= $3 THEN 0 ELSE 1 END, CASE WHEN 1 >= $3 THEN $4 END, $4) \
         ON CONFLICT (key_hash) DO UPDATE SET \
             failures = CASE \
                 WHEN (CASE WHEN login_guards.expires_at <= $5 THEN 1 ELSE login_guards.failures + 1 END) >= $3 \
                 THEN 0 \
                 ELSE (CASE WHEN login_guards.expires_at <= $5 THEN 1 ELSE login_guards.failures + 1 END) END, \
             locked_until = CASE \
                 WHEN (CASE WHEN login_guards.expires_at <= $5 THEN 1 ELSE login_guards.failures + 1 END) >= $3 \
                 THEN $4 ELSE NULL END, \
             expires_at = $4, \
             user_id = COALESCE(excluded.user_id, login_guards.user_id) \
         RETURNING failures, locked_until",
    )
    .bind(key)
    .bind(user)
    .bind(threshold)
    .bind(until)
    .bind(now)
    .fetch_one(pool)
    .await)?;
    Ok(match locked {
        Some(end) if failures == 0 && end == until => Some(end),
        _ => None,
    })
}

/// Forgets the guard `key` (a successful sign-in through it).
pub async fn clear(db: &Db, key: &[u8]) -> Result<(), sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query("DELETE FROM login_guards WHERE key_hash = $1")
        .bind(key)
        .execute(pool)
        .await
        .map(|_| ()))
}

/// Forgets every guard of an account (an operator unlocking it); returns how many there were.
pub async fn clear_for_user(db: &Db, user: Uuid) -> Result<u64, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query("DELETE FROM login_guards WHERE user_id = $1")
        .bind(user)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
}

/// Deletes guards nobody failed against within their window.
pub async fn purge_expired(db: &Db, now: Timestamp) -> Result<u64, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query("DELETE FROM login_guards WHERE expires_at <= $1")
        .bind(now)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
}
