//! Streams as real providers end them: cut early (cleanly closed, over `Connection: close` or chunked),
//! finished at the length limit, with whitespace around the text — and the reply the user sees and keeps.

use reqwest::Method;
use serde_json::json;

use super::{conversation, send, setup};
use crate::on_both_backends;
use crate::support::fake_llm::{FakeLlm, Streamed, gate, pieces};
use crate::support::raw_llm::{RawLlm, RawStream};
use crate::support::sse::{last, read, read_all, text_of};
use crate::support::{Backend, TestApp, counter};

fn words(text: &str) -> Vec<String> {
    text.split_inclusive(' ').map(str::to_owned).collect()
}

const FULL_REPLY: &str = "I found the old lighthouse at the end of the pier, and the keeper told me a \
                          story about the storm of nineteen twelve that nobody in town remembers now.";

async fn a_stream_closed_early_over_connection_close_is_retried_not_kept(backend: Backend) {
    let llm = RawLlm::start().await;
    let env = llm.env();
    let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = TestApp::spawn_with(backend, &vars).await;
    let alice = app.signed_in("alice").await;
    let companion = alice
        .create_companion(json!({"name": "Mira", "age": 26}))
        .await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let all = words(FULL_REPLY);
    assert!(all.len() > 20);
    // The provider's connection drops after five words: the HTTP response ends cleanly at the socket's
    // close, with no finish_reason and no [DONE]. It starts once this client listens (its first event),
    // so the client is shown the five words before they are taken back.
    let listening = gate();
    llm.stream(RawStream::HeldThenCloseAfter(
        listening.clone(),
        all[..5].to_vec(),
    ));
    llm.stream(RawStream::Complete(all.clone()));
    let (_, started) = send(&alice, &companion, "Tell me about your walk.").await;
    let events = read(
        &alice,
        started["stream_url"].as_str().unwrap(),
        None,
        |received| {
            if received.len() == 1 {
                listening.add_permits(1);
            }
            false
        },
    )
    .await;
    assert_eq!(
        events
            .iter()
            .take_while(|e| e.event != "reset")
            .filter(|e| e.event == "token")
            .count(),
        5,
        "the five words were shown before the reset: {events:?}"
    );
    let done = last(&events, "done").expect("the reply completes");
    assert_eq!(
        done.data["content"], FULL_REPLY,
        "every word, not the first five"
    );
    assert!(
        events.iter().any(|e| e.event == "reset"),
        "the client is told to start over: {events:?}"
    );
    assert_eq!(text_of(&events), FULL_REPLY);
    assert_eq!(llm.reply_requests(), 2);
    assert_eq!(conversation(&alice, &companion).await[1].1, FULL_REPLY);
}

async fn a_chunked_stream_that_ends_without_finishing_is_retried(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (app, alice, companion) = setup(backend, &llm, &[]).await;
    let before = counter(&app.metrics().await, "llm_stream_restarts_total");
    llm.stream(Streamed::EndsUnfinished(pieces(&["Once", " upon"])));
    let (_, started) = send(&alice, &companion, "story?").await;
    let events = read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    assert_eq!(
        last(&events, "done").unwrap().data["content"],
        "Hello, wörld!"
    );
    assert_eq!(llm.reply_requests().len(), 2);
    assert!(counter(&app.metrics().await, "llm_stream_restarts_total") >= before + 1.0);
}

async fn a_stream_cut_every_time_fails_and_shows_the_text_as_unfinished(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (_app, alice, companion) = setup(backend, &llm, &[]).await;
    for _ in 0..3 {
        llm.stream(Streamed::EndsUnfinished(pieces(&["Once", " upon", " a"])));
    }
    let (_, started) = send(&alice, &companion, "story?").await;
    let run = started["run_id"].as_str().unwrap().to_owned();
    let events = read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    assert!(last(&events, "done").is_none(), "never shown as finished");
    let error = last(&events, "error").expect("the run fails");
    assert_eq!(error.data["code"], "llm_stream_broken");
    assert_eq!(error.data["retryable"], true);
    assert_eq!(llm.reply_requests().len(), 3, "three streams in all");
    assert_eq!(
        text_of(&events),
        "Once upon a",
        "the client keeps what arrived"
    );
    assert_eq!(
        conversation(&alice, &companion).await,
        vec![("user".to_owned(), "story?".to_owned())],
        "nothing was stored as a reply"
    );
    let page = alice.page(&format!("/companions/{companion}/chat")).await;
    assert!(page.contains("id=\"partial-reply\""), "{page}");
    assert!(page.contains("Once upon a") && page.contains("Unfinished"));
    assert!(page.contains("id=\"run-error\"") && page.contains("Retry"));

    // Retry writes it again; the unfinished text is gone from the page once the reply is stored.
    let (_, retried) = alice
        .api(Method::POST, &format!("/api/chat/runs/{run}/retry"), None)
        .await;
    let events = read_all(&alice, retried["stream_url"].as_str().unwrap()).await;
    assert_eq!(
        last(&events, "done").unwrap().data["content"],
        "Hello, wörld!"
    );
    let page = alice.page(&format!("/companions/{companion}/chat")).await;
    assert!(!page.contains("partial-reply"));
}

async fn a_reply_cut_at_the_length_limit_is_kept_and_marked(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (_app, alice, companion) = setup(backend, &llm, &[]).await;
    llm.stream(Streamed::Finishes(
        pieces(&["It was a long", " story, and then"]),
        "length",
    ));
    let (_, started) = send(&alice, &companion, "go on").await;
    let events = read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    let done = last(&events, "done").expect("a finished reply");
    assert_eq!(done.data["content"], "It was a long story, and then");
    assert_eq!(done.data["finish_reason"], "length");
    assert_eq!(llm.reply_requests().len(), 1, "not retried");
    let (_, page) = alice
        .api(
            Method::GET,
            &format!("/api/v1/companions/{companion}/messages"),
            None,
        )
        .await;
    assert_eq!(page["messages"][0]["finish_reason"], "length");
    assert!(
        page["messages"][1]["finish_reason"].is_null(),
        "a user message"
    );
    let html = alice.page(&format!("/companions/{companion}/chat")).await;
    assert!(html.contains("Stopped at the length limit"));

    // A normal end (finish_reason "stop", no [DONE]) is a finished reply too, and not marked.
    llm.stream(Streamed::Finishes(pieces(&["Done."]), "stop"));
    let (_, started) = send(&alice, &companion, "ok").await;
    let events = read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    assert_eq!(last(&events, "done").unwrap().data["finish_reason"], "stop");
}

async fn what_the_client_assembles_equals_the_stored_reply_byte_for_byte(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (_app, alice, companion) = setup(backend, &llm, &[]).await;
    let cases: [(&[&str], &str); 3] = [
        (&["  \n", "Hello ", "there.", " \n\n"], "Hello there."),
        (
            &[" First line\n", "\n", "- item one\n- item", " two\n"],
            "First line\n\n- item one\n- item two",
        ),
        (
            &["\u{3000}", "こんにちは", "。", "\u{3000}"],
            "こんにちは。",
        ),
    ];
    for (streamed, stored) in cases {
        llm.stream(Streamed::Tokens(pieces(streamed)));
        let (_, started) = send(&alice, &companion, "hi").await;
        let events = read_all(&alice, started["stream_url"].as_str().unwrap()).await;
        let assembled = text_of(&events);
        let done = last(&events, "done").unwrap();
        assert_eq!(assembled, stored, "streamed {streamed:?}");
        assert_eq!(done.data["content"], stored);
        let kept = conversation(&alice, &companion).await;
        assert_eq!(kept.last().unwrap().1, assembled, "stored as streamed");
        let last_token = events.iter().rev().find(|e| e.event == "token").unwrap();
        assert_eq!(
            last_token.id,
            stored.len().to_string(),
            "offsets count the text shown"
        );
    }
}

on_both_backends!(
    a_stream_closed_early_over_connection_close_is_retried_not_kept,
    a_chunked_stream_that_ends_without_finishing_is_retried,
    a_stream_cut_every_time_fails_and_shows_the_text_as_unfinished,
    a_reply_cut_at_the_length_limit_is_kept_and_marked,
    what_the_client_assembles_equals_the_stored_reply_byte_for_byte,
);
