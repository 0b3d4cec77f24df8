//! Step `analyze`: after the reply, ask the model what changed in the scene and apply it to the companion's
//! live state. It never fails the run: an unusable analysis keeps the state as it was.

use std::time::Instant;

use uuid::Uuid;

use super::{ChatExecutor, StepError};
use crate::chat::analysis;
use crate::chat::store::{self, RunRow, RunStatus};
use crate::companions;
use crate::companions::store::CompanionRecord;
use crate::engine::{RunChannel, RunEvent};
use crate::providers::llm::LlmClient;

impl ChatExecutor {
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
            .analyze(&run, &channel, llm, &companion, &message.content, reply)
            .await;
        metrics::histogram!("chat_step_duration_seconds", "step" => "analyze")
            .record(started.elapsed().as_secs_f64());
        Ok(state)
    }

    /// Updates the live state from the exchange; a failure keeps the old state and does not fail the run.
    /// `companion` was read just now (the state is the current one, not the one at the time of sending); an
    /// analysis that changes nothing writes nothing.
    async fn analyze(
        &self,
        run: &RunRow,
        channel: &RunChannel,
        llm: &LlmClient,
        companion: &CompanionRecord,
        said: &str,
        reply: &str,
    ) -> Option<serde_json::Value> {
        let current = &companion.live_state.0;
        let request = analysis::request(&companion.profile.0.name, current, said, reply);
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
        if analysis::apply(current, &json) == *current {
            metrics::counter!("scene_analyses_total", "outcome" => "unchanged").increment(1);
            return None;
        }
        metrics::counter!("scene_analyses_total", "outcome" => "applied").increment(1);
        // Applied again inside the transaction, to the state as it is then (an edit may have come between).
        match companions::store::update_live_state(&self.db, run.user_id, companion.id, |state| {
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
}
