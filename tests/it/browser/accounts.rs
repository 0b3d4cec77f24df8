//! The account journey in a real browser: register with the strength meter, sign out, sign in.

use companion_hub::accounts::password_policy;
use serde_json::json;

use super::Browser;
use crate::support::visitor::PASSWORD;
use crate::support::{Backend, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_registers_with_the_meter_signs_out_and_signs_in() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let browser = Browser::start().await;

    browser.goto(&app.url("/register")).await;
    browser.type_into("#name", "Ada Lovelace").await;
    browser.type_into("#email", "ada@example.com").await;
    browser.type_into("#username", "ada").await;
    browser
        .wait_until(
            "getComputedStyle(document.getElementById('password-meter')).display === 'none'",
        )
        .await;

    browser.type_into("#password", "abc").await;
    browser
        .wait_until(
            "getComputedStyle(document.getElementById('password-meter')).display !== 'none'",
        )
        .await;
    let meter = browser
        .wait_for("#password-meter")
        .await
        .text()
        .await
        .unwrap();
    assert!(meter.contains("Strength: Very weak"), "{meter}");
    assert!(meter.contains("Use 8 to 128 characters."), "{meter}");
    assert!(meter.contains("Add an upper-case letter."), "{meter}");

    browser.type_into("#password", PASSWORD).await;
    browser
        .wait_until("document.querySelector('#password-meter .meter__label').textContent.includes('Strong')")
        .await;
    let meter = browser
        .wait_for("#password-meter")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        !meter.contains("Add "),
        "no rule is broken any more: {meter}"
    );

    browser.type_into("#password_confirm", PASSWORD).await;
    browser.click("form.form button[type=submit]").await;
    browser
        .wait_until("location.pathname === '/companions'")
        .await;
    let signed_in = browser.wait_for(".signed-in").await.text().await.unwrap();
    assert_eq!(signed_in, "Ada Lovelace");

    browser.click("#sign-out").await;
    browser.wait_until("location.pathname === '/login'").await;
    assert!(
        browser
            .client
            .find(fantoccini::Locator::Css(".signed-in"))
            .await
            .is_err()
    );

    browser.type_into("#identifier", "ADA@example.com").await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("form.form button[type=submit]").await;
    browser
        .wait_until("location.pathname === '/companions'")
        .await;
    assert_eq!(browser.path().await, "/companions");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_meter_applies_exactly_the_server_rules() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let browser = Browser::start().await;
    browser.goto(&app.url("/register")).await;
    let samples = [
        "",
        "abc",
        "password",
        "Password1!",
        "Tulip-Garden-42",
        "TULIP-GARDEN-42",
        "tulipgarden42",
        "Tulip Garden 42",
        "qwerty-Tulip-9",
        "Tulip-9-QWERTY",
        "Superman",
        "trustno1",
        "Äb1!éééé",
        "Zoë-山田-2026",
        &format!("Ab1!{}", "x".repeat(125)),
    ];
    let script = r#"
        const [samples, done] = arguments;
        const meter = document.querySelector('script[type=module]').src;
        import(meter).then((m) => m.ready().then(() =>
            done(samples.map((p) => ({ violations: m.violations(p), score: m.strength(p).score })))));
    "#;
    let result = browser
        .client
        .execute_async(script, vec![json!(samples)])
        .await
        .expect("the meter module loads");
    for (sample, browser_result) in samples.iter().zip(result.as_array().unwrap()) {
        let server: Vec<&str> = password_policy::violations(sample)
            .iter()
            .map(|rule| rule.code())
            .collect();
        assert_eq!(
            browser_result["violations"],
            json!(server),
            "rules for {sample:?}"
        );
        assert_eq!(
            browser_result["score"],
            json!(password_policy::strength(sample).score),
            "score for {sample:?}"
        );
    }
    browser.close().await;
}
