//! The `sessions` table: signed-in users' server-side sessions, keyed by the hash of their cookie token.
//! A session is live while it is within its lifetime and was used within the idle timeout.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::{Session, SessionUser};
use crate::db::{Db, Timestamp};
use crate::db_dispatch;

/// How often `last_seen_at` is written: once per this much activity, not on every request.
const TOUCH_EVERY: Duration = Duration::from_secs(300);

/// A session as listed on the settings page.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SessionInfo {
    /// Public id (for revoking), not the token.
    pub id: Uuid,
    /// When it was created (the sign-in).
    pub created_at: Timestamp,
    /// Last activity, to within five minutes.
    pub last_seen_at: Timestamp,
    /// The browser that created it.
    pub user_agent: Option<String>,
}

#[derive(sqlx::FromRow)]
struct SessionRow {
    id: Uuid,
    csrf_secret: Vec<u8>,
    created_at: Timestamp,
    last_seen_at: Timestamp,
    expires_at: Timestamp,
    user_id: Option<Uuid>,
    username: Option<String>,
    display_name: Option<String>,
}

/// 256 random bits, URL-safe: the cookie value.
fn new_token() -> Result<String, getrandom::Error> {
    let mut bytes = [0_u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

/// Creates a signed-in session; returns its cookie token.
pub async fn create(
    db: &Db,
    user: SessionUser,
    user_agent: Option<&str>,
    lifetime: Duration,
) -> anyhow::Result<(String, Session)> {
    let token = new_token()?;
    let mut csrf_secret = [0_u8; 32];
    getrandom::fill(&mut csrf_secret)?;
    let now = Timestamp::now();
    let session = Session {
        id: Uuid::now_v7(),
        user: Some(user),
        csrf_secret,
        created_at: now,
        expires_at: now + lifetime,
    };
    let user_agent = user_agent.map(|ua| ua.chars().take(300).collect::<String>());
    db_dispatch!(db, pool => sqlx::query(
        "INSERT INTO sessions (id, token_hash, user_id, csrf_secret, user_agent, created_at, \
             last_seen_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(session.id)
    .bind(token_hash(&token))
    .bind(session.user.as_ref().map(|u| u.id))
    .bind(csrf_secret.to_vec())
    .bind(user_agent)
    .bind(now)
    .bind(now)
    .bind(session.expires_at)
    .execute(pool)
    .await
    .map(|_| ()))?;
    Ok((token, session))
}

/// The live session for a cookie token (within its lifetime, used within `idle`), refreshing its
/// last-seen time now and then.
pub async fn load(
    db: &Db,
    token: &str,
    now: Timestamp,
    idle: Duration,
) -> Result<Option<Session>, sqlx::Error> {
    let row: Option<SessionRow> = db_dispatch!(db, pool => sqlx::query_as(
        "SELECT s.id, s.csrf_secret, s.created_at, s.last_seen_at, s.expires_at, \
             u.id AS user_id, u.username, u.display_name \
         FROM sessions s JOIN users u ON u.id = s.user_id \
         WHERE s.token_hash = $1 AND s.expires_at > $2 AND s.last_seen_at > $3",
    )
    .bind(token_hash(token))
    .bind(now)
    .bind(now - idle)
    .fetch_optional(pool)
    .await)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let Ok(csrf_secret) = <[u8; 32]>::try_from(row.csrf_secret.as_slice()) else {
        return Ok(None);
    };
    if row.last_seen_at + TOUCH_EVERY < now {
        db_dispatch!(db, pool => sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE id = $2")
            .bind(now)
            .bind(row.id)
            .execute(pool)
            .await
            .map(|_| ()))?;
    }
    let user = match (row.user_id, row.username, row.display_name) {
        (Some(id), Some(username), Some(display_name)) => Some(SessionUser {
            id,
            username,
            display_name,
        }),
        _ => None,
    };
    Ok(Some(Session {
        id: row.id,
        user,
        csrf_secret,
        created_at: row.created_at,
        expires_at: row.expires_at,
    }))
}

/// Gives a session a new cookie token (the old one stops working at once); returns the new token.
pub async fn rotate_token(db: &Db, id: Uuid) -> anyhow::Result<String> {
    let token = new_token()?;
    db_dispatch!(db, pool => sqlx::query("UPDATE sessions SET token_hash = $1 WHERE id = $2")
        .bind(token_hash(&token))
        .bind(id)
        .execute(pool)
        .await
        .map(|_| ()))?;
    Ok(token)
}

/// Ends one session.
pub async fn delete(db: &Db, id: Uuid) -> Result<(), sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query("DELETE FROM sessions WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .map(|_| ()))
}

/// Ends one of a user's sessions; false when it is not theirs (or gone).
pub async fn delete_owned(db: &Db, user_id: Uuid, id: Uuid) -> Result<bool, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query("DELETE FROM sessions WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user_id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// Ends every session of a user, except `keep` when given; returns how many ended.
pub async fn delete_all_for_user(
    db: &Db,
    user_id: Uuid,
    keep: Option<Uuid>,
) -> Result<u64, sqlx::Error> {
    // Uuid::nil never names a session, so "keep nothing" needs no second SQL text.
    let keep = keep.unwrap_or(Uuid::nil());
    db_dispatch!(db, pool => sqlx::query("DELETE FROM sessions WHERE user_id = $1 AND id <> $2")
        .bind(user_id)
        .bind(keep)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
}

/// A user's live sessions, most recently used first.
pub async fn list_for_user(
    db: &Db,
    user_id: Uuid,
    now: Timestamp,
    idle: Duration,
) -> Result<Vec<SessionInfo>, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query_as(
        "SELECT id, created_at, last_seen_at, user_agent FROM sessions \
         WHERE user_id = $1 AND expires_at > $2 AND last_seen_at > $3 \
         ORDER BY last_seen_at DESC, created_at DESC",
    )
    .bind(user_id)
    .bind(now)
    .bind(now - idle)
    .fetch_all(pool)
    .await)
}

/// Deletes sessions whose lifetime is over or that were idle for longer than `idle`.
pub async fn purge_expired(db: &Db, now: Timestamp, idle: Duration) -> Result<u64, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query(
        "DELETE FROM sessions WHERE expires_at <= $1 OR last_seen_at <= $2",
    )
    .bind(now)
    .bind(now - idle)
    .execute(pool)
    .await
    .map(|r| r.rows_affected()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_256_bit_and_unique() {
        let a = new_token().expect("test setup is valid");
        let b = new_token().expect("test setup is valid");
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(&a)
                .expect("test setup is valid")
                .len(),
            32
        );
        assert_ne!(a, b);
        assert_eq!(token_hash(&a).len(), 32);
        assert_ne!(token_hash(&a), a.as_bytes());
    }
}
