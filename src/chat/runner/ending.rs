//! How a run ends: `finalize` stores the reply exactly once (and lets the replaced reply's pictures go), a
//! stop keeps what was written, a failure records its reason; each ending publishes its `done` or `error`
//! event, and a finished run replays the same event to a late subscriber.

use std::time::{Duration, Instant};

use uuid::Uuid;

use super::{ChatExecutor, Reply, StepError};
use crate::chat::display::ShownPicture;
use crate::chat::render;
use crate::chat::store::{self, Finished, RunKind, RunRow, RunStatus};
use crate::db::Db;
use crate::engine::{RunChannel, RunEvent};
use crate::providers::llm::Finish;

impl ChatExecutor {
    /// Step `finalize`: the claimed run, the reply and the state after the analysis → the stored message
    /// id (exactly once; `None` when the run had already ended another way).
    pub async fn finalize_step(
        &self,
        run: &RunRow,
        reply: &Reply,
        state_after: Option<&serde_json::Value>,
    ) -> Result<Option<Uuid>, StepError> {
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
        let stored = match store::complete(
            &self.db,
            run,
            self.lease(run),
            &reply.text,
            finish_reason,
            state_after,
        )
        .await?
        {
            Finished::Now(Some(message_id)) => {
                metrics::counter!("chat_runs_total", "status" => RunStatus::Completed.as_str())
                    .increment(1);
                tracing::info!(run_id = %run.id, "chat run completed");
                channel.publish(RunEvent::Progress {
                    status: RunStatus::Completed.as_str().into(),
                    step: "Done".into(),
                    progress: 100,
                });
                let done = if run.generate_image || run.kind == RunKind::Image {
                    // The picture (or why there is none) is read back with the message.
                    done_event(&self.db, run.companion_id, message_id, &reply.text).await
                } else {
                    // Stored just now exactly as given: nothing to read back.
                    RunEvent::Done {
                        message_id,
                        html: render::to_html(&reply.text),
                        content: reply.text.clone(),
                        image: None,
                        image_error: None,
                        finish_reason: finish_reason.map(str::to_owned),
                    }
                };
                channel.publish(done);
                Some(message_id)
            }
            Finished::Now(None) | Finished::Already => {
                self.publish_final_state(run, &channel).await;
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

    pub(super) async fn end_cancelled(&self, run: &RunRow, channel: &RunChannel) {
        let partial = channel.text();
        let stopped = RunEvent::Error {
            code: "cancelled".into(),
            message: "Stopped.".into(),
            retryable: true,
            correlation_id: run.correlation_id.clone(),
        };
        let recorded = self
            .record_ending(run, channel, stopped.clone(), || {
                store::cancel(&self.db, run, Some(self.lease(run)), &partial)
            })
            .await;
        match recorded {
            Recorded::Now(Finished::Now(message)) => {
                metrics::counter!("chat_runs_total", "status" => RunStatus::Cancelled.as_str())
                    .increment(1);
                tracing::info!(run_id = %run.id, kept = message.is_some(), "chat run stopped");
                channel.publish(match message {
                    // What was kept, as stored (a picture-only run keeps its reply's text).
                    Some(message_id) => {
                        done_event(&self.db, run.companion_id, message_id, &partial).await
                    }
                    None => stopped,
                });
            }
            Recorded::Now(Finished::Already) => self.publish_final_state(run, channel).await,
            Recorded::Told => {}
        }
    }

    pub(super) async fn end_failed(
        &self,
        run: &RunRow,
        channel: &RunChannel,
        code: &str,
        message: &str,
        retryable: bool,
    ) {
        let partial = channel.text();
        let failed = RunEvent::Error {
            code: code.to_owned(),
            message: message.to_owned(),
            retryable,
            correlation_id: run.correlation_id.clone(),
        };
        let recorded = self
            .record_ending(run, channel, failed.clone(), || {
                store::fail(
                    &self.db,
                    run,
                    self.lease(run),
                    &partial,
                    code,
                    message,
                    retryable,
                )
            })
            .await;
        match recorded {
            Recorded::Now(Finished::Now(_)) => {
                metrics::counter!("chat_runs_total", "status" => RunStatus::Failed.as_str())
                    .increment(1);
                tracing::warn!(run_id = %run.id, code, "chat run failed");
                channel.publish(failed);
            }
            Recorded::Now(Finished::Already) => self.publish_final_state(run, channel).await,
            Recorded::Told => {}
        }
    }

    /// Writes a run's ending with `record`. When the database is away, the subscribers are told `ending` at
    /// once (a stream must not wait past the run's deadline for a write that cannot happen), and the write
    /// is tried again, backing off, until it succeeds or the lease has lapsed — from then on the sweeper of
    /// whichever instance claims the run ends it (its deadline has passed, or it resumes). Until the ending
    /// is written, the companion counts as busy: the retries make Retry work soon after the database
    /// returns instead of a lease later.
    async fn record_ending<Fut>(
        &self,
        run: &RunRow,
        channel: &RunChannel,
        ending: RunEvent,
        record: impl Fn() -> Fut,
    ) -> Recorded
    where
        Fut: Future<Output = Result<Finished, sqlx::Error>>,
    {
        let err = match record().await {
            Ok(finished) => return Recorded::Now(finished),
            Err(err) => err,
        };
        tracing::error!(run_id = %run.id, error = %err,
            "cannot record how a run ended; its subscribers are told, and the write is tried again");
        channel.publish(ending);
        let give_up = Instant::now() + self.lease_length;
        let mut wait = Duration::from_millis(250);
        while Instant::now() < give_up {
            tokio::time::sleep(wait).await;
            wait = (wait * 2).min(Duration::from_secs(4));
            match record().await {
                Ok(_) => {
                    tracing::info!(run_id = %run.id, "the run's ending is recorded after all");
                    return Recorded::Told;
                }
                Err(err) => {
                    tracing::warn!(run_id = %run.id, error = %err, "still cannot record how a run ended")
                }
            }
        }
        tracing::error!(run_id = %run.id, "the run's ending is left to the sweeper once the database is back");
        Recorded::Told
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

/// Whether an ending was written when it happened, or its subscribers were told without it.
enum Recorded {
    /// Written at once: how it went.
    Now(Finished),
    /// The database was away: the subscribers were told the ending as it would have been written.
    Told,
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
