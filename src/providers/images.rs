//! Clients of the image backends: AUTOMATIC1111 / Forge / SD.Next (`/sdapi/v1/txt2img`) and
//! OpenAI-compatible `/images/generations`. Wire formats only: the caller builds the prompt and checks
//! that the bytes really are an image.
//!
//! Every call has the configured timeout, carries `X-Correlation-Id`, and is retried twice on a
//! connection failure or a 5xx. Answers are read with a size cap, so a backend that sends a huge
//! base64 string cannot exhaust memory.

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use super::llm::{backoff, describe};
use super::{CappedRead, join_url};
use crate::config::{ImageBackendConfig, ImageSettings, Secret};

/// Attempts per generation: the first and two retries.
const MAX_ATTEMPTS: u32 = 3;
/// The largest answer read from a backend (a 2048×2048 PNG in base64 is far below this).
pub const MAX_RESPONSE_BYTES: usize = 48 * 1024 * 1024;
/// The samplers offered when the backend cannot list its own.
pub const DEFAULT_SAMPLERS: &[&str] = &[
    "DPM++ 2M",
    "DPM++ 2M Karras",
    "DPM++ SDE Karras",
    "Euler a",
    "Euler",
    "LMS",
    "Heun",
    "DPM2",
    "DPM2 a",
    "DDIM",
    "PLMS",
];

/// What to draw and how.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GenerationRequest {
    /// The positive prompt.
    pub prompt: String,
    /// The negative prompt (ignored by OpenAI-style APIs).
    pub negative: String,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Sampling steps.
    pub steps: u32,
    /// Guidance scale.
    pub cfg: f32,
    /// Sampler name.
    pub sampler: String,
    /// Noise schedule, when the sampler takes one.
    pub scheduler: Option<String>,
    /// Seed; -1 for random.
    pub seed: i64,
    /// Checkpoint to use, when configured.
    pub checkpoint: Option<String>,
}

/// Why a generation failed.
#[derive(Debug, thiserror::Error)]
pub enum ImageGenError {
    /// The backend refused the request (4xx): retrying the same request will not help.
    #[error("the image backend refused the request (HTTP {status}): {detail}")]
    Rejected {
        /// HTTP status.
        status: u16,
        /// The start of the backend's answer.
        detail: String,
    },
    /// Every attempt failed with a transient problem.
    #[error("the image backend is unavailable after {attempts} attempts: {last}")]
    Unavailable {
        /// Attempts made.
        attempts: u32,
        /// The last problem.
        last: String,
    },
    /// The answer is larger than [`MAX_RESPONSE_BYTES`].
    #[error("the image backend sent more than {} MB", MAX_RESPONSE_BYTES / 1024 / 1024)]
    TooLarge,
    /// The answer is not the API's format, or holds no image.
    #[error("the image backend answered in an unexpected format: {0}")]
    Malformed(String),
}

impl ImageGenError {
    /// A stable code for metrics and messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Rejected { .. } => "rejected",
            Self::Unavailable { .. } => "unavailable",
            Self::TooLarge => "too_large",
            Self::Malformed(_) => "malformed",
        }
    }
}

#[derive(Clone, Debug)]
enum Backend {
    SdApi {
        url: String,
    },
    OpenAi {
        url: String,
        api_key: Option<Secret>,
        model: Option<String>,
    },
}

/// A client of the configured image backend.
#[derive(Clone, Debug)]
pub struct ImageClient {
    http: reqwest::Client,
    backend: Backend,
    timeout: Duration,
    backoff_unit: Duration,
    /// The backend's sampler list and when it was read (the generator page shows it on every visit).
    samplers: SamplerCache,
}

/// When the sampler list was read, and the list.
type SamplerCache = std::sync::Arc<std::sync::Mutex<Option<(std::time::Instant, Vec<String>)>>>;

/// How long the backend's sampler list is reused.
const SAMPLERS_TTL: Duration = Duration::from_secs(300);
/// The largest sampler list read.
const MAX_SAMPLERS_BYTES: usize = 256 * 1024;

enum Attempt {
    Retry(String),
    Fatal(ImageGenError),
}

impl ImageClient {
    /// A client for the configured backend; `None` when no backend is configured.
    pub fn new(
        http: reqwest::Client,
        config: &ImageBackendConfig,
        settings: &ImageSettings,
    ) -> Option<Self> {
        let backend = match config {
            ImageBackendConfig::None => return None,
            ImageBackendConfig::SdApi { url } => Backend::SdApi {
                url: url.to_string(),
            },
            ImageBackendConfig::OpenAi {
                url,
                api_key,
                model,
            } => Backend::OpenAi {
                url: url.to_string(),
                api_key: api_key.clone(),
                model: model.clone(),
            },
        };
        Some(Self {
            http,
            backend,
            timeout: settings.timeout,
            backoff_unit: Duration::from_millis(500),
            samplers: std::sync::Arc::default(),
        })
    }

    /// Shorter waits between retries (tests).
    pub fn with_backoff_unit(mut self, unit: Duration) -> Self {
        self.backoff_unit = unit;
        self
    }

    /// Whether the backend takes steps, cfg, sampler, seed and a negative prompt (Stable Diffusion does;
    /// OpenAI-style APIs take only the prompt and the size).
    pub fn takes_sampling_controls(&self) -> bool {
        matches!(self.backend, Backend::SdApi { .. })
    }

    /// Generates one image; returns the backend's bytes (not yet checked to be an image).
    pub async fn generate(
        &self,
        request: &GenerationRequest,
        correlation_id: &str,
    ) -> Result<Vec<u8>, ImageGenError> {
        let (url, body, api_key) = match &self.backend {
            Backend::SdApi { url } => {
                let mut body = json!({
                    "prompt": request.prompt,
                    "negative_prompt": request.negative,
                    "steps": request.steps,
                    "cfg_scale": request.cfg,
                    "width": request.width,
                    "height": request.height,
                    "sampler_name": request.sampler,
                    "seed": request.seed,
                    "batch_size": 1,
                    "n_iter": 1,
                    "send_images": true,
                    "save_images": false,
                });
                if let Some(scheduler) = &request.scheduler {
                    body["scheduler"] = json!(scheduler);
                }
                if let Some(checkpoint) = &request.checkpoint {
                    body["override_settings"] = json!({ "sd_model_checkpoint": checkpoint });
                    // Keep the backend on its loaded model for other users' requests.
                    body["override_settings_restore_afterwards"] = json!(true);
                }
                (join_url(url, "sdapi/v1/txt2img"), body, None)
            }
            Backend::OpenAi {
                url,
                api_key,
                model,
            } => {
                let model_name = model.as_deref().unwrap_or("");
                let mut body = json!({
                    "prompt": request.prompt,
                    "n": 1,
                    "size": openai_size(model_name, request.width, request.height),
                });
                // GPT image models always answer in base64 and refuse the parameter.
                if !model_name.starts_with("gpt-image") {
                    body["response_format"] = json!("b64_json");
                }
                if let Some(model) = model {
                    body["model"] = json!(model);
                }
                (join_url(url, "images/generations"), body, api_key.as_ref())
            }
        };
        let answer = self
            .post_with_retries(&url, &body, api_key, correlation_id)
            .await?;
        let encoded = match &self.backend {
            Backend::SdApi { .. } => answer
                .get("images")
                .and_then(Value::as_array)
                .and_then(|images| images.first())
                .and_then(Value::as_str),
            Backend::OpenAi { .. } => answer
                .get("data")
                .and_then(Value::as_array)
                .and_then(|data| data.first())
                .and_then(|first| first.get("b64_json"))
                .and_then(Value::as_str),
        }
        .ok_or_else(|| ImageGenError::Malformed("the answer holds no image".into()))?;
        decode_base64(encoded)
    }

    /// The sampler names the backend offers (a built-in list when it cannot say).
    pub async fn samplers(&self, correlation_id: &str) -> Vec<String> {
        let Backend::SdApi { url } = &self.backend else {
            return Vec::new();
        };
        if let Ok(cached) = self.samplers.lock()
            && let Some((read, names)) = cached.as_ref()
            && read.elapsed() < SAMPLERS_TTL
        {
            return names.clone();
        }
        let response = self
            .http
            .get(join_url(url, "sdapi/v1/samplers"))
            .header("x-correlation-id", correlation_id)
            .timeout(Duration::from_secs(3))
            .send()
            .await;
        let listed = match response.and_then(reqwest::Response::error_for_status) {
            Ok(response) => match read_capped(response, MAX_SAMPLERS_BYTES).await {
                Ok(body) => serde_json::from_slice::<Vec<Value>>(&body)
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|entry| entry.get("name").and_then(Value::as_str))
                    .map(|name| name.chars().take(100).collect::<String>())
                    .take(100)
                    .collect(),
                Err(_) => Vec::new(),
            },
            Err(_) => Vec::new(),
        };
        if listed.is_empty() {
            // Not remembered: the backend may be starting up.
            return DEFAULT_SAMPLERS.iter().map(|s| (*s).to_owned()).collect();
        }
        if let Ok(mut cached) = self.samplers.lock() {
            *cached = Some((std::time::Instant::now(), listed.clone()));
        }
        listed
    }

    async fn post_with_retries(
        &self,
        url: &str,
        body: &Value,
        api_key: Option<&Secret>,
        correlation_id: &str,
    ) -> Result<Value, ImageGenError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.post(url, body, api_key, correlation_id).await {
                Ok(answer) => return Ok(answer),
                Err(Attempt::Fatal(err)) => {
                    metrics::counter!("image_request_failures_total", "kind" => err.kind())
                        .increment(1);
                    return Err(err);
                }
                Err(Attempt::Retry(reason)) => {
                    metrics::counter!("image_request_failures_total", "kind" => "transient")
                        .increment(1);
                    if attempt >= MAX_ATTEMPTS {
                        return Err(ImageGenError::Unavailable {
                            attempts: attempt,
                            last: reason,
                        });
                    }
                    let wait = backoff(self.backoff_unit, attempt);
                    tracing::warn!(attempt, reason, "image backend call failed; retrying");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    }

    async fn post(
        &self,
        url: &str,
        body: &Value,
        api_key: Option<&Secret>,
        correlation_id: &str,
    ) -> Result<Value, Attempt> {
        let mut request = self
            .http
            .post(url)
            .header("x-correlation-id", correlation_id)
            .timeout(self.timeout)
            .json(body);
        if let Some(key) = api_key {
            request = request.bearer_auth(key.expose());
        }
        // Only a failure to connect is retried: a backend that timed out may still be painting, and
        // asking again would queue the same job behind it.
        let response = request.send().await.map_err(|err| {
            if err.is_connect() {
                Attempt::Retry(describe(err))
            } else {
                Attempt::Fatal(ImageGenError::Unavailable {
                    attempts: 1,
                    last: describe(err),
                })
            }
        })?;
        let status = response.status();
        if status.is_server_error() {
            return Err(Attempt::Retry(format!("HTTP {}", status.as_u16())));
        }
        let body = read_capped(response, MAX_RESPONSE_BYTES).await?;
        if !status.is_success() {
            let detail: String = String::from_utf8_lossy(&body)
                .chars()
                .filter(|c| !c.is_control())
                .take(300)
                .collect();
            return Err(Attempt::Fatal(ImageGenError::Rejected {
                status: status.as_u16(),
                detail,
            }));
        }
        serde_json::from_slice(&body)
            .map_err(|err| Attempt::Fatal(ImageGenError::Malformed(format!("not JSON ({err})"))))
    }
}

/// The body, refusing to hold more than `limit` bytes.
async fn read_capped(response: reqwest::Response, limit: usize) -> Result<Vec<u8>, Attempt> {
    super::read_capped(response, limit)
        .await
        .map_err(|err| match err {
            CappedRead::TooLarge => Attempt::Fatal(ImageGenError::TooLarge),
            CappedRead::Broken(last) => {
                Attempt::Fatal(ImageGenError::Unavailable { attempts: 1, last })
            }
        })
}

/// The size to ask an OpenAI-style API for: OpenAI's own models take only a few sizes (the one closest in
/// shape is chosen); other servers get the size asked for.
fn openai_size(model: &str, width: u32, height: u32) -> String {
    let sizes: &[(u32, u32)] = if model.starts_with("gpt-image") {
        &[(1024, 1024), (1024, 1536), (1536, 1024)]
    } else if model.starts_with("dall-e-3") {
        &[(1024, 1024), (1024, 1792), (1792, 1024)]
    } else if model.starts_with("dall-e-2") {
        &[(1024, 1024)]
    } else {
        return format!("{width}x{height}");
    };
    let shape = f64::from(width) / f64::from(height.max(1));
    let (w, h) = sizes
        .iter()
        .copied()
        .min_by(|a, b| {
            let distance = |(w, h): (u32, u32)| (f64::from(w) / f64::from(h) - shape).abs();
            distance(*a).total_cmp(&distance(*b))
        })
        .unwrap_or((1024, 1024));
    format!("{w}x{h}")
}

/// Base64 (optionally as a `data:` URL, as some servers send it) → bytes.
fn decode_base64(encoded: &str) -> Result<Vec<u8>, ImageGenError> {
    let payload = match encoded.split_once(";base64,") {
        Some((prefix, payload)) if prefix.starts_with("data:") => payload,
        _ => encoded,
    };
    let payload = payload.trim();
    if payload.is_empty() {
        return Err(ImageGenError::Malformed("the image is empty".into()));
    }
    base64::engine::general_purpose::STANDARD
        .decode(payload)
        .map_err(|err| ImageGenError::Malformed(format!("the image is not valid base64 ({err})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn openai_models_get_a_size_they_accept_in_the_closest_shape() {
        assert_eq!(openai_size("gpt-image-1", 832, 1216), "1024x1536");
        assert_eq!(openai_size("gpt-image-1", 1024, 1024), "1024x1024");
        assert_eq!(openai_size("dall-e-3", 1216, 832), "1792x1024");
        assert_eq!(openai_size("dall-e-2", 832, 1216), "1024x1024");
        assert_eq!(openai_size("flux-schnell", 832, 1216), "832x1216");
        assert_eq!(openai_size("", 512, 512), "512x512");
    }

    #[test]
    fn base64_is_accepted_plain_or_as_a_data_url() {
        assert_eq!(decode_base64("aGk=").expect("plain"), b"hi");
        assert_eq!(
            decode_base64("data:image/png;base64,aGk=").expect("data URL"),
            b"hi"
        );
        assert!(matches!(
            decode_base64("not base64!"),
            Err(ImageGenError::Malformed(_))
        ));
        assert!(matches!(
            decode_base64(""),
            Err(ImageGenError::Malformed(_))
        ));
    }
}
