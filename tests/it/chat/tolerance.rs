//! What real models send besides the happy path: analyses in other shapes, markdown, scripts that
//! tokenize densely, and prompts the provider says are too long.

use reqwest::Method;
use serde_json::{Value, json};

use super::{send, setup};
use crate::on_both_backends;
use crate::support::fake_llm::{Analysed, FakeLlm, Streamed, fake_tokens, pieces};
use crate::support::sse::{last, read_all};
use crate::support::{Backend, counter};

async fn live_state(alice: &crate::support::visitor::Visitor, companion: &str) -> Value {
    let (_, json) = alice
        .api(
            Method::GET,
            &format!("/api/v1/companions/{companion}"),
            None,
        )
        .await;
    json["live_state"].clone()
}

async fn an_outfit_written_as_a_string_changes_the_clothes(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (_app, alice, companion) = setup(backend, &llm, &[]).await;
    // A small local model: a fence, single quotes, a string outfit, Python's True, "yes".
    llm.analyse(Analysed::Content(
        "Here is the scene:\n```json\n{'outfit': 'red summer dress, straw hat, white sandals', \
         'location': 'the beach', 'is_user_present': 'yes', 'mood_note': True}\n```"
            .into(),
    ));
    let (_, started) = send(&alice, &companion, "Let's go to the beach!").await;
    let events = read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    assert!(last(&events, "done").is_some());
    let state = live_state(&alice, &companion).await;
    assert_eq!(
        state["outfit"],
        json!([
            {"category": "full_body", "description": "red summer dress"},
            {"category": "other", "description": "straw hat"},
            {"category": "footwear", "description": "white sandals"},
        ]),
        "the old clothes are gone: {state}"
    );
    assert_eq!(state["location"], "the beach");
    assert_eq!(state["user_present"], true);
}

async fn unusable_analyses_keep_the_scene_and_are_counted(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (app, alice, companion) = setup(backend, &llm, &[]).await;
    let before = counter(
        &app.metrics().await,
        "scene_analyses_total{outcome=\"unusable\"}",
    );
    llm.analyse(Analysed::Content(
        "She smiles. Nothing else changes.".into(),
    ));
    let (_, started) = send(&alice, &companion, "hi").await;
    let events = read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    assert!(last(&events, "done").is_some(), "the run still completes");
    assert_eq!(
        live_state(&alice, &companion).await["location"],
        "living room"
    );
    let after = counter(
        &app.metrics().await,
        "scene_analyses_total{outcome=\"unusable\"}",
    );
    assert!(after >= before + 1.0, "{before} → {after}");
}

async fn an_oversized_analysis_answer_is_refused_and_the_reply_still_stands(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (app, alice, companion) = setup(backend, &llm, &[]).await;
    let failed = "scene_analyses_total{outcome=\"failed\"}";
    let before = counter(&app.metrics().await, failed);
    // Two megabytes of "JSON": over the 1 MiB cap of a non-streamed answer.
    let huge = format!(
        r#"{{"location": "beach", "action": "{}"}}"#,
        "x".repeat(2 * 1024 * 1024)
    );
    llm.analyse(Analysed::Content(huge));
    let (_, started) = send(&alice, &companion, "hi").await;
    let events = read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    assert!(last(&events, "done").is_some(), "the run still completes");
    assert_eq!(
        live_state(&alice, &companion).await["location"],
        "living room",
        "nothing of the oversized answer was applied"
    );
    assert!(counter(&app.metrics().await, failed) >= before + 1.0);
}

async fn json_mode_is_asked_for_and_dropped_when_the_provider_refuses_it(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (_app, alice, companion) = setup(backend, &llm, &[]).await;
    llm.analyse(Analysed::Status(400));
    llm.analyse(Analysed::Content(r#"{"location": "garden"}"#.into()));
    let (_, started) = send(&alice, &companion, "outside?").await;
    read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    assert_eq!(live_state(&alice, &companion).await["location"], "garden");
    let asked: Vec<Value> = llm
        .analysis_requests()
        .into_iter()
        .map(|(_, body)| body["response_format"].clone())
        .collect();
    assert_eq!(asked, vec![json!({"type": "json_object"}), Value::Null]);

    let (_, started) = send(&alice, &companion, "and now?").await;
    read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    let later = llm.analysis_requests();
    assert!(
        later.last().unwrap().1.get("response_format").is_none(),
        "not asked again"
    );
}

async fn lists_and_code_in_a_reply_are_rendered(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (_app, alice, companion) = setup(backend, &llm, &[]).await;
    llm.stream(Streamed::Tokens(pieces(&[
        "Steps:\n\n- a\n- b\n\n",
        "```\nlet x = 1;\n    indented\n```",
    ])));
    let (_, started) = send(&alice, &companion, "how?").await;
    let events = read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    let html = last(&events, "done").unwrap().data["html"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        html.contains("<li>a</li>") && html.contains("<li>b</li>"),
        "{html}"
    );
    assert!(
        html.contains("<pre><code>let x = 1;\n    indented\n</code></pre>"),
        "{html}"
    );
    let page = alice.page(&format!("/companions/{companion}/chat")).await;
    assert!(page.contains("<li>a</li>") && page.contains("<pre><code>let x = 1;\n    indented"));
}

async fn a_cjk_conversation_fits_the_context_window(backend: Backend) {
    let llm = FakeLlm::start().await;
    let (app, alice, companion) = setup(
        backend,
        &llm,
        &[("LLM_CONTEXT_TOKENS", "2048"), ("LLM_MAX_TOKENS", "300")],
    )
    .await;
    // A model with a 2,048-token window that counts each Chinese character as a token. Forty turns of
    // 200 characters: at four characters a token they "fit" many times over.
    llm.limit_context(2048);
    crate::support::fill_history(
        &app,
        &companion,
        40,
        &"我们明天一起去公园散步好不好".repeat(14),
    )
    .await;
    let (_, started) = send(&alice, &companion, "你好").await;
    let events = read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    assert!(last(&events, "done").is_some(), "{events:?}");
    let requests = llm.reply_requests();
    assert_eq!(requests.len(), 1, "it fit the first time");
    let sent = &requests[0].1["messages"];
    assert!(
        fake_tokens(sent) + 300 <= 2048,
        "{} tokens",
        fake_tokens(sent)
    );
    assert!(sent.as_array().unwrap().len() > 2, "some history is kept");
}

async fn a_context_refusal_shortens_the_history_and_retries_once(backend: Backend) {
    let llm = FakeLlm::start().await;
    // Configured for 8,192 tokens; the model really has 2,048.
    let (app, alice, companion) = setup(
        backend,
        &llm,
        &[("LLM_CONTEXT_TOKENS", "8192"), ("LLM_MAX_TOKENS", "300")],
    )
    .await;
    llm.limit_context(2048);
    crate::support::fill_history(
        &app,
        &companion,
        60,
        &"a sentence of plain words ".repeat(10),
    )
    .await;
    let before = counter(&app.metrics().await, "llm_context_retries_total");
    let (_, started) = send(&alice, &companion, "hello").await;
    let events = read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    assert!(last(&events, "done").is_some(), "{events:?}");
    let requests = llm.reply_requests();
    assert_eq!(requests.len(), 2, "refused once, then shortened");
    let first = requests[0].1["messages"].as_array().unwrap().len();
    let second = requests[1].1["messages"].as_array().unwrap().len();
    assert!(second < first, "{second} < {first}");
    assert_eq!(
        requests[1].1["messages"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()["content"],
        "hello",
        "the user's message is still there, once"
    );
    assert!(counter(&app.metrics().await, "llm_context_retries_total") >= before + 1.0);

    // A window too small even for the system prompt fails clearly, after one shortening.
    llm.limit_context(100);
    let (_, started) = send(&alice, &companion, "again").await;
    let events = read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    let error = last(&events, "error").expect("fails");
    assert_eq!(error.data["code"], "llm_context_exceeded");
    assert_eq!(llm.reply_requests().len(), 4);
}

on_both_backends!(
    an_outfit_written_as_a_string_changes_the_clothes,
    unusable_analyses_keep_the_scene_and_are_counted,
    an_oversized_analysis_answer_is_refused_and_the_reply_still_stands,
    json_mode_is_asked_for_and_dropped_when_the_provider_refuses_it,
    lists_and_code_in_a_reply_are_rendered,
    a_cjk_conversation_fits_the_context_window,
    a_context_refusal_shortens_the_history_and_retries_once,
);
