//! Why a step did not complete, and what the user is told for each kind of model or database trouble.

use crate::providers::llm::LlmError;

/// Why a step did not complete.
#[derive(Debug)]
pub enum StepError {
    /// Stop was pressed.
    Cancelled,
    /// This execution no longer holds the run: another instance took it over, or it ended another way (a
    /// Stop through another instance, the conversation deleted). It stops writing at once.
    NotHeld,
    /// The step failed; the run fails with this error.
    Failed {
        /// Stable code for the error event.
        code: &'static str,
        /// Human-readable message.
        message: String,
        /// Whether Retry can help.
        retryable: bool,
    },
}

impl StepError {
    /// The answer of a fenced write as a step's result: `NotHeld` when it changed nothing.
    pub(super) fn held(still: bool) -> Result<(), Self> {
        if still { Ok(()) } else { Err(Self::NotHeld) }
    }

    pub(super) fn failed(code: &'static str, message: impl Into<String>, retryable: bool) -> Self {
        Self::Failed {
            code,
            message: message.into(),
            retryable,
        }
    }
}

impl From<sqlx::Error> for StepError {
    fn from(err: sqlx::Error) -> Self {
        tracing::error!(error = %err, "database error during a chat run");
        Self::failed(
            "internal_error",
            "Something went wrong while saving the reply.",
            true,
        )
    }
}

impl From<LlmError> for StepError {
    fn from(err: LlmError) -> Self {
        tracing::warn!(error = %err, kind = err.kind(), "language model call failed");
        match err {
            LlmError::ContextTooLong { .. } => Self::failed(
                "llm_context_exceeded",
                "The conversation does not fit the language model's context window, even shortened. \
                 Check LLM_CONTEXT_TOKENS against the model's real context size.",
                false,
            ),
            LlmError::Rejected { status, .. } => Self::failed(
                "llm_rejected",
                format!("The language model refused the request (HTTP {status})."),
                false,
            ),
            LlmError::Unavailable { .. } => Self::failed(
                "llm_unavailable",
                "The language model is not answering right now. Try again in a moment.",
                true,
            ),
            LlmError::StreamBroken { .. } => Self::failed(
                "llm_stream_broken",
                "The connection to the language model kept breaking before the reply was finished. \
                 What arrived is shown as unfinished; Retry writes the reply again.",
                true,
            ),
            LlmError::Malformed(_) => Self::failed(
                "llm_malformed",
                "The language model answered in a way we could not read.",
                true,
            ),
        }
    }
}
