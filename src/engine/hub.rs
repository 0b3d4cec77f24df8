//! The stream hub: per-run broadcast channels that also hold the run's text so far.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use serde_json::Value;
use tokio::sync::broadcast;
use uuid::Uuid;

/// Events buffered per subscriber before it counts as lagging (it then resynchronises from the snapshot:
/// the text, the scene and the end in one catch-up). tokio's broadcast allocates every slot when the
/// channel opens — 1,024 were 41 KiB per run, most of the memory an active chat cost; 128 are six
/// seconds of tokens at 20 per second for a subscriber that stalls.
const CHANNEL_CAPACITY: usize = 128;

/// Something a subscriber of a run is told (DESIGN.md §5, stream events).
#[derive(Debug, Clone, PartialEq)]
pub enum RunEvent {
    /// Status, step or progress changed.
    Progress {
        /// `queued`, `responding`, …
        status: String,
        /// Human-readable step.
        step: String,
        /// 0–100.
        progress: u8,
    },
    /// More reply text; `end` is the byte length of the text after it, in the text version `epoch`.
    Token {
        /// The new text.
        text: String,
        /// Byte offset of the end of this piece.
        end: usize,
        /// The version of the text (empty for the first; changes with every reset).
        epoch: String,
    },
    /// The reply restarts from nothing (a step was retried); offsets now refer to `epoch`.
    Reset {
        /// Why.
        reason: String,
        /// The new text version.
        epoch: String,
    },
    /// The live state after the analysis.
    State(Value),
    /// A generated image.
    Image(Value),
    /// The reply is stored; the stream ends.
    Done {
        /// The stored message.
        message_id: Uuid,
        /// Its text.
        content: String,
        /// Its display HTML (sanitised).
        html: String,
        /// The attached picture (`{"id","url","width","height"}`), if any.
        image: Option<Value>,
        /// Why the picture asked for could not be made.
        image_error: Option<String>,
        /// How the reply ended (`length`: cut at the token limit), when known.
        finish_reason: Option<String>,
    },
    /// The run failed or was cancelled; the stream ends.
    Error {
        /// Stable code.
        code: String,
        /// Human-readable message.
        message: String,
        /// Whether Retry can help.
        retryable: bool,
        /// The correlation id of the request that started the run.
        correlation_id: String,
    },
}

/// A run as a subscriber sees it, read from the database.
#[derive(Debug, Clone, PartialEq)]
pub struct RunView {
    /// The reply text so far (or the whole reply), in version `epoch`.
    pub text: String,
    /// The text version.
    pub epoch: String,
    /// The status, step and progress as a `progress` event.
    pub progress: RunEvent,
    /// The scene after the analysis, once known.
    pub state: Option<serde_json::Value>,
    /// The `done` or `error` of a finished run.
    pub terminal: Option<RunEvent>,
}

impl RunEvent {
    /// `done` and `error` end a stream.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Done { .. } | Self::Error { .. })
    }
}

/// What a subscriber gets first: the state of the run at the moment it subscribed.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// The reply text so far.
    pub text: String,
    /// Its version.
    pub epoch: String,
    /// The latest progress event, if any.
    pub progress: Option<RunEvent>,
    /// The latest state event, if any.
    pub state: Option<RunEvent>,
    /// The terminal event, if the run has ended.
    pub finished: Option<RunEvent>,
}

#[derive(Debug, Default)]
struct ChannelState {
    text: String,
    epoch: String,
    progress: Option<RunEvent>,
    state: Option<RunEvent>,
    finished: Option<RunEvent>,
}

/// The channel of one run.
#[derive(Debug)]
pub struct RunChannel {
    state: Mutex<ChannelState>,
    sender: broadcast::Sender<RunEvent>,
    /// The run executes on another instance and this channel mirrors it (`engine::relay`); cleared when
    /// this instance takes the run over.
    followed: AtomicBool,
}

impl RunChannel {
    fn new() -> Self {
        Self {
            state: Mutex::new(ChannelState::default()),
            sender: broadcast::channel(CHANNEL_CAPACITY).0,
            followed: AtomicBool::new(false),
        }
    }

    /// Marks the channel as mirroring a run executed elsewhere (or, with `false`, as executed here).
    pub fn set_followed(&self, followed: bool) {
        self.followed.store(followed, Ordering::Release);
    }

    /// True while the channel mirrors a run executed on another instance.
    pub fn is_followed(&self) -> bool {
        self.followed.load(Ordering::Acquire)
    }

    /// True once the run's `done` or `error` was published here.
    pub fn is_finished(&self) -> bool {
        self.lock().finished.is_some()
    }

    /// How many subscribers listen on this channel now.
    pub fn subscriber_count(&self) -> usize {
        self.sender.receiver_count()
    }

    /// What a subscriber would catch up from, without subscribing.
    pub fn snapshot(&self) -> Snapshot {
        self.lock().snapshot()
    }

    fn lock(&self) -> MutexGuard<'_, ChannelState> {
        // A panic while holding this lock leaves plain data behind; it is still usable.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends reply text and tells subscribers (under one lock, so snapshots never miss or repeat text).
    pub fn push_text(&self, piece: &str) {
        let mut state = self.lock();
        state.text.push_str(piece);
        let _ = self.sender.send(RunEvent::Token {
            text: piece.to_owned(),
            end: state.text.len(),
            epoch: state.epoch.clone(),
        });
    }

    /// Appends a piece that ends at byte `end` of text version `epoch` (a token relayed from the instance
    /// executing the run), telling subscribers only what is new. False when it cannot be placed — another
    /// version, or text missing before it — and the caller must catch up from the database instead.
    pub fn push_text_at(&self, piece: &str, end: usize, epoch: &str) -> bool {
        let mut state = self.lock();
        let Some(start) = end.checked_sub(piece.len()) else {
            return false;
        };
        if state.epoch != epoch || start > state.text.len() {
            return false;
        }
        if end <= state.text.len() {
            return true;
        }
        let Some(fresh) = piece.get(state.text.len() - start..) else {
            return false;
        };
        let fresh = fresh.to_owned();
        state.text.push_str(&fresh);
        let _ = self.sender.send(RunEvent::Token {
            text: fresh,
            end,
            epoch: epoch.to_owned(),
        });
        true
    }

    /// Sets the text and its version without telling anyone (a resumed run starts from what was persisted).
    pub fn seed_text(&self, text: &str, epoch: &str) {
        let mut state = self.lock();
        state.text = text.to_owned();
        state.epoch = epoch.to_owned();
    }

    /// Clears the reply, starts text version `epoch`, and tells subscribers to start over.
    pub fn reset(&self, reason: &str, epoch: &str) {
        let mut state = self.lock();
        state.text.clear();
        state.epoch = epoch.to_owned();
        let _ = self.sender.send(RunEvent::Reset {
            reason: reason.to_owned(),
            epoch: epoch.to_owned(),
        });
    }

    /// Publishes a progress, state or image event.
    pub fn publish(&self, event: RunEvent) {
        let mut state = self.lock();
        match &event {
            RunEvent::Progress { .. } => state.progress = Some(event.clone()),
            RunEvent::State(_) => state.state = Some(event.clone()),
            _ => {}
        }
        if event.is_terminal() {
            state.finished = Some(event.clone());
        }
        let _ = self.sender.send(event);
    }

    /// Publishes a progress event unless it is the latest one already (a relayed change may repeat it).
    pub fn publish_progress(&self, event: RunEvent) {
        let mut state = self.lock();
        if state.progress.as_ref() == Some(&event) {
            return;
        }
        state.progress = Some(event.clone());
        let _ = self.sender.send(event);
    }

    /// The text so far.
    pub fn text(&self) -> String {
        self.lock().text.clone()
    }

    /// How long the text so far is, in bytes.
    pub fn text_len(&self) -> usize {
        self.lock().text.len()
    }

    /// Publishes the difference between what the channel holds and `view` (the run as read from the
    /// database): more text as tokens, a new text version as `reset` and the whole text, progress, scene.
    /// The end itself is the caller's to publish. Used by the relay for runs executed elsewhere, and by the
    /// executor when a subscriber's fresh channel meets a run that ended meanwhile: without it, the
    /// subscriber would get the end without the text.
    pub fn catch_up_to(&self, view: &RunView) {
        let seen = self.snapshot();
        if view.epoch != seen.epoch {
            self.reset(
                "The reply is being written again after an interruption.",
                &view.epoch,
            );
            if !view.text.is_empty() {
                self.push_text(&view.text);
            }
        } else if view.text.len() > seen.text.len() && view.text.starts_with(&seen.text) {
            self.push_text(&view.text[seen.text.len()..]);
        }
        if seen.progress.as_ref() != Some(&view.progress) && view.terminal.is_none() {
            self.publish(view.progress.clone());
        }
        if let Some(state) = &view.state {
            let event = RunEvent::State(state.clone());
            if seen.state.as_ref() != Some(&event) {
                self.publish(event);
            }
        }
    }

    /// The state now, and a receiver of everything after it.
    pub fn subscribe(&self) -> (Snapshot, broadcast::Receiver<RunEvent>) {
        let state = self.lock();
        let receiver = self.sender.subscribe();
        (state.snapshot(), receiver)
    }
}

/// Told of every channel the executor opens (the relay starts sending a run's tokens when another
/// instance asked for them before the run started here).
type OpenObserver = Arc<dyn Fn(Uuid) + Send + Sync>;

/// The channels of the runs this instance executes.
#[derive(Default)]
pub struct StreamHub {
    runs: Mutex<HashMap<Uuid, Arc<RunChannel>>>,
    on_open: Mutex<Option<OpenObserver>>,
}

impl std::fmt::Debug for StreamHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamHub")
            .field("runs", &self.len())
            .finish_non_exhaustive()
    }
}

impl StreamHub {
    /// An empty hub.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Uuid, Arc<RunChannel>>> {
        self.runs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The channel of `run`, created when missing (the executor calls this when it starts).
    pub fn open(&self, run: Uuid) -> Arc<RunChannel> {
        let (channel, new) = {
            let mut runs = self.lock();
            match runs.get(&run) {
                Some(channel) => (channel.clone(), false),
                None => {
                    let channel = Arc::new(RunChannel::new());
                    runs.insert(run, channel.clone());
                    (channel, true)
                }
            }
        };
        if new {
            let observer = self
                .on_open
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .clone();
            if let Some(observer) = observer {
                observer(run);
            }
        }
        channel
    }

    /// Calls `observer` with every run whose channel [`Self::open`] creates from now on.
    pub fn on_open(&self, observer: impl Fn(Uuid) + Send + Sync + 'static) {
        *self
            .on_open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(Arc::new(observer));
    }

    /// The channel of `run`; when it is new, `init` prepares it before anyone else can see it.
    pub fn open_or_init(&self, run: Uuid, init: impl FnOnce(&RunChannel)) -> Arc<RunChannel> {
        self.lock()
            .entry(run)
            .or_insert_with(|| {
                let channel = RunChannel::new();
                init(&channel);
                Arc::new(channel)
            })
            .clone()
    }

    /// The runs whose channels mirror another instance's execution.
    pub fn followed(&self) -> Vec<Uuid> {
        self.lock()
            .iter()
            .filter(|(_, channel)| channel.is_followed())
            .map(|(run, _)| *run)
            .collect()
    }

    /// The channel of a run executing here (or followed here), if any.
    pub fn get(&self, run: Uuid) -> Option<Arc<RunChannel>> {
        self.lock().get(&run).cloned()
    }

    /// Forgets a finished run (subscribers holding the channel keep it alive until they are done).
    pub fn close(&self, run: Uuid) {
        self.lock().remove(&run);
    }

    /// How many runs have a channel.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no run has a channel.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl ChannelState {
    /// A copy of what a new subscriber is sent first.
    fn snapshot(&self) -> Snapshot {
        Snapshot {
            text: self.text.clone(),
            epoch: self.epoch.clone(),
            progress: self.progress.clone(),
            state: self.state.clone(),
            finished: self.finished.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_relayed_token_is_placed_by_its_offset_or_refused() {
        let channel = StreamHub::new().open(Uuid::now_v7());
        channel.seed_text("Über", "");
        let (_, mut receiver) = channel.subscribe();
        assert!(channel.push_text_at("Über", 5, ""), "already there");
        assert!(
            channel.push_text_at("er die", 9, ""),
            "overlapping: the new part"
        );
        assert!(
            !channel.push_text_at(" Brücke", 20, ""),
            "text missing before it"
        );
        assert!(
            !channel.push_text_at(" Brücke", 17, "2.1"),
            "another version"
        );
        assert!(
            !channel.push_text_at("toolong", 3, ""),
            "an impossible offset"
        );
        assert_eq!(channel.text(), "Über die");
        assert_eq!(
            receiver.try_recv().expect("one event"),
            RunEvent::Token {
                text: " die".into(),
                end: 9,
                epoch: String::new()
            }
        );
        assert!(receiver.try_recv().is_err(), "nothing else was sent");
    }

    #[tokio::test]
    async fn a_late_subscriber_gets_the_text_so_far_then_only_what_follows() {
        let hub = StreamHub::new();
        let run = Uuid::now_v7();
        let channel = hub.open(run);
        channel.push_text("Hello");
        let (snapshot, mut receiver) = channel.subscribe();
        channel.push_text(", world");
        assert_eq!(snapshot.text, "Hello");
        assert_eq!(
            receiver.recv().await.expect("test setup is valid"),
            RunEvent::Token {
                text: ", world".into(),
                end: 12,
                epoch: String::new(),
            }
        );
        assert_eq!(
            hub.get(run).expect("test setup is valid").text(),
            "Hello, world"
        );
    }

    #[tokio::test]
    async fn a_reset_clears_the_text() {
        let channel = StreamHub::new().open(Uuid::now_v7());
        channel.push_text("abc");
        let (_, mut receiver) = channel.subscribe();
        channel.reset("retrying", "1.1");
        assert!(matches!(
            receiver.recv().await.expect("test setup is valid"),
            RunEvent::Reset { .. }
        ));
        assert_eq!(channel.text(), "");
    }

    #[test]
    fn finished_runs_remember_their_last_event() {
        let hub = StreamHub::new();
        let run = Uuid::now_v7();
        let channel = hub.open(run);
        channel.publish(RunEvent::Error {
            code: "x".into(),
            message: "y".into(),
            retryable: true,
            correlation_id: "c".into(),
        });
        assert!(channel.subscribe().0.finished.is_some());
        hub.close(run);
        assert!(hub.get(run).is_none());
        assert!(hub.is_empty());
    }
}
