//! The password policy and the strength estimate shown by the meter (pure; no I/O).
//!
//! The browser meter (`static/js/password-meter.js`) implements the same rules over the same common-password
//! list (`static/data/common-passwords.txt`), so what the user sees while typing is what the server enforces.
//! Keep the two in step: the browser journey test compares them on sample passwords.

use std::collections::HashSet;
use std::sync::LazyLock;

/// Passwords shorter than this are refused.
pub const MIN_LENGTH: usize = 8;
/// Passwords longer than this are refused (and never hashed: Argon2 on megabytes is a DoS).
pub const MAX_LENGTH: usize = 128;
/// A password may not start or end with these (case-insensitive).
pub const COMMON_SEQUENCES: [&str; 3] = ["123456", "password", "qwerty"];

/// The 2,000 most common passwords, lower-case, one per line (from zxcvbn's frequency list, MIT).
static COMMON_PASSWORDS_TEXT: &str = include_str!("../../static/data/common-passwords.txt");
static COMMON_PASSWORDS: LazyLock<HashSet<&'static str>> =
    LazyLock::new(|| COMMON_PASSWORDS_TEXT.lines().map(str::trim).collect());

/// One rule a password can break.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// 8–128 characters.
    Length,
    /// At least one upper-case letter.
    Uppercase,
    /// At least one lower-case letter.
    Lowercase,
    /// At least one digit.
    Digit,
    /// At least one character that is not a letter or digit.
    Other,
    /// Starts or ends with 123456, password or qwerty.
    CommonSequence,
    /// One of the most common passwords.
    CommonPassword,
}

impl Rule {
    /// Stable name, shared with the browser meter.
    pub fn code(self) -> &'static str {
        match self {
            Self::Length => "length",
            Self::Uppercase => "uppercase",
            Self::Lowercase => "lowercase",
            Self::Digit => "digit",
            Self::Other => "other",
            Self::CommonSequence => "common_sequence",
            Self::CommonPassword => "common_password",
        }
    }

    /// What the user has to change, as shown beside the field.
    pub fn message(self) -> &'static str {
        match self {
            Self::Length => "Use 8 to 128 characters.",
            Self::Uppercase => "Add an upper-case letter.",
            Self::Lowercase => "Add a lower-case letter.",
            Self::Digit => "Add a digit.",
            Self::Other => "Add a symbol or space (something that is not a letter or digit).",
            Self::CommonSequence => {
                "Do not start or end with a common sequence such as 123456, password or qwerty."
            }
            Self::CommonPassword => "This is one of the most common passwords; choose another.",
        }
    }
}

/// Every rule `password` breaks, in a stable order (empty when it is acceptable).
pub fn violations(password: &str) -> Vec<Rule> {
    let length = password.chars().count();
    let lower = password.to_lowercase();
    let mut broken = Vec::new();
    if !(MIN_LENGTH..=MAX_LENGTH).contains(&length) {
        broken.push(Rule::Length);
    }
    if !password.chars().any(char::is_uppercase) {
        broken.push(Rule::Uppercase);
    }
    if !password.chars().any(char::is_lowercase) {
        broken.push(Rule::Lowercase);
    }
    if !password.chars().any(|c| c.is_ascii_digit()) {
        broken.push(Rule::Digit);
    }
    if !password
        .chars()
        .any(|c| !c.is_uppercase() && !c.is_lowercase() && !c.is_ascii_digit())
    {
        broken.push(Rule::Other);
    }
    if COMMON_SEQUENCES
        .iter()
        .any(|seq| lower.starts_with(seq) || lower.ends_with(seq))
    {
        broken.push(Rule::CommonSequence);
    }
    if COMMON_PASSWORDS.contains(lower.as_str()) {
        broken.push(Rule::CommonPassword);
    }
    broken
}

/// What the meter shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Strength {
    /// 0 (very weak) to 4 (very strong).
    pub score: u8,
    /// The score in words.
    pub label: &'static str,
    /// What to change, most important first.
    pub feedback: Vec<&'static str>,
}

/// Score and feedback for the meter: acceptable passwords score 2–4 by length.
pub fn strength(password: &str) -> Strength {
    let broken = violations(password);
    let length = password.chars().count();
    let score: u8 = if !broken.is_empty() {
        if length < MIN_LENGTH || broken.len() >= 3 {
            0
        } else {
            1
        }
    } else if length >= 16 {
        4
    } else if length >= 12 {
        3
    } else {
        2
    };
    let mut feedback: Vec<&'static str> = broken.iter().map(|rule| rule.message()).collect();
    if broken.is_empty() && score < 4 {
        feedback.push("Longer is stronger: 16 characters or a few random words are best.");
    }
    Strength {
        score,
        label: ["Very weak", "Weak", "Fair", "Strong", "Very strong"][usize::from(score)],
        feedback,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "Tulip-Garden-42";

    #[test]
    fn a_good_password_breaks_no_rule() {
        assert_eq!(violations(GOOD), vec![]);
    }

    #[test]
    fn length_rule() {
        assert!(violations("Ab1!xyz").contains(&Rule::Length));
        assert!(!violations("Ab1!wxyz").contains(&Rule::Length));
        let long = format!("Ab1!{}", "x".repeat(125));
        assert!(violations(&long).contains(&Rule::Length));
        let max = format!("Ab1!{}", "x".repeat(124));
        assert!(!violations(&max).contains(&Rule::Length));
        // Characters, not bytes.
        assert!(!violations("Äb1!éééé").contains(&Rule::Length));
    }

    #[test]
    fn uppercase_rule() {
        assert_eq!(violations("tulip-garden-42"), vec![Rule::Uppercase]);
    }

    #[test]
    fn lowercase_rule() {
        assert_eq!(violations("TULIP-GARDEN-42"), vec![Rule::Lowercase]);
    }

    #[test]
    fn digit_rule() {
        assert_eq!(violations("Tulip-Garden-xx"), vec![Rule::Digit]);
    }

    #[test]
    fn other_character_rule() {
        assert_eq!(violations("TulipGarden42"), vec![Rule::Other]);
        assert_eq!(violations("Tulip Garden 42"), vec![], "a space counts");
    }

    #[test]
    fn common_sequence_rule_at_either_end() {
        assert!(violations("Password-Tulip-42").contains(&Rule::CommonSequence));
        assert!(violations("Tulip-Garden!qwerty").contains(&Rule::CommonSequence));
        assert!(violations("123456-Tulip-Garden").contains(&Rule::CommonSequence));
        assert!(!violations("Tulip-123456-Garden").contains(&Rule::CommonSequence));
    }

    #[test]
    fn common_password_rule() {
        assert!(violations("trustno1").contains(&Rule::CommonPassword));
        assert!(
            violations("Superman").contains(&Rule::CommonPassword),
            "case-insensitive"
        );
        assert!(COMMON_PASSWORDS.len() >= 1000);
    }

    #[test]
    fn every_broken_rule_is_reported_at_once() {
        assert_eq!(
            violations("password"),
            vec![
                Rule::Uppercase,
                Rule::Digit,
                Rule::Other,
                Rule::CommonSequence,
                Rule::CommonPassword
            ]
        );
        assert_eq!(violations("").len(), 5);
    }

    #[test]
    fn strength_grows_with_length_once_the_rules_pass() {
        assert_eq!(strength("").score, 0);
        assert_eq!(strength("Tulip-Ga1").score, 2);
        assert_eq!(strength("Tulip-Garden-4").score, 3);
        assert_eq!(strength("Tulip-Garden-42-Moon").score, 4);
        assert_eq!(strength("tulipgarden42").score, 1);
        assert!(strength("Tulip-Ga1").feedback[0].starts_with("Longer"));
        assert!(strength("Tulip-Garden-42-Moon").feedback.is_empty());
        assert_eq!(strength("Tulip-Garden-42-Moon").label, "Very strong");
    }
}
