//! SQL for `chat_runs` (here) and `messages` (`messages.rs`). Runs are the single source of truth for a
//! reply in progress; their status and kind are written and read through `run_status`'s enums, never as
//! loose words. Finishing a run stores its reply in the same transaction, so that statement lives here.

use sqlx::types::Json;
use uuid::Uuid;

use super::run_status::active_run_statuses;
pub use super::run_status::{RunKind, RunStatus};
use crate::companions::profile::{LiveState, Profile};
use crate::db::{Db, Timestamp, violates_unique};
use crate::db_dispatch;

/// The claim one execution holds on a run: the instance and the claim's number (the run's `attempts` as
/// claimed). Every write of an execution is fenced by it — it changes nothing unless this claim still holds
/// and the run is unfinished — so an execution whose run was taken over (or ended by a Stop elsewhere)
/// learns it from its next write and stops, and never stores a second reply.
#[derive(Debug, Clone, Copy)]
pub struct Lease<'a> {
    /// The instance holding the run.
    pub owner: &'a str,
    /// The claim's number.
    pub token: i32,
}

/// The condition of a fenced write: the lease in `$owner`/`$token` still holds and the run is unfinished.
macro_rules! held_by {
    ($owner:literal, $token:literal) => {
        concat!(
            " AND lease_owner = ",
            $owner,
            " AND attempts = ",
            $token,
            " AND status IN ",
            active_run_statuses!()
        )
    };
}

/// Which instances count as alive: a heartbeat at or after `$since` (instances.rs).
macro_rules! holder_dead {
    ($since:literal) => {
        concat!(
            "lease_owner NOT IN (SELECT id FROM instances WHERE heartbeat_at >= ",
            $since,
            ")"
        )
    };
}

mod messages;
mod scene;

pub use messages::{
    ExportedMessage, HistoryMessage, MessageRow, delete_conversation, delete_message, export_page,
    history_before, message, message_companion, messages, rewrite_from,
};
pub use scene::change_scene;

/// What `text` costs in a prompt, stored with the message so the next prompts need not count it again.
fn prompt_cost(text: &str) -> i32 {
    i32::try_from(super::prompt::estimate_tokens(text)).unwrap_or(i32::MAX)
}

/// A run row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct RunRow {
    /// Id (the stream's address).
    pub id: Uuid,
    /// Answer a message, or only redo the picture of `assistant_message_id`.
    #[sqlx(try_from = "String")]
    pub kind: RunKind,
    /// The companion.
    pub companion_id: Uuid,
    /// The owner.
    pub user_id: Uuid,
    /// The user message being answered.
    pub user_message_id: Uuid,
    /// The assistant message this run replaces (regenerate), if any.
    pub replaces_message_id: Option<Uuid>,
    /// The stored reply, once completed.
    pub assistant_message_id: Option<Uuid>,
    /// Whether an image was asked for.
    pub generate_image: bool,
    /// The picture the image step made, until it is attached to the stored reply.
    pub image_id: Option<Uuid>,
    /// Why the image step could not make the picture.
    pub image_error: Option<String>,
    /// Where it stands.
    #[sqlx(try_from = "String")]
    pub status: RunStatus,
    /// Human-readable step.
    pub step: String,
    /// 0–100.
    pub progress: i32,
    /// The reply text so far (persisted at least every 250 ms while it grows).
    pub partial_text: String,
    /// Which version of the text offsets refer to: empty for the first, new after every reset.
    pub text_epoch: String,
    /// How the reply stream ended, once it finished (`stop`, `length`, `content_filter`).
    pub finish_reason: Option<String>,
    /// The live state after the analysis, for replaying the `state` event.
    pub state_after: Option<Json<serde_json::Value>>,
    /// Error code of a failed or cancelled run.
    pub error_code: Option<String>,
    /// Error message.
    pub error_message: Option<String>,
    /// Whether Retry can help.
    pub retryable: bool,
    /// How many times execution started.
    pub attempts: i32,
    /// The correlation id of the request that started the run.
    pub correlation_id: String,
    /// When the run must have ended.
    pub deadline_at: Timestamp,
    /// Creation time.
    pub created_at: Timestamp,
}

impl RunRow {
    /// True until completed, failed or cancelled.
    pub fn is_active(&self) -> bool {
        self.status.is_active()
    }
}

const RUN_COLUMNS: &str = "id, kind, companion_id, user_id, user_message_id, replaces_message_id, \
     assistant_message_id, generate_image, image_id, image_error, status, step, progress, partial_text, text_epoch, finish_reason, state_after, error_code, \
     error_message, retryable, attempts, correlation_id, deadline_at, created_at";

/// A run to create.
pub struct NewRun<'a> {
    /// The companion.
    pub companion: Uuid,
    /// The owner.
    pub user: Uuid,
    /// Text of a new user message, or `None` to answer `existing_message` again.
    pub new_message: Option<&'a str>,
    /// The user message to answer when no new one is written.
    pub existing_message: Option<Uuid>,
    /// The assistant message a regenerate replaces.
    pub replaces: Option<Uuid>,
    /// The client's idempotency key.
    pub client_request_id: Option<&'a str>,
    /// Whether an image was asked for.
    pub generate_image: bool,
    /// The request's correlation id.
    pub correlation_id: &'a str,
    /// When the run must have ended.
    pub deadline: Timestamp,
    /// Attempts already made by the run this one retries.
    pub previous_attempts: i32,
}

/// Why a run could not be created.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The companion already has an unfinished run.
    #[error("a reply is already being written")]
    Active,
    /// The same client request was sent before: here is its run.
    #[error("already sent")]
    Duplicate(Box<RunRow>),
    /// The database failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Stores the user message (when new) and the run in one transaction.
pub async fn start_run(db: &Db, new: &NewRun<'_>) -> Result<RunRow, StartError> {
    let now = Timestamp::now();
    let run_id = Uuid::now_v7();
    let message_id = new.existing_message.unwrap_or_else(Uuid::now_v7);
    // Counted before the transaction, so the write lock is not held while the tokenizer runs.
    let cost = new.new_message.map(prompt_cost);
    let inserted: Result<RunRow, sqlx::Error> = db_dispatch!(db, pool => async {
        let mut tx = pool.begin().await?;
        if let Some(content) = new.new_message {
            sqlx::query(
                "INSERT INTO messages (id, companion_id, role, content, tokens, created_at) \
                 VALUES ($1, $2, 'user', $3, $4, $5)",
            )
            .bind(message_id)
            .bind(new.companion)
            .bind(content)
            .bind(cost)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let sql = format!(
            "INSERT INTO chat_runs (id, companion_id, user_id, user_message_id, replaces_message_id, \
                 client_request_id, generate_image, status, step, progress, partial_text, retryable, \
                 attempts, correlation_id, deadline_at, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $13, 'Waiting to start', 0, '', FALSE, $8, $9, $10, \
                 $11, $12) RETURNING {RUN_COLUMNS}"
        );
        let run: RunRow = sqlx::query_as(&sql)
        .bind(run_id)
        .bind(new.companion)
        .bind(new.user)
        .bind(message_id)
        .bind(new.replaces)
        .bind(new.client_request_id)
        .bind(new.generate_image)
        .bind(new.previous_attempts)
        .bind(new.correlation_id)
        .bind(new.deadline)
        .bind(now)
        .bind(now)
        .bind(RunStatus::Queued.as_str())
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(run)
    }.await);
    match inserted {
        Ok(run) => Ok(run),
        // PostgreSQL names the index; SQLite names the columns of a partial unique index.
        Err(err)
            if violates_unique(&err, "chat_runs_one_active_idx")
                || violates_unique(&err, "chat_runs.companion_id") =>
        {
            Err(StartError::Active)
        }
        Err(err)
            if violates_unique(&err, "chat_runs_client_request_idx")
                || violates_unique(&err, "chat_runs.client_request_id") =>
        {
            let existing = find_run_by_request(db, new.user, new.client_request_id.unwrap_or(""))
                .await?
                .ok_or(StartError::Database(sqlx::Error::RowNotFound))?;
            Err(StartError::Duplicate(Box::new(existing)))
        }
        Err(err) => Err(err.into()),
    }
}

/// Starts a run that only makes the picture of the reply `message` again (its first try failed).
pub async fn start_image_run(
    db: &Db,
    user: Uuid,
    companion: Uuid,
    message: Uuid,
    correlation_id: &str,
    deadline: Timestamp,
) -> Result<RunRow, StartError> {
    let now = Timestamp::now();
    let run_id = Uuid::now_v7();
    let inserted = db_dispatch!(db, pool => sqlx::query(
        "INSERT INTO chat_runs (id, kind, companion_id, user_id, user_message_id, assistant_message_id, \
             generate_image, status, step, progress, partial_text, retryable, attempts, correlation_id, \
             deadline_at, created_at, updated_at) \
         VALUES ($1, $9, $2, $3, $4, $4, TRUE, $10, 'Waiting to start', 0, '', FALSE, 0, $5, $6, \
             $7, $8)",
    )
    .bind(run_id)
    .bind(companion)
    .bind(user)
    .bind(message)
    .bind(correlation_id)
    .bind(deadline)
    .bind(now)
    .bind(now)
    .bind(RunKind::Image.as_str())
    .bind(RunStatus::Queued.as_str())
    .execute(pool)
    .await
    .map(|_| ()));
    match inserted {
        Ok(()) => find_run(db, run_id)
            .await?
            .ok_or(StartError::Database(sqlx::Error::RowNotFound)),
        Err(err)
            if violates_unique(&err, "chat_runs_one_active_idx")
                || violates_unique(&err, "chat_runs.companion_id") =>
        {
            Err(StartError::Active)
        }
        Err(err) => Err(err.into()),
    }
}

/// Records what the image step produced: the picture, or why there is none. False when the lease no longer
/// holds or the run ended (nothing was recorded).
pub async fn save_image_result(
    db: &Db,
    run: Uuid,
    lease: Lease<'_>,
    image: Option<Uuid>,
    error: Option<&str>,
) -> Result<bool, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query(
        concat!("UPDATE chat_runs SET image_id = $1, image_error = $2, updated_at = $3 \
         WHERE id = $4", held_by!("$5", "$6")),
    )
    .bind(image)
    .bind(error)
    .bind(Timestamp::now())
    .bind(run)
    .bind(lease.owner)
    .bind(lease.token)
    .execute(pool)
    .await
    .map(|done| done.rows_affected() == 1))
}

/// A run by id.
pub async fn find_run(db: &Db, run: Uuid) -> Result<Option<RunRow>, sqlx::Error> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM chat_runs WHERE id = $1");
    db_dispatch!(db, pool => sqlx::query_as(&sql).bind(run).fetch_optional(pool).await)
}

/// A run of `user`.
pub async fn find_run_owned(db: &Db, user: Uuid, run: Uuid) -> Result<Option<RunRow>, sqlx::Error> {
    let sql = format!("SELECT {RUN_COLUMNS} FROM chat_runs WHERE id = $1 AND user_id = $2");
    db_dispatch!(db, pool => sqlx::query_as(&sql).bind(run).bind(user).fetch_optional(pool).await)
}

/// The run a client created with its idempotency key.
pub async fn find_run_by_request(
    db: &Db,
    user: Uuid,
    key: &str,
) -> Result<Option<RunRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM chat_runs WHERE user_id = $1 AND client_request_id = $2"
    );
    db_dispatch!(db, pool => sqlx::query_as(&sql).bind(user).bind(key).fetch_optional(pool).await)
}

/// The newest run of a companion.
pub async fn latest_run(db: &Db, companion: Uuid) -> Result<Option<RunRow>, sqlx::Error> {
    let sql = format!(
        "SELECT {RUN_COLUMNS} FROM chat_runs WHERE companion_id = $1 ORDER BY created_at DESC, id DESC LIMIT 1"
    );
    db_dispatch!(db, pool => sqlx::query_as(&sql).bind(companion).fetch_optional(pool).await)
}

/// What a run answers, read once per execution in one query: the companion's profile and live state, the
/// name its owner goes by and the message being answered with its prompt cost. (It reads `companions` and
/// `users` by the run's own ids, which the run got from an owner-checked request.)
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TurnRow {
    /// The companion's profile.
    pub profile: Json<Profile>,
    /// The companion's live state when the run was claimed.
    pub live_state: Json<LiveState>,
    /// The owner's display name.
    pub user_name: String,
    /// The text of the message being answered.
    pub said: String,
    /// Its prompt cost, when stored.
    pub said_tokens: Option<i32>,
}

/// The [`TurnRow`] of `run`; `None` when the companion or the message is gone.
pub async fn turn(db: &Db, run: &RunRow) -> Result<Option<TurnRow>, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query_as(
        "SELECT c.profile, c.live_state, u.display_name AS user_name, m.content AS said, \
             m.tokens AS said_tokens \
         FROM companions c JOIN users u ON u.id = c.user_id \
         JOIN messages m ON m.id = $1 AND m.companion_id = c.id \
         WHERE c.id = $2 AND c.user_id = $3",
    )
    .bind(run.user_message_id)
    .bind(run.companion_id)
    .bind(run.user_id)
    .fetch_optional(pool)
    .await)
}

/// Takes the run for `owner` until `until` when it is unfinished and free — no lease, a lapsed one, one of
/// an instance without a heartbeat since `alive_since` (dead), or `owner`'s own. The run as claimed (its
/// `attempts` is the new claim's number), or `None` when it is finished or a live instance holds it. Atomic:
/// of instances claiming at once, one gets the run.
pub async fn claim(
    db: &Db,
    run: Uuid,
    owner: &str,
    until: Timestamp,
    now: Timestamp,
    alive_since: Timestamp,
) -> Result<Option<RunRow>, sqlx::Error> {
    let sql = format!(
        concat!(
            "UPDATE chat_runs SET lease_owner = $1, lease_until = $2, attempts = attempts + 1, updated_at = $3 \
         WHERE id = $4 AND status IN ",
            active_run_statuses!(),
            " \
           AND (lease_owner IS NULL OR lease_until IS NULL OR lease_until < $5 OR lease_owner = $6 OR ",
            holder_dead!("$7"),
            ") RETURNING {}"
        ),
        RUN_COLUMNS
    );
    db_dispatch!(db, pool => sqlx::query_as(&sql)
    .bind(owner)
    .bind(until)
    .bind(now)
    .bind(run)
    .bind(now)
    .bind(owner)
    .bind(alive_since)
    .fetch_optional(pool)
    .await)
}

/// Takes `run` over whoever holds it, for an engine that decides who executes a step (Temporal gives a
/// step to one worker at a time, and to another only after the first one's heartbeat stopped): the claim
/// counter moves on, so anything the earlier holder still writes is refused. `None` when the run has ended.
pub async fn take_over(
    db: &Db,
    run: Uuid,
    owner: &str,
    until: Timestamp,
    now: Timestamp,
) -> Result<Option<RunRow>, sqlx::Error> {
    let sql = format!(
        concat!(
            "UPDATE chat_runs SET lease_owner = $1, lease_until = $2, attempts = attempts + 1, updated_at = $3 \
         WHERE id = $4 AND status IN ",
            active_run_statuses!(),
            " RETURNING {}"
        ),
        RUN_COLUMNS
    );
    db_dispatch!(db, pool => sqlx::query_as(&sql)
    .bind(owner)
    .bind(until)
    .bind(now)
    .bind(run)
    .fetch_optional(pool)
    .await)
}

/// Where a run stands, as its channel last announced it: the status, the step shown to the user, 0–100.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// The status.
    pub status: RunStatus,
    /// The step as the user reads it.
    pub step: &'a str,
    /// 0–100.
    pub percent: u8,
}

/// Saves the growing reply with the progress last announced and, in the same statement, extends the lease
/// until `until` (one write per flush). False when the lease no longer holds (nothing was written).
pub async fn save_partial_and_renew(
    db: &Db,
    run: Uuid,
    text: &str,
    progress: Progress<'_>,
    lease: Lease<'_>,
    until: Timestamp,
) -> Result<bool, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query(
        concat!("UPDATE chat_runs SET partial_text = $1, updated_at = $2, lease_until = $3, \
           status = $4, step = $5, progress = $6 WHERE id = $7", held_by!("$8", "$9")),
    )
    .bind(text)
    .bind(Timestamp::now())
    .bind(until)
    .bind(progress.status.as_str())
    .bind(progress.step)
    .bind(i32::from(progress.percent))
    .bind(run)
    .bind(lease.owner)
    .bind(lease.token)
    .execute(pool)
    .await
    .map(|done| done.rows_affected() == 1))
}

/// Extends the lease until `until`; false when it no longer holds.
pub async fn renew_lease(
    db: &Db,
    run: Uuid,
    lease: Lease<'_>,
    until: Timestamp,
) -> Result<bool, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query(
        concat!("UPDATE chat_runs SET lease_until = $1 WHERE id = $2", held_by!("$3", "$4")),
    )
    .bind(until)
    .bind(run)
    .bind(lease.owner)
    .bind(lease.token)
    .execute(pool)
    .await
    .map(|done| done.rows_affected() == 1))
}

/// Frees every unfinished run `owner` holds.
pub async fn release_leases(db: &Db, owner: &str) -> Result<u64, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query(
        concat!("UPDATE chat_runs SET lease_owner = NULL, lease_until = NULL \
         WHERE lease_owner = $1 AND status IN ", active_run_statuses!()),
    )
    .bind(owner)
    .execute(pool)
    .await
    .map(|r| r.rows_affected()))
}

/// Unfinished runs nobody holds: no lease, a lapsed one, or one of an instance without a heartbeat since
/// `alive_since`.
pub async fn orphaned(
    db: &Db,
    now: Timestamp,
    alive_since: Timestamp,
) -> Result<Vec<Uuid>, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query_scalar(
        concat!("SELECT id FROM chat_runs WHERE status IN ", active_run_statuses!(), " \
           AND (lease_owner IS NULL OR lease_until IS NULL OR lease_until < $1 OR ", holder_dead!("$2"), ") \
           ORDER BY created_at"),
    )
    .bind(now)
    .bind(alive_since)
    .fetch_all(pool)
    .await)
}

/// [`orphaned`] runs with their deadlines (for an engine that ends an overdue run instead of resuming it).
pub async fn orphaned_with_deadlines(
    db: &Db,
    now: Timestamp,
    alive_since: Timestamp,
) -> Result<Vec<(Uuid, Timestamp)>, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query_as(
        concat!("SELECT id, deadline_at FROM chat_runs WHERE status IN ", active_run_statuses!(), " \
           AND (lease_owner IS NULL OR lease_until IS NULL OR lease_until < $1 OR ", holder_dead!("$2"), ") \
           ORDER BY created_at"),
    )
    .bind(now)
    .bind(alive_since)
    .fetch_all(pool)
    .await)
}

/// Records the status, step and progress; false when the lease no longer holds.
pub async fn set_progress(
    db: &Db,
    run: Uuid,
    lease: Lease<'_>,
    status: RunStatus,
    step: &str,
    progress: u8,
) -> Result<bool, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query(
        concat!("UPDATE chat_runs SET status = $1, step = $2, progress = $3, updated_at = $4 \
         WHERE id = $5", held_by!("$6", "$7")),
    )
    .bind(status.as_str())
    .bind(step)
    .bind(i32::from(progress))
    .bind(Timestamp::now())
    .bind(run)
    .bind(lease.owner)
    .bind(lease.token)
    .execute(pool)
    .await
    .map(|done| done.rows_affected() == 1))
}

/// Persists the reply text so far; false when the lease no longer holds.
pub async fn save_partial(
    db: &Db,
    run: Uuid,
    lease: Lease<'_>,
    text: &str,
) -> Result<bool, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query(
        concat!("UPDATE chat_runs SET partial_text = $1, updated_at = $2 WHERE id = $3", held_by!("$4", "$5")),
    )
    .bind(text)
    .bind(Timestamp::now())
    .bind(run)
    .bind(lease.owner)
    .bind(lease.token)
    .execute(pool)
    .await
    .map(|done| done.rows_affected() == 1))
}

/// The finished reply: its exact text and how the stream ended (read back when a run resumes), with the
/// progress of the step that follows it. False when the lease no longer holds.
pub async fn save_reply(
    db: &Db,
    run: Uuid,
    lease: Lease<'_>,
    text: &str,
    finish_reason: &str,
    next: Progress<'_>,
) -> Result<bool, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query(
        concat!("UPDATE chat_runs SET partial_text = $1, finish_reason = $2, updated_at = $3, \
           status = $4, step = $5, progress = $6 WHERE id = $7", held_by!("$8", "$9")),
    )
    .bind(text)
    .bind(finish_reason)
    .bind(Timestamp::now())
    .bind(next.status.as_str())
    .bind(next.step)
    .bind(i32::from(next.percent))
    .bind(run)
    .bind(lease.owner)
    .bind(lease.token)
    .execute(pool)
    .await
    .map(|done| done.rows_affected() == 1))
}

/// Starts a new version of the reply text (after a reset): empty text, new epoch. False when the lease no
/// longer holds.
pub async fn start_text_epoch(
    db: &Db,
    run: Uuid,
    lease: Lease<'_>,
    epoch: &str,
) -> Result<bool, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query(
        concat!("UPDATE chat_runs SET partial_text = '', text_epoch = $1, updated_at = $2 WHERE id = $3",
            held_by!("$4", "$5")),
    )
    .bind(epoch)
    .bind(Timestamp::now())
    .bind(run)
    .bind(lease.owner)
    .bind(lease.token)
    .execute(pool)
    .await
    .map(|done| done.rows_affected() == 1))
}

/// Records the live state the analysis produced (replayed to late subscribers); false when the lease no
/// longer holds.
pub async fn save_state_after(
    db: &Db,
    run: Uuid,
    lease: Lease<'_>,
    state: &serde_json::Value,
) -> Result<bool, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query(
        concat!("UPDATE chat_runs SET state_after = $1 WHERE id = $2", held_by!("$3", "$4")),
    )
        .bind(Json(state))
        .bind(run)
        .bind(lease.owner)
        .bind(lease.token)
        .execute(pool)
        .await
        .map(|done| done.rows_affected() == 1))
}

/// How ending a run went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// This call ended the run; the stored assistant message, if one was stored.
    Now(Option<Uuid>),
    /// The run had already ended (another path got there first); nothing was stored.
    Already,
}

/// Stores the assistant message and completes the run in one transaction — exactly once: a run that is no
/// longer unfinished, or whose `lease` no longer holds, stores nothing. A regenerate's old reply is deleted in
/// the same transaction. `state_after` is the live state the analysis produced, kept on the run for replays
/// and the export.
pub async fn complete(
    db: &Db,
    run: &RunRow,
    lease: Lease<'_>,
    content: &str,
    finish_reason: Option<&str>,
    state_after: Option<&serde_json::Value>,
) -> Result<Finished, sqlx::Error> {
    finish(
        db,
        run,
        Ending {
            held: Some(lease),
            status: RunStatus::Completed,
            partial: content,
            content: Some((content, finish_reason)),
            error: None,
            state_after,
        },
    )
    .await
}

/// Ends the run as cancelled; a non-empty partial reply is kept as the assistant message. `held` is the
/// executing claim when the execution records its own stop; `None` when a request ends a run nobody executes.
pub async fn cancel(
    db: &Db,
    run: &RunRow,
    held: Option<Lease<'_>>,
    partial: &str,
) -> Result<Finished, sqlx::Error> {
    let content = (!partial.trim().is_empty()).then_some((partial, None));
    finish(
        db,
        run,
        Ending {
            held,
            status: RunStatus::Cancelled,
            partial,
            content,
            error: Some(("cancelled", "Stopped.", true)),
            state_after: None,
        },
    )
    .await
}

/// Ends the run as failed; `partial` (what was written before the failure) stays on the run, shown as
/// unfinished, never stored as a reply.
pub async fn fail(
    db: &Db,
    run: &RunRow,
    lease: Lease<'_>,
    partial: &str,
    code: &str,
    message: &str,
    retryable: bool,
) -> Result<Finished, sqlx::Error> {
    finish(
        db,
        run,
        Ending {
            held: Some(lease),
            status: RunStatus::Failed,
            partial,
            content: None,
            error: Some((code, message, retryable)),
            state_after: None,
        },
    )
    .await
}

/// How a run ends: in `status` with `partial` as its text; `content` (text and finish reason) is stored as
/// the assistant message; `error` is (code, message, retryable).
struct Ending<'a> {
    held: Option<Lease<'a>>,
    status: RunStatus,
    partial: &'a str,
    content: Option<(&'a str, Option<&'a str>)>,
    error: Option<(&'a str, &'a str, bool)>,
    state_after: Option<&'a serde_json::Value>,
}

/// Ends the run as `ending` says, in one transaction. The reply (when kept) is inserted first and the run
/// row updated after, only while it is unfinished: when another path ended the run first, the transaction
/// is rolled back and nothing is stored. The update returns the picture the image step recorded.
async fn finish(db: &Db, run: &RunRow, ending: Ending<'_>) -> Result<Finished, sqlx::Error> {
    let Ending {
        held,
        status,
        partial,
        content,
        error,
        state_after,
    } = ending;
    let now = Timestamp::now();
    // A picture-only run keeps the reply it redid the picture of; nothing new is stored.
    let content = content.filter(|_| run.kind != RunKind::Image);
    let message_id = content.map(|_| Uuid::now_v7());
    // Counted before the transaction, so the write lock is not held while the tokenizer runs.
    let cost = content.map(|(text, _)| prompt_cost(text));
    let (code, message, retryable) = match error {
        Some((code, message, retryable)) => (Some(code), Some(message), retryable),
        None => (None, None, false),
    };
    db_dispatch!(db, pool => async {
        let mut tx = pool.begin().await?;
        if let (Some(id), Some((text, finish_reason))) = (message_id, content) {
            if let Some(replaced) = run.replaces_message_id {
                sqlx::query("DELETE FROM messages WHERE id = $1 AND companion_id = $2")
                    .bind(replaced)
                    .bind(run.companion_id)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(
                "INSERT INTO messages (id, companion_id, role, content, finish_reason, tokens, created_at) \
                 VALUES ($1, $2, 'assistant', $3, $4, $5, $6)",
            )
            .bind(id)
            .bind(run.companion_id)
            .bind(text)
            .bind(finish_reason)
            .bind(cost)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        // The picture the image step made (or why not), as recorded by now.
        let updated: Option<(Option<Uuid>, Option<String>)> = sqlx::query_as(
            concat!("UPDATE chat_runs SET status = $1, step = $2, progress = $3, \
                 error_code = $4, error_message = $5, retryable = $6, partial_text = $7, \
                 lease_owner = NULL, lease_until = NULL, updated_at = $8, finished_at = $9, \
                 assistant_message_id = COALESCE($10, assistant_message_id), \
                 state_after = COALESCE($11, state_after) \
             WHERE id = $12 AND status IN ", active_run_statuses!(), " \
               AND ($13 IS NULL OR (lease_owner = $13 AND attempts = $14)) \
             RETURNING image_id, image_error"),
        )
        .bind(status.as_str())
        .bind(match status {
            RunStatus::Completed => "Done",
            RunStatus::Cancelled => "Stopped",
            _ => "Failed",
        })
        .bind(if status == RunStatus::Completed { 100 } else { 0 })
        .bind(code)
        .bind(message)
        .bind(retryable)
        .bind(partial)
        .bind(now)
        .bind(now)
        .bind(message_id)
        .bind(state_after.map(Json))
        .bind(run.id)
        .bind(held.map(|lease| lease.owner))
        .bind(held.map_or(0, |lease| lease.token))
        .fetch_optional(&mut *tx)
        .await?;
        let Some((image_id, image_error)) = updated else {
            tx.rollback().await?;
            return Ok(Finished::Already);
        };
        if run.kind == RunKind::Image {
            // Only the picture of an existing reply was redone: attach it, or say why there is none.
            if let Some(target) = run.assistant_message_id {
                let error = match image_id {
                    Some(_) => None,
                    None => Some(
                        image_error
                            .or_else(|| message.map(str::to_owned))
                            .unwrap_or_else(|| NO_PICTURE.to_owned()),
                    ),
                };
                attach_image(&mut tx, run.companion_id, target, image_id, error.as_deref()).await?;
            }
            tx.commit().await?;
            return Ok(Finished::Now(run.assistant_message_id));
        }
        match (message_id, image_id) {
            (Some(id), _) if run.generate_image => {
                let error = match image_id {
                    Some(_) => None,
                    None => Some(image_error.unwrap_or_else(|| NO_PICTURE.to_owned())),
                };
                attach_image(&mut tx, run.companion_id, id, image_id, error.as_deref()).await?;
            }
            (None, Some(image)) => {
                // No reply was kept, so its picture has nothing to illustrate.
                sqlx::query("DELETE FROM images WHERE id = $1 AND message_id IS NULL")
                    .bind(image)
                    .execute(&mut *tx)
                    .await?;
            }
            _ => {}
        }
        tx.commit().await?;
        Ok(Finished::Now(message_id))
    }.await)
}

/// Why a reply that asked for a picture has none, when nothing more precise is known.
const NO_PICTURE: &str = "The picture was not made.";

/// Attaches a picture (or the reason for its absence) to a reply, inside the caller's transaction.
async fn attach_image<'c, DB>(
    tx: &mut sqlx::Transaction<'c, DB>,
    companion: Uuid,
    message: Uuid,
    image: Option<Uuid>,
    error: Option<&str>,
) -> Result<(), sqlx::Error>
where
    DB: sqlx::Database,
    for<'e> &'e mut DB::Connection: sqlx::Executor<'e, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    Uuid: for<'q> sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'q> Option<Uuid>: sqlx::Encode<'q, DB>,
    for<'q> Option<&'q str>: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
{
    sqlx::query(
        "UPDATE messages SET image_id = COALESCE($1, image_id), image_error = $2 \
         WHERE id = $3 AND companion_id = $4",
    )
    .bind(image)
    .bind(error)
    .bind(message)
    .bind(companion)
    .execute(&mut **tx)
    .await?;
    if let Some(image) = image {
        sqlx::query("UPDATE images SET message_id = $1 WHERE id = $2")
            .bind(message)
            .bind(image)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The unfinished run of a companion, if any.
pub async fn active_run(db: &Db, companion: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    db_dispatch!(db, pool => sqlx::query_scalar(
        concat!("SELECT id FROM chat_runs WHERE companion_id = $1 AND status IN ", active_run_statuses!()),
    )
    .bind(companion)
    .fetch_optional(pool)
    .await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_run<'a>(
        companion: Uuid,
        user: Uuid,
        text: &'a str,
        request: Option<&'a str>,
    ) -> NewRun<'a> {
        NewRun {
            companion,
            user,
            new_message: Some(text),
            existing_message: None,
            replaces: None,
            client_request_id: request,
            generate_image: false,
            correlation_id: "unit-test",
            deadline: Timestamp::now() + std::time::Duration::from_secs(300),
            previous_attempts: 0,
        }
    }

    #[tokio::test]
    async fn one_unfinished_run_per_companion_and_a_repeated_request_finds_its_run() {
        let (db, _dir, user, companion) = crate::db::test_database().await;
        let run = start_run(&db, &new_run(companion, user, "hello", Some("req-1")))
            .await
            .expect("the first run starts");
        assert_eq!(run.status, RunStatus::Queued);
        assert_eq!(run.kind, RunKind::Reply);
        match start_run(&db, &new_run(companion, user, "hello", Some("req-1"))).await {
            Err(StartError::Duplicate(again)) => assert_eq!(again.id, run.id),
            other => panic!("a repeated request is its first run: {other:?}"),
        }
        assert!(matches!(
            start_run(&db, &new_run(companion, user, "again", None)).await,
            Err(StartError::Active)
        ));
        assert_eq!(
            latest_run(&db, companion).await.unwrap().map(|r| r.id),
            Some(run.id)
        );
        assert_eq!(
            messages(&db, companion, None, 10).await.unwrap().len(),
            1,
            "the refused sends stored no message"
        );
    }

    /// The run claimed by the unit tests' instance, and the claim that fences its writes.
    async fn claimed(db: &Db, run: &RunRow) -> (RunRow, Lease<'static>) {
        let now = Timestamp::now();
        let run = claim(
            db,
            run.id,
            "unit",
            now + std::time::Duration::from_secs(30),
            now,
            now,
        )
        .await
        .unwrap()
        .expect("a free run is claimed");
        let lease = Lease {
            owner: "unit",
            token: run.attempts,
        };
        (run, lease)
    }

    /// Records `instance` as alive with a heartbeat at `at`.
    async fn heartbeat(db: &Db, instance: &str, at: Timestamp) {
        db_dispatch!(db, pool => sqlx::query(
            "INSERT INTO instances (id, name, host, pid, started_at, heartbeat_at) VALUES ($1, $1, 'test', 1, $2, $2) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at",
        )
        .bind(instance)
        .bind(at)
        .execute(pool)
        .await
        .map(|_| ()))
        .unwrap();
    }

    #[tokio::test]
    async fn a_run_ends_exactly_once_and_progress_after_the_end_changes_nothing() {
        let (db, _dir, user, companion) = crate::db::test_database().await;
        let run = start_run(&db, &new_run(companion, user, "hello", None))
            .await
            .unwrap();
        let (run, lease) = claimed(&db, &run).await;
        assert!(
            set_progress(&db, run.id, lease, RunStatus::Responding, "Writing…", 40)
                .await
                .unwrap()
        );
        let scene = serde_json::json!({"location": "the harbour"});
        let first = complete(&db, &run, lease, "Hi there.", Some("stop"), Some(&scene))
            .await
            .unwrap();
        let Finished::Now(Some(reply)) = first else {
            panic!("the first completion stores the reply: {first:?}");
        };
        assert!(matches!(
            complete(&db, &run, lease, "Hi again.", Some("stop"), None)
                .await
                .unwrap(),
            Finished::Already
        ));
        assert!(matches!(
            fail(&db, &run, lease, "", "llm_unavailable", "gone", true)
                .await
                .unwrap(),
            Finished::Already
        ));
        assert!(
            !set_progress(&db, run.id, lease, RunStatus::Responding, "late", 10)
                .await
                .unwrap(),
            "a finished run takes no more progress"
        );
        let ended = find_run(&db, run.id).await.unwrap().unwrap();
        assert_eq!(ended.status, RunStatus::Completed);
        assert_eq!((ended.step.as_str(), ended.progress), ("Done", 100));
        assert_eq!(ended.assistant_message_id, Some(reply));
        assert_eq!(
            ended.state_after.map(|state| state.0),
            Some(scene),
            "the scene after the reply is kept with the run that ended"
        );
        let stored = messages(&db, companion, None, 10).await.unwrap();
        assert_eq!(stored.len(), 2, "one user message, one reply");
        assert_eq!(stored[0].content, "Hi there.");
        assert_eq!(stored[0].finish_reason.as_deref(), Some("stop"));
        // The companion is free for the next run.
        start_run(&db, &new_run(companion, user, "next", None))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_scene_change_applies_to_the_state_as_it_is_and_only_while_the_lease_holds() {
        use crate::companions::profile::{LiveState, Profile};
        let (db, _dir, user, companion) = crate::db::test_database().await;
        let scene_of = async |db: &Db| -> LiveState {
            db_dispatch!(db, pool => sqlx::query_scalar::<_, Json<LiveState>>(
                "SELECT live_state FROM companions WHERE id = $1")
                .bind(companion)
                .fetch_one(pool)
                .await)
            .unwrap()
            .0
        };
        let seen = LiveState::initial(&Profile::template());
        db_dispatch!(&db, pool => sqlx::query("UPDATE companions SET live_state = $1 WHERE id = $2")
            .bind(Json(&seen))
            .bind(companion)
            .execute(pool)
            .await
            .map(|_| ()))
        .unwrap();
        let run = start_run(&db, &new_run(companion, user, "hello", None))
            .await
            .unwrap();
        let now = Timestamp::now();
        let seconds = std::time::Duration::from_secs;
        heartbeat(&db, "a", now).await;
        let claimed = claim(&db, run.id, "a", now + seconds(30), now, now - seconds(10))
            .await
            .unwrap()
            .expect("a free run is claimed");
        let by_a = Lease {
            owner: "a",
            token: claimed.attempts,
        };
        let to_kitchen = |state: &LiveState| LiveState {
            location: "kitchen".into(),
            ..state.clone()
        };
        let cooking = |state: &LiveState| LiveState {
            action: "cooking".into(),
            ..state.clone()
        };
        let moved = change_scene(&db, &claimed, by_a, &seen, to_kitchen)
            .await
            .unwrap()
            .expect("the holder changes the scene");
        assert_eq!(moved.location, "kitchen");
        // A change computed from what was read before the move applies to the moved state.
        let after = change_scene(&db, &claimed, by_a, &seen, cooking)
            .await
            .unwrap()
            .expect("the holder changes the scene");
        assert_eq!(
            (after.location.as_str(), after.action.as_str()),
            ("kitchen", "cooking")
        );
        assert_eq!(scene_of(&db).await, after);

        // a stops beating and b takes the run over: a's analysis, arriving late, changes nothing, whether
        // the state is still what a saw or moved since.
        let later = now + seconds(20);
        heartbeat(&db, "b", later).await;
        let taken = claim(
            &db,
            run.id,
            "b",
            later + seconds(30),
            later,
            later - seconds(10),
        )
        .await
        .unwrap()
        .expect("the dead instance's run is taken over");
        let to_garden = |state: &LiveState| LiveState {
            location: "garden".into(),
            ..state.clone()
        };
        for stale_or_current in [&seen, &after] {
            assert!(
                change_scene(&db, &claimed, by_a, stale_or_current, to_garden)
                    .await
                    .unwrap()
                    .is_none(),
                "a lost its lease"
            );
        }
        assert_eq!(scene_of(&db).await, after, "the scene did not move");
        let by_b = Lease {
            owner: "b",
            token: taken.attempts,
        };
        assert_eq!(
            change_scene(&db, &taken, by_b, &after, to_garden)
                .await
                .unwrap()
                .map(|state| state.location),
            Some("garden".to_owned())
        );
    }

    #[tokio::test]
    async fn a_live_holder_keeps_its_run_and_a_dead_ones_run_is_taken_over_and_fenced() {
        let (db, _dir, user, companion) = crate::db::test_database().await;
        let run = start_run(&db, &new_run(companion, user, "hello", None))
            .await
            .unwrap();
        let now = Timestamp::now();
        let seconds = std::time::Duration::from_secs;
        let later = now + seconds(30);
        heartbeat(&db, "a", now).await;
        heartbeat(&db, "b", now).await;
        let alive_since = now - seconds(10);
        assert_eq!(
            orphaned(&db, now, alive_since).await.unwrap(),
            vec![run.id],
            "nobody holds it"
        );
        let claimed = claim(&db, run.id, "a", later, now, alive_since)
            .await
            .unwrap()
            .expect("a free run is claimed");
        assert_eq!((claimed.id, claimed.attempts), (run.id, 1));
        let by_a = Lease {
            owner: "a",
            token: 1,
        };
        assert!(
            claim(&db, run.id, "b", later, now, alive_since)
                .await
                .unwrap()
                .is_none(),
            "a run held by a live instance is not claimed by another"
        );
        assert!(orphaned(&db, now, alive_since).await.unwrap().is_empty());
        let lease_of = async |db: &Db| -> Option<Timestamp> {
            db_dispatch!(db, pool => sqlx::query_scalar("SELECT lease_until FROM chat_runs WHERE id = $1")
                .bind(run.id)
                .fetch_one(pool)
                .await)
            .unwrap()
        };
        let much_later = now + seconds(90);
        let writing = Progress {
            status: RunStatus::Responding,
            step: "Writing…",
            percent: 35,
        };
        let not_held = Lease {
            owner: "b",
            token: 1,
        };
        assert!(
            !save_partial_and_renew(&db, run.id, "Hel", writing, not_held, much_later)
                .await
                .unwrap()
        );
        assert_eq!(lease_of(&db).await, Some(later), "not b's lease to extend");
        assert!(
            save_partial_and_renew(&db, run.id, "Hello", writing, by_a, much_later)
                .await
                .unwrap()
        );
        assert_eq!(lease_of(&db).await, Some(much_later));
        let flushed = find_run(&db, run.id).await.unwrap().unwrap();
        assert_eq!(flushed.partial_text, "Hello");
        assert_eq!(
            (flushed.status, flushed.step.as_str(), flushed.progress),
            (RunStatus::Responding, "Writing…", 35),
            "the progress is recorded with the text"
        );

        // a stops beating (dead, by the database's clock): its lease has not lapsed, yet b takes the run.
        let after = now + seconds(20);
        heartbeat(&db, "b", after).await;
        let alive_since = after - seconds(10);
        assert_eq!(
            orphaned(&db, after, alive_since).await.unwrap(),
            vec![run.id]
        );
        let taken = claim(&db, run.id, "b", after + seconds(30), after, alive_since)
            .await
            .unwrap()
            .expect("the dead instance's run is taken over");
        assert_eq!(taken.attempts, 2);
        let by_b = Lease {
            owner: "b",
            token: 2,
        };
        // a comes back from its pause: every write it tries changes nothing, so it stops.
        assert!(
            !save_partial_and_renew(&db, run.id, "Hello wor", writing, by_a, much_later)
                .await
                .unwrap()
        );
        assert!(!renew_lease(&db, run.id, by_a, much_later).await.unwrap());
        assert!(
            !save_reply(&db, run.id, by_a, "Hello world", "stop", writing)
                .await
                .unwrap()
        );
        assert!(!start_text_epoch(&db, run.id, by_a, "1.1").await.unwrap());
        assert!(
            !save_state_after(&db, run.id, by_a, &serde_json::json!({}))
                .await
                .unwrap()
        );
        assert!(
            !save_image_result(&db, run.id, by_a, None, Some("no"))
                .await
                .unwrap()
        );
        assert!(!save_partial(&db, run.id, by_a, "x").await.unwrap());
        assert!(matches!(
            complete(&db, &claimed, by_a, "Hello world", Some("stop"), None)
                .await
                .unwrap(),
            Finished::Already
        ));
        assert_eq!(
            find_run(&db, run.id).await.unwrap().unwrap().partial_text,
            "Hello"
        );
        assert!(
            renew_lease(&db, run.id, by_b, after + seconds(60))
                .await
                .unwrap()
        );
        assert!(matches!(
            complete(&db, &taken, by_b, "Hello there", Some("stop"), None)
                .await
                .unwrap(),
            Finished::Now(Some(_))
        ));
        let stored = messages(&db, companion, None, 10).await.unwrap();
        assert_eq!(stored.len(), 2, "exactly one reply: {stored:?}");
        assert_eq!(stored[0].content, "Hello there");
        assert!(
            claim(&db, run.id, "a", later, now, alive_since)
                .await
                .unwrap()
                .is_none(),
            "a finished run is never claimed"
        );
    }

    #[tokio::test]
    async fn a_stop_through_a_request_ends_a_run_nobody_executes_and_fences_a_late_holder() {
        let (db, _dir, user, companion) = crate::db::test_database().await;
        let run = start_run(&db, &new_run(companion, user, "hello", None))
            .await
            .unwrap();
        let (run, lease) = claimed(&db, &run).await;
        assert!(matches!(
            cancel(&db, &run, None, "Half").await.unwrap(),
            Finished::Now(Some(_))
        ));
        assert!(
            !save_partial(&db, run.id, lease, "Half a reply")
                .await
                .unwrap(),
            "the executing instance learns of the stop from its next write"
        );
    }

    #[tokio::test]
    async fn messages_are_stored_with_their_prompt_cost_and_an_edit_counts_again() {
        let (db, _dir, user, companion) = crate::db::test_database().await;
        let run = start_run(&db, &new_run(companion, user, "hello there", None))
            .await
            .unwrap();
        let (run, lease) = claimed(&db, &run).await;
        complete(
            &db,
            &run,
            lease,
            "A longer reply than the question was.",
            Some("stop"),
            None,
        )
        .await
        .unwrap();
        let next = start_run(&db, &new_run(companion, user, "and now?", None))
            .await
            .unwrap();
        let history = history_before(&db, companion, next.user_message_id, 10)
            .await
            .unwrap();
        let costs: Vec<(String, Option<i32>)> = history
            .iter()
            .map(|m| (m.content.clone(), m.tokens))
            .collect();
        assert_eq!(
            costs,
            [
                ("hello there".to_owned(), Some(prompt_cost("hello there"))),
                (
                    "A longer reply than the question was.".to_owned(),
                    Some(prompt_cost("A longer reply than the question was."))
                ),
            ]
        );
        let (next, lease) = claimed(&db, &next).await;
        complete(&db, &next, lease, "Fine.", Some("stop"), None)
            .await
            .unwrap();
        let first = message(&db, companion, run.user_message_id)
            .await
            .unwrap()
            .unwrap();
        let long_edit = "a much longer question than before, with many more words in it";
        rewrite_from(&db, companion, &first, long_edit)
            .await
            .unwrap();
        let after = start_run(&db, &new_run(companion, user, "again", None))
            .await
            .unwrap();
        let history = history_before(&db, companion, after.user_message_id, 10)
            .await
            .unwrap();
        assert_eq!(history.len(), 1, "the edit removed what came after it");
        assert_eq!(history[0].tokens, Some(prompt_cost(long_edit)));
    }

    #[tokio::test]
    async fn a_failed_run_keeps_its_partial_text_but_stores_no_reply() {
        let (db, _dir, user, companion) = crate::db::test_database().await;
        let run = start_run(&db, &new_run(companion, user, "hello", None))
            .await
            .unwrap();
        let (run, lease) = claimed(&db, &run).await;
        let ended = fail(
            &db,
            &run,
            lease,
            "Half a sent",
            "llm_stream_broken",
            "cut",
            true,
        )
        .await
        .unwrap();
        assert!(matches!(ended, Finished::Now(None)));
        let row = find_run(&db, run.id).await.unwrap().unwrap();
        assert_eq!(row.status, RunStatus::Failed);
        assert_eq!(row.partial_text, "Half a sent");
        assert!(row.retryable);
        assert_eq!(messages(&db, companion, None, 10).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn export_pages_cover_every_message_once_even_with_equal_times() {
        let (db, _dir, _user, companion) = crate::db::test_database().await;
        let at = Timestamp::now();
        let mut ids = Vec::new();
        for n in 0..7 {
            let id = Uuid::now_v7();
            ids.push(id);
            db_dispatch!(&db, pool => sqlx::query(
                "INSERT INTO messages (id, companion_id, role, content, created_at) \
                 VALUES ($1, $2, 'user', $3, $4)",
            )
            .bind(id)
            .bind(companion)
            .bind(format!("m{n}"))
            .bind(at)
            .execute(pool)
            .await
            .map(|_| ()))
            .unwrap();
        }
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = export_page(&db, companion, after, 3).await.unwrap();
            let Some(last) = page.last() else { break };
            after = Some((last.created_at, last.id));
            seen.extend(page.iter().map(|m| m.id));
        }
        assert_eq!(
            seen, ids,
            "oldest first, ties in id order, no gaps or repeats"
        );
    }
}
