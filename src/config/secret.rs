//! Secret strings (API keys, tokens, database URLs with passwords) that must never reach a log or a terminal.

use std::fmt;

/// A configuration value that is never printed: `Debug` and `Display` show a placeholder.
///
/// The only way to read it is [`Secret::expose`], which makes every use greppable.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for the one place that must send it somewhere.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Replaces the password of a URL (`postgres://user:pw@host/db`) with `***` so it can be shown.
///
/// Anything that does not parse as a URL is returned unchanged when it has no `@`, and fully masked otherwise.
pub fn redact_url(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut parsed) if parsed.password().is_some() => {
            // set_password only fails for URLs that cannot have credentials, and this one has them.
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => raw.to_owned(),
        Err(_) if raw.contains('@') => "[redacted]".to_owned(),
        Err(_) => raw.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_shows_its_value() {
        let secret = Secret::new("sk-very-secret");
        assert!(!format!("{secret:?}").contains("very"));
        assert!(!format!("{secret}").contains("very"));
        assert_eq!(secret.expose(), "sk-very-secret");
    }

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact_url("postgres://app:hunter2@db.example:5432/hub"),
            "postgres://app:***@db.example:5432/hub"
        );
        assert_eq!(
            redact_url("sqlite://data/companion-hub.db"),
            "sqlite://data/companion-hub.db"
        );
        assert_eq!(redact_url("not a url with user:pw@host"), "[redacted]");
    }
}
