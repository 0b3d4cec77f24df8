//! `GET /api/chat/stream/{run_id}`: a run's events as server-sent events, resumable by byte offset.
//!
//! The first events catch the subscriber up (progress, the reply text after `Last-Event-ID` / `?after=`, the
//! state); then events are pushed as they happen. Token ids are byte offsets of the reply after the token, so a
//! reconnect continues exactly where it stopped. When a step restarted (a `reset`), the text is a new version
//! and ids carry it after an `@` (`12@2.1`), so an offset into an older version is never mistaken for one into
//! the new text. An offset that is garbage, of another version, beyond the end or inside a character gets a
//! `reset` and the whole text instead of an error. A finished run replays its text and its `done` or
//! `error`. The server closes the stream after `done` or `error`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderName};
use axum::response::IntoResponse;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::broadcast;

use super::runner::terminal_event;
use super::store::{self, RunRow};
use crate::engine::{RunChannel, RunEvent, StreamHub};
use crate::error::AppError;
use crate::state::AppState;
use crate::web::CurrentUser;
use crate::web::PathId;

/// A keep-alive comment this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct StreamQuery {
    after: Option<String>,
}

/// What the client already has: a byte offset, or something unusable.
fn resume_point(headers: &HeaderMap, query: &StreamQuery) -> Option<String> {
    headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| query.after.clone())
}

/// What a client holding `after` needs of `text` (version `epoch`): whether to start over, and the text to
/// send (pure).
pub fn catch_up_plan<'a>(text: &'a str, epoch: &str, after: Option<&str>) -> (bool, &'a str) {
    let offset = match after.map(str::trim) {
        None | Some("") => Some(0),
        Some(raw) => {
            let (offset, their_epoch) = raw.split_once('@').unwrap_or((raw, ""));
            offset
                .parse::<usize>()
                .ok()
                .filter(|_| their_epoch == epoch)
        }
    };
    match offset {
        Some(n) if n <= text.len() && text.is_char_boundary(n) => (false, &text[n..]),
        _ => (true, text),
    }
}

/// The events that bring a client holding `after` up to `text`.
fn catch_up(text: &str, epoch: &str, after: Option<&str>) -> Vec<Event> {
    let (start_over, piece) = catch_up_plan(text, epoch, after);
    let mut events = Vec::new();
    if start_over {
        events.push(reset("resuming from the start"));
    }
    if !piece.is_empty() {
        events.push(token(piece, text.len(), epoch));
    }
    events
}

/// `12` for the first version of the text, `12@2.1` for later ones.
fn event_id(end: usize, epoch: &str) -> String {
    if epoch.is_empty() {
        end.to_string()
    } else {
        format!("{end}@{epoch}")
    }
}

fn token(text: &str, end: usize, epoch: &str) -> Event {
    Event::default()
        .event("token")
        .id(event_id(end, epoch))
        .data(json!({ "text": text }).to_string())
}

fn reset(reason: &str) -> Event {
    Event::default()
        .event("reset")
        .data(json!({ "reason": reason }).to_string())
}

/// The SSE form of a hub event (tokens are handled by the caller, which tracks offsets).
fn event(event: &RunEvent) -> Event {
    match event {
        RunEvent::Progress {
            status,
            step,
            progress,
        } => Event::default()
            .event("progress")
            .data(json!({ "status": status, "step": step, "progress": progress }).to_string()),
        RunEvent::Token { text, end, epoch } => token(text, *end, epoch),
        RunEvent::Reset { reason, .. } => reset(reason),
        RunEvent::State(state) => Event::default().event("state").data(state.to_string()),
        RunEvent::Image(image) => Event::default().event("image").data(image.to_string()),
        RunEvent::Done {
            message_id,
            content,
            html,
            image,
            image_error,
            finish_reason,
        } => Event::default().event("done").data(
            json!({
                "message_id": message_id, "content": content, "html": html,
                "image": image, "image_error": image_error, "finish_reason": finish_reason,
            })
            .to_string(),
        ),
        RunEvent::Error {
            code,
            message,
            retryable,
            correlation_id,
        } => Event::default().event("error").data(
            json!({
                "code": code, "message": message, "retryable": retryable,
                "correlation_id": correlation_id,
            })
            .to_string(),
        ),
    }
}

fn progress_of(run: &RunRow) -> Event {
    event(&RunEvent::Progress {
        status: run.status.as_str().to_owned(),
        step: run.step.clone(),
        progress: u8::try_from(run.progress.clamp(0, 100)).unwrap_or(0),
    })
}

/// Counts open streams for `chat_active_streams` while alive.
struct ActiveStream;

impl ActiveStream {
    fn new() -> Self {
        metrics::gauge!("chat_active_streams").increment(1.0);
        Self
    }
}

impl Drop for ActiveStream {
    fn drop(&mut self) {
        metrics::gauge!("chat_active_streams").decrement(1.0);
    }
}

struct Live {
    receiver: broadcast::Receiver<RunEvent>,
    channel: Arc<RunChannel>,
    sent: usize,
    done: bool,
    _active: ActiveStream,
}

/// Forwards hub events, skipping text the client already has and resynchronising after a lag.
async fn next_events(mut live: Live) -> Option<(Vec<Event>, Live)> {
    if live.done {
        return None;
    }
    loop {
        match live.receiver.recv().await {
            Ok(RunEvent::Token { text, end, epoch }) => {
                if end <= live.sent {
                    continue;
                }
                let start = end - text.len();
                let piece = if start < live.sent {
                    text.get(live.sent - start..).unwrap_or("").to_owned()
                } else {
                    text
                };
                live.sent = end;
                return Some((vec![token(&piece, end, &epoch)], live));
            }
            Ok(RunEvent::Reset { reason, .. }) => {
                live.sent = 0;
                return Some((vec![reset(&reason)], live));
            }
            Ok(other) => {
                live.done = other.is_terminal();
                return Some((vec![event(&other)], live));
            }
            Err(broadcast::error::RecvError::Lagged(_)) => {
                // What was missed is in the snapshot: the text, the scene and, when the run ended meanwhile,
                // its end (which would otherwise never come again).
                let (snapshot, receiver) = live.channel.subscribe();
                live.receiver = receiver;
                live.sent = snapshot.text.len();
                let mut events = vec![reset("catching up")];
                if !snapshot.text.is_empty() {
                    events.push(token(&snapshot.text, snapshot.text.len(), &snapshot.epoch));
                }
                if let Some(state) = &snapshot.state {
                    events.push(event(state));
                }
                if let Some(finished) = &snapshot.finished {
                    events.push(event(finished));
                    live.done = true;
                }
                return Some((events, live));
            }
            Err(broadcast::error::RecvError::Closed) => return None,
        }
    }
}

/// Prepares a channel opened for an unfinished run from the run as read: its text, version and progress.
fn seed(channel: &RunChannel, run: &RunRow) {
    channel.seed_text(&run.partial_text, &run.text_epoch);
    channel.publish(RunEvent::Progress {
        status: run.status.as_str().to_owned(),
        step: run.step.clone(),
        progress: u8::try_from(run.progress.clamp(0, 100)).unwrap_or(0),
    });
}

/// The channel of an unfinished run that no execution here has open, prepared from the run as read (`seed`).
///
/// Why: the run may have ended between the read and now (its execution closed its channel); the engine then
/// finds it finished and catches the channel up to the stored reply. A channel opened empty would tell a
/// subscriber that resumes at an offset to start over (the offset lies beyond an empty text) and send the
/// whole reply again; seeded, it resumes exactly, and only what was not persisted yet comes as tokens.
pub(crate) fn open_seeded(hub: &StreamHub, run: &RunRow) -> Arc<RunChannel> {
    hub.open_or_init(run.id, |channel| seed(channel, run))
}

type EventStream = std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>;

fn finite(events: Vec<Event>) -> EventStream {
    Box::pin(stream::iter(events.into_iter().map(Ok)))
}

pub(super) async fn stream_run(
    State(state): State<AppState>,
    current: CurrentUser,
    PathId(run_id): PathId,
    Query(query): Query<StreamQuery>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, AppError> {
    let run = store::find_run_owned(&state.db, current.user.id, run_id)
        .await?
        .ok_or(AppError::NotFound)?;
    let after = resume_point(&headers, &query);

    // A run that is unfinished but not executing here is picked up now when nobody holds it (left by a
    // restart, or by a dead instance). On PostgreSQL another instance may be executing it: the channel then
    // follows it there (engine::relay), starting from what was just read. The channel is opened first, so
    // this subscriber is connected before the first event.
    if run.is_active() && state.hub.get(run.id).is_none() {
        match &state.relay {
            Some(relay) => {
                relay.follow(run.id, |channel| seed(channel, &run));
            }
            None => {
                open_seeded(&state.hub, &run);
            }
        }
        state.engine.start(run.id);
    }
    let stream: EventStream = match state.hub.get(run.id) {
        Some(channel) => {
            let (snapshot, receiver) = channel.subscribe();
            let mut first = vec![match &snapshot.progress {
                Some(progress) => event(progress),
                None => progress_of(&run),
            }];
            first.extend(catch_up(&snapshot.text, &snapshot.epoch, after.as_deref()));
            if let Some(state_event) = &snapshot.state {
                first.push(event(state_event));
            }
            if let Some(finished) = &snapshot.finished {
                first.push(event(finished));
                finite(first)
            } else {
                let live = Live {
                    receiver,
                    sent: snapshot.text.len(),
                    channel,
                    done: false,
                    _active: ActiveStream::new(),
                };
                Box::pin(
                    stream::iter(first.into_iter().map(Ok)).chain(
                        stream::unfold(live, next_events)
                            .flat_map(|events| stream::iter(events.into_iter().map(Ok))),
                    ),
                )
            }
        }
        None => {
            // Finished (or held by another instance): replay what the database knows.
            let run = store::find_run(&state.db, run.id).await?.unwrap_or(run);
            let mut events = vec![progress_of(&run)];
            let text = match terminal_event(&run, &state.db).await {
                Some(RunEvent::Done { ref content, .. }) => content.clone(),
                _ => run.partial_text.clone(),
            };
            events.extend(catch_up(&text, &run.text_epoch, after.as_deref()));
            if let Some(state_after) = &run.state_after {
                events.push(event(&RunEvent::State(state_after.0.clone())));
            }
            match terminal_event(&run, &state.db).await {
                Some(terminal) => events.push(event(&terminal)),
                None => events.push(event(&RunEvent::Error {
                    code: "run_elsewhere".into(),
                    message:
                        "The reply is being written by another server; reconnecting will follow it."
                            .into(),
                    retryable: true,
                    correlation_id: run.correlation_id.clone(),
                })),
            }
            finite(events)
        }
    };
    Ok((
        // Proxies pass each event on at once instead of collecting them (nginx reads this header).
        [(HeaderName::from_static("x-accel-buffering"), "no")],
        Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_subscriber_that_fell_behind_catches_up_and_still_gets_the_end() {
        let hub = StreamHub::new();
        let channel = hub.open(uuid::Uuid::now_v7());
        let (_, receiver) = channel.subscribe();
        let live = Live {
            receiver,
            channel: channel.clone(),
            sent: 0,
            done: false,
            _active: ActiveStream::new(),
        };
        // Far more events than the channel buffers, then the end: this subscriber read none of them.
        for _ in 0..10_000 {
            channel.push_text("a");
        }
        channel.publish(RunEvent::Error {
            code: "llm_unavailable".into(),
            message: "The model is unreachable.".into(),
            retryable: true,
            correlation_id: "c".into(),
        });
        let (events, live) = next_events(live).await.expect("the catch-up");
        assert_eq!(live.sent, 10_000, "the whole text is caught up");
        assert!(
            live.done,
            "the end was among the missed events, so it comes with the catch-up: {events:?}"
        );
        assert!(next_events(live).await.is_none(), "and the stream ends");
    }

    #[test]
    fn a_valid_offset_resumes_exactly() {
        let text = "Hello, wörld";
        assert_eq!(catch_up_plan(text, "", Some("7")), (false, "wörld"));
        let end = text.len().to_string();
        assert_eq!(catch_up_plan(text, "", Some(&end)), (false, ""));
        assert_eq!(catch_up_plan(text, "", None), (false, text));
        assert_eq!(catch_up_plan(text, "", Some(" 0 ")), (false, text));
        assert_eq!(catch_up_plan(text, "2.1", Some("7@2.1")), (false, "wörld"));
    }

    #[test]
    fn a_bad_offset_starts_over_with_everything() {
        let text = "Hello, wörld";
        // 9 falls inside the two bytes of "ö".
        for bad in ["garbage", "999", "9", "-1", "7@1.1"] {
            assert_eq!(catch_up_plan(text, "", Some(bad)), (true, text), "{bad}");
        }
        assert_eq!(
            catch_up_plan(text, "2.0", Some("7")),
            (true, text),
            "an offset into an older version"
        );
        assert_eq!(catch_up(text, "", Some("9")).len(), 2);
        assert_eq!(
            catch_up("", "", Some("5")).len(),
            1,
            "only the reset when there is no text"
        );
    }

    #[test]
    fn ids_carry_the_version_only_after_a_reset() {
        assert_eq!(event_id(12, ""), "12");
        assert_eq!(event_id(12, "2.1"), "12@2.1");
    }
}
