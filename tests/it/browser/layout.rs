//! The layout in a real browser: the theme toggle persists, and pages fit a 360 px screen.

use super::Browser;
use crate::support::{Backend, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_theme_toggle_persists_across_pages() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let browser = Browser::start().await;
    browser.goto(&app.url("/login")).await;
    browser
        .wait_until("!document.getElementById('theme-toggle').hidden")
        .await;
    browser
        .wait_until("!document.documentElement.hasAttribute('data-theme')")
        .await;
    browser.click("#theme-toggle").await;
    browser
        .wait_until("document.documentElement.dataset.theme === 'light'")
        .await;
    browser.click("#theme-toggle").await;
    browser
        .wait_until("document.documentElement.dataset.theme === 'dark'")
        .await;
    let background_dark = browser
        .client
        .execute(
            "return getComputedStyle(document.body).backgroundColor;",
            vec![],
        )
        .await
        .unwrap();

    browser.goto(&app.url("/register")).await;
    browser
        .wait_until("document.documentElement.dataset.theme === 'dark'")
        .await;
    let label = browser
        .wait_for("#theme-toggle-label")
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(label, "Theme: dark");
    let background_after = browser
        .client
        .execute(
            "return getComputedStyle(document.body).backgroundColor;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(
        background_dark, background_after,
        "the dark palette applies on the next page"
    );

    browser.click("#theme-toggle").await;
    browser
        .wait_until("!document.documentElement.hasAttribute('data-theme')")
        .await;
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_fit_a_360_pixel_screen() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let visitor = app.signed_in("narrow").await;
    let companion = visitor
        .create_companion(crate::companions::full_profile())
        .await;
    let edit = format!("/companions/{}/edit", companion["id"].as_str().unwrap());
    let browser = Browser::start().await;
    browser.client.set_window_size(360, 800).await.unwrap();
    for path in ["/login", "/register", "/no-such-page"] {
        browser.goto(&app.url(path)).await;
        browser
            .wait_until("document.readyState === 'complete'")
            .await;
        let width: i64 = browser
            .client
            .execute("return window.innerWidth;", vec![])
            .await
            .unwrap()
            .as_i64()
            .unwrap();
        assert!(width <= 400, "the viewport is narrow: {width}");
        browser
            .wait_until("document.documentElement.scrollWidth <= window.innerWidth")
            .await;
    }
    // Signed-in pages too.
    browser.goto(&app.url("/login")).await;
    browser.type_into("#identifier", "narrow").await;
    browser
        .type_into("#password", crate::support::visitor::PASSWORD)
        .await;
    browser.click("form.form button[type=submit]").await;
    browser
        .wait_until("location.pathname === '/companions'")
        .await;
    for path in ["/companions", "/settings", "/companions/new", edit.as_str()] {
        browser.goto(&app.url(path)).await;
        browser
            .wait_until("document.readyState === 'complete'")
            .await;
        assert_eq!(browser.path().await, path);
        browser
            .wait_until("document.documentElement.scrollWidth <= window.innerWidth")
            .await;
    }
    browser.close().await;
}
