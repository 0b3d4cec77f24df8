//! Reading a run's server-sent events as a browser would, optionally hanging up early.

use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use serde_json::Value;

use super::visitor::Visitor;

/// One received event.
#[derive(Debug, Clone)]
pub struct SseEvent {
    pub event: String,
    pub data: Value,
    pub id: String,
}

impl SseEvent {
    pub fn is_terminal(&self) -> bool {
        self.event == "done" || self.event == "error"
    }
}

/// Reads `path` until `done`/`error`, the stream's end, or `hang_up` says so (then the connection drops).
pub async fn read(
    visitor: &Visitor,
    path: &str,
    last_event_id: Option<&str>,
    hang_up: impl Fn(&[SseEvent]) -> bool,
) -> Vec<SseEvent> {
    let mut request = visitor
        .client
        .get(visitor.url(path))
        .header("accept", "text/event-stream");
    if let Some(id) = last_event_id {
        request = request.header("last-event-id", id);
    }
    let response = request.send().await.expect("stream request");
    assert_eq!(response.status(), 200, "stream of {path}");
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream"),
        "an event stream"
    );
    let mut events = response.bytes_stream().eventsource();
    let mut received = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let next = tokio::time::timeout_at(deadline, events.next())
            .await
            .unwrap_or_else(|_| panic!("the stream did not end in time; got {received:?}"));
        let Some(Ok(event)) = next else {
            return received;
        };
        let parsed = SseEvent {
            event: event.event,
            data: serde_json::from_str(&event.data).unwrap_or(Value::String(event.data)),
            id: event.id,
        };
        let terminal = parsed.is_terminal();
        received.push(parsed);
        if terminal || hang_up(&received) {
            return received;
        }
    }
}

/// Reads the whole stream of `path`.
pub async fn read_all(visitor: &Visitor, path: &str) -> Vec<SseEvent> {
    read(visitor, path, None, |_| false).await
}

/// The reply text the events spell out (a `reset` clears what came before).
pub fn text_of(events: &[SseEvent]) -> String {
    let mut text = String::new();
    for event in events {
        match event.event.as_str() {
            "reset" => text.clear(),
            "token" => text.push_str(event.data["text"].as_str().unwrap_or("")),
            _ => {}
        }
    }
    text
}

/// The last event named `name`.
pub fn last<'a>(events: &'a [SseEvent], name: &str) -> Option<&'a SseEvent> {
    events.iter().rev().find(|e| e.event == name)
}

/// The id of the last `token` event: what a browser reconnects with (`Last-Event-ID`).
pub fn last_token_id(events: &[SseEvent]) -> String {
    last(events, "token").expect("a token event").id.clone()
}
