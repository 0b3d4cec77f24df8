//! Clients of the outside AI services (the OpenAI-compatible language model, the image backends).
//!
//! Policy: no product logic here, only the wire formats; every outbound call has a timeout and carries
//! the correlation id of the request that caused it.

pub mod images;
pub mod llm;
mod probe;

use std::time::Duration;

use futures_util::StreamExt;

pub use probe::HttpProbe;

use crate::config::{Config, ImageBackendConfig};

/// The shared HTTP client for outbound calls (connection pooling, TLS, a user agent naming us).
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .user_agent(concat!("companion-hub/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .build()?)
}

/// The reachability probe of the language model: `GET {base}/models`, which every
/// OpenAI-compatible server (OpenAI, OpenRouter, Ollama, llama.cpp, vLLM, LM Studio) answers.
pub fn llm_probe(config: &Config, client: &reqwest::Client) -> Option<HttpProbe> {
    let llm = config.llm.as_ref()?;
    Some(HttpProbe::new(
        client.clone(),
        join_url(llm.base_url.as_str(), "models"),
        llm.api_key.clone(),
    ))
}

/// The reachability probe of the image backend: a cheap read-only endpoint of each API.
pub fn image_probe(config: &Config, client: &reqwest::Client) -> Option<HttpProbe> {
    match &config.image_backend {
        ImageBackendConfig::None => None,
        ImageBackendConfig::SdApi { url } => Some(HttpProbe::new(
            client.clone(),
            join_url(url.as_str(), "sdapi/v1/sd-models"),
            None,
        )),
        ImageBackendConfig::OpenAi { url, api_key, .. } => Some(HttpProbe::new(
            client.clone(),
            join_url(url.as_str(), "models"),
            api_key.clone(),
        )),
    }
}

/// Why a capped read stopped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CappedRead {
    /// The body is longer than the cap (said by `Content-Length`, or found while reading).
    TooLarge,
    /// The connection broke while reading.
    Broken(String),
}

/// The whole body, refusing to hold more than `limit` bytes: a misbehaving server cannot make us
/// buffer without bound.
pub(crate) async fn read_capped(
    response: reqwest::Response,
    limit: usize,
) -> Result<Vec<u8>, CappedRead> {
    if response
        .content_length()
        .is_some_and(|length| length > limit as u64)
    {
        return Err(CappedRead::TooLarge);
    }
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|err| CappedRead::Broken(llm::describe(err)))?;
        if body.len() + chunk.len() > limit {
            return Err(CappedRead::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// At most the first `limit` bytes of a body, as text without control characters (error details: the
/// rest is not read).
pub(crate) async fn read_prefix(response: reqwest::Response, limit: usize) -> String {
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while body.len() < limit {
        match chunks.next().await {
            Some(Ok(chunk)) => {
                body.extend_from_slice(&chunk[..chunk.len().min(limit - body.len())])
            }
            _ => break,
        }
    }
    String::from_utf8_lossy(&body)
        .chars()
        .filter(|c| !c.is_control())
        .collect()
}

/// `http://host/v1` + `models` → `http://host/v1/models` (whether or not the base ends in `/`).
pub fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A response whose body arrives in `chunks` pieces of `size` bytes, with no Content-Length.
    fn streamed(chunks: usize, size: usize) -> reqwest::Response {
        let pieces = (0..chunks).map(move |_| Ok::<_, std::io::Error>(vec![b'a'; size]));
        let body = reqwest::Body::wrap_stream(futures_util::stream::iter(pieces));
        reqwest::Response::from(axum::http::Response::new(body))
    }

    #[tokio::test]
    async fn a_body_over_its_cap_is_refused_without_being_kept() {
        assert_eq!(
            read_capped(streamed(4, 1000), 4000)
                .await
                .map(|b| b.len())
                .ok(),
            Some(4000)
        );
        assert!(matches!(
            read_capped(streamed(5, 1000), 4000).await,
            Err(CappedRead::TooLarge)
        ));
        // A declared length over the cap is refused before anything is read.
        let declared = axum::http::Response::builder()
            .header("content-length", "5000")
            .body(reqwest::Body::from(vec![b'a'; 5000]))
            .expect("a response");
        assert!(matches!(
            read_capped(reqwest::Response::from(declared), 4000).await,
            Err(CappedRead::TooLarge)
        ));
    }

    #[tokio::test]
    async fn an_error_body_is_read_only_up_to_its_prefix() {
        let text = read_prefix(streamed(1_000, 1024), 16 * 1024).await;
        assert_eq!(
            text.len(),
            16 * 1024,
            "one megabyte sent, sixteen kilobytes read"
        );
    }

    #[test]
    fn paths_are_appended_not_substituted() {
        assert_eq!(
            join_url("http://localhost:11434/v1", "models"),
            "http://localhost:11434/v1/models"
        );
        assert_eq!(
            join_url("http://localhost:11434/v1/", "/models"),
            "http://localhost:11434/v1/models"
        );
    }
}
