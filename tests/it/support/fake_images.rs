//! A fake image backend speaking both wire formats: AUTOMATIC1111 / Forge (`/sdapi/v1/*`) and OpenAI images
//! (`/v1/images/generations`). Each generation takes the next scripted answer (a small PNG by default).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use image::ImageFormat;
use serde_json::{Value, json};

use super::fake_http::FakeServer;
use super::images::encoded;

/// What the next generation answers.
#[derive(Clone)]
pub enum Painted {
    /// A real PNG of this size.
    Png(u32, u32),
    /// These bytes, base64-encoded in the API's JSON.
    Bytes(Vec<u8>),
    /// An error status with a short body.
    Status(u16),
    /// A JSON body of at least this many bytes (a huge base64 string).
    Huge(usize),
    /// Waits until the test releases the gate, then answers a PNG.
    Gated(Arc<tokio::sync::Semaphore>),
}

#[derive(Default)]
struct Script {
    queue: VecDeque<Painted>,
    requests: Vec<(HeaderMap, Value)>,
}

type Shared = Arc<Mutex<Script>>;

/// The fake server and its script.
#[derive(Clone)]
pub struct FakeImages {
    script: Shared,
    server: Arc<FakeServer>,
}

fn base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

async fn next_picture(
    script: &Shared,
    headers: HeaderMap,
    body: Value,
) -> Result<Vec<u8>, Response> {
    let next = {
        let mut script = script.lock().unwrap();
        script.requests.push((headers, body));
        script.queue.pop_front().unwrap_or(Painted::Png(64, 96))
    };
    match next {
        Painted::Png(width, height) => Ok(encoded(ImageFormat::Png, width, height)),
        Painted::Bytes(bytes) => Ok(bytes),
        Painted::Status(status) => Err((
            StatusCode::from_u16(status).unwrap(),
            "the fake backend says no",
        )
            .into_response()),
        Painted::Huge(size) => {
            let mut body = String::with_capacity(size + 32);
            body.push_str(r#"{"images":[""#);
            body.extend(std::iter::repeat_n('A', size));
            body.push_str(r#""],"data":[{"b64_json":""}]}"#);
            Err(([("content-type", "application/json")], body).into_response())
        }
        Painted::Gated(gate) => {
            if let Ok(permit) = gate.acquire().await {
                permit.forget();
            }
            Ok(encoded(ImageFormat::Png, 64, 96))
        }
    }
}

async fn txt2img(
    State(script): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    match next_picture(&script, headers, body).await {
        Ok(bytes) => Json(json!({
            "images": [base64(&bytes)],
            "parameters": {},
            "info": "{}",
        }))
        .into_response(),
        Err(response) => response,
    }
}

async fn generations(
    State(script): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    match next_picture(&script, headers, body).await {
        Ok(bytes) => Json(json!({
            "created": 1_700_000_000,
            "data": [{"b64_json": base64(&bytes)}],
        }))
        .into_response(),
        Err(response) => response,
    }
}

impl FakeImages {
    pub async fn start() -> Self {
        let script = Shared::default();
        let router = Router::new()
            .route("/sdapi/v1/txt2img", post(txt2img))
            .route(
                "/sdapi/v1/sd-models",
                get(|| async {
                    Json(json!([{"title": "anime.safetensors [abc]", "model_name": "anime"}]))
                }),
            )
            .route(
                "/sdapi/v1/samplers",
                get(|| async {
                    Json(json!([
                        {"name": "Euler a", "aliases": [], "options": {}},
                        {"name": "DPM++ 2M", "aliases": [], "options": {}},
                        {"name": "UniPC", "aliases": [], "options": {}},
                    ]))
                }),
            )
            .route("/v1/images/generations", post(generations))
            .route(
                "/v1/models",
                get(|| async { Json(json!({"object": "list", "data": [{"id": "fake-image"}]})) }),
            )
            .with_state(script.clone());
        Self {
            script,
            server: Arc::new(FakeServer::start(router).await),
        }
    }

    /// Environment for an app using this fake as AUTOMATIC1111.
    pub fn sdapi_env(&self) -> Vec<(String, String)> {
        vec![
            ("SD_API_URL".into(), self.server.url("")),
            ("RATE_LIMIT_IMAGE".into(), "off".into()),
        ]
    }

    /// Environment for an app using this fake as an OpenAI images API.
    pub fn openai_env(&self) -> Vec<(String, String)> {
        vec![
            ("IMAGE_BACKEND".into(), "openai".into()),
            ("IMAGE_API_URL".into(), self.server.url("/v1")),
            ("IMAGE_API_KEY".into(), "sk-image-key".into()),
            ("IMAGE_MODEL".into(), "fake-image".into()),
            ("RATE_LIMIT_IMAGE".into(), "off".into()),
        ]
    }

    pub fn paint(&self, answer: Painted) {
        self.script.lock().unwrap().queue.push_back(answer);
    }

    /// Generation requests so far: headers and JSON body.
    pub fn requests(&self) -> Vec<(HeaderMap, Value)> {
        self.script.lock().unwrap().requests.clone()
    }
}

/// Gives a gated answer time to be waited on; the gate opens when the test adds a permit.
pub fn gate() -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(0))
}
