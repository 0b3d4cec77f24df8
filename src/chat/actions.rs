//! What a user does to a conversation — send, regenerate, edit, delete, stop, retry a reply or its picture —
//! with the rules that decide it: which refusal comes first (what cannot work at all, then a busy companion,
//! then the limits, so a refused request is never counted), which replies may be answered again, and how a
//! repeated send with the same request id meets the run it already started. Handlers parse and shape; the
//! rules live here once.

use uuid::Uuid;

use super::store::{self, MessageRow, NewRun, RunKind, RunRow, RunStatus, StartError};
use crate::companions::store::CompanionRecord;
use crate::db::Timestamp;
use crate::error::AppError;
use crate::state::AppState;
use crate::web::forms::FormErrors;
use crate::web::{Action, CorrelationId, CurrentUser};

/// Longest message a user may send.
pub const MAX_MESSAGE_CHARS: usize = 4000;

/// Longest `client_request_id` (the idempotency key of a send).
const MAX_REQUEST_ID_BYTES: usize = 100;

/// A message to send.
#[derive(Debug)]
pub struct Send<'a> {
    /// What the user wrote (trimmed and checked here).
    pub content: &'a str,
    /// Whether the reply comes with a picture.
    pub generate_image: bool,
    /// The client's key for this send: the same key twice starts one run.
    pub client_request_id: Option<&'a str>,
}

/// What Stop did.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    /// The run had already ended with this status.
    AlreadyEnded(RunStatus),
    /// The run is executing here and has been told to stop; it ends shortly.
    Stopping,
    /// The run was not executing (waiting to be resumed) and is now cancelled.
    Cancelled,
}

/// A started run and, for a picture-only run, the reply whose picture it makes.
#[derive(Debug)]
pub struct Started {
    /// The run.
    pub run: RunRow,
    /// The reply a picture-only run belongs to.
    pub picture_of: Option<Uuid>,
}

/// 422 on one field.
pub fn invalid(field: &str, message: impl Into<String>) -> AppError {
    let mut errors = FormErrors::new();
    errors.add(field, message);
    errors.into_error()
}

/// The trimmed text of a message, or 422.
pub fn message_text(content: &str) -> Result<String, AppError> {
    let text = content.trim();
    let length = text.chars().count();
    if length == 0 {
        return Err(invalid("content", "Write something first."));
    }
    if length > MAX_MESSAGE_CHARS {
        return Err(invalid(
            "content",
            format!(
                "A message has at most {MAX_MESSAGE_CHARS} characters (this one has {length})."
            ),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(invalid(
            "content",
            "Remove control characters from the message.",
        ));
    }
    Ok(text.to_owned())
}

/// A client request id, or 422: 1–100 characters of a small, log-safe alphabet.
fn request_id(key: &str) -> Result<&str, AppError> {
    let valid = (1..=MAX_REQUEST_ID_BYTES).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b':'));
    if valid {
        Ok(key)
    } else {
        Err(invalid(
            "client_request_id",
            "Use 1–100 characters of A–Z, a–z, 0–9, - _ . :",
        ))
    }
}

/// 503 `llm_not_configured` when no model is configured (nothing is counted).
fn chat_available(state: &AppState) -> Result<(), AppError> {
    if state.config.llm.is_none() {
        return Err(AppError::Unavailable {
            code: "llm_not_configured",
            message:
                "No language model is connected yet: set LLM_BASE_URL and LLM_MODEL and restart."
                    .into(),
        });
    }
    Ok(())
}

/// Refuses when no model is configured, then counts the message against the chat limit.
async fn may_chat(state: &AppState, current: &CurrentUser) -> Result<(), AppError> {
    chat_available(state)?;
    state
        .rate_limiter
        .hit(Action::Chat, &current.user.id.to_string())
        .await
}

/// 409 `run_active` before anything is counted against a limit (the insert still decides races).
async fn refuse_while_active(state: &AppState, companion: Uuid) -> Result<(), AppError> {
    match store::active_run(&state.db, companion).await? {
        Some(_) => Err(run_active()),
        None => Ok(()),
    }
}

/// 409 `run_active`: another reply of this companion is unfinished.
fn run_active() -> AppError {
    AppError::Conflict {
        code: "run_active",
        message: "A reply is still being written. Wait for it, or press Stop.".into(),
    }
}

/// 409 `conflict` with a message.
fn conflict(message: &str) -> AppError {
    AppError::Conflict {
        code: "conflict",
        message: message.to_owned(),
    }
}

/// When a run started now must have ended, by the database's clock (the executor reads it the same way).
fn deadline(state: &AppState) -> Timestamp {
    state.clock.now() + state.config.run_deadline
}

/// The owner's companion id, or 404.
async fn owned_companion(
    state: &AppState,
    current: &CurrentUser,
    id: Uuid,
) -> Result<Uuid, AppError> {
    crate::companions::store::find_owned(&state.db, current.user.id, id)
        .await?
        .map(|companion| companion.id)
        .ok_or(AppError::NotFound)
}

/// The message `id` of the current user and its companion; 404 for anything else.
async fn owned_message(
    state: &AppState,
    current: &CurrentUser,
    id: Uuid,
) -> Result<(Uuid, MessageRow), AppError> {
    let companion = store::message_companion(&state.db, current.user.id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let message = store::message(&state.db, companion, id)
        .await?
        .ok_or(AppError::NotFound)?;
    Ok((companion, message))
}

/// Creates and starts a run; 409 while another is unfinished.
async fn start(state: &AppState, new: NewRun<'_>) -> Result<RunRow, AppError> {
    match store::start_run(&state.db, &new).await {
        Ok(run) => {
            state.engine.start(run.id);
            Ok(run)
        }
        Err(StartError::Duplicate(run)) => Ok(*run),
        Err(StartError::Active) => Err(run_active()),
        Err(StartError::Database(err)) => Err(err.into()),
    }
}

/// A run that answers an existing user message again (regenerate, edit, retry).
fn answer_again<'a>(
    state: &AppState,
    correlation: &'a CorrelationId,
    user: Uuid,
    companion: Uuid,
    message: Uuid,
    replaces: Option<Uuid>,
    previous_attempts: i32,
) -> NewRun<'a> {
    NewRun {
        companion,
        user,
        new_message: None,
        existing_message: Some(message),
        replaces,
        client_request_id: None,
        generate_image: false,
        correlation_id: correlation.as_str(),
        deadline: deadline(state),
        previous_attempts,
    }
}

/// Sends a message to `companion` (the owner's, as [`crate::companions::store::find_owned`] found it) and
/// starts its reply. A send whose request id was seen before returns that send's run, whatever state it is
/// in, and counts nothing.
pub async fn send(
    state: &AppState,
    correlation: &CorrelationId,
    current: &CurrentUser,
    companion: &CompanionRecord,
    request: Send<'_>,
) -> Result<RunRow, AppError> {
    let companion = companion.id;
    let content = message_text(request.content)?;
    let key = request.client_request_id.map(request_id).transpose()?;
    let earlier =
        async |key: &str| store::find_run_by_request(&state.db, current.user.id, key).await;
    if let Some(key) = key
        && let Some(existing) = earlier(key).await?
    {
        return Ok(existing);
    }
    // What cannot work at all is said first; then a busy companion; then the limits are counted.
    chat_available(state)?;
    if request.generate_image {
        crate::images::pictures_available(state)?;
    }
    if let Err(active) = refuse_while_active(state, companion).await {
        // Two identical sends at once: the second meets the first's run.
        if let Some(key) = key
            && let Some(existing) = earlier(key).await?
        {
            return Ok(existing);
        }
        return Err(active);
    }
    may_chat(state, current).await?;
    if request.generate_image {
        crate::images::may_picture(state, current).await?;
    }
    let started = start(
        state,
        NewRun {
            companion,
            user: current.user.id,
            new_message: Some(&content),
            existing_message: None,
            replaces: None,
            client_request_id: key,
            generate_image: request.generate_image,
            correlation_id: correlation.as_str(),
            deadline: deadline(state),
            previous_attempts: 0,
        },
    )
    .await;
    match (started, key) {
        // Two identical sends at once: the loser meets the winner's run as "the unfinished one".
        (Err(AppError::Conflict { .. }), Some(key)) => earlier(key).await?.ok_or_else(run_active),
        (started, _) => started,
    }
}

/// Writes the last reply of companion `id` again. A reply that came with a picture (or tried to) is
/// regenerated with one while a backend is there and the picture limit allows; over that limit the reply is
/// still regenerated, without a picture.
pub async fn regenerate(
    state: &AppState,
    correlation: &CorrelationId,
    current: &CurrentUser,
    id: Uuid,
) -> Result<RunRow, AppError> {
    let companion = owned_companion(state, current, id).await?;
    let recent = store::messages(&state.db, companion, None, 2).await?;
    let (Some(last), Some(asked)) = (recent.first(), recent.get(1)) else {
        return Err(conflict("There is no reply to regenerate yet."));
    };
    if last.role != "assistant" || asked.role != "user" {
        return Err(conflict("Only the last reply can be regenerated."));
    }
    chat_available(state)?;
    refuse_while_active(state, companion).await?;
    may_chat(state, current).await?;
    let mut again = answer_again(
        state,
        correlation,
        current.user.id,
        companion,
        asked.id,
        Some(last.id),
        0,
    );
    let had_picture = last.image_id.is_some() || last.image_error.is_some();
    if had_picture && state.imaging.client().is_some() {
        match crate::images::may_picture(state, current).await {
            Ok(()) => again.generate_image = true,
            Err(AppError::RateLimited { .. }) => {}
            Err(err) => return Err(err),
        }
    }
    start(state, again).await
}

/// Rewrites the user's message `id`, forgets everything after it (pictures no longer referenced are
/// discarded) and answers the new text.
pub async fn edit(
    state: &AppState,
    correlation: &CorrelationId,
    current: &CurrentUser,
    id: Uuid,
    content: &str,
) -> Result<RunRow, AppError> {
    let (companion, message) = owned_message(state, current, id).await?;
    let content = message_text(content)?;
    if message.role != "user" {
        return Err(invalid("content", "Only your own messages can be edited."));
    }
    refuse_while_active(state, companion).await?;
    may_chat(state, current).await?;
    let pictures =
        crate::media::store::keys_after_message(&state.db, companion, message.id).await?;
    store::rewrite_from(&state.db, companion, &message, &content).await?;
    crate::media::cleanup::discard_unreferenced(&state.db, &state.media, pictures).await;
    let again = answer_again(
        state,
        correlation,
        current.user.id,
        companion,
        message.id,
        None,
        0,
    );
    start(state, again).await
}

/// Deletes message `id` (never while a reply is being written); its picture goes when nothing else uses it.
pub async fn delete_message(
    state: &AppState,
    current: &CurrentUser,
    id: Uuid,
) -> Result<(), AppError> {
    let companion = store::message_companion(&state.db, current.user.id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    refuse_while_active(state, companion).await?;
    let pictures = crate::media::store::keys_of_message(&state.db, id).await?;
    if !store::delete_message(&state.db, companion, id).await? {
        return Err(AppError::NotFound);
    }
    crate::media::cleanup::discard_unreferenced(&state.db, &state.media, pictures).await;
    Ok(())
}

/// Stops run `id`: tells it to stop when it executes here, ends it directly when it waits to be resumed.
pub async fn stop(state: &AppState, current: &CurrentUser, id: Uuid) -> Result<Stopped, AppError> {
    let run = store::find_run_owned(&state.db, current.user.id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    if !run.is_active() {
        return Ok(Stopped::AlreadyEnded(run.status));
    }
    if state.engine.cancel(run.id).await {
        return Ok(Stopped::Stopping);
    }
    store::cancel(&state.db, &run, None, &run.partial_text).await?;
    Ok(Stopped::Cancelled)
}

/// Retries run `id`: only the companion's latest run, only when it failed or was stopped before it wrote a
/// reply. A picture-only run makes its picture again; a reply run answers the same message again, with the
/// picture it asked for and its attempts carried on.
pub async fn retry(
    state: &AppState,
    correlation: &CorrelationId,
    current: &CurrentUser,
    id: Uuid,
) -> Result<Started, AppError> {
    let run = store::find_run_owned(&state.db, current.user.id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let retryable = run.status == RunStatus::Failed
        || (run.status == RunStatus::Cancelled && run.assistant_message_id.is_none());
    if !retryable {
        return Err(conflict("Only a failed or stopped reply can be retried."));
    }
    let latest = store::latest_run(&state.db, run.companion_id).await?;
    if latest.as_ref().map(|r| r.id) != Some(run.id) {
        return Err(conflict("Only the latest reply can be retried."));
    }
    if run.kind == RunKind::Image {
        let message = run
            .assistant_message_id
            .ok_or_else(|| conflict("The reply of this picture is gone."))?;
        return picture_again(state, correlation, current, run.companion_id, message).await;
    }
    chat_available(state)?;
    refuse_while_active(state, run.companion_id).await?;
    may_chat(state, current).await?;
    if run.generate_image {
        crate::images::may_picture(state, current).await?;
    }
    let mut again = answer_again(
        state,
        correlation,
        current.user.id,
        run.companion_id,
        run.user_message_id,
        run.replaces_message_id,
        run.attempts,
    );
    again.generate_image = run.generate_image;
    let run = start(state, again).await?;
    Ok(Started {
        run,
        picture_of: None,
    })
}

/// Makes the picture of reply `id` again, when its first try failed.
pub async fn retry_picture(
    state: &AppState,
    correlation: &CorrelationId,
    current: &CurrentUser,
    id: Uuid,
) -> Result<Started, AppError> {
    let (companion, message) = owned_message(state, current, id).await?;
    if message.role != "assistant" {
        return Err(conflict("Only a reply of your companion has a picture."));
    }
    if message.image_id.is_some() {
        return Err(conflict("This reply already has its picture."));
    }
    if message.image_error.is_none() {
        return Err(conflict("Only a picture that failed can be tried again."));
    }
    picture_again(state, correlation, current, companion, message.id).await
}

/// Starts a picture-only run for the reply `message`.
async fn picture_again(
    state: &AppState,
    correlation: &CorrelationId,
    current: &CurrentUser,
    companion: Uuid,
    message: Uuid,
) -> Result<Started, AppError> {
    crate::images::pictures_available(state)?;
    refuse_while_active(state, companion).await?;
    crate::images::may_picture(state, current).await?;
    let run = match store::start_image_run(
        &state.db,
        current.user.id,
        companion,
        message,
        correlation.as_str(),
        deadline(state),
    )
    .await
    {
        Ok(run) => run,
        Err(StartError::Active | StartError::Duplicate(_)) => return Err(run_active()),
        Err(StartError::Database(err)) => return Err(err.into()),
    };
    state.engine.start(run.id);
    Ok(Started {
        run,
        picture_of: Some(message),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_trimmed_and_bounded() {
        assert_eq!(message_text("  hi  ").expect("test setup is valid"), "hi");
        assert!(message_text("   ").is_err());
        assert!(message_text(&"x".repeat(4000)).is_ok());
        assert!(message_text(&"x".repeat(4001)).is_err());
        assert!(
            message_text(&"é".repeat(4000)).is_ok(),
            "characters, not bytes"
        );
        assert!(message_text("a\u{0}b").is_err());
        assert!(message_text("two\nlines").is_ok());
    }

    #[test]
    fn request_ids_are_short_and_log_safe() {
        assert!(request_id("a-b_c.d:1").is_ok());
        assert!(request_id(&"k".repeat(100)).is_ok());
        assert!(request_id(&"k".repeat(101)).is_err());
        assert!(request_id("").is_err());
        assert!(request_id("with space").is_err());
        assert!(request_id("new\nline").is_err());
    }
}
