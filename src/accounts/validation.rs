//! Validated account fields: handlers only ever see an [`Email`], [`Username`] or [`DisplayName`] that passed.

use std::fmt;

/// Longest email address accepted (RFC 5321's path limit).
const MAX_EMAIL: usize = 254;

/// A trimmed, lower-cased email address of plausible shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Trims and lower-cases; refuses what cannot be an address.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let email = raw.trim().to_lowercase();
        if email.is_empty() {
            return Err("Enter your email address.");
        }
        if email.chars().count() > MAX_EMAIL {
            return Err("An email address has at most 254 characters.");
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err("Enter an email address like name@example.com.");
        };
        let plausible = !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@')
            && !email.chars().any(|c| c.is_whitespace() || c.is_control());
        if !plausible {
            return Err("Enter an email address like name@example.com.");
        }
        Ok(Self(email))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// 3–20 characters of `a-z0-9_`, stored lower-case (so unique regardless of case).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    /// Lower-cases and checks the character set and length.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let username = raw.trim().to_lowercase();
        let length = username.chars().count();
        if !(3..=20).contains(&length) {
            return Err("Use 3 to 20 characters.");
        }
        if !username
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err("Use only letters a–z, digits and underscores.");
        }
        Ok(Self(username))
    }

    /// The normalised name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What companions call the user: 1–50 characters, any script, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    /// Trims and checks length and characters.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let name = raw.trim();
        if name.is_empty() {
            return Err("Enter the name your companions should call you.");
        }
        if name.chars().count() > 50 {
            return Err("Use at most 50 characters.");
        }
        if name.chars().any(char::is_control) {
            return Err("Remove control characters (such as tabs or line breaks).");
        }
        Ok(Self(name.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for DisplayName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A `next` target after sign-in, accepted only when it stays on this site.
pub fn local_path(next: &str) -> Option<&str> {
    let safe = next.starts_with('/')
        && !next.starts_with("//")
        && !next.starts_with("/\\")
        && !next.chars().any(|c| c.is_control() || c == '\\')
        && next.len() <= 2000;
    safe.then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(
            Email::parse("  Alice@Example.COM ")
                .expect("test setup is valid")
                .as_str(),
            "alice@example.com"
        );
        for bad in [
            "",
            "alice",
            "alice@",
            "@example.com",
            "a@b",
            "a b@c.de",
            "a@b@c.de",
            "a@.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(250))).is_err());
    }

    #[test]
    fn usernames_are_short_lower_case_words() {
        assert_eq!(
            Username::parse("Alice_01")
                .expect("test setup is valid")
                .as_str(),
            "alice_01"
        );
        for bad in ["ab", &"a".repeat(21), "alice!", "al ice", "ålice", ""] {
            assert!(Username::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn display_names_allow_any_script_but_no_control_characters() {
        assert_eq!(
            DisplayName::parse(" Zoë 山田 ")
                .expect("test setup is valid")
                .as_str(),
            "Zoë 山田"
        );
        assert!(DisplayName::parse("").is_err());
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse("a\u{0}b").is_err());
        assert!(DisplayName::parse("line\nbreak").is_err());
        assert!(DisplayName::parse(&"é".repeat(50)).is_ok());
        assert!(DisplayName::parse(&"é".repeat(51)).is_err());
    }

    #[test]
    fn only_local_paths_are_followed_after_sign_in() {
        assert_eq!(local_path("/companions?page=2"), Some("/companions?page=2"));
        for bad in [
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "companions",
            "/a\nb",
        ] {
            assert_eq!(local_path(bad), None, "{bad:?}");
        }
    }
}
