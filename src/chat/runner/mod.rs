//! Executing a chat run for the engine ([`RunExecutor`]): claim it, drive its steps within its deadline, end
//! it. The steps live beside this file — `respond.rs` (stream the reply), `analyze.rs` (update the live
//! state), `picture.rs` (the picture of the scene), `ending.rs` (store the reply exactly once, or record a
//! stop or a failure, and the event each ending publishes); `step_error.rs` says why a step did not complete.
//!
//! Each step is an async function of the executor (which holds the shared database, model client and stream
//! hub) that takes the run as claimed and, for a reply, its [`TurnRow`] — what the run answers, read once per
//! execution in one query — and returns serialisable output (reply text, state JSON, message id), so a
//! different engine can run them unchanged as activities (each reads the run and its turn by run id, with
//! [`ChatExecutor::turn`]). What a step learns it hands to the next (the reply, the state after the
//! analysis) instead of reading it back, and progress is recorded with the writes next to it: a reply costs
//! a fixed handful of statements besides its 250 ms flushes (docs/performance.md). A run resumed after a
//! crash starts `respond` again when the reply was unfinished (subscribers get `reset`), or continues with
//! the analysis when the reply was complete. Every run ends within its deadline: completed, failed (with a
//! retryable error), or cancelled.

mod activity;
mod analyze;
mod ending;
mod picture;
mod respond;
mod step_error;
#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use super::store::{self, RunKind, RunRow, RunStatus, TurnRow};
use crate::db::Db;
use crate::engine::{Instance, RunChannel, RunEvent, RunExecutor, RunView, StreamHub};
use crate::media::generate::Imaging;
use crate::providers::llm::LlmClient;

pub use activity::Ending;
pub use ending::terminal_event;
pub use respond::{Reply, STREAM_ATTEMPTS};
pub use step_error::StepError;

/// How long a claim on a run lasts without renewal, unless `RUN_LEASE_SECS` says otherwise; renewed every
/// third of it for as long as the run is executed (waiting for the model's first token and the analysis
/// included), and with every flush of text. It only matters when a live instance loses track of a run: a
/// dead instance's runs are taken over as soon as its heartbeat is stale (`INSTANCE_TIMEOUT_SECS`).
pub const LEASE: Duration = Duration::from_secs(30);

/// Runs chat runs against the database, the model and the stream hub.
#[derive(Clone)]
pub struct ChatExecutor {
    db: Db,
    llm: Option<LlmClient>,
    imaging: Imaging,
    hub: Arc<StreamHub>,
    instance: Arc<Instance>,
    /// Slots for the replies written at once (`MAX_ACTIVE_REPLIES`); `None`: no limit.
    reply_slots: Option<Arc<Semaphore>>,
    /// How long a claim lasts without renewal ([`LEASE`] unless configured).
    lease_length: Duration,
}

/// The step a reply shows while it waits for a slot.
const WAITING: &str = "Waiting for its turn…";

impl ChatExecutor {
    /// An executor for this instance (its id names the leases; its clock decides them).
    pub fn new(
        db: Db,
        llm: Option<LlmClient>,
        imaging: Imaging,
        hub: Arc<StreamHub>,
        instance: Arc<Instance>,
    ) -> Self {
        Self {
            db,
            llm,
            imaging,
            hub,
            instance,
            reply_slots: None,
            lease_length: LEASE,
        }
    }

    /// Claims that last `lease` without renewal (`RUN_LEASE_SECS`).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease_length = lease;
        self
    }

    /// At most `max` replies written at once here (streamed and analysed); `None`: no limit.
    pub fn with_reply_slots(mut self, max: Option<usize>) -> Self {
        self.reply_slots = max.map(|max| Arc::new(Semaphore::new(max)));
        self
    }

    /// A slot for writing `run`'s reply, when replies are limited: at once when one is free, else after
    /// the subscribers were told the reply waits its turn. A Stop meanwhile ends the wait (and the run);
    /// the run's deadline bounds it like any step.
    ///
    /// Why: past what the machine streams without delay, every extra reply slows every token of all the
    /// others (docs/performance.md); a reply that waits for its first token is what a reader minds least.
    async fn reply_slot(
        &self,
        run: &RunRow,
        cancel: &CancellationToken,
    ) -> Result<Option<OwnedSemaphorePermit>, StepError> {
        let Some(slots) = &self.reply_slots else {
            return Ok(None);
        };
        if let Ok(slot) = Arc::clone(slots).try_acquire_owned() {
            return Ok(Some(slot));
        }
        self.hub.open(run.id).publish(RunEvent::Progress {
            status: run.status.as_str().into(),
            step: WAITING.into(),
            progress: u8::try_from(run.progress.clamp(0, 100)).unwrap_or(0),
        });
        let _waiting = WaitingReply::new();
        let started = Instant::now();
        let slot = tokio::select! {
            slot = Arc::clone(slots).acquire_owned() => slot.ok(),
            () = cancel.cancelled() => return Err(StepError::Cancelled),
        };
        metrics::histogram!("chat_reply_slot_wait_seconds").record(started.elapsed().as_secs_f64());
        Ok(slot)
    }

    /// This execution's claim on `run` (as claimed): what fences its writes.
    pub(super) fn lease<'a>(&'a self, run: &RunRow) -> store::Lease<'a> {
        store::Lease {
            owner: self.instance.id(),
            token: run.attempts,
        }
    }

    async fn execute_run(self, run_id: Uuid, cancel: CancellationToken) {
        let now = self.instance.now();
        let claimed = store::claim(
            &self.db,
            run_id,
            self.instance.id(),
            now + self.lease_length,
            now,
            self.instance.alive_since(),
        )
        .await;
        let run = match claimed {
            Ok(Some(run)) => run,
            Ok(None) => {
                self.not_ours(run_id).await;
                return;
            }
            Err(err) => {
                tracing::warn!(run_id = %run_id, error = %err, "cannot claim a chat run");
                self.not_ours(run_id).await;
                return;
            }
        };
        // A channel that followed the run while another instance executed it is this instance's now.
        if let Some(channel) = self.hub.get(run.id) {
            channel.set_followed(false);
        }
        let span =
            tracing::info_span!("chat_run", run_id = %run.id, correlation_id = %run.correlation_id);
        self.drive(run, cancel).instrument(span).await;
    }

    async fn drive(&self, run: RunRow, cancel: CancellationToken) {
        let channel = self.hub.open(run.id);
        // By the database's clock, as the deadline was set: a host whose clock jumped keeps the same deadline.
        let remaining = Duration::from_secs(self.instance.now().seconds_until(run.deadline_at));
        let held = async {
            tokio::select! {
                result = self.steps(&run, &cancel) => result,
                lost = self.keep_lease(&run) => Err(lost),
            }
        };
        let outcome = tokio::time::timeout(remaining, held).await;
        let result = match outcome {
            Ok(result) => result,
            Err(_) => Err(activity::deadline_exceeded()),
        };
        match result {
            Ok(()) => {}
            Err(StepError::NotHeld) => {
                tracing::info!(run_id = %run.id, "this instance no longer holds the run; it stops here");
                self.not_ours(run.id).await;
                return;
            }
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

    /// Renews the lease every third of its length for as long as the run executes; returns only when the
    /// lease no longer holds (the run was taken over or ended elsewhere), so the steps stop at once.
    async fn keep_lease(&self, run: &RunRow) -> StepError {
        loop {
            tokio::time::sleep(self.lease_length / 3).await;
            let until = self.instance.now() + self.lease_length;
            match store::renew_lease(&self.db, run.id, self.lease(run), until).await {
                Ok(true) => {}
                Ok(false) => return StepError::NotHeld,
                // The database is away: keep trying; the deadline still bounds the run.
                Err(err) => {
                    tracing::warn!(run_id = %run.id, error = %err, "cannot renew a chat run's lease")
                }
            }
        }
    }

    /// The run finished already, or another instance holds it: tell anyone waiting here, then let go.
    ///
    /// A subscriber may have opened this channel just as the run ended and its own channel closed (it read
    /// the run as active a moment before): the channel then holds nothing, so the reply is caught up from the
    /// database before the end, or that subscriber would see the end without the text.
    async fn not_ours(&self, run_id: Uuid) {
        let Some(channel) = self.hub.get(run_id) else {
            return;
        };
        // Subscribers here follow the run where it executes (engine::relay): nothing to tell them.
        if channel.is_followed() {
            return;
        }
        let event = match self.view(run_id).await {
            Ok(Some(view)) => {
                channel.catch_up_to(&view);
                match view.terminal {
                    Some(terminal) => terminal,
                    None if matches!(self.db, Db::Postgres(_)) => {
                        // Another instance executes it: the relay follows it there for the subscribers here.
                        channel.set_followed(true);
                        return;
                    }
                    None => RunEvent::Error {
                        code: "run_elsewhere".into(),
                        message:
                            "The reply is being written by another server; reconnecting will follow it."
                                .into(),
                        retryable: true,
                        correlation_id: String::new(),
                    },
                }
            }
            Ok(None) => RunEvent::Error {
                code: "cancelled".into(),
                message: "The conversation was cleared.".into(),
                retryable: false,
                correlation_id: String::new(),
            },
            Err(err) => {
                tracing::warn!(run_id = %run_id, error = format!("{err:#}"), "cannot read a chat run");
                RunEvent::Error {
                    code: "service_unavailable".into(),
                    message: "The reply cannot be read right now; reconnecting will try again."
                        .into(),
                    retryable: true,
                    correlation_id: String::new(),
                }
            }
        };
        channel.publish(event);
        self.hub.close(run_id);
    }

    async fn publish_progress(
        &self,
        run: &RunRow,
        channel: &RunChannel,
        status: RunStatus,
        step: &str,
        progress: u8,
    ) -> Result<(), StepError> {
        StepError::held(
            store::set_progress(&self.db, run.id, self.lease(run), status, step, progress).await?,
        )?;
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
            self.image_step(run, cancel).await?;
            let nothing = Reply {
                text: String::new(),
                finish: None,
            };
            self.finalize_step(run, &nothing, None).await?;
            return Ok(());
        }
        let turn = self.turn(run).await?;
        // The reply and its analysis are the work per run; the picture mostly waits for its backend.
        let slot = self.reply_slot(run, cancel).await?;
        let reply = self.respond_step(run, &turn, cancel).await?;
        if cancel.is_cancelled() {
            return Err(StepError::Cancelled);
        }
        let state_after = self.analyze_step(run, &turn, &reply.text).await?;
        drop(slot);
        if cancel.is_cancelled() {
            return Err(StepError::Cancelled);
        }
        if run.generate_image {
            self.image_step(run, cancel).await?;
        }
        self.finalize_step(run, &reply, state_after.as_ref())
            .await?;
        Ok(())
    }

    /// What `run` answers: the companion, its owner's name and the message, in one read.
    pub async fn turn(&self, run: &RunRow) -> Result<TurnRow, StepError> {
        store::turn(&self.db, run).await?.ok_or_else(|| {
            StepError::failed(
                "not_found",
                "The companion or the message no longer exists.",
                false,
            )
        })
    }
}

impl RunExecutor for ChatExecutor {
    fn execute(&self, run: Uuid, cancel: CancellationToken) -> BoxFuture<'static, ()> {
        Box::pin(self.clone().execute_run(run, cancel))
    }

    fn orphaned(&self) -> BoxFuture<'static, anyhow::Result<Vec<Uuid>>> {
        let (db, instance) = (self.db.clone(), self.instance.clone());
        Box::pin(
            async move { Ok(store::orphaned(&db, instance.now(), instance.alive_since()).await?) },
        )
    }

    fn view(&self, run: Uuid) -> BoxFuture<'static, anyhow::Result<Option<RunView>>> {
        let db = self.db.clone();
        Box::pin(async move {
            let Some(row) = store::find_run(&db, run).await? else {
                return Ok(None);
            };
            let terminal = terminal_event(&row, &db).await;
            Ok(Some(RunView {
                // A finished run's text is its reply (what `done` carries).
                text: match &terminal {
                    Some(RunEvent::Done { content, .. }) => content.clone(),
                    _ => row.partial_text.clone(),
                },
                epoch: row.text_epoch.clone(),
                progress: RunEvent::Progress {
                    status: row.status.as_str().to_owned(),
                    step: row.step.clone(),
                    progress: u8::try_from(row.progress.clamp(0, 100)).unwrap_or(0),
                },
                state: row.state_after.map(|state| state.0),
                terminal,
            }))
        })
    }

    fn release_all(&self) -> BoxFuture<'static, ()> {
        let (db, instance) = (self.db.clone(), self.instance.clone());
        Box::pin(async move {
            if let Err(err) = store::release_leases(&db, instance.id()).await {
                tracing::warn!(error = %err, "cannot release chat run leases");
            }
        })
    }
}

/// Counts replies waiting for a slot (`chat_replies_waiting`) while alive.
struct WaitingReply;

impl WaitingReply {
    fn new() -> Self {
        metrics::gauge!("chat_replies_waiting").increment(1.0);
        Self
    }
}

impl Drop for WaitingReply {
    fn drop(&mut self) {
        metrics::gauge!("chat_replies_waiting").decrement(1.0);
    }
}
