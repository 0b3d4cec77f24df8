//! Message actions: regenerate the last reply, edit a message (the conversation restarts there), delete,
//! and paging through older messages.

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::{conversation, send, setup};
use crate::on_both_backends;
use crate::support::Backend;
use crate::support::fake_llm::{FakeLlm, Streamed, pieces};
use crate::support::sse::{last, read_all};

async fn chat(alice: &crate::support::visitor::Visitor, companion: &str, content: &str) {
    let (status, started) = send(alice, companion, content).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    let events = read_all(alice, started["stream_url"].as_str().unwrap()).await;
    assert!(last(&events, "done").is_some(), "{events:?}");
}

async fn regenerate_replaces_the_last_reply(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (_app, alice, companion) = setup(backend, &llm, &[]).await;
    chat(&alice, &companion, "hi").await;
    llm.stream(Streamed::Tokens(pieces(&["A better ", "answer."])));
    let (status, started) = alice
        .api(
            Method::POST,
            &format!("/api/v1/companions/{companion}/regenerate"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    let events = read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    assert_eq!(
        last(&events, "done").unwrap().data["content"],
        "A better answer."
    );
    assert_eq!(
        conversation(&alice, &companion).await,
        vec![
            ("user".to_owned(), "hi".to_owned()),
            ("assistant".to_owned(), "A better answer.".to_owned())
        ]
    );
    let (_, body) = llm.reply_requests().pop().unwrap();
    let contents: Vec<&str> = body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert!(
        !contents.contains(&"Hello, wörld!"),
        "the replaced reply is not in the prompt"
    );
    assert_eq!(contents.iter().filter(|c| **c == "hi").count(), 1);
}

async fn editing_a_message_restarts_the_conversation_from_it(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (_app, alice, companion) = setup(backend, &llm, &[]).await;
    chat(&alice, &companion, "first").await;
    chat(&alice, &companion, "second").await;
    let (_, page) = alice
        .api(
            Method::GET,
            &format!("/api/v1/companions/{companion}/messages"),
            None,
        )
        .await;
    let first_id = page["messages"].as_array().unwrap().last().unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    llm.stream(Streamed::Tokens(pieces(&["Edited ", "reply."])));
    let (status, started) = alice
        .api(
            Method::PATCH,
            &format!("/api/v1/messages/{first_id}"),
            Some(json!({"content": "first, but better"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    assert_eq!(
        conversation(&alice, &companion).await,
        vec![
            ("user".to_owned(), "first, but better".to_owned()),
            ("assistant".to_owned(), "Edited reply.".to_owned())
        ]
    );
    let (_, page) = alice
        .api(
            Method::GET,
            &format!("/api/v1/companions/{companion}/messages"),
            None,
        )
        .await;
    let reply_id = page["messages"][0]["id"].as_str().unwrap().to_owned();
    let (status, body) = alice
        .api(
            Method::PATCH,
            &format!("/api/v1/messages/{reply_id}"),
            Some(json!({"content": "x"})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "replies cannot be edited: {body}"
    );
}

async fn messages_can_be_deleted_and_paged(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (_app, alice, companion) = setup(backend, &llm, &[]).await;
    for i in 0..3 {
        chat(&alice, &companion, &format!("message {i}")).await;
    }
    let (_, page) = alice
        .api(
            Method::GET,
            &format!("/api/v1/companions/{companion}/messages?limit=4"),
            None,
        )
        .await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 4);
    assert_eq!(page["has_more"], true);
    let oldest = page["messages"][3]["id"].as_str().unwrap().to_owned();
    let (_, older) = alice
        .api(
            Method::GET,
            &format!("/api/v1/companions/{companion}/messages?limit=4&before={oldest}"),
            None,
        )
        .await;
    let older: Vec<&str> = older["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(older, vec!["Hello, wörld!", "message 0"]);

    let newest = page["messages"][0]["id"].as_str().unwrap().to_owned();
    let (status, _) = alice
        .api(Method::DELETE, &format!("/api/v1/messages/{newest}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(conversation(&alice, &companion).await.len(), 5);
    let (status, _) = alice
        .api(Method::DELETE, &format!("/api/v1/messages/{newest}"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn wiping_memory_deletes_the_conversation(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (_app, alice, companion) = setup(backend, &llm, &[]).await;
    chat(&alice, &companion, "remember me").await;
    let response = alice
        .submit(
            &format!("/companions/{companion}/reset"),
            &format!("/companions/{companion}/reset"),
            &[],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(conversation(&alice, &companion).await.is_empty());
    let (_, json) = alice
        .api(
            Method::GET,
            &format!("/api/v1/companions/{companion}"),
            None,
        )
        .await;
    assert_eq!(json["live_state"]["location"], "living room");
}

on_both_backends!(
    regenerate_replaces_the_last_reply,
    editing_a_message_restarts_the_conversation_from_it,
    messages_can_be_deleted_and_paged,
    wiping_memory_deletes_the_conversation,
);
