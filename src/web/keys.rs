//! The server's secret key, and the keys derived from it for each purpose (HMAC-SHA-256).
//!
//! Policy: one random 256-bit master secret lives in the database (`server_secrets`), created by whichever
//! instance needs it first, so every instance of a deployment shares it with no configuration; it is read
//! once per process. Each use gets its own key, `HMAC(master, purpose)`, so a value made for one purpose
//! (a rate-limit key, a device cookie, a pre-session) can never be passed off as another. Keyed hashes
//! instead of plain SHA-256 keep the tables free of anything guessable: an IPv4 address or a login name
//! cannot be found by hashing candidates without the secret.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::OnceCell;

use crate::db::{Db, Timestamp};
use crate::db_dispatch;

type HmacSha256 = Hmac<Sha256>;
/// The length of a digest (and of a sealed value's tag).
const TAG_BYTES: usize = 32;

/// What a derived key is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Keys of rate-limit windows.
    RateLimit,
    /// Keys of sign-in guards (failure counts and locks).
    LoginGuard,
    /// Signatures of device cookies (browsers that signed in before).
    DeviceCookie,
    /// Signatures of pre-session cookies (anonymous visitors' CSRF secrets).
    PreSession,
}

impl Purpose {
    fn label(self) -> &'static [u8] {
        match self {
            Self::RateLimit => b"companion-hub/rate-limit/v1",
            Self::LoginGuard => b"companion-hub/login-guard/v1",
            Self::DeviceCookie => b"companion-hub/device-cookie/v1",
            Self::PreSession => b"companion-hub/pre-session/v1",
        }
    }
}

/// A key for one purpose.
#[derive(Clone)]
pub struct Key([u8; 32]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(…)")
    }
}

impl Key {
    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        // HMAC takes keys of any length; a 32-byte key cannot fail.
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.0)
            .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
        for part in parts {
            // Length-prefixed, so ("ab", "c") and ("a", "bc") differ.
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac
    }

    /// The keyed digest of `parts`.
    pub fn digest(&self, parts: &[&[u8]]) -> [u8; 32] {
        self.mac(parts).finalize().into_bytes().into()
    }

    /// True when `tag` is the digest of `parts` (compared in constant time).
    pub fn verify(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        self.mac(parts).verify_slice(tag).is_ok()
    }

    /// `base64url(part₁ ‖ … ‖ partₙ ‖ HMAC(parts))`: a value (a cookie) only this key can have made.
    pub fn seal(&self, parts: &[&[u8]]) -> String {
        let mut value: Vec<u8> = parts.concat();
        value.extend_from_slice(&self.digest(parts));
        URL_SAFE_NO_PAD.encode(value)
    }

    /// The parts of a [`seal`](Self::seal)ed value, each as long as `lengths` says, when this key made it
    /// and not one bit changed since; `None` otherwise.
    pub fn open(&self, value: &str, lengths: &[usize]) -> Option<Vec<Vec<u8>>> {
        let bytes = URL_SAFE_NO_PAD.decode(value).ok()?;
        let payload_len: usize = lengths.iter().sum();
        if bytes.len() != payload_len + TAG_BYTES {
            return None;
        }
        let (payload, tag) = bytes.split_at(payload_len);
        let mut parts = Vec::with_capacity(lengths.len());
        let mut rest = payload;
        for length in lengths {
            let (part, tail) = rest.split_at(*length);
            parts.push(part);
            rest = tail;
        }
        self.verify(&parts, tag)
            .then(|| parts.into_iter().map(<[u8]>::to_vec).collect())
    }
}

/// The master secret, loaded (or created) on first use.
#[derive(Debug)]
pub struct ServerKeys {
    db: Db,
    master: OnceCell<[u8; 32]>,
}

impl ServerKeys {
    /// Keys kept in `db`; nothing is read until the first use (the schema may not be migrated yet).
    pub fn new(db: Db) -> Self {
        Self {
            db,
            master: OnceCell::new(),
        }
    }

    /// Keys from a known master secret (tests and benchmarks).
    pub fn fixed(db: Db, master: [u8; 32]) -> Self {
        Self {
            db,
            master: OnceCell::new_with(Some(master)),
        }
    }

    /// The key for `purpose`.
    pub async fn key(&self, purpose: Purpose) -> Result<Key, KeyError> {
        let master = self
            .master
            .get_or_try_init(|| load_or_create(&self.db))
            .await?;
        Ok(Key(Key(*master).digest(&[purpose.label()])))
    }
}

/// Why the keys are not available.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The database failed (or is not migrated).
    #[error("cannot read the server secret: {0}")]
    Database(#[from] sqlx::Error),
    /// The system's random source failed while creating the secret.
    #[error("cannot create the server secret: {0}")]
    Random(getrandom::Error),
    /// The stored secret is not 32 bytes.
    #[error("the stored server secret is damaged")]
    Damaged,
}

async fn load_or_create(db: &Db) -> Result<[u8; 32], KeyError> {
    let mut fresh = [0_u8; 32];
    getrandom::fill(&mut fresh).map_err(KeyError::Random)?;
    // The first instance to get here stores its secret; every other one reads that one.
    db_dispatch!(db, pool => sqlx::query(
        "INSERT INTO server_secrets (name, secret, created_at) VALUES ('master', $1, $2) \
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(fresh.to_vec())
    .bind(Timestamp::now())
    .execute(pool)
    .await
    .map(|_| ()))?;
    let stored: Vec<u8> = db_dispatch!(db, pool => sqlx::query_scalar(
        "SELECT secret FROM server_secrets WHERE name = 'master'",
    )
    .fetch_one(pool)
    .await)?;
    <[u8; 32]>::try_from(stored.as_slice()).map_err(|_| KeyError::Damaged)
}

/// A fixed key, for unit tests of what signs with one.
#[cfg(test)]
pub fn test_key(seed: u8) -> Key {
    Key([seed; 32])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_depend_on_the_key_and_every_part() {
        let a = Key([1; 32]);
        let b = Key([2; 32]);
        let digest = a.digest(&[b"203.0.113.9", b"alice"]);
        assert_ne!(digest, b.digest(&[b"203.0.113.9", b"alice"]), "another key");
        assert_ne!(
            digest,
            a.digest(&[b"203.0.113.", b"9alice"]),
            "parts are framed"
        );
        assert_ne!(digest, a.digest(&[b"203.0.113.9", b"alicf"]));
        assert!(a.verify(&[b"203.0.113.9", b"alice"], &digest));
        assert!(!a.verify(&[b"203.0.113.9", b"alice"], &digest[..31]));
        assert!(!b.verify(&[b"203.0.113.9", b"alice"], &digest));
    }

    #[test]
    fn purposes_derive_different_keys() {
        let master = Key([7; 32]);
        let rate = master.digest(&[Purpose::RateLimit.label()]);
        let device = master.digest(&[Purpose::DeviceCookie.label()]);
        assert_ne!(rate, device);
    }
}
