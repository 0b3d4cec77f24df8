//! The relay: on PostgreSQL, a subscriber on one instance follows a run executed on another, by push.
//!
//! Policy: the database is the bus. Every change of a run that a subscriber sees (the text flushed every
//! 250 ms, the status, step and progress, the scene, the end) fires a trigger that sends `NOTIFY
//! chat_run_changed` with the run's id — no statement of the executor's own, a payload far under the 8,000
//! byte limit, one notification per flush window. An instance with a subscriber for a run it does not
//! execute keeps a *followed* channel in its hub ([`RunChannel::is_followed`]); on each notification for it,
//! it reads the run ([`RunExecutor::view`]) and turns the difference into the same events the executing
//! instance published: more text as tokens (byte offsets and text versions as they are there, so
//! `Last-Event-ID` stays exact on any instance), a new text version as `reset`, progress, scene, the end.
//! Reads of one run never overlap and a notification during a read makes one more read, so nothing is
//! applied out of order. When the listening connection drops, the relay connects again and reads every
//! followed run (what it missed is in the database). When this instance takes a followed run over (its
//! holder died), the executor clears the mark and publishes on the same channel: subscribers see `reset`
//! and the reply written again, never "another server". SQLite has one instance: no relay.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sqlx::postgres::PgListener;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::hub::{RunChannel, RunEvent, StreamHub};
use super::local::RunExecutor;
use crate::db::Db;

/// The notification channel the trigger on `chat_runs` sends to (migration 20261204000009).
pub const CHANNEL: &str = "chat_run_changed";

/// Follows runs executed elsewhere; see the module documentation.
pub struct Relay {
    hub: Arc<StreamHub>,
    executor: Arc<dyn RunExecutor>,
    /// Runs being read now; `true` when another notification came meanwhile (read once more).
    reading: Mutex<HashMap<Uuid, bool>>,
}

impl Relay {
    /// The relay of `db` (PostgreSQL; `None` on SQLite) and the task that listens for it.
    pub fn start(
        db: &Db,
        hub: Arc<StreamHub>,
        executor: Arc<dyn RunExecutor>,
    ) -> Option<(Arc<Self>, JoinHandle<()>)> {
        let Db::Postgres(pool) = db else { return None };
        let relay = Arc::new(Self {
            hub,
            executor,
            reading: Mutex::new(HashMap::new()),
        });
        let task = tokio::spawn(Arc::clone(&relay).listen(pool.clone()));
        Some((relay, task))
    }

    /// Follows `run` here: its channel, prepared by `seed` (the text and progress the caller just read) when
    /// it is new and marked followed, then brought up to date from the database.
    pub fn follow(self: &Arc<Self>, run: Uuid, seed: impl FnOnce(&RunChannel)) -> Arc<RunChannel> {
        let channel = self.hub.open_or_init(run, |channel| {
            seed(channel);
            channel.set_followed(true);
        });
        self.changed(run);
        channel
    }

    /// A notification (or a reconnection) says `run` may have changed: read it unless a read is running,
    /// in which case that read goes once more.
    fn changed(self: &Arc<Self>, run: Uuid) {
        if !self
            .hub
            .get(run)
            .is_some_and(|channel| channel.is_followed())
        {
            return;
        }
        {
            let mut reading = self.lock();
            if let Some(again) = reading.get_mut(&run) {
                *again = true;
                return;
            }
            reading.insert(run, false);
        }
        let relay = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                relay.bring_up_to_date(run).await;
                let mut reading = relay.lock();
                if reading.get(&run).copied().unwrap_or(false) {
                    reading.insert(run, false);
                } else {
                    reading.remove(&run);
                    break;
                }
            }
        });
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, bool>> {
        self.reading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Reads `run` and publishes on its followed channel what the subscribers have not seen yet.
    async fn bring_up_to_date(&self, run: Uuid) {
        let Some(channel) = self.hub.get(run).filter(|channel| channel.is_followed()) else {
            return;
        };
        let view = match self.executor.view(run).await {
            Ok(view) => view,
            Err(err) => {
                tracing::warn!(run_id = %run, error = format!("{err:#}"), "cannot read a followed run");
                return;
            }
        };
        // The executor may have taken the run over while this read was on its way.
        if !channel.is_followed() {
            return;
        }
        let Some(view) = view else {
            channel.publish(RunEvent::Error {
                code: "cancelled".into(),
                message: "The conversation was cleared.".into(),
                retryable: false,
                correlation_id: String::new(),
            });
            self.hub.close(run);
            return;
        };
        channel.catch_up_to(&view);
        if let Some(terminal) = view.terminal {
            channel.publish(terminal);
            self.hub.close(run);
        }
    }

    /// Listens for as long as the process runs; reconnects (and reads every followed run) after a drop.
    async fn listen(self: Arc<Self>, pool: sqlx::PgPool) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let mut listener = match PgListener::connect_with(&pool).await {
                Ok(listener) => listener,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot connect the run relay's listener; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            if let Err(err) = listener.listen(CHANNEL).await {
                tracing::warn!(error = %err, "cannot listen for run changes; retrying");
                tokio::time::sleep(backoff).await;
                continue;
            }
            backoff = Duration::from_millis(100);
            // Whatever changed while nobody listened is in the database.
            for run in self.hub.followed() {
                self.changed(run);
            }
            loop {
                match listener.try_recv().await {
                    Ok(Some(notification)) => {
                        if let Ok(run) = Uuid::parse_str(notification.payload()) {
                            self.changed(run);
                        }
                    }
                    Ok(None) => {
                        tracing::warn!(
                            "the run relay's listener lost its connection; reconnecting"
                        );
                        break;
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "the run relay's listener failed; reconnecting");
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::RunView;

    fn view(text: &str, epoch: &str, progress: u8) -> RunView {
        RunView {
            text: text.into(),
            epoch: epoch.into(),
            progress: RunEvent::Progress {
                status: "responding".into(),
                step: "Writing…".into(),
                progress,
            },
            state: None,
            terminal: None,
        }
    }

    fn events(receiver: &mut tokio::sync::broadcast::Receiver<RunEvent>) -> Vec<RunEvent> {
        std::iter::from_fn(|| receiver.try_recv().ok()).collect()
    }

    #[test]
    fn a_followed_channel_gets_only_what_is_new_with_the_offsets_of_the_executing_instance() {
        let channel = StreamHub::new().open(Uuid::now_v7());
        channel.seed_text("Über", "");
        let (_, mut receiver) = channel.subscribe();
        channel.catch_up_to(&view("Über die", "", 20));
        channel.catch_up_to(&view("Über die", "", 20));
        let seen = events(&mut receiver);
        assert_eq!(
            seen[0],
            RunEvent::Token {
                text: " die".into(),
                end: "Über die".len(),
                epoch: String::new(),
            }
        );
        assert_eq!(
            seen.len(),
            2,
            "the text and the progress once, nothing for the same view: {seen:?}"
        );

        // A new version of the text (the run was taken over and written again) resets.
        channel.catch_up_to(&view("Hallo", "2.0", 20));
        let seen = events(&mut receiver);
        assert!(
            matches!(&seen[0], RunEvent::Reset { epoch, .. } if epoch == "2.0"),
            "{seen:?}"
        );
        assert_eq!(channel.text(), "Hallo");
        // An older read that arrives late changes nothing.
        channel.catch_up_to(&view("Hal", "2.0", 20));
        assert!(events(&mut receiver).is_empty());
    }
}
