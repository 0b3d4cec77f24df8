//! Registration: success signs in; every problem is shown beside its field; duplicates; bad input.

use reqwest::StatusCode;
use reqwest::header;

use crate::on_both_backends;
use crate::support::visitor::PASSWORD;
use crate::support::{Backend, TestApp};

async fn registering_signs_the_user_in(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let visitor = app.visitor();
    let response = visitor
        .register(
            "Alice Liddell",
            "  Alice@Example.COM ",
            "Alice_01",
            PASSWORD,
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/companions");
    let page = visitor.page("/companions").await;
    assert!(
        page.contains("Alice Liddell"),
        "the navigation shows the user"
    );
    assert!(page.contains(r#"id="sign-out""#));
    let settings = visitor.page("/settings").await;
    assert!(
        settings.contains("alice@example.com"),
        "email trimmed and lower-cased"
    );
    assert!(settings.contains("@alice_01"), "username lower-cased");
}

async fn every_problem_is_shown_beside_its_field_with_values_kept(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let visitor = app.visitor();
    let response = visitor
        .submit(
            "/register",
            "/register",
            &[
                ("name", "Bob"),
                ("email", "bob-at-example"),
                ("username", "b!"),
                ("password", "short"),
                ("password_confirm", "other"),
            ],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = response.text().await.unwrap();
    assert!(html.contains(r#"value="Bob""#), "display name kept");
    assert!(html.contains(r#"value="bob-at-example""#), "email kept");
    assert!(!html.contains("short"), "the password is never echoed");
    assert!(html.contains("Enter an email address like name@example.com."));
    assert!(html.contains("Use 3 to 20 characters."));
    for rule in [
        "Use 8 to 128 characters.",
        "Add an upper-case letter.",
        "Add a digit.",
        "Add a symbol or space",
    ] {
        assert!(html.contains(rule), "{rule} missing");
    }
    assert!(html.contains("The two passwords are not the same."));
    assert!(html.contains(r#"id="email" name="email""#) && html.contains(r#"aria-invalid="true""#));
}

async fn a_duplicate_email_in_another_case_is_a_field_error(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.signed_in("alice").await;
    let response = app
        .visitor()
        .register("Other", "ALICE@Example.com", "someone_else", PASSWORD)
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = response.text().await.unwrap();
    assert!(html.contains("An account with this email already exists."));
}

async fn a_duplicate_username_in_another_case_is_a_field_error(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.signed_in("alice").await;
    let response = app
        .visitor()
        .register("Other", "other@example.com", "ALICE", PASSWORD)
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("This username is taken.")
    );
}

async fn ten_kilobyte_fields_are_refused_with_a_message(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let huge = "x".repeat(10 * 1024);
    let huge_password = format!("Aa1!{huge}");
    let response = app
        .visitor()
        .register(&huge, &format!("{huge}@example.com"), &huge, &huge_password)
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let html = response.text().await.unwrap();
    assert!(html.contains("Use at most 50 characters."));
    assert!(html.contains("An email address has at most 254 characters."));
    assert!(html.contains("Use 8 to 128 characters."));
}

async fn control_characters_are_refused_and_unicode_names_welcome(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    for bad in ["Nul\u{0}Name", "Tab\tName", "Bell\u{7}"] {
        let response = app
            .visitor()
            .register(bad, "c@example.com", "control", PASSWORD)
            .await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{bad:?}"
        );
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("Remove control characters")
        );
    }
    let visitor = app.visitor();
    let response = visitor
        .register("Zoë 山田 🌸", "zoe@example.com", "zoe", PASSWORD)
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(visitor.page("/companions").await.contains("Zoë 山田 🌸"));
}

async fn html_in_a_display_name_is_shown_as_text(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let visitor = app.visitor();
    let response = visitor
        .register(
            "<script>alert(1)</script>",
            "x@example.com",
            "xss",
            PASSWORD,
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let page = visitor.page("/companions").await;
    assert!(!page.contains("<script>alert(1)</script>"));
    assert!(
        page.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
            || page.contains("&lt;script&gt;")
    );
}

async fn registrations_per_network_are_limited(backend: Backend) {
    let app = TestApp::spawn_with(
        backend,
        &[
            ("TRUSTED_PROXIES", "127.0.0.1/32"),
            ("RATE_LIMIT_REGISTER", "2/24h"),
        ],
    )
    .await;
    let register_from = |ip: &'static str, n: usize| {
        let visitor = app.visitor();
        async move { visitor.register_forwarded(ip, &format!("user{n}")).await }
    };
    assert_eq!(register_from("198.51.100.1", 1).await.status(), 303);
    assert_eq!(register_from("198.51.100.1", 2).await.status(), 303);
    let limited = register_from("198.51.100.1", 3).await;
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = limited.headers()[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after > 23 * 3600 && retry_after <= 24 * 3600);
    assert!(
        limited
            .text()
            .await
            .unwrap()
            .contains("Please try again in")
    );
    assert_eq!(
        register_from("198.51.100.2", 4).await.status(),
        303,
        "another network is not affected"
    );
}

on_both_backends!(
    registering_signs_the_user_in,
    every_problem_is_shown_beside_its_field_with_values_kept,
    a_duplicate_email_in_another_case_is_a_field_error,
    a_duplicate_username_in_another_case_is_a_field_error,
    ten_kilobyte_fields_are_refused_with_a_message,
    control_characters_are_refused_and_unicode_names_welcome,
    html_in_a_display_name_is_shown_as_text,
    registrations_per_network_are_limited,
);
