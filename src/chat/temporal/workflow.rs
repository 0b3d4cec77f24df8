//! The workflow of one chat run on Temporal: respond → analyze → image (when asked) → finalize, each an
//! activity ([`super::activities`]); a step that ends the run badly (Stop, a failure that retrying did not
//! mend) is followed by the `end` activity that records it.
//!
//! Workflow code is replayed from its history, so it must decide the same way every time: it calls
//! activities and looks at their results, nothing else — no clocks, no tokio, no I/O, no configuration read
//! here (the timings come in the input, recorded in the history). A change to the order or the number of
//! activities breaks replay of histories recorded before it: such a change is a new workflow type (docs/
//! deploy.md, "Upgrading workers"), and `tests/temporal.rs` replays a recorded history against this code.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use temporalio_common::RetryPolicy;
use temporalio_common::error::ApplicationFailure;
use temporalio_common::protos::temporal::api::failure::v1::{Failure, failure::FailureInfo};
use temporalio_macros::{workflow, workflow_methods};
use temporalio_sdk::{
    ActivityExecutionError, ActivityOptions, WorkflowCancellationToken, WorkflowContext,
    WorkflowResult, WorkflowTermination,
};

use super::activities::{
    AnalyzeInput, ChatActivities, EndInput, FinalizeInput, NOT_HELD, Responded, Step, StepFailure,
};
use crate::chat::runner::{Ending, Reply};

/// What a run's workflow is started with: the run, and how its steps are timed and retried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunInput {
    /// The run's id (also the workflow's id).
    pub run: String,
    /// Timeouts and retries of its activities.
    pub timing: StepTiming,
}

/// How the activities of a run are timed and retried (from `TEMPORAL_*` and `RUN_DEADLINE_SECS`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTiming {
    /// Longest one attempt of a step may take (the run's deadline bounds it anyway).
    pub step_timeout_secs: u64,
    /// A worker that stops heartbeating for this long has lost the step to another.
    pub heartbeat_secs: u64,
    /// Attempts of a step before the run fails with the last error.
    pub attempts: u32,
    /// The wait before a second attempt (doubling up to 10×).
    pub retry_initial_secs: u64,
}

/// One chat run.
#[workflow]
#[derive(Default)]
pub struct ChatRunWorkflow;

#[workflow_methods]
impl ChatRunWorkflow {
    /// Runs the run's steps; the result names how it ended (the run row says the rest).
    #[run]
    pub async fn run(ctx: &mut WorkflowContext<Self>, input: RunInput) -> WorkflowResult<String> {
        let options = step_options(&input.timing);
        let responded = ctx
            .execute_activity(ChatActivities::respond, input.run.clone(), options.clone())
            .await;
        let Responded { reply, picture } = match responded {
            Ok(Step::Done(responded)) => responded,
            Ok(Step::Ended) => return Ok("ended elsewhere".to_owned()),
            Err(err) => return ended(ctx, &input, err).await,
        };
        let mut state_after = None;
        if let Some(reply) = &reply {
            let analyzed = ctx
                .execute_activity(
                    ChatActivities::analyze,
                    AnalyzeInput {
                        run: input.run.clone(),
                        reply: reply.text.clone(),
                    },
                    options.clone(),
                )
                .await;
            state_after = match analyzed {
                Ok(Step::Done(state)) => state,
                Ok(Step::Ended) => return Ok("ended elsewhere".to_owned()),
                Err(err) => return ended(ctx, &input, err).await,
            };
        }
        if picture {
            let pictured = ctx
                .execute_activity(ChatActivities::image, input.run.clone(), options.clone())
                .await;
            match pictured {
                Ok(Step::Done(())) => {}
                Ok(Step::Ended) => return Ok("ended elsewhere".to_owned()),
                Err(err) => return ended(ctx, &input, err).await,
            }
        }
        let finalized = ctx
            .execute_activity(
                ChatActivities::finalize,
                FinalizeInput {
                    run: input.run.clone(),
                    reply: reply.unwrap_or(Reply {
                        text: String::new(),
                        finish: None,
                    }),
                    state_after,
                },
                options,
            )
            .await;
        match finalized {
            Ok(_) => Ok("completed".to_owned()),
            Err(err) => ended(ctx, &input, err).await,
        }
    }
}

/// A step ended the run badly: record how (Stop, or the failure), then end the workflow the same way.
async fn ended(
    ctx: &mut WorkflowContext<ChatRunWorkflow>,
    input: &RunInput,
    err: ActivityExecutionError,
) -> WorkflowResult<String> {
    let cancelled = ctx.cancellation_token().is_cancelled();
    let ending = match &err {
        ActivityExecutionError::Cancelled(_) if cancelled => Ending::Cancelled,
        _ => match failure_of(err.failure()) {
            // Another holder took the run over, or it ended another way: nothing to record here.
            Cause::NotHeld => return Ok("ended elsewhere".to_owned()),
            Cause::Step(failure) => Ending::Failed {
                code: failure.code,
                message: failure.message,
                retryable: failure.retryable,
            },
            Cause::Other(reason) => Ending::Failed {
                code: "worker_failed".to_owned(),
                message: format!(
                    "The reply could not be finished: the last attempt failed ({reason}). Retry writes it again."
                ),
                retryable: true,
            },
        },
    };
    let recorded = ctx
        .execute_activity(
            ChatActivities::end,
            EndInput {
                run: input.run.clone(),
                ending: ending.clone(),
            },
            ending_options(&input.timing),
        )
        .await;
    recorded?;
    match ending {
        Ending::Cancelled => Err(WorkflowTermination::cancelled()),
        Ending::Failed { code, message, .. } => Err(ApplicationFailure::builder(message)
            .type_name(code)
            .non_retryable(true)
            .build()
            .into()),
    }
}

/// Why a step failed, as its failure chain says.
enum Cause {
    NotHeld,
    Step(StepFailure),
    Other(String),
}

/// The first application failure in `failure`'s chain: ours (a step's error, as JSON) or another's.
fn failure_of(failure: Option<&Failure>) -> Cause {
    let Some(top) = failure else {
        return Cause::Other("no failure details".to_owned());
    };
    let mut current = Some(top);
    while let Some(failure) = current {
        if let Some(FailureInfo::ApplicationFailureInfo(info)) = &failure.failure_info {
            if info.r#type == NOT_HELD {
                return Cause::NotHeld;
            }
            if let Ok(step) = serde_json::from_str::<StepFailure>(&failure.message) {
                return Cause::Step(step);
            }
        }
        current = failure.cause.as_deref();
    }
    let mut reason = top.message.clone();
    if let Some(cause) = &top.cause {
        reason = format!("{reason}: {}", cause.message);
    }
    Cause::Other(reason)
}

/// The steps: bounded per attempt, heartbeating, retried with backoff.
fn step_options(timing: &StepTiming) -> ActivityOptions {
    let initial = Duration::from_secs(timing.retry_initial_secs.max(1));
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(timing.step_timeout_secs))
        .heartbeat_timeout(Duration::from_secs(timing.heartbeat_secs))
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(initial)
                .backoff_coefficient(2.0)
                .maximum_interval(initial * 10)
                .maximum_attempts(timing.attempts)
                .build(),
        )
        .build()
}

/// Recording an ending: not cancelled with the workflow (Stop is what it records), and tried harder.
fn ending_options(timing: &StepTiming) -> ActivityOptions {
    let initial = Duration::from_secs(timing.retry_initial_secs.max(1));
    ActivityOptions::with_start_to_close_timeout(Duration::from_secs(60))
        .heartbeat_timeout(Duration::from_secs(timing.heartbeat_secs))
        .cancellation_token(WorkflowCancellationToken::new())
        .retry_policy(
            RetryPolicy::builder()
                .initial_interval(initial)
                .backoff_coefficient(2.0)
                .maximum_interval(initial * 10)
                .maximum_attempts(timing.attempts.max(5))
                .build(),
        )
        .build()
}
