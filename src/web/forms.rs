//! Per-field messages for forms that are re-rendered with their errors (422).

use crate::error::FieldErrors;

/// Messages per form field, in the order they were added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FormErrors(FieldErrors);

impl FormErrors {
    /// No errors yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a message to `field`.
    pub fn add(&mut self, field: &str, message: impl Into<String>) {
        self.0
            .entry(field.to_owned())
            .or_default()
            .push(message.into());
    }

    /// True when no field has a message.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// True when `field` has a message (templates mark the input invalid).
    pub fn has(&self, field: &str) -> bool {
        self.0.contains_key(field)
    }

    /// The messages of `field` (empty when none).
    pub fn field(&self, field: &str) -> &[String] {
        self.0.get(field).map_or(&[], Vec::as_slice)
    }

    /// The fields that have messages.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// Adds every message of `other`.
    pub fn extend(&mut self, other: FormErrors) {
        for (field, messages) in other.0 {
            self.0.entry(field).or_default().extend(messages);
        }
    }

    /// The messages as the JSON error shape's `fields`.
    pub fn into_inner(self) -> FieldErrors {
        self.0
    }

    /// The 422 error carrying these messages.
    pub fn into_error(self) -> crate::error::AppError {
        crate::error::AppError::Validation {
            message: "Some fields are not valid; see the messages beside them.".into(),
            fields: self.0,
        }
    }

    /// The messages of a 422 error, back as form errors (to re-render a form).
    pub fn from_fields(fields: FieldErrors) -> Self {
        Self(fields)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_collect_per_field() {
        let mut errors = FormErrors::new();
        assert!(errors.is_empty());
        errors.add("password", "Add a digit.");
        errors.add("password", "Add a symbol.");
        assert!(errors.has("password") && !errors.has("email"));
        assert_eq!(errors.field("password").len(), 2);
        assert!(errors.field("email").is_empty());
        assert_eq!(errors.into_inner().len(), 1);
    }
}
