//! CSRF: every state-changing request needs this session's token and, when stated, this site's origin.

use reqwest::StatusCode;
use reqwest::header;

use crate::on_both_backends;
use crate::support::{Backend, TestApp};

async fn forged_requests_are_refused_and_genuine_ones_accepted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("alice").await;
    let bob = app.signed_in("bob").await;
    let token = alice.csrf_token("/settings").await;
    let bobs_token = bob.csrf_token("/settings").await;
    let origin = app.url("");
    let origin = origin.trim_end_matches('/');
    let action = alice.url("/settings/display-name");

    let refused = |response: reqwest::Response, case: &'static str| async move {
        assert_eq!(response.status(), StatusCode::FORBIDDEN, "{case}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["code"], "csrf_failed", "{case}");
    };
    let post = || {
        alice
            .client
            .post(&action)
            .header(header::ACCEPT, "application/json")
    };

    refused(
        post().form(&[("name", "Mallory")]).send().await.unwrap(),
        "missing",
    )
    .await;
    refused(
        post()
            .form(&[("name", "Mallory"), ("csrf_token", "AAAA")])
            .send()
            .await
            .unwrap(),
        "malformed",
    )
    .await;
    refused(
        post()
            .form(&[("name", "Mallory"), ("csrf_token", bobs_token.as_str())])
            .send()
            .await
            .unwrap(),
        "another session's token",
    )
    .await;
    refused(
        post()
            .header(header::ORIGIN, "https://evil.example")
            .form(&[("name", "Mallory"), ("csrf_token", token.as_str())])
            .send()
            .await
            .unwrap(),
        "foreign origin",
    )
    .await;
    refused(
        post()
            .header(header::REFERER, "https://evil.example/page")
            .form(&[("name", "Mallory"), ("csrf_token", token.as_str())])
            .send()
            .await
            .unwrap(),
        "foreign referer",
    )
    .await;
    refused(
        post()
            .header("x-csrf-token", bobs_token.as_str())
            .form(&[("name", "Mallory")])
            .send()
            .await
            .unwrap(),
        "another session's token in the header",
    )
    .await;
    assert!(
        alice.page("/settings").await.contains(r#"value="alice""#),
        "nothing changed"
    );

    let accepted = post()
        .header(header::ORIGIN, origin)
        .form(&[("name", "Alice A."), ("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), StatusCode::SEE_OTHER, "form field");
    let second_token = alice.csrf_token("/settings").await;
    assert_ne!(
        token, second_token,
        "every page carries a freshly masked token"
    );
    let accepted = post()
        .header("x-csrf-token", second_token.as_str())
        .header(header::REFERER, format!("{origin}/settings"))
        .form(&[("name", "Alice B.")])
        .send()
        .await
        .unwrap();
    assert_eq!(
        accepted.status(),
        StatusCode::SEE_OTHER,
        "header, same-site referer"
    );
    assert!(
        alice
            .page("/settings")
            .await
            .contains(r#"value="Alice B.""#)
    );
}

async fn csrf_failures_are_counted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("alice").await;
    let response = alice
        .client
        .post(alice.url("/logout"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains(r#"csrf_failures_total{reason="missing_token"}"#),
        "{metrics}"
    );
    assert_eq!(
        alice.get("/settings").await.status(),
        StatusCode::OK,
        "still signed in"
    );
}

async fn a_multipart_token_must_come_before_the_big_parts(backend: Backend) {
    use reqwest::multipart::{Form, Part};
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("alice").await;
    let padding = vec![b'x'; 100 * 1024];
    let post = |form: Form| {
        alice
            .client
            .post(alice.url("/companions/new"))
            .header(header::ACCEPT, "application/json")
            .header(header::ORIGIN, app.url("").trim_end_matches('/'))
            .multipart(form)
            .send()
    };

    // 100 KiB before the token: the middleware reads at most 64 KiB to find it, then refuses.
    let token = alice.csrf_token("/companions/new").await;
    let late = Form::new()
        .part("notes", Part::bytes(padding.clone()))
        .text("csrf_token", token.clone());
    let response = post(late).await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "csrf_failed");

    // The same form with the token first reaches the handler (which judges the rest).
    let early = Form::new()
        .text("csrf_token", token)
        .part("notes", Part::bytes(padding));
    // (it refuses a 100 KiB text field as too long: 413 with its own code, not a CSRF failure).
    let response = post(early).await.unwrap();
    assert_ne!(response.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_ne!(body["error"]["code"], "csrf_failed", "{body}");

    // A foreign origin is refused from its headers, whatever the body.
    let foreign = alice
        .client
        .post(alice.url("/companions/new"))
        .header(header::ACCEPT, "application/json")
        .header(header::ORIGIN, "https://evil.example")
        .multipart(Form::new().part("portrait", Part::bytes(vec![0_u8; 4 * 1024 * 1024])))
        .send()
        .await
        .unwrap();
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    assert!(
        app.metrics()
            .await
            .contains(r#"csrf_failures_total{reason="foreign_origin"}"#)
    );
}

on_both_backends!(
    forged_requests_are_refused_and_genuine_ones_accepted,
    csrf_failures_are_counted,
    a_multipart_token_must_come_before_the_big_parts,
);
