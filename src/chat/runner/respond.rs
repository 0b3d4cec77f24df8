//! Step `respond`: stream the reply under the one text rule, persist it while it grows, start a cut stream
//! again (with backoff) and shorten the history once when the model says the prompt is too long.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{ChatExecutor, StepError};
use crate::chat::prompt;
use crate::chat::reply_text::TrimmedStream;
use crate::chat::store::{self, RunRow, RunStatus, TurnRow};
use crate::engine::{RunChannel, RunEvent};
use crate::providers::llm::{ChatMessage, Finish, LlmClient, LlmError};

/// Persist the growing reply at least this often (and never per token).
const FLUSH_EVERY: Duration = Duration::from_millis(250);
/// The step shown while the reply grows (after the first "… is writing…").
const WRITING: &str = "Writing…";
/// The step shown while the analysis runs.
const NOTICING: &str = "Noticing what changed…";
/// Messages of history considered before the token budget trims them.
const HISTORY_LIMIT: u32 = 200;
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

impl ChatExecutor {
    /// Step `respond`: the claimed run and its turn → the reply. Streams to the run's channel; a reply that
    /// was complete before an interruption is returned as it is. When the provider says the prompt is longer
    /// than its context window, the history is shortened and the reply asked for once more.
    pub async fn respond_step(
        &self,
        run: &RunRow,
        turn: &TurnRow,
        cancel: &CancellationToken,
    ) -> Result<Reply, StepError> {
        let channel = self.hub.open(run.id);
        if !matches!(run.status, RunStatus::Queued | RunStatus::Responding) {
            // The reply was complete before an interruption; subscribers catch up from it.
            channel.seed_text(&run.partial_text, &run.text_epoch);
            return Ok(Reply {
                finish: run.finish_reason.as_deref().and_then(Finish::parse),
                text: run.partial_text.clone(),
            });
        }
        let Some(llm) = &self.llm else {
            return Err(StepError::failed(
                "llm_not_configured",
                "No language model is configured (LLM_BASE_URL, LLM_MODEL).",
                true,
            ));
        };
        let profile = &turn.profile.0;
        channel.seed_text(&run.partial_text, &run.text_epoch);
        if run.attempts > 1 || !run.partial_text.is_empty() {
            // The reply is written again from the start, as a new version of the text: offsets a
            // client got from an earlier execution (in any process) no longer match.
            let epoch = format!("{}.0", run.attempts);
            StepError::held(
                store::start_text_epoch(&self.db, run.id, self.lease(run), &epoch).await?,
            )?;
            channel.reset(
                "The reply is being written again after an interruption.",
                &epoch,
            );
        }
        let history: Vec<prompt::Turn> = store::history_before(
            &self.db,
            run.companion_id,
            run.user_message_id,
            HISTORY_LIMIT,
        )
        .await?
        .into_iter()
        .filter(|m| Some(m.id) != run.replaces_message_id)
        .map(|m| prompt::Turn {
            tokens: m.tokens.and_then(|tokens| u32::try_from(tokens).ok()),
            role: m.role,
            content: m.content,
        })
        .collect();
        let system = prompt::system(profile, &turn.live_state.0, &turn.user_name);
        let said = prompt::Turn {
            role: "user".to_owned(),
            content: turn.said.clone(),
            tokens: turn
                .said_tokens
                .and_then(|tokens| u32::try_from(tokens).ok()),
        };
        // Announced now, recorded with the first flush of text.
        let writing = format!("{} is writing…", profile.name);
        channel.publish(RunEvent::Progress {
            status: RunStatus::Responding.as_str().to_owned(),
            step: writing.clone(),
            progress: 10,
        });
        let started = Instant::now();
        let reply_tokens = llm.reply_sampling.max_tokens;
        let mut context_tokens = llm.context_tokens;
        let mut shortened = false;
        let reply = loop {
            let messages = prompt::build(
                system.clone(),
                &history,
                &said,
                context_tokens,
                reply_tokens,
            );
            match self
                .respond(run, &channel, cancel, llm, &messages, &writing)
                .await?
            {
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
        writing: &str,
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
            let mut step = writing;
            let result = loop {
                tokio::select! {
                    biased;
                    () = cancel.cancelled() => return Err(StepError::Cancelled),
                    result = &mut stream => break result,
                    _ = ticker.tick() => {
                        let text = channel.text();
                        if text.len() != flushed {
                            let progress = 10 + (text.chars().count() * 60 / expected_chars).min(60) as u8;
                            if progress >= shown_progress + 5 {
                                shown_progress = progress;
                                step = WRITING;
                                channel.publish(RunEvent::Progress {
                                    status: RunStatus::Responding.as_str().into(),
                                    step: WRITING.into(),
                                    progress,
                                });
                            }
                            // The progress last announced is recorded with the text it belongs to.
                            let recorded = store::Progress {
                                status: RunStatus::Responding,
                                step,
                                percent: shown_progress,
                            };
                            let until = self.instance.now() + self.lease_length;
                            StepError::held(
                                store::save_partial_and_renew(&self.db, run.id, &text, recorded, self.lease(run), until).await?,
                            )?;
                            flushed = text.len();
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
                    // The analysis comes next: its progress is recorded with the reply.
                    let next = store::Progress {
                        status: RunStatus::Analyzing,
                        step: NOTICING,
                        percent: 80,
                    };
                    let saved = store::save_reply(
                        &self.db,
                        run.id,
                        self.lease(run),
                        &text,
                        streamed.finish.as_str(),
                        next,
                    )
                    .await?;
                    StepError::held(saved)?;
                    channel.publish(RunEvent::Progress {
                        status: next.status.as_str().to_owned(),
                        step: NOTICING.to_owned(),
                        progress: next.percent,
                    });
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
                        StepError::held(
                            store::start_text_epoch(&self.db, run.id, self.lease(run), &epoch)
                                .await?,
                        )?;
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
                    StepError::held(
                        store::save_partial(&self.db, run.id, self.lease(run), &channel.text())
                            .await?,
                    )?;
                    return Ok(Err(err));
                }
            }
        }
    }
}
