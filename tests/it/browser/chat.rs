//! The chat in a real browser: tokens arrive as they are written, a reload mid-reply continues it, Stop works.

use serde_json::json;

use super::Browser;
use crate::support::fake_llm::{FakeLlm, Streamed, gate, pieces};
use crate::support::visitor::PASSWORD;
use crate::support::{Backend, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replies_stream_survive_a_reload_and_can_be_stopped() {
    let llm = FakeLlm::start().await;
    let app = TestApp::with_llm(Backend::Sqlite, &llm, &[]).await;
    let alice = app.signed_in("ada").await;
    let companion = alice
        .create_companion(json!({"name": "Mira", "age": 26}))
        .await;
    let chat = app.url(&format!(
        "/companions/{}/chat",
        companion["id"].as_str().unwrap()
    ));

    let browser = Browser::start().await;
    browser.goto(&app.url("/login")).await;
    browser.type_into("#identifier", "ada").await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("form.form button[type=submit]").await;
    browser
        .wait_until("location.pathname === '/companions'")
        .await;

    let hold = gate();
    llm.stream(Streamed::Paused {
        before: pieces(&["Once", " upon"]),
        gate: hold.clone(),
        after: pieces(&[" a time", " <b>there</b>."]),
    });
    browser.goto(&chat).await;
    browser
        .type_into("#message-input", "Tell me a story\n")
        .await;
    browser
        .wait_until("document.querySelector('.message--live .message__body') && document.querySelector('.message--live .message__body').textContent === 'Once upon'")
        .await;
    browser
        .wait_until("!document.getElementById('stop').hidden")
        .await;

    // Reload in the middle of the reply: the page picks the run up and shows the text so far.
    browser.goto(&chat).await;
    browser
        .wait_until("document.querySelector('.message--live .message__body') && document.querySelector('.message--live .message__body').textContent === 'Once upon'")
        .await;
    hold.add_permits(1);
    browser
        .wait_until("!document.querySelector('.message--live') && document.querySelector('.message--assistant:last-child .message__body').textContent === 'Once upon a time <b>there</b>.'")
        .await;
    let html = browser
        .client
        .execute("return document.querySelector('.message--assistant:last-child .message__body').innerHTML;", vec![])
        .await
        .unwrap();
    assert!(
        !html.as_str().unwrap().contains("<b>"),
        "model output is never HTML: {html}"
    );
    browser
        .wait_until("document.getElementById('state-location').textContent === 'kitchen'")
        .await;
    let users = browser
        .client
        .execute(
            "return document.querySelectorAll('.message--user').length;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(users, json!(1), "the reload shows the message once");

    // Stop keeps what was written.
    let second = gate();
    llm.stream(Streamed::Paused {
        before: pieces(&["I will", " keep"]),
        gate: second,
        after: pieces(&[" talking"]),
    });
    browser.type_into("#message-input", "Go on\n").await;
    browser
        .wait_until("document.querySelector('.message--live .message__body') && document.querySelector('.message--live .message__body').textContent === 'I will keep'")
        .await;
    browser.click("#stop").await;
    browser
        .wait_until("!document.querySelector('.message--live') && document.querySelector('.message--assistant:last-child .message__body').textContent === 'I will keep' && document.getElementById('stop').hidden")
        .await;
    browser.close().await;
}
