//! Lockout without enumeration or denial of service: unknown names lock like real ones, and the owner's
//! own browser (a device cookie from an earlier sign-in) keeps working while strangers lock the account.

use reqwest::StatusCode;

use companion_hub::cli::unlock_user_command;

use crate::on_both_backends;
use crate::support::visitor::{PASSWORD, Visitor};
use crate::support::{Backend, TestApp, test_config};

/// These tests make more attempts than the login rate limit allows.
const NO_LOGIN_LIMITS: &[(&str, &str)] =
    &[("RATE_LIMIT_LOGIN", "off"), ("RATE_LIMIT_LOGIN_IP", "off")];

/// The status and the error paragraph of one failed attempt, with the minutes left taken out.
async fn answer(visitor: &Visitor, identifier: &str, password: &str) -> (StatusCode, String) {
    let response = visitor.login(identifier, password).await;
    let status = response.status();
    let html = response.text().await.unwrap();
    let start = html
        .find(r#"id="login-error">"#)
        .expect("an error is shown");
    let message = html[start..start + html[start..].find("</p>").unwrap()].to_owned();
    let message: String = message.chars().filter(|c| !c.is_ascii_digit()).collect();
    (status, message)
}

async fn unknown_names_get_the_same_answers_as_real_accounts_up_to_the_lock(backend: Backend) {
    let app = TestApp::spawn_with(backend, NO_LOGIN_LIMITS).await;
    app.signed_in("alice").await;
    let mut real = Vec::new();
    let mut unknown = Vec::new();
    let (a, b) = (app.visitor(), app.visitor());
    for _ in 0..6 {
        real.push(answer(&a, "alice", "Wrong-Password-1").await);
        unknown.push(answer(&b, "nobody-here", "Wrong-Password-1").await);
    }
    let statuses: Vec<StatusCode> = real.iter().map(|(status, _)| *status).collect();
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::LOCKED,
            StatusCode::LOCKED,
        ]
    );
    assert_eq!(real, unknown, "no answer tells whether the account exists");
}

async fn the_owners_browser_signs_in_while_strangers_have_locked_the_account(backend: Backend) {
    let app = TestApp::spawn_with(backend, NO_LOGIN_LIMITS).await;
    let registered = app.signed_in("alice").await;
    let device = registered
        .cookie("device")
        .expect("registering leaves a device cookie");

    let stranger = app.visitor();
    for _ in 0..5 {
        stranger.login("alice", "Wrong-Password-1").await;
    }
    let (status, _) = answer(&stranger, "alice", PASSWORD).await;
    assert_eq!(status, StatusCode::LOCKED, "new browsers are locked out");
    let (status, _) = answer(&app.visitor(), "ALICE", PASSWORD).await;
    assert_eq!(status, StatusCode::LOCKED, "in any case of the name");

    let owner = app.visitor();
    owner.set_cookie("device", &device);
    let response = owner.login("alice", PASSWORD).await;
    assert_eq!(
        response.status(),
        StatusCode::SEE_OTHER,
        "the browser that signed in before is not locked out"
    );
    assert!(owner.page("/settings").await.contains("@alice"));
    assert_ne!(
        owner.cookie("device").as_deref(),
        Some(device.as_str()),
        "each sign-in renews the device cookie"
    );

    // A device cookie is the account's: it does not help a stranger with another account's lock.
    let bob = app.signed_in("bob").await;
    let bobs_device = bob.cookie("device").expect("device cookie");
    let borrowed = app.visitor();
    borrowed.set_cookie("device", &bobs_device);
    let (status, _) = answer(&borrowed, "alice", PASSWORD).await;
    assert_eq!(status, StatusCode::LOCKED);
}

async fn wrong_passwords_from_the_owners_browser_lock_only_that_browser(backend: Backend) {
    let app = TestApp::spawn_with(backend, NO_LOGIN_LIMITS).await;
    let registered = app.signed_in("alice").await;
    let device = registered.cookie("device").expect("device cookie");
    let owner = app.visitor();
    owner.set_cookie("device", &device);
    let mut statuses = Vec::new();
    for _ in 0..5 {
        statuses.push(owner.login("alice", "Wrong-Password-1").await.status());
    }
    assert_eq!(statuses[4], StatusCode::LOCKED, "{statuses:?}");
    assert_eq!(
        owner.login("alice", PASSWORD).await.status(),
        StatusCode::LOCKED,
        "a device lock holds against the right password too"
    );
    assert_eq!(
        app.visitor().login("alice", PASSWORD).await.status(),
        StatusCode::SEE_OTHER,
        "other browsers are counted apart"
    );

    let config = test_config(&app.data_dir(), &app.database.url, &[]);
    unlock_user_command(&config, "alice", &mut Vec::new())
        .await
        .unwrap();
    assert_eq!(
        owner.login("alice", PASSWORD).await.status(),
        StatusCode::SEE_OTHER,
        "unlock-user clears the device's lock too"
    );
}

on_both_backends!(
    unknown_names_get_the_same_answers_as_real_accounts_up_to_the_lock,
    the_owners_browser_signs_in_while_strangers_have_locked_the_account,
    wrong_passwords_from_the_owners_browser_lock_only_that_browser,
);
