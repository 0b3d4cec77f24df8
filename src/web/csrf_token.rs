//! CSRF tokens (pure): a session's 256-bit secret masked with fresh randomness for each page, and the
//! constant-time check of a presented token. A leaf, so sessions (which make tokens) and the CSRF
//! middleware (which checks them) share it without importing each other.
//!
//! A token is `base64url(mask ‖ mask⊕secret)`, so it differs on every page (no BREACH-style leak through
//! compression) while all of them stay valid for the session. Without randomness there is no token: the
//! error goes up, never the bare secret.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use subtle::ConstantTimeEq;

/// A freshly masked token for `secret`; an error when the system has no randomness to mask it with.
pub fn mask(secret: &[u8; 32]) -> Result<String, getrandom::Error> {
    let mut mask = [0_u8; 32];
    getrandom::fill(&mut mask)?;
    Ok(masked(secret, &mask))
}

fn masked(secret: &[u8; 32], mask: &[u8; 32]) -> String {
    let mut token = [0_u8; 64];
    token[..32].copy_from_slice(mask);
    for (i, byte) in secret.iter().enumerate() {
        token[32 + i] = byte ^ mask[i];
    }
    URL_SAFE_NO_PAD.encode(token)
}

/// True when `token` unmasks to `secret` (constant time in the secret's content).
pub fn matches(secret: &[u8; 32], token: &str) -> bool {
    let Ok(bytes) = URL_SAFE_NO_PAD.decode(token.trim()) else {
        return false;
    };
    if bytes.len() != 64 {
        return false;
    }
    let unmasked: Vec<u8> = bytes[..32]
        .iter()
        .zip(&bytes[32..])
        .map(|(mask, masked)| mask ^ masked)
        .collect();
    unmasked.ct_eq(secret).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_tokens_differ_but_all_match() {
        let secret = [7_u8; 32];
        let a = mask(&secret).expect("randomness");
        let b = mask(&secret).expect("randomness");
        assert_ne!(a, b);
        assert!(matches(&secret, &a));
        assert!(matches(&secret, &b));
    }

    #[test]
    fn tokens_of_another_secret_or_malformed_ones_do_not_match() {
        let secret = [7_u8; 32];
        let other = [8_u8; 32];
        assert!(!matches(&secret, &mask(&other).expect("randomness")));
        assert!(!matches(&secret, ""));
        assert!(!matches(&secret, "not base64 !!"));
        assert!(!matches(&secret, &URL_SAFE_NO_PAD.encode([0_u8; 63])));
        // An unmasked secret (mask of zeros) with the wrong length is refused too.
        assert!(!matches(&secret, &URL_SAFE_NO_PAD.encode(secret)));
    }

    #[test]
    fn a_token_never_shows_the_secret_itself() {
        // With a zero mask the second half would be the bare secret: the mask always comes from the
        // system's randomness, and without it there is no token at all (mask() returns the error).
        let secret = [7_u8; 32];
        let token = mask(&secret).expect("randomness");
        let bytes = URL_SAFE_NO_PAD.decode(token).expect("base64");
        assert_ne!(&bytes[32..], &secret[..]);
        assert_eq!(
            masked(&secret, &[0; 32]),
            URL_SAFE_NO_PAD.encode([[0_u8; 32], secret].concat())
        );
    }
}
