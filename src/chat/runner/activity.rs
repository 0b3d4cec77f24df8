//! The steps one at a time, for an engine that runs each as an activity on whichever worker takes it
//! (Temporal, `chat::temporal`): take the run over for one step, run the step while holding the run's lease
//! and within its deadline, and record how the run ended when the engine decides it ended badly. The steps
//! themselves are the ones [`ChatExecutor::steps`] runs in-process; nothing here repeats them.

use std::sync::Arc;
use std::time::Duration;

use uuid::Uuid;

use super::{ChatExecutor, StepError};
use crate::chat::store::{self, RunRow};
use crate::engine::RunChannel;

/// How a run ended when it did not finish: what the engine asks [`ChatExecutor::end_with`] to write.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Ending {
    /// Stop was pressed.
    Cancelled,
    /// A step failed for good (or kept failing); the user sees `message`.
    Failed {
        /// Stable code for the error event.
        code: String,
        /// What the user reads.
        message: String,
        /// Whether Retry can help.
        retryable: bool,
    },
}

impl ChatExecutor {
    /// Takes `run` over for one step on this process, whoever held it (the engine gives a step to one worker
    /// at a time): writes of an earlier holder are refused from now on. The run's channel here is this
    /// process's to publish on, holding at least the text stored so far. `None` when the run has ended.
    pub async fn take_over(
        &self,
        run: Uuid,
    ) -> Result<Option<(RunRow, Arc<RunChannel>)>, StepError> {
        let now = self.instance.now();
        let Some(run) = store::take_over(
            &self.db,
            run,
            self.instance.id(),
            now + self.lease_length,
            now,
        )
        .await?
        else {
            return Ok(None);
        };
        let channel = self.hub.open(run.id);
        channel.set_followed(false);
        if channel.text_len() < run.partial_text.len() {
            channel.seed_text(&run.partial_text, &run.text_epoch);
        }
        Ok(Some((run, channel)))
    }

    /// Runs one step of `run` (as taken over) while renewing its lease, and no longer than the run's
    /// deadline: a step that overruns it fails the run (`deadline_exceeded`), and one whose lease was taken
    /// by another holder stops at once ([`StepError::NotHeld`]).
    pub async fn hold<T>(
        &self,
        run: &RunRow,
        step: impl Future<Output = Result<T, StepError>>,
    ) -> Result<T, StepError> {
        let remaining = Duration::from_secs(self.instance.now().seconds_until(run.deadline_at));
        let held = async {
            tokio::select! {
                result = step => result,
                lost = self.keep_lease(run) => Err(lost),
            }
        };
        tokio::time::timeout(remaining, held)
            .await
            .unwrap_or_else(|_| Err(deadline_exceeded()))
    }

    /// Writes how `run` (as taken over) ended and tells its subscribers, as the in-process engine does.
    pub async fn end_with(&self, run: &RunRow, channel: &RunChannel, ending: &Ending) {
        match ending {
            Ending::Cancelled => self.end_cancelled(run, channel).await,
            Ending::Failed {
                code,
                message,
                retryable,
            } => {
                self.end_failed(run, channel, code, message, *retryable)
                    .await
            }
        }
    }

    /// Ends a run that nobody holds and whose deadline has passed (its engine was away meanwhile), so it
    /// never stays "writing" forever. True when this call ended it.
    pub async fn expire(&self, run_id: Uuid) -> bool {
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
            Ok(None) => return false,
            Err(err) => {
                tracing::warn!(run_id = %run_id, error = %err, "cannot claim an overdue chat run");
                return false;
            }
        };
        let channel = self.hub.open(run.id);
        if channel.text_len() < run.partial_text.len() {
            channel.seed_text(&run.partial_text, &run.text_epoch);
        }
        let StepError::Failed {
            code,
            message,
            retryable,
        } = deadline_exceeded()
        else {
            return false;
        };
        self.end_failed(&run, &channel, code, &message, retryable)
            .await;
        self.hub.close(run.id);
        true
    }

    /// Ends `run` as stopped here, whoever holds it (a Stop its worker did not hear); true when this call
    /// ended it.
    pub async fn stop_now(&self, run: Uuid) -> bool {
        match self.take_over(run).await {
            Ok(Some((run, channel))) => {
                self.end_with(&run, &channel, &Ending::Cancelled).await;
                self.hub.close(run.id);
                true
            }
            Ok(None) => false,
            Err(_) => false,
        }
    }

    /// Unfinished runs nobody holds, as (past their deadline, not yet).
    pub async fn unattended(&self) -> Result<(Vec<Uuid>, Vec<Uuid>), sqlx::Error> {
        let now = self.instance.now();
        let runs =
            store::orphaned_with_deadlines(&self.db, now, self.instance.alive_since()).await?;
        let (overdue, waiting): (Vec<_>, Vec<_>) = runs
            .into_iter()
            .partition(|(_, deadline)| now.seconds_until(*deadline) == 0);
        Ok((
            overdue.into_iter().map(|(run, _)| run).collect(),
            waiting.into_iter().map(|(run, _)| run).collect(),
        ))
    }
}

/// The failure of a run that reached its deadline.
pub(super) fn deadline_exceeded() -> StepError {
    StepError::failed(
        "deadline_exceeded",
        "The reply took too long and was stopped.",
        true,
    )
}
