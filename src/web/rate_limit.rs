//! Rate limits per action, counted in the database so every instance shares them and restarts keep them.
//!
//! Policy: fixed windows; one atomic upsert increments the counter and returns the new count, so
//! concurrent requests can never both take the last slot (no read-then-write). Keys are keyed hashes
//! (HMAC with the server's secret, [`super::keys`]), so the table holds no IP addresses or login names and
//! they cannot be recovered by hashing candidates (every IPv4 address can be). Clients are counted by
//! address, IPv6 clients by their /64 ([`super::ClientIp::rate_key`]). When the database fails the limiter
//! fails closed (503): an outage must not switch brute-force protection off.

use std::sync::Arc;
use std::time::Duration;

use super::keys::{Purpose, ServerKeys};
use crate::config::{RateLimit, RateLimits};
use crate::db::{Db, Timestamp};
use crate::db_dispatch;
use crate::error::AppError;

/// An action with its own limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Login attempts per IP + identifier.
    Login,
    /// Login attempts per IP.
    LoginIp,
    /// Registrations per IP.
    Register,
    /// Chat messages per user.
    Chat,
    /// Image generations per user.
    Image,
    /// Companions created per user.
    CompanionCreate,
    /// Companion edits, portraits, resets and deletions per user (shares the settings limit's size).
    CompanionChange,
    /// Settings changes per user.
    Settings,
}

impl Action {
    /// Stable name, used in the table and as a metric label.
    pub fn name(self) -> &'static str {
        match self {
            Self::Login => "login",
            Self::LoginIp => "login_ip",
            Self::Register => "register",
            Self::Chat => "chat",
            Self::Image => "image",
            Self::CompanionCreate => "companion_create",
            Self::CompanionChange => "companion_change",
            Self::Settings => "settings",
        }
    }

    fn limit(self, limits: &RateLimits) -> Option<RateLimit> {
        match self {
            Self::Login => limits.login,
            Self::LoginIp => limits.login_ip,
            Self::Register => limits.register,
            Self::Chat => limits.chat,
            Self::Image => limits.image,
            Self::CompanionCreate => limits.companion_create,
            Self::CompanionChange | Self::Settings => limits.settings,
        }
    }

    fn what(self) -> &'static str {
        match self {
            Self::Login | Self::LoginIp => "login attempts",
            Self::Register => "new accounts from your network",
            Self::Chat => "messages",
            Self::Image => "image generations",
            Self::CompanionCreate => "new companions",
            Self::CompanionChange => "companion changes",
            Self::Settings => "settings changes",
        }
    }
}

/// Counts hits per action and key.
#[derive(Clone)]
pub struct RateLimiter {
    db: Db,
    limits: RateLimits,
    keys: Arc<ServerKeys>,
}

impl RateLimiter {
    /// A limiter over `db` with the configured limits, hashing keys with the server's `keys`.
    pub fn new(db: Db, limits: RateLimits, keys: Arc<ServerKeys>) -> Self {
        Self { db, limits, keys }
    }

    /// Counts one hit of `action` by `key`; 429 when over the limit, 503 when the count cannot be kept.
    pub async fn hit(&self, action: Action, key: &str) -> Result<(), AppError> {
        let Some(limit) = action.limit(&self.limits) else {
            return Ok(());
        };
        let now = Timestamp::now();
        let (count, resets_at) = self
            .increment(action, key, limit.window, now)
            .await
            .map_err(|err: anyhow::Error| {
                tracing::error!(action = action.name(), error = %err, "rate limit store failed; refusing");
                AppError::Unavailable {
                    code: "rate_limit_unavailable",
                    message: "This action is temporarily unavailable. Please try again in a minute."
                        .into(),
                }
            })?;
        if count <= i64::from(limit.max) {
            return Ok(());
        }
        metrics::counter!("rate_limit_rejections_total", "action" => action.name()).increment(1);
        let seconds = now.seconds_until(resets_at).max(1);
        Err(AppError::RateLimited {
            retry_after: Duration::from_secs(seconds),
            message: format!(
                "Too many {} ({} per {}). Please try again in {}.",
                action.what(),
                limit.max,
                human_duration(limit.window),
                human_duration(Duration::from_secs(seconds)),
            ),
        })
    }

    async fn increment(
        &self,
        action: Action,
        key: &str,
        window: Duration,
        now: Timestamp,
    ) -> anyhow::Result<(i64, Timestamp)> {
        let key_hash = self
            .keys
            .key(Purpose::RateLimit)
            .await?
            .digest(&[action.name().as_bytes(), key.as_bytes()])
            .to_vec();
        Ok(
            db_dispatch!(&self.db, pool => sqlx::query_as::<_, (i64, Timestamp)>(
            "INSERT INTO rate_limits (action, key_hash, count, window_ends_at) VALUES ($1, $2, 1, $3) \
             ON CONFLICT (action, key_hash) DO UPDATE SET \
                 count = CASE WHEN rate_limits.window_ends_at <= $4 THEN 1 ELSE rate_limits.count + 1 END, \
                 window_ends_at = CASE WHEN rate_limits.window_ends_at <= $4 \
                     THEN excluded.window_ends_at ELSE rate_limits.window_ends_at END \
             RETURNING count, window_ends_at",
        )
        .bind(action.name())
        .bind(key_hash)
        .bind(now + window)
        .bind(now)
        .fetch_one(pool)
        .await)?,
        )
    }

    /// Deletes windows that have ended.
    pub async fn purge_expired(&self, now: Timestamp) -> Result<u64, sqlx::Error> {
        db_dispatch!(&self.db, pool => sqlx::query(
            "DELETE FROM rate_limits WHERE window_ends_at <= $1",
        )
        .bind(now)
        .execute(pool)
        .await
        .map(|r| r.rows_affected()))
    }
}

/// "15 minutes", "1 hour", "45 seconds": the largest whole unit, for messages.
pub fn human_duration(duration: Duration) -> String {
    let seconds = duration.as_secs().max(1);
    let (amount, unit) = if seconds >= 86_400 && seconds.is_multiple_of(86_400) {
        (seconds / 86_400, "day")
    } else if seconds >= 3600 && seconds.is_multiple_of(3600) {
        (seconds / 3600, "hour")
    } else if seconds >= 60 {
        (seconds.div_ceil(60), "minute")
    } else {
        (seconds, "second")
    };
    format!("{amount} {unit}{}", if amount == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(Duration::from_secs(1)), "1 second");
        assert_eq!(human_duration(Duration::from_secs(45)), "45 seconds");
        assert_eq!(human_duration(Duration::from_secs(15 * 60)), "15 minutes");
        assert_eq!(human_duration(Duration::from_secs(61)), "2 minutes");
        assert_eq!(human_duration(Duration::from_secs(3600)), "1 hour");
        assert_eq!(human_duration(Duration::from_secs(86_400)), "1 day");
    }
}
