//! Executing a chat run: respond (stream the reply) → analyze (update the live state) → finalize (store the
//! reply exactly once). Implements the engine's [`RunExecutor`].
//!
//! Each step is an async function of the executor (which holds the shared database, model client and stream
//! hub) with serialisable inputs and outputs — run id (and reply text) in; reply text, state JSON or message id
//! out — so a different engine can run them unchanged as activities. A run resumed after a crash starts `respond` again when the reply was unfinished (subscribers
//! get `reset`), or continues with the analysis when the reply was complete. Every run ends within its
//! deadline: completed, failed (with a retryable error), or cancelled.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::display::ShownPicture;
use super::reply_text::TrimmedStream;
use super::store::{self, Finished, RunKind, RunRow, RunStatus};
use super::{analysis, prompt, render};
use crate::companions;
use crate::db::{Db, Timestamp};
use crate::engine::{RunChannel, RunEvent, RunExecutor, StreamHub};
use crate::images::generate::{Destination, Generated, Imaging};
use crate::media::store::Source;
use crate::providers::llm::{ChatMessage, Finish, LlmClient, LlmError};

/// How long a claim on a run lasts without renewal; renewed while the run makes progress.
pub const LEASE: Duration = Duration::from_secs(30);
/// Persist the growing reply at least this often (and never per token).
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// Messages of history considered before the token budget trims them.
const HISTORY_LIMIT: u32 = 200;
/// Time kept back from the deadline when a picture is being made, so the reply is still stored.
const IMAGE_DEADLINE_MARGIN: u64 = 10;
/// Streams started per reply: a cut stream is started again (with backoff) until this many were tried.
pub const STREAM_ATTEMPTS: u32 = 3;

/// The output of `respond`: the reply's exact text and how the model ended it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reply {
    /// The text, as streamed to clients and as it will be stored.
    pub text: String,
    /// How the stream ended; `None` for a reply finished before finish reasons were recorded.
    pub finish: Option<Finish>,
}

/// Why a step did not complete.
#[derive(Debug)]
pub enum StepError {
    /// Stop was pressed.
    Cancelled,
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
    fn failed(code: &'static str, message: impl Into<String>, retryable: bool) -> Self {
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

/// Runs chat runs against the database, the model and the stream hub.
#[derive(Clone)]
pub struct ChatExecutor {
    db: Db,
    llm: Option<LlmClient>,
    imaging: Imaging,
    hub: Arc<StreamHub>,
    instance: Arc<str>,
}

impl ChatExecutor {
    /// An executor for this instance (`instance` names its leases).
    pub fn new(
        db: Db,
        llm: Option<LlmClient>,
        imaging: Imaging,
        hub: Arc<StreamHub>,
        instance: impl Into<Arc<str>>,
    ) -> Self {
        Self {
            db,
            llm,
            imaging,
            hub,
            instance: instance.into(),
        }
    }

    async fn execute_run(self, run_id: Uuid, cancel: CancellationToken) {
        let now = Timestamp::now();
        match store::claim(&self.db, run_id, &self.instance, now + LEASE, now).await {
            Ok(true) => {}
            Ok(false) => {
                self.not_ours(run_id).await;
                return;
            }
            Err(err) => {
                tracing::warn!(run_id = %run_id, error = %err, "cannot claim a chat run");
                self.not_ours(run_id).await;
                return;
            }
        }
        let run = match store::find_run(&self.db, run_id).await {
            Ok(Some(run)) => run,
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(run_id = %run_id, error = %err, "cannot load a chat run");
                return;
            }
        };
        let span =
            tracing::info_span!("chat_run", run_id = %run.id, correlation_id = %run.correlation_id);
        self.drive(run, cancel).instrument(span).await;
    }

    async fn drive(&self, run: RunRow, cancel: CancellationToken) {
        let channel = self.hub.open(run.id);
        let remaining = Duration::from_secs(Timestamp::now().seconds_until(run.deadline_at));
        let outcome = tokio::time::timeout(remaining, self.steps(&run, &cancel)).await;
        let result = match outcome {
            Ok(result) => result,
            Err(_) => Err(StepError::failed(
                "deadline_exceeded",
                "The reply took too long and was stopped.",
                true,
            )),
        };
        match result {
            Ok(()) => {}
            Err(StepError::Cancelled) => self.end_cancelled(&run, &channel).await,
            Err(StepError::Failed {
                code,
                message,
                retryable,
            }) => {
                self.end_failed(&run, &channel, code, &message, retryable)
                    .await
            }
        }
        self.hub.close(run.id);
    }

    /// The run finished already, or another instance holds it: tell anyone waiting here, then let go.
    async fn not_ours(&self, run_id: Uuid) {
        if let Some(channel) = self.hub.get(run_id) {
            let row = store::find_run(&self.db, run_id).await.ok().flatten();
            let event = match &row {
                Some(row) => terminal_event(row, &self.db).await,
                None => None,
            };
            channel.publish(event.unwrap_or_else(|| {
                RunEvent::Error {
                    code: "run_elsewhere".into(),
                    message:
                        "The reply is being written by another server; reconnecting will follow it."
                            .into(),
                    retryable: true,
                    correlation_id: row.map(|r| r.correlation_id).unwrap_or_default(),
                }
            }));
            self.hub.close(run_id);
        }
    }

    async fn publish_progress(
        &self,
        run: &RunRow,
        channel: &RunChannel,
        status: RunStatus,
        step: &str,
        progress: u8,
    ) -> Result<(), StepError> {
        store::set_progress(&self.db, run.id, status, step, progress).await?;
        channel.publish(RunEvent::Progress {
            status: status.as_str().to_owned(),
            step: step.to_owned(),
            progress,
        });
        Ok(())
    }

    /// The run as a workflow: respond → analyze → image (when asked) → finalize; a picture-only run
    /// (a retry of a failed picture) is image → finalize.
    async fn steps(&self, run: &RunRow, cancel: &CancellationToken) -> Result<(), StepError> {
        if run.kind == RunKind::Image {
            self.image_step(run.id, cancel).await?;
            let nothing = Reply {
                text: String::new(),
                finish: None,
            };
            self.finalize_step(run.id, &nothing).await?;
            return Ok(());
        }
        let reply = self.respond_step(run.id, cancel).await?;
        if cancel.is_cancelled() {
            return Err(StepError::Cancelled);
        }
        self.analyze_step(run.id, &reply.text).await?;
        if cancel.is_cancelled() {
            return Err(StepError::Cancelled);
        }
        if run.generate_image {
            self.image_step(run.id, cancel).await?;
        }
        self.finalize_step(run.id, &reply).await?;
        Ok(())
    }

    async fn load(&self, run_id: Uuid) -> Result<RunRow, StepError> {
        store::find_run(&self.db, run_id)
            .await?
            .ok_or_else(|| StepError::failed("not_found", "The conversation was cleared.", false))
    }

    /// Step `respond`: run id → the reply. Streams to the run's channel; a reply that was complete before
    /// an interruption is returned as it is. When the provider says the prompt is longer than its context
    /// window, the history is shortened and the reply asked for once more.
    pub async fn respond_step(
        &self,
        run_id: Uuid,
        cancel: &CancellationToken,
    ) -> Result<Reply, StepError> {
        let run = self.load(run_id).await?;
        let channel = self.hub.open(run.id);
        if !matches!(run.status, RunStatus::Queued | RunStatus::Responding) {
            // The reply was complete before an interruption; subscribers catch up from it.
            channel.seed_text(&run.partial_text, &run.text_epoch);
            return Ok(Reply {
                finish: run.finish_reason.as_deref().and_then(Finish::parse),
                text: run.partial_text,
            });
        }
        let Some(llm) = &self.llm else {
            return Err(StepError::failed(
                "llm_not_configured",
                "No language model is configured (LLM_BASE_URL, LLM_MODEL).",
                true,
            ));
        };
        let companion = companions::store::find_owned(&self.db, run.user_id, run.companion_id)
            .await?
            .ok_or_else(|| {
                StepError::failed("not_found", "The companion no longer exists.", false)
            })?;
        let user_message = store::message(&self.db, run.companion_id, run.user_message_id)
            .await?
            .ok_or_else(|| {
                StepError::failed("not_found", "The message no longer exists.", false)
            })?;
        let user_name = crate::accounts::store::account(&self.db, run.user_id)
            .await?
            .map_or_else(|| "the user".to_owned(), |a| a.display_name);
        let profile = &companion.profile.0;

        channel.seed_text(&run.partial_text, &run.text_epoch);
        if run.attempts > 1 || !run.partial_text.is_empty() {
            // The reply is written again from the start, as a new version of the text: offsets a
            // client got from an earlier execution (in any process) no longer match.
            let epoch = format!("{}.0", run.attempts);
            store::start_text_epoch(&self.db, run.id, &epoch).await?;
            channel.reset(
                "The reply is being written again after an interruption.",
                &epoch,
            );
        }
        let history: Vec<prompt::Turn> =
            store::history_before(&self.db, run.companion_id, user_message.id, HISTORY_LIMIT)
                .await?
                .into_iter()
                .filter(|m| Some(m.id) != run.replaces_message_id)
                .map(|m| prompt::Turn {
                    role: m.role,
                    content: m.content,
                })
                .collect();
        let system = prompt::system(profile, &companion.live_state.0, &user_name);
        self.publish_progress(
            &run,
            &channel,
            RunStatus::Responding,
            &format!("{} is writing…", profile.name),
            10,
        )
        .await?;
        let started = Instant::now();
        let reply_tokens = llm.reply_sampling.max_tokens;
        let mut context_tokens = llm.context_tokens;
        let mut shortened = false;
        let reply = loop {
            let messages = prompt::build(
                system.clone(),
                &history,
                &user_message.content,
                context_tokens,
                reply_tokens,
            );
            match self.respond(&run, &channel, cancel, llm, &messages).await? {
                Err(LlmError::ContextTooLong { sizes, detail }) if !shortened => {
                    shortened = true;
                    let sent = prompt::count_messages(&messages);
                    context_tokens =
                        prompt::shortened_context(context_tokens, reply_tokens, sent, sizes);
                    tracing::warn!(
                        run_id = %run.id,
                        detail,
                        estimated_prompt_tokens = sent,
                        context_tokens,
                        "the prompt did not fit the model's context; shortening the history once"
                    );
                    metrics::counter!("llm_context_retries_total").increment(1);
                }
                Err(err) => return Err(err.into()),
                Ok(reply) => break reply,
            }
        };
        metrics::histogram!("chat_step_duration_seconds", "step" => "respond")
            .record(started.elapsed().as_secs_f64());
        Ok(reply)
    }

    /// Step `analyze`: run id + reply → the live state afterwards (JSON), or `None` when it stays as it was.
    /// Never fails the run: an unusable analysis keeps the state.
    pub async fn analyze_step(
        &self,
        run_id: Uuid,
        reply: &str,
    ) -> Result<Option<serde_json::Value>, StepError> {
        let run = self.load(run_id).await?;
        let channel = self.hub.open(run.id);
        if run.status == RunStatus::Imaging {
            // Resumed after the analysis was applied: applying it twice would drift the state.
            return Ok(run.state_after.map(|state| state.0));
        }
        self.publish_progress(
            &run,
            &channel,
            RunStatus::Analyzing,
            "Noticing what changed…",
            80,
        )
        .await?;
        let (Some(llm), Some(companion), Some(message)) = (
            &self.llm,
            companions::store::find_owned(&self.db, run.user_id, run.companion_id).await?,
            store::message(&self.db, run.companion_id, run.user_message_id).await?,
        ) else {
            return Ok(None);
        };
        let started = Instant::now();
        let state = self
            .analyze(
                &run,
                &channel,
                llm,
                &companion.id,
                &companion.profile.0.name,
                &message.content,
                reply,
            )
            .await;
        metrics::histogram!("chat_step_duration_seconds", "step" => "analyze")
            .record(started.elapsed().as_secs_f64());
        Ok(state)
    }

    /// Step `image`: run id → the picture of the companion's current scene, or `None` when it could not
    /// be made (the reason is recorded on the run and reaches the reply; the run goes on). A run resumed
    /// after the picture was made keeps it.
    pub async fn image_step(
        &self,
        run_id: Uuid,
        cancel: &CancellationToken,
    ) -> Result<Option<Generated>, StepError> {
        let run = self.load(run_id).await?;
        let channel = self.hub.open(run.id);
        if let Some(image_id) = run.image_id
            && let Some(image) =
                crate::media::store::find_owned(&self.db, run.user_id, image_id).await?
        {
            let generated = Generated {
                image_id,
                width: u32::try_from(image.width).unwrap_or(0),
                height: u32::try_from(image.height).unwrap_or(0),
            };
            channel.publish(RunEvent::Image(generated.event()));
            return Ok(Some(generated));
        }
        self.publish_progress(
            &run,
            &channel,
            RunStatus::Imaging,
            "Picturing the scene…",
            85,
        )
        .await?;
        let started = Instant::now();
        let budget = Timestamp::now()
            .seconds_until(run.deadline_at)
            .saturating_sub(IMAGE_DEADLINE_MARGIN)
            .max(1);
        let picture = self.picture(&run);
        tokio::pin!(picture);
        let too_late = tokio::time::sleep(Duration::from_secs(budget));
        tokio::pin!(too_late);
        // The backend may take minutes: the claim on the run is renewed meanwhile, so no other instance
        // takes the run over (and paints a second picture).
        let mut renew = tokio::time::interval(LEASE / 3);
        renew.tick().await;
        let outcome = loop {
            tokio::select! {
                biased;
                () = cancel.cancelled() => return Err(StepError::Cancelled),
                made = &mut picture => break made,
                () = &mut too_late => break Err("The picture took too long and was stopped.".to_owned()),
                _ = renew.tick() => {
                    store::renew_lease(&self.db, run.id, &self.instance, Timestamp::now() + LEASE).await?;
                }
            }
        };
        metrics::histogram!("chat_step_duration_seconds", "step" => "image")
            .record(started.elapsed().as_secs_f64());
        match outcome {
            Ok(generated) => {
                if !store::save_image_result(&self.db, run.id, Some(generated.image_id), None)
                    .await?
                {
                    // The run ended meanwhile (Stop elsewhere, the conversation wiped): nothing will
                    // show this picture.
                    if let Some(key) =
                        crate::media::store::delete_unattached(&self.db, generated.image_id).await?
                    {
                        self.imaging.discard(vec![key]).await;
                    }
                    return Ok(None);
                }
                channel.publish(RunEvent::Image(generated.event()));
                self.publish_progress(&run, &channel, RunStatus::Imaging, "Picture ready", 95)
                    .await?;
                Ok(Some(generated))
            }
            Err(message) => {
                store::save_image_result(&self.db, run.id, None, Some(&message)).await?;
                Ok(None)
            }
        }
    }

    /// Makes the picture of the companion's scene as the state is now; a failure is a message for people.
    async fn picture(&self, run: &RunRow) -> Result<Generated, String> {
        let companion = companions::store::find_owned(&self.db, run.user_id, run.companion_id)
            .await
            .map_err(|err| {
                tracing::error!(error = %err, "cannot load the companion for a picture");
                "Something went wrong while preparing the picture.".to_owned()
            })?
            .ok_or_else(|| "The companion no longer exists.".to_owned())?;
        let request = crate::images::generate::scene_request(
            &companion.profile.0,
            &companion.live_state.0,
            &self.imaging.settings,
        );
        self.imaging
            .generate(
                &request,
                Destination {
                    owner: run.user_id,
                    companion: Some(run.companion_id),
                    source: Source::Chat,
                },
                &run.correlation_id,
            )
            .await
            .map_err(|err| err.user_message())
    }

    /// Step `finalize`: run id + reply → the stored message id (exactly once; `None` when the run had
    /// already ended another way).
    pub async fn finalize_step(
        &self,
        run_id: Uuid,
        reply: &Reply,
    ) -> Result<Option<Uuid>, StepError> {
        let run = self.load(run_id).await?;
        let channel = self.hub.open(run.id);
        let started = Instant::now();
        // A regenerate deletes the replaced reply with the new one's transaction; its pictures' files follow.
        let replaced_pictures = match run.replaces_message_id {
            Some(replaced) => crate::media::store::keys_of_message(&self.db, replaced)
                .await
                .unwrap_or_else(|err| {
                    tracing::warn!(error = %err, "cannot list a replaced reply's pictures; the cleanup will");
                    Vec::new()
                }),
            None => Vec::new(),
        };
        let finish_reason = reply.finish.as_ref().map(Finish::as_str);
        let stored = match store::complete(&self.db, &run, &reply.text, finish_reason).await? {
            Finished::Now(Some(message_id)) => {
                metrics::counter!("chat_runs_total", "status" => RunStatus::Completed.as_str())
                    .increment(1);
                tracing::info!(run_id = %run.id, "chat run completed");
                channel.publish(RunEvent::Progress {
                    status: RunStatus::Completed.as_str().into(),
                    step: "Done".into(),
                    progress: 100,
                });
                let done = done_event(&self.db, run.companion_id, message_id, &reply.text).await;
                channel.publish(done);
                Some(message_id)
            }
            Finished::Now(None) | Finished::Already => {
                self.publish_final_state(&run, &channel).await;
                None
            }
        };
        if stored.is_some() {
            self.imaging.discard(replaced_pictures).await;
        }
        metrics::histogram!("chat_step_duration_seconds", "step" => "finalize")
            .record(started.elapsed().as_secs_f64());
        Ok(stored)
    }

    /// Streams the reply under the one text rule ([`TrimmedStream`]); persists it every 250 ms while it
    /// grows. A stream that is cut (it broke, or ended without finishing) is started again after a backoff,
    /// as a new version of the text (subscribers get `reset`), until [`STREAM_ATTEMPTS`] streams were tried;
    /// then the run fails with the text so far kept on the run as unfinished. The outer error is this run's
    /// own trouble (Stop, the database); the inner one the model's last failure.
    async fn respond(
        &self,
        run: &RunRow,
        channel: &RunChannel,
        cancel: &CancellationToken,
        llm: &LlmClient,
        messages: &[ChatMessage],
    ) -> Result<Result<Reply, LlmError>, StepError> {
        let expected_chars = (llm.reply_sampling.max_tokens as usize)
            .saturating_mul(4)
            .max(1);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let started = Instant::now();
            let mut first_token = true;
            let mut shown = TrimmedStream::new();
            let stream = llm.stream_reply(messages, &run.correlation_id, |piece| {
                if first_token {
                    first_token = false;
                    metrics::histogram!("llm_time_to_first_token_seconds")
                        .record(started.elapsed().as_secs_f64());
                }
                metrics::counter!("llm_tokens_streamed_total").increment(1);
                if let Some(visible) = shown.push(piece) {
                    channel.push_text(&visible);
                }
            });
            tokio::pin!(stream);
            let mut ticker = tokio::time::interval(FLUSH_EVERY);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut flushed = 0_usize;
            let mut shown_progress = 10_u8;
            let result = loop {
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => return Err(StepError::Cancelled),
                    result = &mut stream => break result,
                    _ = ticker.tick() => {
                        let text = channel.text();
                        if text.len() != flushed {
                            store::save_partial(&self.db, run.id, &text).await?;
                            store::renew_lease(&self.db, run.id, &self.instance, Timestamp::now() + LEASE).await?;
                            flushed = text.len();
                            let progress = 10 + (text.chars().count() * 60 / expected_chars).min(60) as u8;
                            if progress >= shown_progress + 5 {
                                shown_progress = progress;
                                channel.publish(RunEvent::Progress {
                                    status: RunStatus::Responding.as_str().into(),
                                    step: "Writing…".into(),
                                    progress,
                                });
                            }
                        }
                    }
                }
            };
            match result {
                Ok(streamed) => {
                    // The channel holds exactly what clients were shown: that is the reply.
                    let text = channel.text();
                    if text.is_empty() {
                        return Err(StepError::failed(
                            "llm_empty_reply",
                            "The language model sent an empty reply.",
                            true,
                        ));
                    }
                    if streamed.finish != Finish::Stop {
                        tracing::info!(run_id = %run.id, finish = streamed.finish.as_str(), "the reply ended early");
                    }
                    store::save_reply(&self.db, run.id, &text, streamed.finish.as_str()).await?;
                    return Ok(Ok(Reply {
                        text,
                        finish: Some(streamed.finish),
                    }));
                }
                Err(LlmError::StreamBroken { reason, .. }) if attempt < STREAM_ATTEMPTS => {
                    let wait = llm.backoff(attempt);
                    tracing::warn!(
                        run_id = %run.id,
                        attempt,
                        reason,
                        wait_ms = wait.as_millis() as u64,
                        "the reply stream was cut; writing the reply again"
                    );
                    metrics::counter!("llm_stream_restarts_total").increment(1);
                    if !channel.text().is_empty() {
                        let epoch = format!("{}.{attempt}", run.attempts);
                        store::start_text_epoch(&self.db, run.id, &epoch).await?;
                        channel.reset(
                            "The connection to the model broke; the reply starts again.",
                            &epoch,
                        );
                    }
                    tokio::select! {
                        () = cancel.cancelled() => return Err(StepError::Cancelled),
                        () = tokio::time::sleep(wait) => {}
                    }
                }
                Err(err) => {
                    // What was shown stays on the run, marked unfinished by the failure.
                    store::save_partial(&self.db, run.id, &channel.text()).await?;
                    return Ok(Err(err));
                }
            }
        }
    }

    /// Updates the live state from the exchange; a failure keeps the old state and does not fail the run.
    #[allow(clippy::too_many_arguments)]
    async fn analyze(
        &self,
        run: &RunRow,
        channel: &RunChannel,
        llm: &LlmClient,
        companion: &Uuid,
        name: &str,
        said: &str,
        reply: &str,
    ) -> Option<serde_json::Value> {
        // The state is read now, not taken from the time of sending.
        let current = match companions::store::find_owned(&self.db, run.user_id, *companion).await {
            Ok(Some(record)) => record.live_state.0,
            _ => return None,
        };
        let request = analysis::request(name, &current, said, reply);
        let answer = match llm.complete(&request, &run.correlation_id, 600, true).await {
            Ok(answer) => answer,
            Err(err) => {
                tracing::warn!(run_id = %run.id, error = %err, "scene analysis failed; keeping the scene");
                metrics::counter!("scene_analyses_total", "outcome" => "failed").increment(1);
                return None;
            }
        };
        let Some(json) = analysis::extract_json(&answer) else {
            tracing::warn!(
                run_id = %run.id,
                answer_chars = answer.chars().count(),
                "scene analysis answer has no usable JSON; keeping the scene"
            );
            metrics::counter!("scene_analyses_total", "outcome" => "unusable").increment(1);
            return None;
        };
        metrics::counter!("scene_analyses_total", "outcome" => "applied").increment(1);
        match companions::store::update_live_state(&self.db, run.user_id, *companion, |state| {
            analysis::apply(state, &json)
        })
        .await
        {
            Ok(Some(state)) => {
                let value = serde_json::to_value(&state).unwrap_or_default();
                if let Err(err) = store::save_state_after(&self.db, run.id, &value).await {
                    tracing::warn!(error = %err, "cannot record the state of a run");
                }
                channel.publish(RunEvent::State(value.clone()));
                Some(value)
            }
            Ok(None) => None,
            Err(err) => {
                tracing::warn!(run_id = %run.id, error = %err, "cannot save the live state");
                None
            }
        }
    }

    async fn end_cancelled(&self, run: &RunRow, channel: &RunChannel) {
        let partial = channel.text();
        match store::cancel(&self.db, run, &partial).await {
            Ok(Finished::Now(message)) => {
                metrics::counter!("chat_runs_total", "status" => RunStatus::Cancelled.as_str())
                    .increment(1);
                tracing::info!(run_id = %run.id, kept = message.is_some(), "chat run stopped");
                channel.publish(match message {
                    // What was kept, as stored (a picture-only run keeps its reply's text).
                    Some(message_id) => {
                        done_event(&self.db, run.companion_id, message_id, &partial).await
                    }
                    None => RunEvent::Error {
                        code: "cancelled".into(),
                        message: "Stopped.".into(),
                        retryable: true,
                        correlation_id: run.correlation_id.clone(),
                    },
                });
            }
            Ok(Finished::Already) => self.publish_final_state(run, channel).await,
            Err(err) => {
                tracing::error!(run_id = %run.id, error = %err, "cannot record a stopped run")
            }
        }
    }

    async fn end_failed(
        &self,
        run: &RunRow,
        channel: &RunChannel,
        code: &str,
        message: &str,
        retryable: bool,
    ) {
        match store::fail(&self.db, run, &channel.text(), code, message, retryable).await {
            Ok(Finished::Now(_)) => {
                metrics::counter!("chat_runs_total", "status" => RunStatus::Failed.as_str())
                    .increment(1);
                tracing::warn!(run_id = %run.id, code, "chat run failed");
                channel.publish(RunEvent::Error {
                    code: code.to_owned(),
                    message: message.to_owned(),
                    retryable,
                    correlation_id: run.correlation_id.clone(),
                });
            }
            Ok(Finished::Already) => self.publish_final_state(run, channel).await,
            Err(err) => {
                tracing::error!(run_id = %run.id, error = %err, "cannot record a failed run")
            }
        }
    }

    /// Someone else ended the run (Stop through another path, a deleted companion): tell subscribers how.
    async fn publish_final_state(&self, run: &RunRow, channel: &RunChannel) {
        let row = store::find_run(&self.db, run.id).await.ok().flatten();
        let event = match row {
            Some(row) => terminal_event(&row, &self.db).await,
            None => None,
        };
        channel.publish(event.unwrap_or_else(|| RunEvent::Error {
            code: "cancelled".into(),
            message: "The conversation was cleared.".into(),
            retryable: false,
            correlation_id: run.correlation_id.clone(),
        }));
    }
}

/// The `done` event of a stored reply, with its picture (or why it has none); `fallback` is the text when
/// the message cannot be read back.
async fn done_event(db: &Db, companion: Uuid, message_id: Uuid, fallback: &str) -> RunEvent {
    let message = store::message(db, companion, message_id)
        .await
        .ok()
        .flatten();
    let content = message
        .as_ref()
        .map_or_else(|| fallback.to_owned(), |m| m.content.clone());
    let image = message
        .as_ref()
        .and_then(ShownPicture::of)
        .map(|picture| picture.json());
    let (image_error, finish_reason) = match message {
        Some(m) => (m.image_error, m.finish_reason),
        None => (None, None),
    };
    RunEvent::Done {
        message_id,
        html: render::to_html(&content),
        content,
        image,
        image_error,
        finish_reason,
    }
}

/// The `done` or `error` event a finished run replays.
pub async fn terminal_event(run: &RunRow, db: &Db) -> Option<RunEvent> {
    match run.status {
        RunStatus::Completed | RunStatus::Cancelled if run.assistant_message_id.is_some() => {
            let message_id = run.assistant_message_id?;
            Some(done_event(db, run.companion_id, message_id, &run.partial_text).await)
        }
        RunStatus::Completed | RunStatus::Failed | RunStatus::Cancelled => Some(RunEvent::Error {
            code: run.error_code.clone().unwrap_or_else(|| "cancelled".into()),
            message: run
                .error_message
                .clone()
                .unwrap_or_else(|| "Stopped.".into()),
            retryable: run.retryable,
            correlation_id: run.correlation_id.clone(),
        }),
        _ => None,
    }
}

impl RunExecutor for ChatExecutor {
    fn execute(&self, run: Uuid, cancel: CancellationToken) -> BoxFuture<'static, ()> {
        Box::pin(self.clone().execute_run(run, cancel))
    }

    fn orphaned(&self) -> BoxFuture<'static, anyhow::Result<Vec<Uuid>>> {
        let db = self.db.clone();
        Box::pin(async move { Ok(store::orphaned(&db, Timestamp::now()).await?) })
    }

    fn release_all(&self) -> BoxFuture<'static, ()> {
        let (db, instance) = (self.db.clone(), self.instance.clone());
        Box::pin(async move {
            if let Err(err) = store::release_leases(&db, &instance).await {
                tracing::warn!(error = %err, "cannot release chat run leases");
            }
        })
    }
}
