//! The fake OpenAI-compatible provider the harness drives the server against: replies stream at a fixed
//! cadence after a fixed time to first token, and each token's text is the harness clock's time at which the
//! provider sent it (microseconds), so the client can tell how long the server took to relay it. The
//! analysis call (not streamed) answers at once with a whole scene. `TCP_NODELAY`, so it adds no delay. The
//! harness may change the cadence between phases and hold every reply before its first token until it lets
//! them go (the idle-subscribers scenario).

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::ListenerExt;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::clock;

/// How the fake model answers.
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    /// Time to the first token.
    pub first_token: Duration,
    /// Tokens per reply.
    pub tokens: u32,
    /// Time between tokens.
    pub interval: Duration,
}

/// What the provider saw.
#[derive(Debug, Default)]
struct ProviderCounts {
    /// Streamed reply requests.
    replies: AtomicU64,
    /// Analysis requests.
    analyses: AtomicU64,
}

/// The harness's hold on the provider: its cadence, and whether replies may begin.
pub struct Control {
    cadence: std::sync::Mutex<Cadence>,
    open: tokio::sync::watch::Sender<bool>,
    counts: ProviderCounts,
}

impl Control {
    /// The cadence of replies from now on (a reply already streaming keeps its own).
    pub fn set_cadence(&self, cadence: Cadence) {
        *self
            .cadence
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = cadence;
    }

    /// The cadence new replies get.
    pub fn cadence(&self) -> Cadence {
        *self
            .cadence
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Replies from now on wait before their first token until [`Control::release`].
    pub fn hold(&self) {
        self.open.send_replace(false);
    }

    /// Lets every held reply (and every later one) begin.
    pub fn release(&self) {
        self.open.send_replace(true);
    }

    /// Streamed reply requests seen so far.
    pub fn replies(&self) -> u64 {
        self.counts.replies.load(Ordering::Relaxed)
    }
}

type Shared = Control;

/// Serves the fake provider on `listener` until the process ends; its base URL is `http://ADDR/v1`.
pub fn spawn(listener: TcpListener, cadence: Cadence) -> Arc<Control> {
    let shared = Arc::new(Control {
        cadence: std::sync::Mutex::new(cadence),
        open: tokio::sync::watch::Sender::new(true),
        counts: ProviderCounts::default(),
    });
    let control = shared.clone();
    let app = Router::new()
        .route("/v1/chat/completions", post(completions))
        .route("/v1/models", get(models))
        .with_state(shared);
    tokio::spawn(async move {
        let listener = listener.tap_io(|tcp| {
            let _ = tcp.set_nodelay(true);
        });
        if let Err(err) = axum::serve(listener, app).await {
            eprintln!("fake provider stopped: {err}");
        }
    });
    control
}

async fn models() -> impl IntoResponse {
    axum::Json(json!({"object": "list", "data": [{"id": "loadgen", "object": "model"}]}))
}

async fn completions(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if request["stream"].as_bool() != Some(true) {
        // Like a real model, the analysis names the whole scene each time; every other one moves the
        // companion, so both the "nothing changed" and the "write the new state" paths are exercised.
        let count = shared.counts.analyses.fetch_add(1, Ordering::Relaxed);
        let location = if count % 2 == 0 {
            "kitchen"
        } else {
            "living room"
        };
        let scene = json!({
            "location": location,
            "action": "looking at viewer",
            "expression": "smiling",
            "lighting": "soft daylight",
        });
        return axum::Json(json!({
            "id": "loadgen-analysis",
            "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": scene.to_string()}, "finish_reason": "stop"}],
        }))
        .into_response();
    }
    shared.counts.replies.fetch_add(1, Ordering::Relaxed);
    let cadence = shared.cadence();
    let open = shared.open.subscribe();
    // The headers go at once, as a real provider's do; a held reply waits before its first token.
    let stream = futures_util::stream::unfold((0_u32, None), move |(sent, start)| {
        let mut open = open.clone();
        async move {
            if sent > cadence.tokens {
                return None;
            }
            let start = match start {
                Some(start) => start,
                None => {
                    let _ = open.wait_for(|open| *open).await;
                    tokio::time::Instant::now() + cadence.first_token
                }
            };
            let chunk = if sent == cadence.tokens {
                json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}).to_string()
                    + "\n\ndata: [DONE]"
            } else {
                tokio::time::sleep_until(start + cadence.interval * sent).await;
                // The time is taken after the wait: it is when this token leaves the provider.
                json!({"choices": [{"index": 0, "delta": {"content": format!(" {}", clock::micros())}}]})
                .to_string()
            };
            Some((
                Ok::<_, Infallible>(Bytes::from(format!("data: {chunk}\n\n"))),
                (sent + 1, Some(start)),
            ))
        }
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}
