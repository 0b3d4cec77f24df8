//! Chat security and bad input: ownership everywhere, text shown as text, limits.

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{send, setup};
use crate::on_both_backends;
use crate::support::Backend;
use crate::support::fake_llm::{FakeLlm, Streamed, pieces};
use crate::support::sse::{last, read_all};

async fn another_user_finds_nothing_of_a_chat(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (app, alice, companion) = setup(backend, &llm, &[]).await;
    llm.stream(Streamed::Status(500, Some(0)));
    llm.stream(Streamed::Status(500, Some(0)));
    llm.stream(Streamed::Status(500, Some(0)));
    let (_, started) = send(&alice, &companion, "private").await;
    let run = started["run_id"].as_str().unwrap().to_owned();
    read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    let message = started["user_message_id"].as_str().unwrap().to_owned();

    let mallory = app.signed_in("mallory").await;
    for path in [
        format!("/companions/{companion}/chat"),
        format!("/api/chat/stream/{run}"),
    ] {
        assert_eq!(
            mallory.get(&path).await.status(),
            StatusCode::NOT_FOUND,
            "GET {path}"
        );
    }
    for (method, path, body) in [
        (
            Method::GET,
            format!("/api/v1/companions/{companion}/messages"),
            None,
        ),
        (
            Method::POST,
            format!("/api/v1/companions/{companion}/messages"),
            Some(json!({"content": "hi"})),
        ),
        (
            Method::POST,
            format!("/api/v1/companions/{companion}/regenerate"),
            None,
        ),
        (Method::POST, format!("/api/chat/runs/{run}/cancel"), None),
        (Method::POST, format!("/api/chat/runs/{run}/retry"), None),
        (
            Method::PATCH,
            format!("/api/v1/messages/{message}"),
            Some(json!({"content": "stolen"})),
        ),
        (Method::DELETE, format!("/api/v1/messages/{message}"), None),
    ] {
        let (status, body) = mallory.api(method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
    }
    let (status, _) = alice
        .api(Method::POST, &format!("/api/chat/runs/{run}/retry"), None)
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "the owner still can");
}

async fn user_text_and_model_output_are_shown_as_text(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (_app, alice, companion) = setup(backend, &llm, &[]).await;
    llm.stream(Streamed::Tokens(pieces(&[
        "<img src=x onerror=alert(1)> ",
        "**bold** and *soft*",
    ])));
    let (_, started) = send(&alice, &companion, "<script>alert('me')</script>").await;
    let events = read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    let html = last(&events, "done").unwrap().data["html"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(!html.contains("<img"), "{html}");
    assert!(
        html.contains("<strong>bold</strong>") && html.contains("<em>soft</em>"),
        "{html}"
    );
    let page = alice.page(&format!("/companions/{companion}/chat")).await;
    assert!(!page.contains("<script>alert('me')</script>"));
    assert!(!page.contains("<img src=x"));
    assert!(
        page.contains("&lt;script&gt;") || page.contains("&#60;script&#62;"),
        "escaped user text"
    );
    assert!(page.contains("<strong>bold</strong>"));
}

async fn bad_messages_and_ids_get_clear_answers(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (_app, alice, companion) = setup(backend, &llm, &[]).await;
    for content in ["", "   ", &"x".repeat(4001)] {
        let (status, body) = send(&alice, &companion, content).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{} chars",
            content.len()
        );
        assert!(body["error"]["fields"]["content"].is_array());
    }
    let (status, _) = send(&alice, &companion, &"é".repeat(4000)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "4,000 characters are fine");
    for path in [
        "/api/chat/stream/not-a-uuid",
        "/api/chat/stream/00000000-0000-7000-8000-000000000000",
    ] {
        assert_eq!(
            alice.get(path).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
    let (status, _) = alice
        .api(Method::POST, "/api/chat/runs/nope/cancel", None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, body) = alice
        .api(
            Method::POST,
            &format!("/api/v1/companions/{companion}/messages"),
            Some(json!({"content": "hi", "generate_image": true})),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "image_backend_not_configured");
    let (status, _) = alice
        .api(
            Method::POST,
            &format!("/api/v1/companions/{companion}/messages"),
            Some(json!({"text": "hi"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

on_both_backends!(
    another_user_finds_nothing_of_a_chat,
    user_text_and_model_output_are_shown_as_text,
    bad_messages_and_ids_get_clear_answers,
);
