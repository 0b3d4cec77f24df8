//! SQL for the `users` table: creation, credential lookup, settings changes (locks live in
//! `login_guards`, see `guards.rs`).

use serde::Serialize;
use uuid::Uuid;

use super::validation::{DisplayName, Email, Username};
use crate::db::{Db, Timestamp, violates_unique};
use crate::db_dispatch;
use crate::web::SessionUser;

/// A user about to be stored.
pub struct NewUser<'a> {
    /// Normalised email.
    pub email: &'a Email,
    /// Normalised username.
    pub username: &'a Username,
    /// Display name.
    pub display_name: &'a DisplayName,
    /// Argon2id PHC string.
    pub password_hash: &'a str,
}

/// Why a user could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// The email belongs to another account (in any case).
    #[error("email already registered")]
    EmailTaken,
    /// The username belongs to another account (in any case).
    #[error("username already taken")]
    UsernameTaken,
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Inserts a user; unique violations come back as [`CreateError::EmailTaken`] / `UsernameTaken`.
pub async fn create(db: &Db, new: NewUser<'_>) -> Result<SessionUser, CreateError> {
    let id = Uuid::now_v7();
    let now = Timestamp::now();
    let inserted = db_dispatch!(db, pool => sqlx::query(
        "INSERT INTO users (id, email, username, display_name, password_hash, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(new.email.as_str())
    .bind(new.username.as_str())
    .bind(new.display_name.as_str())
    .bind(new.password_hash)
    .bind(now)
    .bind(now)
    .execute(pool)
    .await
    .map(|_| ()));
    match inserted {
        Ok(()) => Ok(SessionUser {
            id,
            username: new.username.as_str().to_owned(),
            display_name: new.display_name.as_str().to_owned(),
        }),
        Err(err) if violates_unique(&err, "users_email_key") => Err(CreateError::EmailTaken),
        Err(err) if violates_unique(&err, "users_username_key") => Err(CreateError::UsernameTaken),
        Err(err) => Err(err.into()),
    }
}

/// What a login needs to know about an account.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Credentials {
    /// Account id.
    pub id: Uuid,
    /// Login name.
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// Argon2id PHC string.
    pub password_hash: String,
}

/// Looks an account up by username or email, case-insensitively.
pub async fn find_credentials(
    db: &Db,
    identifier: &str,
) -> Result<Option<Credentials>, sqlx::Error> {
    let identifier = identifier.trim().to_lowercase();
    db_dispatch!(db, pool => sqlx::query_as(
        "SELECT id, username, display_name, password_hash FROM users \
         WHERE lower(username) = $1 OR lower(email) = $1",
    )
    .bind(identifier)
    .fetch_optional(pool)
    .await)
}

/// The stored password hash of an account.
pub async fn password_hash(db: &Db, id: Uuid) -> Result<Option<String>, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query_scalar("SELECT password_hash FROM users WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await)
}

/// Changes the display name.
pub async fn update_display_name(db: &Db, id: Uuid, name: &DisplayName) -> Result<(), sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query(
        "UPDATE users SET display_name = $1, updated_at = $2 WHERE id = $3",
    )
    .bind(name.as_str())
    .bind(Timestamp::now())
    .bind(id)
    .execute(pool)
    .await
    .map(|_| ()))
}

/// Replaces the password hash.
pub async fn update_password_hash(db: &Db, id: Uuid, hash: &str) -> Result<(), sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query(
        "UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3",
    )
    .bind(hash)
    .bind(Timestamp::now())
    .bind(id)
    .execute(pool)
    .await
    .map(|_| ()))
}

/// Deletes an account and (by cascade) everything it owns.
pub async fn delete(db: &Db, id: Uuid) -> Result<bool, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query("DELETE FROM users WHERE id = $1")
        .bind(id)
        .execute(pool)
        .await
        .map(|r| r.rows_affected() == 1))
}

/// The account as exported to its owner.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
pub struct AccountRecord {
    /// Account id.
    pub id: Uuid,
    /// Email.
    pub email: String,
    /// Username.
    pub username: String,
    /// Display name.
    pub display_name: String,
    /// Registration time.
    pub created_at: Timestamp,
    /// Last change.
    pub updated_at: Timestamp,
}

/// The account's own fields (never the password hash).
pub async fn account(db: &Db, id: Uuid) -> Result<Option<AccountRecord>, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query_as(
        "SELECT id, email, username, display_name, created_at, updated_at FROM users WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await)
}
