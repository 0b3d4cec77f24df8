//! The companion journey in a real browser: the wizard step by step with a cropped portrait, the list,
//! an edit, a deletion.

use super::Browser;
use crate::support::images::encoded;
use crate::support::visitor::PASSWORD;
use crate::support::{Backend, TestApp};

async fn sign_in(browser: &Browser, app: &TestApp, username: &str) {
    app.signed_in(username).await;
    browser.goto(&app.url("/login")).await;
    browser.type_into("#identifier", username).await;
    browser.type_into("#password", PASSWORD).await;
    browser.click("form.form button[type=submit]").await;
    browser
        .wait_until("location.pathname === '/companions'")
        .await;
}

fn step_shown(step: u32) -> String {
    format!(
        "!document.querySelector('fieldset[data-step=\"{step}\"]').hidden && \
         Array.from(document.querySelectorAll('fieldset.wizard-step')).filter(f => !f.hidden).length === 1"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_companion_is_created_in_the_wizard_edited_and_deleted() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let browser = Browser::start().await;
    sign_in(&browser, &app, "ada").await;
    let files = tempfile::tempdir().unwrap();
    let picture = files.path().join("portrait.jpg");
    std::fs::write(&picture, encoded(image::ImageFormat::Jpeg, 900, 600)).unwrap();

    browser.click("#new-companion").await;
    browser.wait_until(&step_shown(1)).await;
    browser
        .click("input[name=art_style][value=realistic]")
        .await;
    browser.click("#wizard-next").await;

    browser.wait_until(&step_shown(2)).await;
    browser
        .wait_for("#eye_colour")
        .await
        .select_by_value("green")
        .await
        .unwrap();
    browser
        .wait_for("#hair_colour")
        .await
        .select_by_value("custom")
        .await
        .unwrap();
    browser
        .wait_until("!document.getElementById('hair_colour_custom').hidden")
        .await;
    browser.type_into("#hair_colour_custom", "copper").await;
    browser.click("#wizard-next").await;
    browser.wait_until(&step_shown(3)).await;
    browser.click("#wizard-next").await;

    browser.wait_until(&step_shown(4)).await;
    // An empty name keeps the wizard on this step.
    browser.click("#wizard-next").await;
    browser.wait_until(&step_shown(4)).await;
    browser.type_into("#name", "Aria").await;
    browser.type_into("#age", "27").await;
    browser.type_into("#interests-entry", "stargazing\n").await;
    browser.type_into("#interests-entry", "tea,").await;
    browser
        .wait_until("document.querySelectorAll('.tags__chip').length === 2")
        .await;
    browser.click("#wizard-next").await;

    browser.wait_until(&step_shown(5)).await;
    let input = browser.wait_for("#portrait").await;
    input
        .send_keys(picture.to_str().unwrap())
        .await
        .expect("choose the file");
    browser
        .wait_until("!document.getElementById('cropper').hidden && Number(document.getElementById('crop_size').value) > 0")
        .await;
    browser
        .wait_until("document.getElementById('preview-prompt').textContent.includes('You are Aria, a 27-year-old')")
        .await;
    let tags = browser
        .wait_for("#preview-tags")
        .await
        .text()
        .await
        .unwrap();
    assert!(
        tags.contains("copper hair") && tags.contains("green eyes"),
        "{tags}"
    );
    browser.click("#wizard-submit").await;

    browser
        .wait_until("location.pathname === '/companions'")
        .await;
    let card = browser
        .wait_for(".companion-card")
        .await
        .text()
        .await
        .unwrap();
    assert!(card.contains("Aria"), "{card}");
    browser
        .wait_until("document.querySelector('.companion-card img.portrait') && document.querySelector('.companion-card img.portrait').naturalWidth === 600")
        .await;

    browser.click(".companion-card a[href$='/edit']").await;
    browser
        .wait_until("location.pathname.endsWith('/edit')")
        .await;
    browser
        .wait_until("document.getElementById('hair_colour_custom').value === 'copper'")
        .await;
    browser.type_into("#age", "28").await;
    browser.click("#save-companion").await;
    browser
        .wait_until("document.getElementById('edit-notice') !== null")
        .await;
    let age = browser.wait_for("#age").await.prop("value").await.unwrap();
    assert_eq!(age.as_deref(), Some("28"));

    browser
        .click(".page-head__actions a[href$='/delete']")
        .await;
    browser
        .wait_until("location.pathname.endsWith('/delete')")
        .await;
    browser.click("#confirm-action").await;
    browser
        .wait_until("location.pathname === '/companions' && location.search === '?deleted=1'")
        .await;
    let page = browser.wait_for("main").await.text().await.unwrap();
    assert!(page.contains("No companions yet"), "{page}");
    browser.close().await;
}
