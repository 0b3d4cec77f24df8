//! Step `analyze`: after the reply, ask the model what changed in the scene and apply it to the companion's
//! live state. It never fails the run: an unusable analysis keeps the state as it was.

use std::time::Instant;

use super::{ChatExecutor, StepError};
use crate::chat::analysis;
use crate::chat::store::{self, RunRow, RunStatus, TurnRow};
use crate::companions::profile::LiveState;
use crate::engine::{RunChannel, RunEvent};
use crate::providers::llm::LlmClient;

impl ChatExecutor {
    /// Step `analyze`: the claimed run, its turn and the reply → the live state afterwards (JSON), or `None`
    /// when it stays as it was. Never fails the run: an unusable analysis keeps the state.
    pub async fn analyze_step(
        &self,
        run: &RunRow,
        turn: &TurnRow,
        reply: &str,
    ) -> Result<Option<serde_json::Value>, StepError> {
        if run.status == RunStatus::Imaging {
            // Resumed after the analysis was applied: applying it twice would drift the state.
            return Ok(run.state_after.as_ref().map(|state| state.0.clone()));
        }
        let Some(llm) = &self.llm else {
            return Ok(None);
        };
        let channel = self.hub.open(run.id);
        let started = Instant::now();
        let state = self.analyze(run, &channel, llm, turn, reply).await;
        metrics::histogram!("chat_step_duration_seconds", "step" => "analyze")
            .record(started.elapsed().as_secs_f64());
        Ok(state)
    }

    /// Updates the live state from the exchange; a failure keeps the old state and does not fail the run.
    /// The model is asked about the state the run was claimed with; the change is applied, in a
    /// transaction, to the state as it is then (an edit may have come between). An analysis that changes
    /// nothing writes nothing. Before a picture the state is recorded on the run, so a run resumed after
    /// this step does not apply it twice; otherwise it is recorded when the run ends.
    async fn analyze(
        &self,
        run: &RunRow,
        channel: &RunChannel,
        llm: &LlmClient,
        turn: &TurnRow,
        reply: &str,
    ) -> Option<serde_json::Value> {
        let current = &turn.live_state.0;
        let request = analysis::request(&turn.profile.0.name, current, &turn.said, reply);
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
        // Fenced by the lease: an execution that lost its run changes nothing and announces nothing.
        let lease = self.lease(run);
        match store::change_scene(&self.db, run, lease, current, |state: &LiveState| {
            analysis::apply(state, &json)
        })
        .await
        {
            Ok(Some(state)) => {
                let value = serde_json::to_value(&state).unwrap_or_default();
                if run.generate_image {
                    match store::save_state_after(&self.db, run.id, lease, &value).await {
                        Ok(true) => {}
                        // Lost since the scene was written: the next fenced write stops the execution.
                        Ok(false) => return None,
                        Err(err) => {
                            tracing::warn!(error = %err, "cannot record the state of a run")
                        }
                    }
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
