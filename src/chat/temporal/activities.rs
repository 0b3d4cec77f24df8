//! The activities of a run's workflow: each takes the run over on this worker, runs the very step the
//! in-process engine runs (`chat::runner`), heartbeats while it works (with the length of the reply so
//! far), and hands the run's channel back when it is done — closed when the run ended, or followed by the
//! relay when the next step may run on another worker. A cancellation from Temporal (Stop) reaches the step
//! as its cancellation token, so the model's stream is dropped at once.
//!
//! Each activity's body runs on the main runtime (the worker polls on a thread of its own),
//! where the database pools and the model client live.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_common::error::ApplicationFailure;
use temporalio_macros::activities;
use temporalio_sdk::activities::{ActivityContext, ActivityError};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::chat::runner::{ChatExecutor, Ending, Reply, StepError};
use crate::chat::store::{RunKind, RunRow};
use crate::engine::{Relay, RunChannel, StreamHub};

/// The failure type of a step whose run is held by another attempt (or ended another way).
pub const NOT_HELD: &str = "not_held";

/// A step's result: its output, or word that the run had already ended when the step came.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Step<T> {
    /// The step ran.
    Done(T),
    /// The run had ended (elsewhere, or by a Stop while Temporal was away): nothing more to do.
    Ended,
}

/// What `respond` found out: the reply (none for a picture-only run) and whether a picture follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Responded {
    /// The reply; `None` for a run that only makes a picture.
    pub reply: Option<Reply>,
    /// Whether the `image` step runs.
    pub picture: bool,
}

/// The input of `analyze`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AnalyzeInput {
    /// The run.
    pub run: String,
    /// The reply the analysis reads.
    pub reply: String,
}

/// The input of `finalize`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinalizeInput {
    /// The run.
    pub run: String,
    /// The reply to store (empty for a picture-only run).
    pub reply: Reply,
    /// The companion's state after the analysis, if it changed.
    pub state_after: Option<serde_json::Value>,
}

/// The input of `end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndInput {
    /// The run.
    pub run: String,
    /// How it ended.
    pub ending: Ending,
}

/// A step's failure as the workflow reads it (the message of its application failure, as JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepFailure {
    /// Stable code for the error event.
    pub code: String,
    /// What the user reads.
    pub message: String,
    /// Whether Retry can help.
    pub retryable: bool,
}

/// The activities, over this process's executor, stream hub and relay.
pub struct ChatActivities {
    executor: ChatExecutor,
    hub: Arc<StreamHub>,
    relay: Option<Arc<Relay>>,
    /// The main runtime, where the steps run.
    runtime: tokio::runtime::Handle,
}

impl ChatActivities {
    /// Activities that run steps with `executor` on `runtime`, publishing on `hub` and following runs that
    /// move on to another worker through `relay` (PostgreSQL).
    pub fn new(
        executor: ChatExecutor,
        hub: Arc<StreamHub>,
        relay: Option<Arc<Relay>>,
        runtime: tokio::runtime::Handle,
    ) -> Self {
        Self {
            executor,
            hub,
            relay,
            runtime,
        }
    }
}

#[activities]
impl ChatActivities {
    /// Step `respond` (a picture-only run has nothing to write).
    #[activity]
    pub async fn respond(
        self: Arc<Self>,
        ctx: ActivityContext,
        run: String,
    ) -> Result<Step<Responded>, ActivityError> {
        let this = Arc::clone(&self);
        self.step(ctx, run, move |run, cancel| async move {
            if run.kind == RunKind::Image {
                return Ok(Responded {
                    reply: None,
                    picture: true,
                });
            }
            let turn = this.executor.turn(&run).await?;
            let reply = this.executor.respond_step(&run, &turn, &cancel).await?;
            Ok(Responded {
                reply: Some(reply),
                picture: run.generate_image,
            })
        })
        .await
    }

    /// Step `analyze`: the scene after the reply.
    #[activity]
    pub async fn analyze(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: AnalyzeInput,
    ) -> Result<Step<Option<serde_json::Value>>, ActivityError> {
        let this = Arc::clone(&self);
        self.step(ctx, input.run, move |run, _cancel| async move {
            let turn = this.executor.turn(&run).await?;
            this.executor.analyze_step(&run, &turn, &input.reply).await
        })
        .await
    }

    /// Step `image`: the picture of the scene.
    #[activity]
    pub async fn image(
        self: Arc<Self>,
        ctx: ActivityContext,
        run: String,
    ) -> Result<Step<()>, ActivityError> {
        let this = Arc::clone(&self);
        self.step(ctx, run, move |run, cancel| async move {
            this.executor.image_step(&run, &cancel).await.map(|_| ())
        })
        .await
    }

    /// Step `finalize`: the reply stored exactly once.
    #[activity]
    pub async fn finalize(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: FinalizeInput,
    ) -> Result<Step<Option<String>>, ActivityError> {
        let this = Arc::clone(&self);
        self.step(ctx, input.run, move |run, _cancel| async move {
            let stored = this
                .executor
                .finalize_step(&run, &input.reply, input.state_after.as_ref())
                .await?;
            Ok(stored.map(|id| id.to_string()))
        })
        .await
    }

    /// Records how a run ended badly (Stop, or a failure retrying did not mend).
    #[activity]
    pub async fn end(
        self: Arc<Self>,
        ctx: ActivityContext,
        input: EndInput,
    ) -> Result<Step<()>, ActivityError> {
        let this = Arc::clone(&self);
        self.step(ctx, input.run, move |run, _cancel| async move {
            let channel = this.hub.open(run.id);
            this.executor.end_with(&run, &channel, &input.ending).await;
            Ok(())
        })
        .await
    }
}

impl ChatActivities {
    /// One step of `run` on this worker: taken over, run under its lease while heartbeating, the channel
    /// handed back after; the step's error as Temporal should see it.
    async fn step<T, Work, Fut>(
        self: Arc<Self>,
        ctx: ActivityContext,
        run: String,
        work: Work,
    ) -> Result<Step<T>, ActivityError>
    where
        T: Send + 'static,
        Work: FnOnce(RunRow, CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StepError>> + Send,
    {
        let run_id = Uuid::parse_str(&run).map_err(|_| {
            ActivityError::application(
                ApplicationFailure::builder(format!("not a run id: {run:?}"))
                    .non_retryable(true)
                    .build(),
            )
        })?;
        let runtime = self.runtime.clone();
        let outcome = runtime
            .spawn(async move { self.step_here(ctx, run_id, work).await })
            .await;
        match outcome {
            Ok(result) => result,
            Err(join) => Err(ActivityError::application(ApplicationFailure::new(
                format!("the step stopped unexpectedly: {join}"),
            ))),
        }
    }

    async fn step_here<T, Work, Fut>(
        self: Arc<Self>,
        ctx: ActivityContext,
        run_id: Uuid,
        work: Work,
    ) -> Result<Step<T>, ActivityError>
    where
        Work: FnOnce(RunRow, CancellationToken) -> Fut,
        Fut: Future<Output = Result<T, StepError>>,
    {
        let (run, channel) = match self.executor.take_over(run_id).await {
            Ok(Some(taken)) => taken,
            Ok(None) => return Ok(Step::Ended),
            Err(err) => return Err(activity_error(err)),
        };
        let span = tracing::info_span!("chat_run_step", run_id = %run.id,
            correlation_id = %run.correlation_id, step = %ctx.info().activity_type,
            attempt = ctx.info().attempt);
        let cancel = CancellationToken::new();
        let every = ctx
            .info()
            .heartbeat_timeout
            .map_or(Duration::from_secs(1), |timeout| timeout / 4)
            .max(Duration::from_millis(200));
        let heartbeat = async {
            loop {
                tokio::time::sleep(every).await;
                if let Err(err) = ctx.record_heartbeat(channel.text_len() as u64).await {
                    tracing::warn!(run_id = %run.id, error = %err, "cannot record a heartbeat");
                }
            }
        };
        let stop = async {
            ctx.cancelled().await;
            cancel.cancel();
            std::future::pending::<()>().await;
        };
        let result = async {
            tokio::select! {
                result = self.executor.hold(&run, work(run.clone(), cancel.clone())) => result,
                () = heartbeat => unreachable_loop(),
                () = stop => unreachable_loop(),
            }
        }
        .instrument(span)
        .await;
        self.hand_back(&run, &channel);
        result.map(Step::Done).map_err(activity_error)
    }

    /// After a step: the run's channel closes when the run ended; when it goes on and may move to another
    /// worker, subscribers here follow it through the relay (a worker with nobody listening lets it go).
    fn hand_back(&self, run: &RunRow, channel: &RunChannel) {
        if channel.is_finished() {
            self.hub.close(run.id);
            return;
        }
        let Some(relay) = &self.relay else {
            // SQLite: the one worker is this process; the next step publishes here again.
            return;
        };
        if channel.subscriber_count() == 0 {
            self.hub.close(run.id);
            return;
        }
        channel.set_followed(true);
        relay.follow(run.id, |_| {});
    }
}

/// The loops in a step's `select!` never end on their own.
fn unreachable_loop<T>() -> Result<T, StepError> {
    Err(StepError::NotHeld)
}

/// A step's error as Temporal sees it: Stop as a cancellation, a lost run as `not_held` (not retried), a
/// database failure as retryable, anything else as the step's final word (the step retried the model itself).
fn activity_error(err: StepError) -> ActivityError {
    match err {
        StepError::Cancelled => ActivityError::cancelled(),
        StepError::NotHeld => ActivityError::application(
            ApplicationFailure::builder("another attempt holds the run, or it ended")
                .type_name(NOT_HELD.to_owned())
                .non_retryable(true)
                .build(),
        ),
        StepError::Failed {
            code,
            message,
            retryable,
        } => {
            let failure = StepFailure {
                code: code.to_owned(),
                message,
                retryable,
            };
            let text = serde_json::to_string(&failure).unwrap_or_default();
            ActivityError::application(
                ApplicationFailure::builder(text)
                    .type_name(code.to_owned())
                    .non_retryable(code != "internal_error")
                    .build(),
            )
        }
    }
}
