//! Chat: runs end to end against a fake OpenAI-compatible server, resume, failures, actions, security.

mod actions;
mod failures;
mod provider_streams;
mod resume;
mod runs;
mod security;
mod tolerance;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::fake_llm::FakeLlm;
use crate::support::visitor::Visitor;
use crate::support::{Backend, TestApp};

/// An app talking to `llm`, a signed-in user and one companion.
pub async fn setup(
    backend: Backend,
    llm: &FakeLlm,
    extra: &[(&str, &str)],
) -> (TestApp, Visitor, String) {
    let app = TestApp::with_llm(backend, llm, extra).await;
    let alice = app.signed_in("alice").await;
    let companion = alice
        .create_companion(json!({"name": "Mira", "age": 26, "user_appearance": "tall, red scarf"}))
        .await;
    let id = companion["id"].as_str().unwrap().to_owned();
    (app, alice, id)
}

/// Sends a message; returns the status and the body.
pub async fn send(
    visitor: &Visitor,
    companion: &str,
    content: &str,
) -> (reqwest::StatusCode, Value) {
    visitor
        .api(
            Method::POST,
            &format!("/api/v1/companions/{companion}/messages"),
            Some(json!({"content": content, "generate_image": false})),
        )
        .await
}

/// The conversation, oldest first: `(role, content)`.
pub async fn conversation(visitor: &Visitor, companion: &str) -> Vec<(String, String)> {
    let (_, page) = visitor
        .api(
            Method::GET,
            &format!("/api/v1/companions/{companion}/messages?limit=100"),
            None,
        )
        .await;
    let mut messages: Vec<(String, String)> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["role"].as_str().unwrap().to_owned(),
                m["content"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    messages.reverse();
    messages
}
