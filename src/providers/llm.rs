//! The OpenAI-compatible chat-completions client: streamed replies and one-shot JSON calls.
//!
//! Policy: every call carries `X-Correlation-Id` and, when configured, `Authorization: Bearer`; every call has
//! a timeout. Failures before the first token (429, 5xx, connection errors, timeouts) are retried up to
//! three attempts in all, with exponential backoff, jitter, and the server's `Retry-After` when it gives one.
//! A stream that breaks after tokens arrived is reported as [`LlmError::StreamBroken`] with what was
//! received: the caller decides whether to start the step again.

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

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
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
        let detail: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(300)
            .collect();
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

    /// Streams a reply, calling `on_token` with every piece of text as it arrives; returns the whole text.
    pub async fn stream_reply(
        &self,
        messages: &[ChatMessage],
        correlation_id: &str,
        mut on_token: impl FnMut(&str),
    ) -> Result<String, LlmError> {
        let body = json!({
            "model": self.model,
            "messages": messages,
            "stream": true,
            "temperature": self.reply_sampling.temperature,
            "top_p": self.reply_sampling.top_p,
            "max_tokens": self.reply_sampling.max_tokens,
        });
        let response = self.send_with_retries(&body, correlation_id, true).await?;
        let mut events = response.bytes_stream().eventsource();
        let mut text = String::new();
        loop {
            let next = tokio::time::timeout(self.timeout, events.next()).await;
            let event = match next {
                Err(_) => Some(Err("no data in time".to_owned())),
                Ok(None) => None,
                Ok(Some(Err(err))) => Some(Err(err.to_string())),
                Ok(Some(Ok(event))) => Some(Ok(event)),
            };
            match event {
                None => {
                    // The connection closed without [DONE]: complete if text came, broken otherwise.
                    if text.is_empty() {
                        return Err(LlmError::Unavailable {
                            attempts: 1,
                            last: "the stream ended before any text".into(),
                        });
                    }
                    return Ok(text);
                }
                Some(Err(reason)) => {
                    metrics::counter!("llm_request_failures_total", "kind" => "stream_broken")
                        .increment(1);
                    return Err(LlmError::StreamBroken {
                        received: text,
                        reason,
                    });
                }
                Some(Ok(event)) => {
                    let data = event.data.trim();
                    if data == "[DONE]" {
                        return Ok(text);
                    }
                    if data.is_empty() {
                        continue;
                    }
                    let chunk: serde_json::Value = serde_json::from_str(data).map_err(|err| {
                        LlmError::Malformed(format!("a stream chunk is not JSON: {err}"))
                    })?;
                    if let Some(message) = chunk.get("error") {
                        return Err(LlmError::StreamBroken {
                            received: text,
                            reason: format!("the server sent an error: {message}"),
                        });
                    }
                    if let Some(piece) = chunk["choices"][0]["delta"]["content"].as_str()
                        && !piece.is_empty()
                    {
                        text.push_str(piece);
                        on_token(piece);
                    }
                }
            }
        }
    }

    /// One non-streamed call to the analysis model; returns the message content.
    pub async fn complete(
        &self,
        messages: &[ChatMessage],
        correlation_id: &str,
        max_tokens: u32,
    ) -> Result<String, LlmError> {
        let body = json!({
            "model": self.analysis_model,
            "messages": messages,
            "stream": false,
            "temperature": 0.2,
            "max_tokens": max_tokens,
        });
        let response = self.send_with_retries(&body, correlation_id, false).await?;
        let value: serde_json::Value = response
            .json()
            .await
            .map_err(|err| LlmError::Malformed(err.to_string()))?;
        value["choices"][0]["message"]["content"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| LlmError::Malformed("no choices[0].message.content".into()))
    }
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
