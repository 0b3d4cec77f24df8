//! The relay: on PostgreSQL, a subscriber on one instance follows a run executed on another, by push.
//!
//! Policy: the database is the bus, on two paths. The *state* path carries everything: every change of a
//! run that a subscriber sees (the text flushed every 250 ms, the status, step and progress, the scene, the
//! end) fires a trigger that sends `NOTIFY chat_run_changed` with the run's id — no statement of the
//! executor's own. An instance with a subscriber for a run it does not execute keeps a *followed* channel in
//! its hub ([`RunChannel::is_followed`]); on each notification for it, it reads the run
//! ([`RunExecutor::view`]) and turns the difference into the same events the executing instance published:
//! more text as tokens (byte offsets and text versions as they are there, so `Last-Event-ID` stays exact on
//! any instance), a new text version as `reset`, progress, scene, the end. Reads of one run never overlap
//! and a notification during a read makes one more read, so nothing is applied out of order. A change of a
//! run in progress that needs no read (a flush of the text, a new step or progress) comes as a
//! change notice with the text's length and the progress: when the token path already brought that much
//! text and no read is on its way, the follower publishes the progress and reads nothing.
//!
//! The *token* path makes the text nearly as quick as on the executing instance, where the state path alone
//! is up to a flush window late: an instance following a run says so (`NOTIFY chat_run_follow`, the run ids,
//! again every 5 s while it follows), and the instance executing it then sends the whole text so far and
//! each token as it comes (`NOTIFY chat_run_tokens`: run, text version, end offset and the text; the tokens
//! that piled up while one was sent go together, so a busy run costs fewer notifications, each far under the
//! 8,000-byte limit — a piece too long goes without its text, and the follower reads the database). A
//! request for a run that has not started here yet (the follower is often quicker than the claim) is kept
//! for 5 s and served when the executor opens the run's channel. Sending stops 15 s after the last "I
//! follow", and runs nobody follows cost nothing. A token is placed by its offset
//! ([`RunChannel::push_text_at`]): one already there is dropped; one after a gap waits while the follower
//! reads the run, and is placed once that read reaches it. The two paths together never lose or repeat text.
//!
//! The token path's messages go by PostgreSQL (`NOTIFY chat_run_follow` and `chat_run_tokens`) or, with
//! `REDIS_URL`, by Redis Streams ([`super::bus`]): the same messages, each token notice to the following
//! instances only, resumed by stream id after a dropped connection.
//!
//! When the listening connection drops, the relay connects again and reads every followed run (what it
//! missed is in the database). When this instance takes a followed run over (its holder died), the executor
//! clears the mark and publishes on the same channel: subscribers see `reset` and the reply written again,
//! never "another server". SQLite has one instance: no relay.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::bus::{Delivery, ReadPosition, RedisBus};
use super::hub::{RunChannel, RunEvent, StreamHub};
use super::local::RunExecutor;
use crate::db::Db;

/// The notification channel the trigger on `chat_runs` sends to (migration 20261204000009).
pub const CHANNEL: &str = "chat_run_changed";
/// Where a following instance names the runs it follows (comma-separated ids).
pub const FOLLOW_CHANNEL: &str = "chat_run_follow";
/// Where the executing instance sends the tokens of followed runs (a `TokenNotice` as JSON).
pub const TOKENS_CHANNEL: &str = "chat_run_tokens";
/// How often a follower says again which runs it follows.
const FOLLOW_RENEWAL: Duration = Duration::from_secs(5);
/// How long after the last "I follow" the executing instance goes on sending tokens.
const FOLLOW_LAPSE: Duration = Duration::from_secs(15);
/// The most text one token notification carries.
const MAX_NOTICE_TEXT: usize = 3_000;
/// PostgreSQL refuses payloads of 8,000 bytes and more.
const MAX_PAYLOAD: usize = 7_900;
/// Run ids per follow notification (37 bytes each with the comma).
const IDS_PER_NOTICE: usize = 150;
/// How long a follower's request for a run that has not started here is remembered.
const ASKED_EARLY_FOR: Duration = Duration::from_secs(5);
/// Tokens kept per followed run while a read of it fills the gap before them.
const MAX_WAITING_NOTICES: usize = 256;

/// A change of a run in progress that a follower can apply without a read (migration 20261204000010): the
/// length of its text and its progress. Any other change comes as the bare run id.
#[derive(Debug, Deserialize)]
struct ChangeNotice {
    run: Uuid,
    text_bytes: usize,
    status: String,
    step: String,
    progress: i32,
}

/// One token notification: `text` ends at byte `end` of text version `epoch` of `run`; without `text` the
/// piece was too long to send, and the follower reads the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TokenNotice {
    run: Uuid,
    end: usize,
    epoch: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    text: Option<String>,
}

/// Who hears a token notice sent by PostgreSQL: every instance.
const EVERY_INSTANCE: &str = "";

/// A run executing here whose tokens go to followers.
struct Sending {
    /// The following instances, and when each last said it follows (on PostgreSQL one entry,
    /// [`EVERY_INSTANCE`]: a notification reaches them all).
    followers: HashMap<String, Instant>,
    /// Send the whole text so far before the next token (a follower was heard, or tokens were missed).
    whole_text: bool,
}

/// Follows runs executed elsewhere; see the module documentation.
pub struct Relay {
    hub: Arc<StreamHub>,
    executor: Arc<dyn RunExecutor>,
    pool: sqlx::PgPool,
    /// The token path's bus when `REDIS_URL` is set; PostgreSQL's notifications otherwise.
    redis: Option<RedisBus>,
    /// Runs being read now; `true` when another notification came meanwhile (read once more).
    reading: Mutex<HashMap<Uuid, bool>>,
    /// Runs executing here whose tokens are sent to followers.
    sending: Mutex<HashMap<Uuid, Sending>>,
    /// Tokens of followed runs that arrived after a gap, placed once a read of the run fills it.
    waiting: Mutex<HashMap<Uuid, Vec<TokenNotice>>>,
    /// Runs a follower asked for before they started here (a follower is often quicker than the claim),
    /// with when and who asked.
    asked_early: Mutex<HashMap<Uuid, (Instant, String)>>,
}

impl Relay {
    /// The relay of `db` (PostgreSQL; `None` on SQLite) and the task that listens for it; the token path
    /// goes by `redis` when given.
    pub fn start(
        db: &Db,
        hub: Arc<StreamHub>,
        executor: Arc<dyn RunExecutor>,
        redis: Option<RedisBus>,
    ) -> Option<(Arc<Self>, JoinHandle<()>)> {
        let Db::Postgres(pool) = db else { return None };
        let relay = Arc::new(Self {
            hub,
            executor,
            pool: pool.clone(),
            redis,
            reading: Mutex::new(HashMap::new()),
            sending: Mutex::new(HashMap::new()),
            waiting: Mutex::new(HashMap::new()),
            asked_early: Mutex::new(HashMap::new()),
        });
        let weak = Arc::downgrade(&relay);
        relay.hub.on_open(move |run| {
            if let Some(relay) = weak.upgrade() {
                relay.opened(run);
            }
        });
        // One task for every loop: aborting it stops the listeners and the renewals.
        let (listening, renewing, reading) =
            (Arc::clone(&relay), Arc::clone(&relay), Arc::clone(&relay));
        let pool = pool.clone();
        let task = tokio::spawn(async move {
            tokio::join!(
                listening.listen(pool),
                renewing.renew_follows(),
                reading.read_redis()
            );
        });
        Some((relay, task))
    }

    /// The Redis bus of the token path, when there is one.
    pub fn redis(&self) -> Option<&RedisBus> {
        self.redis.as_ref()
    }

    /// Follows `run` here: its channel, prepared by `seed` (the text and progress the caller just read) when
    /// it is new and marked followed, then brought up to date from the database.
    pub fn follow(self: &Arc<Self>, run: Uuid, seed: impl FnOnce(&RunChannel)) -> Arc<RunChannel> {
        let channel = self.hub.open_or_init(run, |channel| {
            seed(channel);
            channel.set_followed(true);
        });
        self.changed(run);
        self.announce(vec![run]);
        channel
    }

    /// Tells the instance executing these runs that they are followed here (so it sends their tokens).
    fn announce(&self, runs: Vec<Uuid>) {
        if runs.is_empty() {
            return;
        }
        let (pool, redis) = (self.pool.clone(), self.redis.clone());
        tokio::spawn(async move {
            for ids in runs.chunks(IDS_PER_NOTICE) {
                let announced = match &redis {
                    Some(redis) => redis.announce(ids).await.map_err(|err| err.to_string()),
                    None => {
                        let payload = ids
                            .iter()
                            .map(Uuid::to_string)
                            .collect::<Vec<_>>()
                            .join(",");
                        notify(&pool, FOLLOW_CHANNEL, &payload)
                            .await
                            .map_err(|err| err.to_string())
                    }
                };
                if let Err(err) = announced {
                    tracing::warn!(error = %err, "cannot announce followed runs");
                }
            }
        });
    }

    /// Says again, every [`FOLLOW_RENEWAL`], which runs are followed here.
    async fn renew_follows(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(FOLLOW_RENEWAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            self.announce(self.hub.followed());
        }
    }

    /// Instance `from` follows `run`: when it executes here, send its tokens (or keep sending them),
    /// starting with the whole text so far (a new follower may lack what was written before it was
    /// heard). A run not here yet is remembered for a moment: it may be about to start.
    fn followed_elsewhere(self: &Arc<Self>, run: Uuid, from: &str) {
        let Some(channel) = self.hub.get(run) else {
            let mut asked = self.asked_early_lock();
            asked.retain(|_, (at, _)| at.elapsed() < ASKED_EARLY_FOR);
            asked.insert(run, (Instant::now(), from.to_owned()));
            return;
        };
        if channel.is_followed() {
            return;
        }
        let started = {
            let mut sending = self.sending_lock();
            let entry = sending.entry(run).or_insert_with(|| Sending {
                followers: HashMap::new(),
                whole_text: true,
            });
            let started = entry.followers.is_empty();
            if entry
                .followers
                .insert(from.to_owned(), Instant::now())
                .is_none()
            {
                // A new follower gets the whole text first.
                entry.whole_text = true;
            }
            started
        };
        if started {
            tokio::spawn(Arc::clone(self).send_tokens(run, channel));
        }
    }

    fn asked_early_lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (Instant, String)>> {
        self.asked_early
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The executor opened the channel of `run`: a follower that asked for it a moment ago gets its tokens.
    fn opened(self: &Arc<Self>, run: Uuid) {
        let asked = self
            .asked_early_lock()
            .remove(&run)
            .filter(|(at, _)| at.elapsed() < ASKED_EARLY_FOR);
        if let Some((_, from)) = asked {
            self.followed_elsewhere(run, &from);
        }
    }

    fn sending_lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Sending>> {
        self.sending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends the tokens of `run` as they come, until it ends or nobody said "I follow" for [`FOLLOW_LAPSE`].
    async fn send_tokens(self: Arc<Self>, run: Uuid, channel: Arc<RunChannel>) {
        let (_, mut receiver) = channel.subscribe();
        loop {
            let (whole_text, followers) = {
                let mut sending = self.sending_lock();
                let Some(entry) = sending.get_mut(&run) else {
                    break;
                };
                entry
                    .followers
                    .retain(|_, heard| heard.elapsed() <= FOLLOW_LAPSE);
                if entry.followers.is_empty() {
                    sending.remove(&run);
                    return;
                }
                let followers: Vec<String> = entry.followers.keys().cloned().collect();
                (std::mem::take(&mut entry.whole_text), followers)
            };
            if whole_text {
                let snapshot = channel.snapshot();
                if snapshot.finished.is_some() {
                    break;
                }
                if !snapshot.text.is_empty() {
                    let end = snapshot.text.len();
                    self.send_notice(run, &followers, snapshot.text, end, snapshot.epoch)
                        .await;
                }
            }
            let first = match tokio::time::timeout(FOLLOW_RENEWAL, receiver.recv()).await {
                Err(_) => continue,
                Ok(Ok(event)) => event,
                Ok(Err(broadcast::error::RecvError::Lagged(_))) => {
                    // Tokens were missed here: send the whole text again.
                    if let Some(entry) = self.sending_lock().get_mut(&run) {
                        entry.whole_text = true;
                    }
                    continue;
                }
                Ok(Err(broadcast::error::RecvError::Closed)) => break,
            };
            let RunEvent::Token {
                mut text,
                mut end,
                epoch,
            } = first
            else {
                if first.is_terminal() {
                    break;
                }
                continue;
            };
            // What piled up meanwhile goes with it.
            let mut ended = false;
            while text.len() < MAX_NOTICE_TEXT {
                match receiver.try_recv() {
                    Ok(RunEvent::Token {
                        text: more,
                        end: more_end,
                        epoch: more_epoch,
                    }) if more_epoch == epoch && more_end.checked_sub(more.len()) == Some(end) => {
                        text.push_str(&more);
                        end = more_end;
                    }
                    Ok(event) if event.is_terminal() => {
                        ended = true;
                        break;
                    }
                    // Another version, or a gap: the followers read the run.
                    Ok(_) | Err(_) => break,
                }
            }
            self.send_notice(run, &followers, text, end, epoch).await;
            if ended {
                break;
            }
        }
        self.sending_lock().remove(&run);
    }

    /// One token notification to `followers` (without its text when the piece is too long: the followers
    /// read the run).
    async fn send_notice(
        &self,
        run: Uuid,
        followers: &[String],
        text: String,
        end: usize,
        epoch: String,
    ) {
        let mut notice = TokenNotice {
            run,
            end,
            epoch,
            text: (text.len() <= MAX_NOTICE_TEXT).then_some(text),
        };
        let mut payload = serde_json::to_string(&notice).unwrap_or_default();
        // Escapes can make a short text long: past the limit, the notice goes without it.
        if payload.len() > MAX_PAYLOAD || payload.is_empty() {
            notice.text = None;
            payload = serde_json::to_string(&notice).unwrap_or_default();
        }
        let sent = match &self.redis {
            Some(redis) => redis
                .send_tokens(followers, &payload)
                .await
                .map_err(|err| err.to_string()),
            None => notify(&self.pool, TOKENS_CHANNEL, &payload)
                .await
                .map_err(|err| err.to_string()),
        };
        match sent {
            Ok(()) => metrics::counter!(
                "chat_relay_token_notices_total",
                "direction" => "sent",
                "bus" => self.bus_name()
            )
            .increment(1),
            Err(err) => tracing::warn!(run_id = %run, error = %err, "cannot send a run's tokens"),
        }
    }

    /// Which bus carries the token path, as the metrics name it.
    fn bus_name(&self) -> &'static str {
        if self.redis.is_some() {
            "redis"
        } else {
            "postgres"
        }
    }

    /// Tokens of a run followed here: placed by their offset, or the run is read when they cannot be.
    fn tokens(self: &Arc<Self>, notice: TokenNotice) {
        let Some(channel) = self
            .hub
            .get(notice.run)
            .filter(|channel| channel.is_followed())
        else {
            return;
        };
        metrics::counter!(
            "chat_relay_token_notices_total",
            "direction" => "received",
            "bus" => self.bus_name()
        )
        .increment(1);
        let placed = notice
            .text
            .as_deref()
            .is_some_and(|text| channel.push_text_at(text, notice.end, &notice.epoch));
        if !placed {
            if notice.text.is_some() {
                let mut waiting = self.waiting_lock();
                let queue = waiting.entry(notice.run).or_default();
                if queue.len() >= MAX_WAITING_NOTICES {
                    queue.remove(0);
                }
                queue.push(notice.clone());
            }
            self.changed(notice.run);
        }
    }

    fn waiting_lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, Vec<TokenNotice>>> {
        self.waiting
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Places the tokens that waited for `channel`'s text to reach them; keeps those still after a gap.
    fn place_waiting(&self, run: Uuid, channel: &RunChannel) {
        let mut waiting = self.waiting_lock();
        let Some(queue) = waiting.get_mut(&run) else {
            return;
        };
        queue.sort_by_key(|notice| notice.end);
        let snapshot = channel.snapshot();
        let mut length = snapshot.text.len();
        queue.retain(|notice| {
            let Some(text) = &notice.text else {
                return false;
            };
            if notice.epoch != snapshot.epoch || notice.end <= length {
                return false;
            }
            if channel.push_text_at(text, notice.end, &notice.epoch) {
                length = notice.end;
                false
            } else {
                true
            }
        });
        if queue.is_empty() {
            waiting.remove(&run);
        }
    }

    /// A run in progress changed its text or progress: when the tokens already brought that much text
    /// here and no read is on its way (which might be about to change the text version), the progress is
    /// published as it is; else the run is read ([`Relay::changed`]).
    fn changed_in_progress(self: &Arc<Self>, notice: ChangeNotice) {
        let Some(channel) = self
            .hub
            .get(notice.run)
            .filter(|channel| channel.is_followed())
        else {
            return;
        };
        let reading = self.lock().contains_key(&notice.run);
        if text_already_here(notice.text_bytes, channel.text_len(), reading) {
            metrics::counter!("chat_relay_reads_total", "outcome" => "skipped").increment(1);
            channel.publish_progress(RunEvent::Progress {
                status: notice.status,
                step: notice.step,
                progress: u8::try_from(notice.progress.clamp(0, 100)).unwrap_or(0),
            });
        } else {
            self.changed(notice.run);
        }
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
        metrics::counter!("chat_relay_reads_total", "outcome" => "read").increment(1);
        let view = match self.executor.view(run).await {
            Ok(view) => view,
            Err(err) => {
                tracing::warn!(run_id = %run, error = format!("{err:#}"), "cannot read a followed run");
                return;
            }
        };
        // The executor may have taken the run over while this read was on its way.
        if !channel.is_followed() {
            self.waiting_lock().remove(&run);
            return;
        }
        let Some(view) = view else {
            self.waiting_lock().remove(&run);
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
        if view.terminal.is_some() {
            self.waiting_lock().remove(&run);
        } else {
            self.place_waiting(run, &channel);
        }
        if let Some(terminal) = view.terminal {
            channel.publish(terminal);
            self.hub.close(run);
        }
    }

    /// One notification, by its channel.
    fn received(self: &Arc<Self>, notification: &sqlx::postgres::PgNotification) {
        let payload = notification.payload();
        match notification.channel() {
            CHANNEL => {
                if let Ok(run) = Uuid::parse_str(payload) {
                    self.changed(run);
                } else {
                    match serde_json::from_str::<ChangeNotice>(payload) {
                        Ok(notice) => self.changed_in_progress(notice),
                        Err(err) => tracing::warn!(error = %err, "an unreadable run change"),
                    }
                }
            }
            FOLLOW_CHANNEL => {
                for run in payload.split(',').filter_map(|id| Uuid::parse_str(id).ok()) {
                    self.followed_elsewhere(run, EVERY_INSTANCE);
                }
            }
            TOKENS_CHANNEL => self.token_notice(payload),
            _ => {}
        }
    }

    fn token_notice(self: &Arc<Self>, payload: &str) {
        match serde_json::from_str::<TokenNotice>(payload) {
            Ok(notice) => self.tokens(notice),
            Err(err) => tracing::warn!(error = %err, "an unreadable token notification"),
        }
    }

    /// Reads the Redis streams of the token path (when there is a Redis bus) for as long as the process
    /// runs; after a dropped connection, reads on from the last entry read and reads every followed run.
    async fn read_redis(self: Arc<Self>) {
        let Some(redis) = self.redis.clone() else {
            return;
        };
        let mut position: Option<ReadPosition> = None;
        let mut backoff = Duration::from_millis(100);
        loop {
            let (mut connection, mut at) = match redis.reader(position.clone()).await {
                Ok(reader) => reader,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot connect the run relay's Redis reader; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            backoff = Duration::from_millis(100);
            if position.is_some() {
                // What the stream no longer holds (trimmed while this reader was away) is in the database.
                for run in self.hub.followed() {
                    self.changed(run);
                }
            }
            loop {
                match redis.read(&mut connection, &mut at).await {
                    Ok(deliveries) => {
                        for delivery in deliveries {
                            match delivery {
                                Delivery::Follow { from, runs } => {
                                    for run in runs {
                                        self.followed_elsewhere(run, &from);
                                    }
                                }
                                Delivery::Tokens(notice) => self.token_notice(&notice),
                            }
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "the run relay's Redis reader failed; reconnecting");
                        position = Some(at);
                        tokio::time::sleep(backoff).await;
                        break;
                    }
                }
            }
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
            // With a Redis bus the token path goes there; the run's state always comes by PostgreSQL.
            let channels: &[&str] = if self.redis.is_some() {
                &[CHANNEL]
            } else {
                &[CHANNEL, FOLLOW_CHANNEL, TOKENS_CHANNEL]
            };
            if let Err(err) = listener.listen_all(channels.iter().copied()).await {
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
                    Ok(Some(notification)) => self.received(&notification),
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

/// Whether a change of a run whose text is `text_bytes` long needs no read: the channel already holds
/// `held` bytes of the same version (a new version comes as a bare run id) and no read is on its way.
fn text_already_here(text_bytes: usize, held: usize, reading: bool) -> bool {
    held >= text_bytes && !reading
}

/// `NOTIFY channel, payload` (through the pool: any connection will do).
async fn notify(pool: &sqlx::PgPool, channel: &str, payload: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(channel)
        .bind(payload)
        .execute(pool)
        .await
        .map(|_| ())
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
    fn a_change_in_progress_is_read_only_when_the_tokens_have_not_brought_the_text_or_a_read_is_on_its_way()
     {
        assert!(text_already_here(12, 12, false), "the tokens brought it");
        assert!(text_already_here(12, 15, false), "and more since");
        assert!(!text_already_here(12, 11, false), "text is missing");
        assert!(
            !text_already_here(12, 12, true),
            "a read on its way may bring a new version"
        );
    }

    #[test]
    fn a_change_notice_reads_as_the_trigger_writes_it() {
        let run = Uuid::now_v7();
        let notice: ChangeNotice = serde_json::from_str(&format!(
            r#"{{"run" : "{run}", "text_bytes" : 13, "status" : "responding", "step" : "Writing…", "progress" : 15}}"#
        ))
        .expect("the trigger's JSON");
        assert_eq!(
            (notice.run, notice.text_bytes, notice.progress),
            (run, 13, 15)
        );
        assert_eq!(
            (notice.status.as_str(), notice.step.as_str()),
            ("responding", "Writing…")
        );
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
