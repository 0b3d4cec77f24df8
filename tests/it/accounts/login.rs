//! Sign-in: identifiers, redirects, identical failures, lockout, rate limits, expired forms.

use reqwest::StatusCode;
use reqwest::header;

use companion_hub::cli::unlock_user_command;

use crate::on_both_backends;
use crate::support::visitor::{PASSWORD, csrf_token_in};
use crate::support::{Backend, TestApp, counter, test_config};

/// Lockout tests make more attempts than the login rate limit allows.
const NO_LOGIN_LIMITS: &[(&str, &str)] =
    &[("RATE_LIMIT_LOGIN", "off"), ("RATE_LIMIT_LOGIN_IP", "off")];

async fn users_sign_in_with_username_or_email_in_any_case(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.signed_in("alice").await;
    for identifier in ["alice", "ALICE", "Alice@Example.com", " alice@example.com "] {
        let visitor = app.visitor();
        let response = visitor.login(identifier, PASSWORD).await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "{identifier}");
        assert_eq!(response.headers()[header::LOCATION], "/companions");
        assert!(visitor.page("/settings").await.contains("@alice"));
    }
}

async fn after_sign_in_only_local_next_targets_are_followed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.signed_in("alice").await;
    let cases = [
        ("/settings?tab=1", "/settings?tab=1"),
        ("https://evil.example/", "/companions"),
        ("//evil.example/", "/companions"),
    ];
    for (next, expected) in cases {
        let visitor = app.visitor();
        let token = visitor.csrf_token("/login").await;
        let response = visitor
            .post_form(
                "/login",
                &token,
                &[
                    ("identifier", "alice"),
                    ("password", PASSWORD),
                    ("next", next),
                ],
            )
            .await;
        assert_eq!(
            response.headers()[header::LOCATION],
            expected,
            "next={next}"
        );
    }
}

async fn unknown_users_and_wrong_passwords_get_the_same_answer_after_the_same_work(
    backend: Backend,
) {
    let app = TestApp::spawn(backend).await;
    app.signed_in("alice").await;

    // This app's own count: other tests in the same process (under tarpaulin) cannot move it.
    let verifications = || app.counters.password_verifications();
    let before = verifications();
    let wrong_password = app.visitor().login("alice", "Wrong-Password-1").await;
    let after_wrong = verifications();
    let unknown_user = app.visitor().login("nobody", "Wrong-Password-1").await;
    let after_unknown = verifications();

    assert_eq!(after_wrong - before, 1, "a wrong password runs Argon2 once");
    assert_eq!(
        after_unknown - after_wrong,
        1,
        "an unknown user runs it once too"
    );
    assert_eq!(wrong_password.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(unknown_user.status(), StatusCode::UNAUTHORIZED);
    let message = |html: String| {
        let start = html.find(r#"id="login-error">"#).expect("error shown");
        html[start..start + html[start..].find("</p>").unwrap()].to_owned()
    };
    let a = message(wrong_password.text().await.unwrap());
    let b = message(unknown_user.text().await.unwrap());
    assert_eq!(a, b, "identical message");
}

async fn repeated_failures_lock_the_account_across_restarts_until_unlocked(backend: Backend) {
    let app = TestApp::spawn_with(backend, NO_LOGIN_LIMITS).await;
    app.signed_in("alice").await;
    let lockouts_before = counter(&app.metrics().await, "account_lockouts_total");
    let visitor = app.visitor();
    for attempt in 1..=4 {
        let response = visitor.login("alice", "Wrong-Password-1").await;
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "attempt {attempt}"
        );
    }
    let fifth = visitor.login("alice", "Wrong-Password-1").await;
    assert_eq!(fifth.status(), StatusCode::LOCKED);
    assert!(
        fifth
            .text()
            .await
            .unwrap()
            .contains("Try again in 30 minutes")
    );
    assert!(counter(&app.metrics().await, "account_lockouts_total") - lockouts_before >= 1.0);

    let right = visitor.login("alice", PASSWORD).await;
    assert_eq!(
        right.status(),
        StatusCode::LOCKED,
        "even the right password is refused"
    );
    assert!(right.text().await.unwrap().contains("minutes"));

    let (dir, database) = app.stop_keeping_data().await;
    let config = test_config(dir.path(), &database.url, NO_LOGIN_LIMITS);
    let restarted = TestApp::serve(dir, database, config).await;
    let again = restarted.visitor().login("alice", PASSWORD).await;
    assert_eq!(
        again.status(),
        StatusCode::LOCKED,
        "the lock survives a restart"
    );

    let config = test_config(&restarted.data_dir(), &restarted.database.url, &[]);
    let mut out = Vec::new();
    unlock_user_command(&config, "ALICE@example.com", &mut out)
        .await
        .unwrap();
    assert!(String::from_utf8(out).unwrap().contains("unlocked @alice"));
    let unlocked = restarted.visitor().login("alice", PASSWORD).await;
    assert_eq!(unlocked.status(), StatusCode::SEE_OTHER);

    let error = unlock_user_command(&config, "nobody", &mut Vec::new())
        .await
        .unwrap_err();
    assert!(error.to_string().contains("no account"));
}

async fn a_successful_sign_in_resets_the_failure_count(backend: Backend) {
    let app = TestApp::spawn_with(backend, NO_LOGIN_LIMITS).await;
    app.signed_in("alice").await;
    let visitor = app.visitor();
    for _ in 0..4 {
        visitor.login("alice", "Wrong-Password-1").await;
    }
    assert_eq!(app.visitor().login("alice", PASSWORD).await.status(), 303);
    for _ in 0..4 {
        let response = visitor.login("alice", "Wrong-Password-1").await;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    }
}

async fn parallel_attempts_over_the_limit_let_exactly_the_limit_through(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("LOCKOUT_THRESHOLD", "100")]).await;
    app.signed_in("alice").await;
    let visitor = app.visitor();
    let token = visitor.csrf_token("/login").await;
    let attempts = (0..12).map(|_| {
        visitor.post_form(
            "/login",
            &token,
            &[("identifier", "alice"), ("password", "Wrong-Password-1")],
        )
    });
    let responses = futures_util::future::join_all(attempts).await;
    let processed = responses
        .iter()
        .filter(|r| r.status() == StatusCode::UNAUTHORIZED)
        .count();
    let limited: Vec<_> = responses
        .iter()
        .filter(|r| r.status() == StatusCode::TOO_MANY_REQUESTS)
        .collect();
    assert_eq!(processed, 5, "RATE_LIMIT_LOGIN is 5 per 15 minutes");
    assert_eq!(limited.len(), 7);
    assert!(
        limited
            .iter()
            .all(|r| r.headers().contains_key(header::RETRY_AFTER))
    );
}

async fn a_login_form_without_a_live_session_is_refused_with_a_way_back(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.signed_in("alice").await;

    // No session at all.
    let response = app
        .client
        .post(app.url("/login"))
        .form(&[
            ("identifier", "alice"),
            ("password", PASSWORD),
            ("csrf_token", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let html = response.text().await.unwrap();
    assert!(html.contains("This form has expired"));
    assert!(html.contains(r#"href="/""#), "a link back");
    assert!(html.contains("Reference:"));

    // A session that has expired (or was never ours).
    let visitor = app.visitor();
    let html = visitor.page("/login").await;
    let token = csrf_token_in(&html);
    visitor.set_cookie("presession", "expired-or-forged-pre-session");
    let response = visitor
        .post_form(
            "/login",
            &token,
            &[("identifier", "alice"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
}

on_both_backends!(
    users_sign_in_with_username_or_email_in_any_case,
    after_sign_in_only_local_next_targets_are_followed,
    unknown_users_and_wrong_passwords_get_the_same_answer_after_the_same_work,
    repeated_failures_lock_the_account_across_restarts_until_unlocked,
    a_successful_sign_in_resets_the_failure_count,
    parallel_attempts_over_the_limit_let_exactly_the_limit_through,
    a_login_form_without_a_live_session_is_refused_with_a_way_back,
);
