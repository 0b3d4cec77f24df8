//! A fake OpenAI-compatible server: `/v1/chat/completions` streaming real SSE chunks, and `/v1/models`.
//!
//! Tests script what each call answers (stream tokens, pause at a gate, cut the connection, fail with a status)
//! and read back every request the app sent.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::fake_http::FakeServer;

/// What one streamed call does.
#[derive(Clone)]
pub enum Streamed {
    /// Send these pieces, then `[DONE]`.
    Tokens(Vec<String>),
    /// Send `before`, wait until the gate gets a permit, then send `after` and `[DONE]`.
    Paused {
        before: Vec<String>,
        gate: Arc<Semaphore>,
        after: Vec<String>,
    },
    /// Send the first stage; before each further stage wait until its gate (the one before it in `gates`)
    /// gets a permit; then `[DONE]`. `stages` has one more entry than `gates`.
    Staged {
        stages: Vec<Vec<String>>,
        gates: Vec<Arc<Semaphore>>,
    },
    /// Send these pieces, then break the connection.
    CutAfter(Vec<String>),
    /// Send these pieces, then end the body properly (chunked terminator) with no `finish_reason` and no
    /// `[DONE]`: a stream cut upstream, closed cleanly.
    EndsUnfinished(Vec<String>),
    /// Send these pieces, then a chunk with this `finish_reason`, then end the body (no `[DONE]`).
    Finishes(Vec<String>, &'static str),
    /// Send these pieces, wait until the gate gets a permit, then break the connection.
    PausedThenCut {
        before: Vec<String>,
        gate: Arc<Semaphore>,
    },
    /// Answer this status (with `Retry-After` seconds when given).
    Status(u16, Option<u64>),
    /// Never answer.
    Hang,
}

/// The analysis answer of a non-streamed call.
#[derive(Clone)]
pub enum Analysed {
    /// `choices[0].message.content`.
    Content(String),
    /// An HTTP status.
    Status(u16),
}

#[derive(Default)]
struct Script {
    streamed: VecDeque<Streamed>,
    analysed: VecDeque<Analysed>,
    requests: Vec<(HeaderMap, Value)>,
    /// The model's context window, counted the fake's way ([`fake_tokens`]); longer prompts are refused as
    /// OpenAI does.
    context_limit: Option<u32>,
    /// Paused streams the app hung up on before they ended.
    abandoned: Arc<std::sync::atomic::AtomicUsize>,
}

/// Counts a paused stream as abandoned when it is dropped (the app hung up) before it ended.
struct HangUp {
    abandoned: Arc<std::sync::atomic::AtomicUsize>,
    ended: bool,
}

impl Drop for HangUp {
    fn drop(&mut self) {
        if !self.ended {
            self.abandoned
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// How the fake model counts tokens: one per CJK (or other non-ASCII) character, one per four ASCII
/// characters, four per message — like a model whose tokenizer is poor at CJK scripts.
pub fn fake_tokens(messages: &Value) -> u32 {
    messages
        .as_array()
        .map(|list| {
            list.iter()
                .map(|m| {
                    let text = m["content"].as_str().unwrap_or("");
                    let wide = text.chars().filter(|c| !c.is_ascii()).count() as u32;
                    let ascii = text.chars().filter(char::is_ascii).count() as u32;
                    wide + ascii.div_ceil(4) + 4
                })
                .sum()
        })
        .unwrap_or(0)
}

/// The fake and its script.
#[derive(Clone)]
pub struct FakeLlm {
    script: Arc<Mutex<Script>>,
    server: Arc<FakeServer>,
}

/// The reply a stream sends when nothing else is scripted.
pub const DEFAULT_REPLY: [&str; 4] = ["Hello", ", ", "wörld", "!"];

/// The analysis answer when nothing else is scripted.
pub fn default_analysis() -> String {
    json!({
        "outfit": [{"category": "top", "item": "red apron"}, {"category": "bottom", "item": "blue jeans"}],
        "location": "kitchen",
        "action": "stirring a pot",
        "expression": "happy",
        "lighting": "warm lamp light",
        "visual_tags": ["apron", "steam"],
        "is_user_present": true
    })
    .to_string()
}

fn chunk(text: &str) -> Bytes {
    let data = json!({"id": "c", "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": null}]});
    Bytes::from(format!("data: {data}\n\n"))
}

fn finish_chunk(reason: &str) -> Bytes {
    let data = json!({"id": "c", "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]});
    Bytes::from(format!("data: {data}\n\n"))
}

fn done() -> Bytes {
    Bytes::from_static(b"data: [DONE]\n\n")
}

async fn completions(
    State(script): State<Arc<Mutex<Script>>>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let streamed = body["stream"].as_bool().unwrap_or(false);
    let abandoned = script.lock().unwrap().abandoned.clone();
    let (reply, analysed) = {
        let mut script = script.lock().unwrap();
        let prompt_tokens = fake_tokens(&body["messages"]);
        let completion = body["max_tokens"].as_u64().unwrap_or(0) as u32;
        let refused = script
            .context_limit
            .filter(|limit| prompt_tokens + completion > *limit);
        script.requests.push((headers, body));
        if let Some(limit) = refused {
            let message = format!(
                "This model's maximum context length is {limit} tokens. However, you requested {} tokens \
                 ({prompt_tokens} in the messages, {completion} in the completion). Please reduce the length \
                 of the messages or completion.",
                prompt_tokens + completion
            );
            return (
                StatusCode::BAD_REQUEST,
                Json(
                    json!({"error": {"message": message, "type": "invalid_request_error",
                    "param": "messages", "code": "context_length_exceeded"}}),
                ),
            )
                .into_response();
        }
        if streamed {
            (
                Some(script.streamed.pop_front().unwrap_or_else(|| {
                    Streamed::Tokens(DEFAULT_REPLY.iter().map(|s| (*s).to_owned()).collect())
                })),
                None,
            )
        } else {
            (
                None,
                Some(
                    script
                        .analysed
                        .pop_front()
                        .unwrap_or_else(|| Analysed::Content(default_analysis())),
                ),
            )
        }
    };
    if let Some(analysed) = analysed {
        return match analysed {
            Analysed::Content(content) => Json(json!({
                "id": "a", "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}]
            }))
            .into_response(),
            Analysed::Status(status) => StatusCode::from_u16(status).unwrap().into_response(),
        };
    }
    let sse = |stream: Body| {
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(stream)
            .unwrap()
    };
    match reply.unwrap() {
        Streamed::Tokens(tokens) => {
            let pieces: Vec<Result<Bytes, Infallible>> = tokens
                .iter()
                .map(|t| Ok(chunk(t)))
                .chain([Ok(done())])
                .collect();
            sse(Body::from_stream(futures_util::stream::iter(pieces)))
        }
        Streamed::EndsUnfinished(tokens) => {
            let pieces: Vec<Result<Bytes, Infallible>> =
                tokens.iter().map(|t| Ok(chunk(t))).collect();
            sse(Body::from_stream(futures_util::stream::iter(pieces)))
        }
        Streamed::Finishes(tokens, reason) => {
            let pieces: Vec<Result<Bytes, Infallible>> = tokens
                .iter()
                .map(|t| Ok(chunk(t)))
                .chain([Ok(finish_chunk(reason))])
                .collect();
            sse(Body::from_stream(futures_util::stream::iter(pieces)))
        }
        Streamed::Paused {
            before,
            gate,
            after,
        } => {
            let hang_up = HangUp {
                abandoned,
                ended: false,
            };
            let stream = async_stream(before, gate, after, hang_up);
            sse(Body::from_stream(stream))
        }
        Streamed::Staged { stages, gates } => {
            let waits = std::iter::once(None).chain(gates.into_iter().map(Some));
            let staged = futures_util::StreamExt::then(
                futures_util::stream::iter(stages.into_iter().zip(waits)),
                |(stage, wait)| async move {
                    if let Some(gate) = wait
                        && let Ok(permit) = gate.acquire().await
                    {
                        permit.forget();
                    }
                    let mut bytes = Vec::new();
                    for piece in stage {
                        bytes.extend_from_slice(&chunk(&piece));
                    }
                    Ok::<_, Infallible>(Bytes::from(bytes))
                },
            );
            let end = futures_util::stream::once(async { Ok(done()) });
            sse(Body::from_stream(futures_util::StreamExt::chain(
                staged, end,
            )))
        }
        Streamed::CutAfter(tokens) => {
            let pieces = tokens
                .into_iter()
                .map(|t| Ok::<_, std::io::Error>(chunk(&t)))
                .chain([Err(std::io::Error::other("connection cut"))]);
            sse(Body::from_stream(futures_util::stream::iter(pieces)))
        }
        Streamed::PausedThenCut { before, gate } => {
            let first = futures_util::stream::iter(
                before
                    .into_iter()
                    .map(|t| Ok::<_, std::io::Error>(chunk(&t))),
            );
            let cut = futures_util::stream::once(async move {
                if let Ok(permit) = gate.acquire().await {
                    permit.forget();
                }
                Err(std::io::Error::other("connection cut"))
            });
            sse(Body::from_stream(futures_util::StreamExt::chain(
                first, cut,
            )))
        }
        Streamed::Status(status, retry_after) => {
            let mut response = (StatusCode::from_u16(status).unwrap(), "try later").into_response();
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert("retry-after", seconds.to_string().parse().unwrap());
            }
            response
        }
        Streamed::Hang => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
    }
}

fn async_stream(
    before: Vec<String>,
    gate: Arc<Semaphore>,
    after: Vec<String>,
    hang_up: HangUp,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> {
    let first = futures_util::stream::iter(before.into_iter().map(|t| Ok(chunk(&t))));
    let rest = futures_util::stream::once(async move {
        // Moved in whole (a field alone would be captured otherwise): it lives as long as the stream.
        let mut hang_up = hang_up;
        let permit = gate.acquire().await;
        hang_up.ended = true;
        if let Ok(permit) = permit {
            permit.forget();
        }
        let mut bytes = Vec::new();
        for piece in after {
            bytes.extend_from_slice(&chunk(&piece));
        }
        bytes.extend_from_slice(&done());
        Ok(Bytes::from(bytes))
    });
    futures_util::StreamExt::chain(first, rest)
}

impl FakeLlm {
    pub async fn start() -> Self {
        let script = Arc::new(Mutex::new(Script::default()));
        let router = Router::new()
            .route("/v1/chat/completions", post(completions))
            .route(
                "/v1/models",
                get(|| async { Json(json!({"object": "list", "data": [{"id": "fake-model"}]})) }),
            )
            .with_state(script.clone());
        let server = FakeServer::start(router).await;
        Self {
            script,
            server: Arc::new(server),
        }
    }

    /// `LLM_BASE_URL`.
    pub fn base_url(&self) -> String {
        self.server.url("/v1")
    }

    /// Environment for a `TestApp` that talks to this fake.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("LLM_BASE_URL".into(), self.base_url()),
            ("LLM_MODEL".into(), "fake-model".into()),
            ("LLM_API_KEY".into(), "sk-fake-key".into()),
            ("RATE_LIMIT_CHAT".into(), "off".into()),
        ]
    }

    pub fn stream(&self, reply: Streamed) {
        self.script.lock().unwrap().streamed.push_back(reply);
    }

    /// Refuse prompts longer than `limit` fake tokens, as a real model with that context window does.
    pub fn limit_context(&self, limit: u32) {
        self.script.lock().unwrap().context_limit = Some(limit);
    }

    pub fn analyse(&self, answer: Analysed) {
        self.script.lock().unwrap().analysed.push_back(answer);
    }

    /// Every request so far: headers and JSON body.
    pub fn requests(&self) -> Vec<(HeaderMap, Value)> {
        self.script.lock().unwrap().requests.clone()
    }

    /// The non-streamed (analysis) requests so far.
    pub fn analysis_requests(&self) -> Vec<(HeaderMap, Value)> {
        self.requests()
            .into_iter()
            .filter(|(_, body)| body["stream"] != true)
            .collect()
    }

    /// How many paused streams the app hung up on before they ended (it dropped the request).
    pub fn abandoned_streams(&self) -> usize {
        self.script
            .lock()
            .unwrap()
            .abandoned
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The streamed (reply) requests so far.
    pub fn reply_requests(&self) -> Vec<(HeaderMap, Value)> {
        self.requests()
            .into_iter()
            .filter(|(_, body)| body["stream"] == true)
            .collect()
    }
}

/// A gate that holds a paused stream until a test opens it.
pub fn gate() -> Arc<Semaphore> {
    Arc::new(Semaphore::new(0))
}

/// Pieces as owned strings.
pub fn pieces(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|p| (*p).to_owned()).collect()
}
