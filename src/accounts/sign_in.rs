//! Deciding a sign-in attempt: rate limits, the password check, lockout, device cookies (the service the
//! login page calls; it renders nothing).
//!
//! Policy (docs/security.md, "Sign-in"):
//! - Unknown identifiers behave exactly like known ones: the same Argon2 verification (against a dummy
//!   hash), the same failure counting, the same 401 and, at the threshold, the same 423 — so neither the
//!   answers nor their timing say whether an account exists.
//! - Failures are counted per identifier as typed (any case; the username and the email of one account are
//!   two identifiers), for browsers without a device cookie of that account. `LOCKOUT_THRESHOLD` failures
//!   within `LOCKOUT_MINUTES` lock the identifier for `LOCKOUT_MINUTES`, even for the right password.
//! - A browser that signed in to the account before carries a device cookie and is counted on its own
//!   (that cookie locks after the same number of failures): someone guessing from elsewhere can lock out
//!   every new browser, but not the owner's own.
//! - A success forgets the failures of the guard it passed and issues a fresh device cookie.

use uuid::Uuid;

use super::{device, guards, password, store};
use crate::db::{Db, Timestamp};
use crate::error::AppError;
use crate::state::AppState;
use crate::web::keys::Purpose;
use crate::web::{Action, ClientIp, SessionUser};

/// How an attempt ended.
#[derive(Debug)]
pub enum Outcome {
    /// The password is right and nothing is locked: sign the user in and set this device cookie.
    SignedIn {
        /// The account.
        user: SessionUser,
        /// The new device cookie value.
        device_cookie: String,
    },
    /// Wrong identifier or password (indistinguishable).
    Refused,
    /// The identifier (or this browser's device cookie) is locked until then.
    Locked {
        /// When the lock ends.
        until: Timestamp,
    },
}

/// Which guard an attempt is counted against.
struct Guard {
    key: Vec<u8>,
    user: Option<Uuid>,
    trusted_device: bool,
}

/// Decides one attempt of `identifier` and `password` from `ip`, by a browser holding `device_cookie`.
/// Rate limits answer [`AppError::RateLimited`].
pub async fn attempt(
    state: &AppState,
    ip: ClientIp,
    identifier: &str,
    password: String,
    device_cookie: Option<&str>,
) -> Result<Outcome, AppError> {
    let normalised = identifier.trim().to_lowercase();
    let ip_key = ip.rate_key();
    state.rate_limiter.hit(Action::LoginIp, &ip_key).await?;
    state
        .rate_limiter
        .hit(Action::Login, &format!("{ip_key}|{normalised}"))
        .await?;

    let credentials = if normalised.is_empty() {
        None
    } else {
        store::find_credentials(&state.db, &normalised).await?
    };
    // Always one verification, against a dummy hash when there is no account: the same time either way.
    let password_ok = password::verify(
        &state.counters,
        password,
        credentials.as_ref().map(|c| c.password_hash.clone()),
    )
    .await?;
    let account = credentials.as_ref().map(|c| c.id);
    let guard = guard_for(state, &normalised, account, device_cookie).await?;
    let now = Timestamp::now();
    let auth = &state.config.auth;

    if let Some(until) = guards::locked_until(&state.db, &guard.key, now).await? {
        metrics::counter!("login_attempts_total", "outcome" => "locked").increment(1);
        return Ok(Outcome::Locked { until });
    }
    let Some(account) = credentials.filter(|_| password_ok) else {
        metrics::counter!("login_attempts_total", "outcome" => "failure").increment(1);
        metrics::counter!("login_failures_total").increment(1);
        let locked = guards::record_failure(
            &state.db,
            &guard.key,
            guard.user,
            auth.lockout_threshold,
            auth.lock_duration(),
            now,
        )
        .await?;
        return Ok(match locked {
            Some(until) => {
                tracing::warn!(
                    user_id = ?guard.user,
                    trusted_device = guard.trusted_device,
                    minutes = auth.lockout_minutes,
                    "sign-in locked after repeated failures"
                );
                metrics::counter!("account_lockouts_total").increment(1);
                Outcome::Locked { until }
            }
            None => Outcome::Refused,
        });
    };

    guards::clear(&state.db, &guard.key).await?;
    let device_cookie = device_cookie_for(state, account.id).await?;
    metrics::counter!("login_attempts_total", "outcome" => "success").increment(1);
    Ok(Outcome::SignedIn {
        user: SessionUser {
            id: account.id,
            username: account.username,
            display_name: account.display_name,
        },
        device_cookie,
    })
}

/// A fresh device cookie value for a browser `user` just signed in with (or registered from).
pub async fn device_cookie_for(state: &AppState, user: Uuid) -> Result<String, AppError> {
    let device_key = state
        .keys
        .key(Purpose::DeviceCookie)
        .await
        .map_err(internal)?;
    device::issue(&device_key, user).map_err(|err| {
        AppError::Internal(anyhow::anyhow!("no randomness for a device cookie: {err}"))
    })
}

/// The guard of this attempt: this browser's device cookie when it belongs to the account, else the
/// identifier as typed.
async fn guard_for(
    state: &AppState,
    normalised: &str,
    account: Option<Uuid>,
    device_cookie: Option<&str>,
) -> Result<Guard, AppError> {
    let guard_key = state
        .keys
        .key(Purpose::LoginGuard)
        .await
        .map_err(internal)?;
    if let (Some(account), Some(value)) = (account, device_cookie) {
        let device_key = state
            .keys
            .key(Purpose::DeviceCookie)
            .await
            .map_err(internal)?;
        if let Some(device) = device::read(&device_key, value).filter(|d| d.user == account) {
            return Ok(Guard {
                key: guard_key
                    .digest(&[b"device".as_slice(), &device.nonce])
                    .to_vec(),
                user: Some(account),
                trusted_device: true,
            });
        }
    }
    Ok(Guard {
        key: guard_key
            .digest(&[b"identifier".as_slice(), normalised.as_bytes()])
            .to_vec(),
        user: account,
        trusted_device: false,
    })
}

fn internal(err: crate::web::keys::KeyError) -> AppError {
    AppError::Internal(anyhow::anyhow!(err))
}

/// Lifts every lock of the account `identifier` names (the `unlock-user` command); its username, or
/// `None` when no account matches.
pub async fn unlock(db: &Db, identifier: &str) -> Result<Option<String>, sqlx::Error> {
    let Some(account) = store::find_credentials(db, identifier).await? else {
        return Ok(None);
    };
    guards::clear_for_user(db, account.id).await?;
    Ok(Some(account.username))
}
