//! Pre-sessions: an anonymous visitor's CSRF secret, kept in a signed cookie instead of a database row.
//!
//! Opening `/login` or `/register` must give the forms a CSRF token, but must not let anyone make the server
//! store something per visit. So the secret travels in the `presession` cookie (HttpOnly, SameSite=Lax,
//! `__Host-` behind HTTPS) as `base64url(secret ‖ expiry ‖ HMAC(key, secret ‖ expiry))`: only this server can
//! make one, it lapses after [`super::PRE_SESSION_LIFETIME`], and a forged or altered one is ignored. The
//! form's token is the masked secret, as for sessions (the signed double-submit pattern). Sign-in replaces
//! it with a real session and clears the cookie.

use std::time::Duration;

use uuid::Uuid;

use super::Session;
use crate::db::Timestamp;
use crate::web::keys::Key;

const SECRET_BYTES: usize = 32;
const EXPIRY_BYTES: usize = 8;

/// A new pre-session living `lifetime`, and its cookie value.
pub fn issue(
    key: &Key,
    now: Timestamp,
    lifetime: Duration,
) -> Result<(Session, String), getrandom::Error> {
    let mut secret = [0_u8; SECRET_BYTES];
    getrandom::fill(&mut secret)?;
    let expires_at = now + lifetime;
    let expiry = expires_at.unix_seconds().to_be_bytes();
    let value = key.seal(&[&secret, &expiry]);
    Ok((session(secret, now, expires_at), value))
}

/// The pre-session a cookie value stands for, when it is ours, unaltered and not expired.
pub fn read(key: &Key, value: &str, now: Timestamp) -> Option<Session> {
    let parts = key.open(value, &[SECRET_BYTES, EXPIRY_BYTES])?;
    let expiry: [u8; EXPIRY_BYTES] = parts[1].as_slice().try_into().ok()?;
    let expires_at = Timestamp::from_unix_seconds(i64::from_be_bytes(expiry))?;
    if expires_at <= now {
        return None;
    }
    let secret: [u8; SECRET_BYTES] = parts[0].as_slice().try_into().ok()?;
    Some(session(secret, now, expires_at))
}

fn session(csrf_secret: [u8; SECRET_BYTES], now: Timestamp, expires_at: Timestamp) -> Session {
    Session {
        // A pre-session has no row, so no id to list or revoke.
        id: Uuid::nil(),
        user: None,
        csrf_secret,
        created_at: now,
        expires_at,
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;
    use crate::web::keys::test_key;

    #[test]
    fn a_pre_session_reads_back_with_the_same_secret() {
        let key = test_key(1);
        let now = Timestamp::now();
        let (session, value) = issue(&key, now, Duration::from_secs(60)).expect("randomness");
        let read = read(&key, &value, now).expect("valid");
        let token = session.csrf_token().expect("randomness");
        assert!(read.csrf_token_matches(&token), "the same secret");
        assert!(read.is_pre_session());
    }

    #[test]
    fn forged_altered_foreign_or_expired_values_are_ignored() {
        let key = test_key(1);
        let now = Timestamp::now();
        let (_, value) = issue(&key, now, Duration::from_secs(60)).expect("randomness");
        assert!(
            read(&test_key(2), &value, now).is_none(),
            "another server's key"
        );
        let mut bytes = URL_SAFE_NO_PAD.decode(&value).expect("base64");
        bytes[SECRET_BYTES + 7] ^= 1; // a later expiry
        assert!(read(&key, &URL_SAFE_NO_PAD.encode(&bytes), now).is_none());
        assert!(read(&key, "garbage", now).is_none());
        assert!(
            read(&key, &value, now + Duration::from_secs(61)).is_none(),
            "expired"
        );
    }
}
