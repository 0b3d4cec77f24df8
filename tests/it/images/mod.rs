//! Images: pictures in the chat, the generator, the gallery, serving, and the orphan cleanup — against fake
//! AUTOMATIC1111 and OpenAI-images servers.

mod chat;
mod cleanup;
mod gallery;
mod generator;
mod storage;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::fake_llm::FakeLlm;
use crate::support::visitor::Visitor;
use crate::support::{Backend, TestApp};

/// An app with a fake model and a fake image backend (`env` picks its wire format), a signed-in user and
/// one companion.
pub async fn setup(
    backend: Backend,
    images_env: Vec<(String, String)>,
    extra: &[(&str, &str)],
) -> (TestApp, FakeLlm, Visitor, String) {
    let llm = FakeLlm::start().await;
    let mut vars: Vec<(&str, &str)> = images_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    vars.extend_from_slice(extra);
    let app = TestApp::with_llm(backend, &llm, &vars).await;
    let alice = app.signed_in("alice").await;
    let companion = alice
        .create_companion(json!({
            "name": "Mira",
            "age": 26,
            "art_style": "anime",
            "outfit": {
                "top": {"item": "blouse", "colour": "white"},
                "underwear_top": {"item": "bra", "colour": "black"}
            }
        }))
        .await;
    let id = companion["id"].as_str().unwrap().to_owned();
    (app, llm, alice, id)
}

/// Sends a message asking for a picture; returns the status and the body.
pub async fn send_with_picture(
    visitor: &Visitor,
    companion: &str,
    content: &str,
) -> (reqwest::StatusCode, Value) {
    visitor
        .api(
            Method::POST,
            &format!("/api/v1/companions/{companion}/messages"),
            Some(json!({"content": content, "generate_image": true})),
        )
        .await
}

/// The newest message of the conversation as JSON.
pub async fn newest_message(visitor: &Visitor, companion: &str) -> Value {
    let (_, page) = visitor
        .api(
            Method::GET,
            &format!("/api/v1/companions/{companion}/messages?limit=1"),
            None,
        )
        .await;
    page["messages"][0].clone()
}
