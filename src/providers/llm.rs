//! The OpenAI-compatible chat-completions client: streamed replies and one-shot JSON calls.
//!
//! Policy: every call carries `X-Correlation-Id` and, when configured, `Authorization: Bearer`; every call has
//! a timeout. Failures before the first token (429, 5xx, connection errors, timeouts) are retried up to
//! three attempts in all, with exponential backoff, jitter, and the server's `Retry-After` when it gives one.
//! A stream is a reply only when it finished: a chunk carried a `finish_reason` or the server sent
//! `data: [DONE]`. One that ends any other way (the connection closed, with or without a proper HTTP
//! terminator, or broke) was cut, and is reported as [`LlmError::StreamBroken`] with what was received:
//! the caller decides whether to start the step again. `finish_reason: "length"` is a finished reply that
//! hit the token limit ([`Finish::Length`]). A refusal because the prompt does not fit the model's context
//! is [`LlmError::ContextTooLong`], with the sizes the server named when it named them. Every body is read
//! with a size cap.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::join_url;
use crate::config::{LlmConfig, Secret};

/// Attempts per call before the first token (the first try and two retries).
pub const MAX_ATTEMPTS: u32 = 3;
/// The longest wait between attempts, whatever `Retry-After` says.
const MAX_BACKOFF: Duration = Duration::from_secs(20);
/// The most a reply stream may send in all (SSE framing included) before it counts as broken.
const MAX_STREAM_BYTES: usize = 8 * 1024 * 1024;
/// The largest non-streamed answer read.
const MAX_COMPLETION_BYTES: usize = 1024 * 1024;
/// How much of an error answer is read (its start explains it; the rest is not read).
const MAX_ERROR_BYTES: usize = 16 * 1024;

/// One message of a chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message with `role` and `content`.
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.to_owned(),
            content: content.into(),
        }
    }
}

/// How a finished reply ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// The model ended its reply (`stop`, or `[DONE]` without a reason).
    Stop,
    /// The reply hit the token limit (`length`): complete as far as it goes, and can be continued.
    Length,
    /// The provider filtered the rest (`content_filter`).
    ContentFilter,
}

impl Finish {
    /// Reads a chunk's `finish_reason` (unknown reasons are treated as a normal end).
    pub fn from_reason(reason: &str) -> Self {
        match reason {
            "length" | "max_tokens" => Self::Length,
            "content_filter" => Self::ContentFilter,
            _ => Self::Stop,
        }
    }

    /// Stable text for storage and the API.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
            Self::ContentFilter => "content_filter",
        }
    }

    /// The stored text read back (`None` for anything else).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "stop" => Some(Self::Stop),
            "length" => Some(Self::Length),
            "content_filter" => Some(Self::ContentFilter),
            _ => None,
        }
    }
}

/// A finished streamed reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamedReply {
    /// Everything the model sent, exactly.
    pub text: String,
    /// How it ended.
    pub finish: Finish,
}

/// What a context-length refusal said about sizes, when it said it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContextSizes {
    /// The model's context window in tokens.
    pub limit: Option<u32>,
    /// The tokens the server counted in our messages.
    pub prompt: Option<u32>,
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The prompt does not fit the model's context window.
    #[error("the prompt is longer than the model's context window: {detail}")]
    ContextTooLong {
        /// Sizes the server named.
        sizes: ContextSizes,
        /// The start of the server's answer.
        detail: String,
    },
    /// The server refused the request for good (4xx other than 408/429): retrying will not help.
    #[error("the language model refused the request (HTTP {status}): {detail}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The start of the server's answer.
        detail: String,
    },
    /// Every attempt failed with a transient problem.
    #[error("the language model is unavailable after {attempts} attempts: {last}")]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// The last problem.
        last: String,
    },
    /// The stream broke after `received` text had arrived.
    #[error("the reply stream broke after {} bytes: {reason}", received.len())]
    StreamBroken {
        /// The text received before the break.
        received: String,
        /// What happened.
        reason: String,
    },
    /// The server answered something that is not the chat-completions format.
    #[error("the language model answered in an unexpected format: {0}")]
    Malformed(String),
}

impl LlmError {
    /// A stable code for metrics and error events.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::ContextTooLong { .. } => "context_too_long",
            Self::Rejected { .. } => "rejected",
            Self::Unavailable { .. } => "unavailable",
            Self::StreamBroken { .. } => "stream_broken",
            Self::Malformed(_) => "malformed",
        }
    }
}

/// Sampling settings of one call.
#[derive(Debug, Clone, Copy)]
pub struct Sampling {
    /// Temperature.
    pub temperature: f32,
    /// Nucleus sampling.
    pub top_p: f32,
    /// Maximum tokens of the answer.
    pub max_tokens: u32,
}

/// A client of one configured endpoint.
#[derive(Clone, Debug)]
pub struct LlmClient {
    http: reqwest::Client,
    url: String,
    api_key: Option<Secret>,
    /// Model for replies.
    pub model: String,
    /// Model for analysis.
    pub analysis_model: String,
    /// Sampling for replies.
    pub reply_sampling: Sampling,
    /// The context window in tokens.
    pub context_tokens: u32,
    timeout: Duration,
    backoff_unit: Duration,
    /// Set once the server refused `response_format` (it is not asked for again).
    json_mode_refused: Arc<AtomicBool>,
}

enum Attempt {
    Retry {
        reason: String,
        wait: Option<Duration>,
    },
    Fatal(LlmError),
}

impl LlmClient {
    /// A client for the configured endpoint.
    pub fn new(http: reqwest::Client, config: &LlmConfig) -> Self {
        Self {
            http,
            url: join_url(config.base_url.as_str(), "chat/completions"),
            api_key: config.api_key.clone(),
            model: config.model.clone(),
            analysis_model: config.analysis_model.clone(),
            reply_sampling: Sampling {
                temperature: config.temperature,
                top_p: config.top_p,
                max_tokens: config.max_tokens,
            },
            context_tokens: config.context_tokens,
            timeout: config.timeout,
            backoff_unit: Duration::from_millis(500),
            json_mode_refused: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Shortens the backoff (tests run against fakes that answer at once).
    pub fn with_backoff_unit(mut self, unit: Duration) -> Self {
        self.backoff_unit = unit;
        self
    }

    fn request(
        &self,
        body: serde_json::Value,
        correlation_id: &str,
        stream: bool,
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .post(&self.url)
            .header("x-correlation-id", correlation_id)
            .json(&body);
        // A stream's total time is bounded by the caller (the run deadline); here only its start is.
        if !stream {
            request = request.timeout(self.timeout);
        }
        if let Some(key) = &self.api_key {
            request = request.bearer_auth(key.expose());
        }
        request
    }

    /// Sends once; classifies the outcome.
    async fn send(
        &self,
        body: &serde_json::Value,
        correlation_id: &str,
        stream: bool,
    ) -> Result<reqwest::Response, Attempt> {
        let sent = tokio::time::timeout(
            self.timeout,
            self.request(body.clone(), correlation_id, stream).send(),
        )
        .await;
        let response = match sent {
            Err(_) => {
                return Err(Attempt::Retry {
                    reason: "no answer in time".into(),
                    wait: None,
                });
            }
            Ok(Err(err)) => {
                return Err(Attempt::Retry {
                    reason: describe(err),
                    wait: None,
                });
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let wait = retry_after(response.headers());
        let body = super::read_prefix(response, MAX_ERROR_BYTES).await;
        if status.is_client_error()
            && let Some(sizes) = context_refusal(&body)
        {
            return Err(Attempt::Fatal(LlmError::ContextTooLong {
                sizes,
                detail: body.chars().take(300).collect(),
            }));
        }
        let detail: String = body.chars().take(300).collect();
        if status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
            || status.is_server_error()
        {
            Err(Attempt::Retry {
                reason: format!("HTTP {}", status.as_u16()),
                wait,
            })
        } else {
            Err(Attempt::Fatal(LlmError::Rejected {
                status: status.as_u16(),
                detail,
            }))
        }
    }

    /// Sends with retries until a success response (headers) arrives.
    async fn send_with_retries(
        &self,
        body: &serde_json::Value,
        correlation_id: &str,
        stream: bool,
    ) -> Result<reqwest::Response, LlmError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.send(body, correlation_id, stream).await {
                Ok(response) => return Ok(response),
                Err(Attempt::Fatal(err)) => {
                    metrics::counter!("llm_request_failures_total", "kind" => err.kind())
                        .increment(1);
                    return Err(err);
                }
                Err(Attempt::Retry { reason, wait }) => {
                    metrics::counter!("llm_request_failures_total", "kind" => "transient")
                        .increment(1);
                    if attempt >= MAX_ATTEMPTS {
                        return Err(LlmError::Unavailable {
                            attempts: attempt,
                            last: reason,
                        });
                    }
                    let wait = wait
                        .unwrap_or_else(|| backoff(self.backoff_unit, attempt))
                        .min(MAX_BACKOFF);
                    tracing::warn!(
                        attempt,
                        reason,
                        wait_ms = wait.as_millis() as u64,
                        "language model call failed; retrying"
                    );
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    /// Streams a reply, calling `on_token` with every piece of text as it arrives; returns the whole text
    /// once the stream finished (a `finish_reason` or `[DONE]`), and [`LlmError::StreamBroken`] when it
    /// ended any other way.
    pub async fn stream_reply(
        &self,
        messages: &[ChatMessage],
        correlation_id: &str,
        mut on_token: impl FnMut(&str),
    ) -> Result<StreamedReply, LlmError> {
        let body = json!({
            "model": self.model,
            "messages": messages,
            "stream": true,
            "temperature": self.reply_sampling.temperature,
            "top_p": self.reply_sampling.top_p,
            "max_tokens": self.reply_sampling.max_tokens,
        });
        let response = self.send_with_retries(&body, correlation_id, true).await?;
        let mut received_bytes = 0_usize;
        let mut events = response
            .bytes_stream()
            .map(move |chunk| {
                let chunk = chunk.map_err(|err| StreamTrouble(describe(err)))?;
                received_bytes += chunk.len();
                if received_bytes > MAX_STREAM_BYTES {
                    return Err(StreamTrouble(format!(
                        "the stream sent more than {} MiB",
                        MAX_STREAM_BYTES / (1024 * 1024)
                    )));
                }
                Ok(chunk)
            })
            .eventsource();
        let mut text = String::new();
        let mut finish: Option<Finish> = None;
        let broken = |text: String, reason: String| {
            metrics::counter!("llm_request_failures_total", "kind" => "stream_broken").increment(1);
            LlmError::StreamBroken {
                received: text,
                reason,
            }
        };
        loop {
            let event = match tokio::time::timeout(self.timeout, events.next()).await {
                Err(_) => return Err(broken(text, "no data in time".into())),
                Ok(Some(Err(err))) => return Err(broken(text, err.to_string())),
                Ok(None) => {
                    // The body ended. Finished only when a chunk said so; otherwise it was cut, however
                    // cleanly the connection closed.
                    return match finish {
                        Some(finish) => Ok(StreamedReply { text, finish }),
                        None => Err(broken(
                            text,
                            "the stream ended before the reply was finished".into(),
                        )),
                    };
                }
                Ok(Some(Ok(event))) => event,
            };
            let data = event.data.trim();
            if data == "[DONE]" {
                return Ok(StreamedReply {
                    text,
                    finish: finish.unwrap_or(Finish::Stop),
                });
            }
            if data.is_empty() {
                continue;
            }
            let chunk: serde_json::Value = serde_json::from_str(data)
                .map_err(|err| LlmError::Malformed(format!("a stream chunk is not JSON: {err}")))?;
            if let Some(message) = chunk.get("error") {
                return Err(broken(
                    text,
                    format!("the server sent an error: {}", clip(&message.to_string())),
                ));
            }
            let choice = &chunk["choices"][0];
            if let Some(piece) = choice["delta"]["content"].as_str()
                && !piece.is_empty()
            {
                text.push_str(piece);
                on_token(piece);
            }
            if let Some(reason) = choice["finish_reason"].as_str() {
                finish = Some(Finish::from_reason(reason));
            }
        }
    }

    /// One non-streamed call to the analysis model; returns the message content. With `json_object`,
    /// asks for `response_format: {"type": "json_object"}`; a server that refuses that parameter is asked
    /// again without it, and not asked with it again.
    pub async fn complete(
        &self,
        messages: &[ChatMessage],
        correlation_id: &str,
        max_tokens: u32,
        json_object: bool,
    ) -> Result<String, LlmError> {
        let mut body = json!({
            "model": self.analysis_model,
            "messages": messages,
            "stream": false,
            "temperature": 0.2,
            "max_tokens": max_tokens,
        });
        let ask_json = json_object && !self.json_mode_refused.load(Ordering::Relaxed);
        if ask_json {
            body["response_format"] = json!({"type": "json_object"});
        }
        let response = match self.send_with_retries(&body, correlation_id, false).await {
            Err(LlmError::Rejected { status, detail })
                if ask_json && matches!(status, 400 | 422) =>
            {
                if let Some(map) = body.as_object_mut() {
                    map.remove("response_format");
                }
                let response = self.send_with_retries(&body, correlation_id, false).await?;
                // Only a refusal that goes away without the parameter is the parameter's fault.
                tracing::info!(
                    status,
                    detail,
                    "the language model refused response_format; not asking for it again"
                );
                self.json_mode_refused.store(true, Ordering::Relaxed);
                response
            }
            other => other?,
        };
        let bytes = super::read_capped(response, MAX_COMPLETION_BYTES)
            .await
            .map_err(|err| match err {
                super::CappedRead::TooLarge => LlmError::Malformed(format!(
                    "the answer is larger than {} KiB",
                    MAX_COMPLETION_BYTES / 1024
                )),
                super::CappedRead::Broken(reason) => LlmError::Unavailable {
                    attempts: 1,
                    last: reason,
                },
            })?;
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|err| LlmError::Malformed(format!("the answer is not JSON: {err}")))?;
        value["choices"][0]["message"]["content"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| LlmError::Malformed("no choices[0].message.content".into()))
    }

    /// The wait before attempt `attempt + 1` of something that failed `attempt` times (jittered).
    pub fn backoff(&self, attempt: u32) -> Duration {
        backoff(self.backoff_unit, attempt).min(MAX_BACKOFF)
    }
}

/// A failure of the byte stream under the event parser.
#[derive(Debug)]
struct StreamTrouble(String);

impl std::fmt::Display for StreamTrouble {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StreamTrouble {}

fn clip(text: &str) -> String {
    text.chars().take(300).collect()
}

/// When an error answer says the prompt is longer than the context window: the sizes it names.
///
/// OpenAI and vLLM: "maximum context length is 4096 tokens. However, you requested 5000 tokens (4700 in
/// the messages, 300 in the completion)" or "your messages resulted in 4700 tokens"; llama.cpp:
/// `exceed_context_size_error` with `n_ctx` and `n_prompt_tokens`; others say "context length" or
/// "context window" in some form.
pub fn context_refusal(body: &str) -> Option<ContextSizes> {
    let lower = body.to_lowercase();
    let signs = [
        "context_length_exceeded",
        "maximum context length",
        "context length",
        "context window",
        "exceed_context_size",
        "exceeds the available context",
        "prompt is too long",
        "too many tokens",
    ];
    if !signs.iter().any(|sign| lower.contains(sign)) {
        return None;
    }
    let json: Option<serde_json::Value> = serde_json::from_str(body).ok();
    let from_json = |key: &str| -> Option<u32> {
        let json = json.as_ref()?;
        let value = json
            .get("error")
            .and_then(|e| e.get(key))
            .or_else(|| json.get(key))?;
        value.as_u64().and_then(|n| u32::try_from(n).ok())
    };
    let limit = from_json("n_ctx").or_else(|| number_after(&lower, "maximum context length is"));
    let prompt = from_json("n_prompt_tokens")
        .or_else(|| number_before(&lower, "in the messages"))
        .or_else(|| number_after(&lower, "messages resulted in"));
    Some(ContextSizes { limit, prompt })
}

/// The first number after `marker`.
fn number_after(text: &str, marker: &str) -> Option<u32> {
    let rest = &text[text.find(marker)? + marker.len()..];
    let digits: String = rest
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// The number just before `marker` ("4700 in the messages").
fn number_before(text: &str, marker: &str) -> Option<u32> {
    let before = text[..text.find(marker)?].trim_end();
    let digits: String = before
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    digits.parse().ok()
}

pub(crate) fn describe(err: reqwest::Error) -> String {
    if err.is_timeout() {
        "timed out".into()
    } else if err.is_connect() {
        "cannot connect".into()
    } else {
        err.without_url().to_string()
    }
}

/// `Retry-After` in seconds (HTTP dates are rare from these APIs and treated as absent).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(Duration::from_secs_f64)
}

/// `unit × 2^(attempt−1)` plus up to 50 % random jitter, so clients do not retry in lockstep.
pub(crate) fn backoff(unit: Duration, attempt: u32) -> Duration {
    let base = unit * 2_u32.saturating_pow(attempt.saturating_sub(1));
    let mut byte = [0_u8; 1];
    let jitter = if getrandom::fill(&mut byte).is_ok() {
        f64::from(byte[0]) / 255.0 * 0.5
    } else {
        0.25
    };
    base.mul_f64(1.0 + jitter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        let unit = Duration::from_millis(100);
        for attempt in 1..=3 {
            let wait = backoff(unit, attempt);
            let base = unit * 2_u32.pow(attempt - 1);
            assert!(
                wait >= base && wait <= base.mul_f64(1.5),
                "{attempt}: {wait:?}"
            );
        }
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("2"));
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(2)));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2026 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), None);
    }
}
