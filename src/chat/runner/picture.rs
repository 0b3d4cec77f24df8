//! Step `image`: the picture of the companion's current scene, made within the run's deadline while the
//! claim on the run is renewed; a failure is recorded on the run and reaches the reply, the run goes on.

use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{ChatExecutor, StepError};
use crate::chat::store::{self, RunRow, RunStatus};
use crate::companions;
use crate::engine::RunEvent;
use crate::media::generate::{Destination, Generated};
use crate::media::store::Source;

/// Time kept back from the deadline when a picture is being made, so the reply is still stored.
const IMAGE_DEADLINE_MARGIN: u64 = 10;

impl ChatExecutor {
    /// Step `image`: the claimed run → the picture of the companion's current scene, or `None` when it could not
    /// be made (the reason is recorded on the run and reaches the reply; the run goes on). A run resumed
    /// after the picture was made keeps it.
    pub async fn image_step(
        &self,
        run: &RunRow,
        cancel: &CancellationToken,
    ) -> Result<Option<Generated>, StepError> {
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
            run,
            &channel,
            RunStatus::Imaging,
            "Picturing the scene…",
            85,
        )
        .await?;
        let started = Instant::now();
        let budget = self
            .instance
            .now()
            .seconds_until(run.deadline_at)
            .saturating_sub(IMAGE_DEADLINE_MARGIN)
            .max(1);
        let picture = self.picture(run);
        tokio::pin!(picture);
        let too_late = tokio::time::sleep(Duration::from_secs(budget));
        tokio::pin!(too_late);
        // The backend may take minutes: the lease is renewed meanwhile by the run's keeper (`drive`).
        let outcome = tokio::select! {
            biased;
            () = cancel.cancelled() => return Err(StepError::Cancelled),
            made = &mut picture => made,
            () = &mut too_late => Err("The picture took too long and was stopped.".to_owned()),
        };
        metrics::histogram!("chat_step_duration_seconds", "step" => "image")
            .record(started.elapsed().as_secs_f64());
        match outcome {
            Ok(generated) => {
                if !store::save_image_result(
                    &self.db,
                    run.id,
                    self.lease(run),
                    Some(generated.image_id),
                    None,
                )
                .await?
                {
                    // The run ended meanwhile (Stop elsewhere, the conversation wiped) or was taken over:
                    // nothing will show this picture.
                    if let Some(key) =
                        crate::media::store::delete_unattached(&self.db, generated.image_id).await?
                    {
                        self.imaging.discard(vec![key]).await;
                    }
                    return Err(StepError::NotHeld);
                }
                channel.publish(RunEvent::Image(generated.event()));
                self.publish_progress(run, &channel, RunStatus::Imaging, "Picture ready", 95)
                    .await?;
                Ok(Some(generated))
            }
            Err(message) => {
                let recorded = store::save_image_result(
                    &self.db,
                    run.id,
                    self.lease(run),
                    None,
                    Some(&message),
                )
                .await?;
                StepError::held(recorded)?;
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
        let request = crate::images::prompt::scene_request(
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
}
