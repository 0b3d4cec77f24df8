//! Pictures in a real browser: ask for one in the chat and see it arrive, then page through the gallery's
//! lightbox with the keyboard.

use serde_json::json;

use super::Browser;
use crate::support::fake_images::FakeImages;
use crate::support::fake_llm::FakeLlm;
use crate::support::visitor::PASSWORD;
use crate::support::{Backend, TestApp};

const RIGHT: &str = "\u{E014}";
const LEFT: &str = "\u{E012}";
const ESCAPE: &str = "\u{E00C}";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_picture_arrives_and_the_gallery_pages_with_the_keyboard() {
    let llm = FakeLlm::start().await;
    let images = FakeImages::start().await;
    let env = images.sdapi_env();
    let vars: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let app = TestApp::with_llm(Backend::Sqlite, &llm, &vars).await;
    let alice = app.signed_in("ada").await;
    let companion = alice
        .create_companion(json!({"name": "Mira", "age": 26}))
        .await;
    let id = companion["id"].as_str().unwrap().to_owned();
    for prompt in ["an older picture", "an old picture"] {
        let (status, made) = alice
            .api(
                reqwest::Method::POST,
                "/api/v1/images",
                Some(json!({"prompt": prompt, "companion_id": id})),
            )
            .await;
        assert_eq!(status, 201, "{made}");
    }

    let browser = Browser::start().await;
    browser.goto(&app.url("/login")).await;
    browser.type_into("#identifier", "ada").await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("form.form button[type=submit]").await;
    browser
        .wait_until("location.pathname === '/companions'")
        .await;

    browser
        .goto(&app.url(&format!("/companions/{id}/chat")))
        .await;
    browser.click("#generate-image").await;
    browser
        .type_into("#message-input", "Show me the kitchen\n")
        .await;
    browser
        .wait_until(
            "(() => { const img = document.querySelector('.message--assistant:last-child .message__picture img'); \
             return img && img.complete && img.naturalWidth > 0; })()",
        )
        .await;
    browser
        .wait_until("document.querySelector('.message--assistant:last-child .message__body').textContent === 'Hello, wörld!'")
        .await;

    browser.goto(&app.url("/gallery")).await;
    browser.click(&format!("a[href='/gallery/{id}']")).await;
    browser
        .wait_until("document.querySelectorAll('.tile').length === 3")
        .await;
    browser.click(".tile:first-child .tile__link").await;
    browser
        .wait_until("document.getElementById('lightbox').open && document.getElementById('lightbox-counter').textContent === '1 / 3'")
        .await;
    browser
        .wait_until("document.getElementById('lightbox-caption').textContent === 'Hello, wörld!'")
        .await;
    let press = |key: &'static str| async {
        browser
            .client
            .active_element()
            .await
            .expect("focus")
            .send_keys(key)
            .await
            .expect("key");
    };
    press(RIGHT).await;
    browser
        .wait_until("document.getElementById('lightbox-counter').textContent === '2 / 3' && document.getElementById('lightbox-caption').textContent.endsWith('an old picture')")
        .await;
    press(RIGHT).await;
    browser
        .wait_until("document.getElementById('lightbox-counter').textContent === '3 / 3'")
        .await;
    press(LEFT).await;
    browser
        .wait_until("document.getElementById('lightbox-counter').textContent === '2 / 3'")
        .await;
    browser
        .wait_until("document.getElementById('lightbox-download').getAttribute('href').endsWith('?download=1')")
        .await;
    press(ESCAPE).await;
    browser
        .wait_until("!document.getElementById('lightbox').open")
        .await;
    browser.close().await;
}
