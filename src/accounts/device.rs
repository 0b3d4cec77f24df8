//! Device cookies (OWASP's scheme against online guessing): a browser that signed in successfully carries
//! a signed token naming the account, so its attempts are counted apart from everyone else's (pure).
//!
//! The value is `base64url(user id ‖ nonce ‖ HMAC(key, user id ‖ nonce))`. Only this server can make
//! one; a cookie for another account, or altered in any bit, counts as no cookie at all. Each successful
//! sign-in issues a fresh one (a new nonce), so a locked cookie is replaced as soon as its owner gets in.

use uuid::Uuid;

use crate::web::keys::Key;

const ID_BYTES: usize = 16;
const NONCE_BYTES: usize = 16;

/// A valid device cookie's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Device {
    /// The account that signed in from this browser.
    pub user: Uuid,
    /// What tells this browser's cookie from others of the same account.
    pub nonce: [u8; NONCE_BYTES],
}

/// A new device cookie value for `user`.
pub fn issue(key: &Key, user: Uuid) -> Result<String, getrandom::Error> {
    let mut nonce = [0_u8; NONCE_BYTES];
    getrandom::fill(&mut nonce)?;
    Ok(key.seal(&[user.as_bytes(), &nonce]))
}

/// The device a cookie value stands for, when it is ours and unaltered.
pub fn read(key: &Key, value: &str) -> Option<Device> {
    let parts = key.open(value, &[ID_BYTES, NONCE_BYTES])?;
    Some(Device {
        user: Uuid::from_slice(&parts[0]).ok()?,
        nonce: parts[1].as_slice().try_into().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;
    use crate::web::keys::test_key;

    #[test]
    fn a_cookie_names_its_account_and_nothing_else_passes() {
        let key = test_key(3);
        let alice = Uuid::now_v7();
        let value = issue(&key, alice).expect("randomness");
        let device = read(&key, &value).expect("valid");
        assert_eq!(device.user, alice);
        assert_ne!(
            issue(&key, alice).expect("randomness"),
            value,
            "a new nonce each time"
        );
        assert!(read(&test_key(4), &value).is_none(), "another server");
        let mut bytes = URL_SAFE_NO_PAD.decode(&value).expect("base64");
        bytes[0] ^= 1; // another account id
        assert!(read(&key, &URL_SAFE_NO_PAD.encode(&bytes)).is_none());
        assert!(read(&key, "").is_none() && read(&key, "!!").is_none());
    }
}
