//! What a run is and where it stands (pure): its kind and status as enums, and the one place their
//! words — stored in `chat_runs`, sent in `progress` events — are spelled.

use std::fmt;

/// The `chat_runs.status` values of a run that is not finished, as an SQL list (`status IN …`).
/// A macro, so queries stay string literals (`concat!`); a test keeps it equal to [`RunStatus::ACTIVE`].
macro_rules! active_run_statuses {
    () => {
        "('queued', 'responding', 'analyzing', 'imaging')"
    };
}
pub(crate) use active_run_statuses;

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunStatus {
    /// Waiting for the engine.
    Queued,
    /// The reply is being written.
    Responding,
    /// The scene analysis runs.
    Analyzing,
    /// The picture is being made.
    Imaging,
    /// Done; the reply is stored.
    Completed,
    /// Ended by an error (Retry may help).
    Failed,
    /// Stopped by the user (or the conversation went away).
    Cancelled,
}

impl RunStatus {
    /// Every status of a run that is not finished.
    pub const ACTIVE: [Self; 4] = [
        Self::Queued,
        Self::Responding,
        Self::Analyzing,
        Self::Imaging,
    ];
    const ALL: [Self; 7] = [
        Self::Queued,
        Self::Responding,
        Self::Analyzing,
        Self::Imaging,
        Self::Completed,
        Self::Failed,
        Self::Cancelled,
    ];

    /// The stored and sent word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Responding => "responding",
            Self::Analyzing => "analyzing",
            Self::Imaging => "imaging",
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    /// True until completed, failed or cancelled.
    pub fn is_active(self) -> bool {
        Self::ACTIVE.contains(&self)
    }
}

/// What a run does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RunKind {
    /// Answer a user message (and maybe paint the scene).
    Reply,
    /// Only make the picture of an existing reply again.
    Image,
}

impl RunKind {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reply => "reply",
            Self::Image => "image",
        }
    }
}

/// A stored word that is not one of ours (a newer schema, or a hand-edited row).
#[derive(Debug, thiserror::Error)]
#[error("unknown run {what} {value:?}")]
pub struct UnknownWord {
    what: &'static str,
    value: String,
}

impl TryFrom<String> for RunStatus {
    type Error = UnknownWord;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::ALL
            .into_iter()
            .find(|status| status.as_str() == value)
            .ok_or(UnknownWord {
                what: "status",
                value,
            })
    }
}

impl TryFrom<String> for RunKind {
    type Error = UnknownWord;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        [Self::Reply, Self::Image]
            .into_iter()
            .find(|kind| kind.as_str() == value)
            .ok_or(UnknownWord {
                what: "kind",
                value,
            })
    }
}

impl serde::Serialize for RunStatus {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl fmt::Display for RunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sql_list_of_active_statuses_is_the_enums() {
        let listed: Vec<String> = RunStatus::ACTIVE
            .iter()
            .map(|status| format!("'{}'", status.as_str()))
            .collect();
        assert_eq!(active_run_statuses!(), format!("({})", listed.join(", ")));
    }

    #[test]
    fn every_word_reads_back_and_strangers_are_refused() {
        for status in RunStatus::ALL {
            assert_eq!(
                RunStatus::try_from(status.as_str().to_owned()).ok(),
                Some(status)
            );
        }
        for kind in [RunKind::Reply, RunKind::Image] {
            assert_eq!(RunKind::try_from(kind.as_str().to_owned()).ok(), Some(kind));
        }
        assert!(RunStatus::try_from("paused".to_owned()).is_err());
        assert!(RunKind::try_from("".to_owned()).is_err());
        assert!(!RunStatus::Completed.is_active() && RunStatus::Imaging.is_active());
    }
}
