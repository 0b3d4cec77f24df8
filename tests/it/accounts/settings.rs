//! Settings: display name, password change, export, account deletion, their rate limit.

use reqwest::StatusCode;
use reqwest::header;

use companion_hub::config::RateLimits;
use companion_hub::db_dispatch;
use companion_hub::web::{Action, RateLimiter};

use crate::on_both_backends;
use crate::support::visitor::PASSWORD;
use crate::support::{Backend, TestApp};

const NEW_PASSWORD: &str = "Moon-River-2026";

async fn the_display_name_can_be_changed(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("alice").await;
    let response = alice
        .submit(
            "/settings",
            "/settings/display-name",
            &[("name", "  Alice Wonder ")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()[header::LOCATION],
        "/settings?saved=display-name"
    );
    let page = alice.page("/settings?saved=display-name").await;
    assert!(page.contains("Your display name was saved."));
    assert!(page.contains(r#"value="Alice Wonder""#));

    let response = alice
        .submit(
            "/settings",
            "/settings/display-name",
            &[("name", "bad\u{0}name")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Remove control characters")
    );
}

async fn changing_the_password_needs_the_current_one_and_ends_other_sessions(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let laptop = app.signed_in("alice").await;
    let phone = app.visitor();
    assert_eq!(phone.login("alice", PASSWORD).await.status(), 303);

    let wrong = laptop
        .submit(
            "/settings",
            "/settings/password",
            &[
                ("current_password", "Not-The-Password-1"),
                ("new_password", NEW_PASSWORD),
                ("new_password_confirm", NEW_PASSWORD),
            ],
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("Your current password is not right.")
    );

    let weak = laptop
        .submit(
            "/settings",
            "/settings/password",
            &[
                ("current_password", PASSWORD),
                ("new_password", "password"),
                ("new_password_confirm", "password"),
            ],
        )
        .await;
    assert_eq!(weak.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        weak.text()
            .await
            .unwrap()
            .contains("one of the most common passwords")
    );

    let token_before = laptop.session_cookie().expect("signed in");
    let changed = laptop
        .submit(
            "/settings",
            "/settings/password",
            &[
                ("current_password", PASSWORD),
                ("new_password", NEW_PASSWORD),
                ("new_password_confirm", NEW_PASSWORD),
            ],
        )
        .await;
    assert_eq!(changed.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        laptop.get("/settings").await.status(),
        StatusCode::OK,
        "this session stays"
    );
    // …under a new token: a copy of the old cookie (stolen before the change) no longer works.
    let token_after = laptop.session_cookie().expect("still signed in");
    assert_ne!(
        token_before, token_after,
        "the current session's token is rotated"
    );
    let thief = app.visitor();
    thief.set_session_cookie(&token_before);
    assert_eq!(thief.get("/settings").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        phone.get("/settings").await.status(),
        StatusCode::SEE_OTHER,
        "others end"
    );
    assert_eq!(
        app.visitor().login("alice", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        app.visitor().login("alice", NEW_PASSWORD).await.status(),
        StatusCode::SEE_OTHER
    );
}

async fn the_export_holds_the_account_but_no_secrets(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("alice").await;
    alice
        .create_companion(serde_json::json!({"name": "Mira", "age": 24}))
        .await;
    let response = alice.get("/settings/export").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()[header::CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .starts_with("attachment; filename=\"companion-hub-alice-")
    );
    let text = response.text().await.unwrap();
    assert!(
        !text.contains("argon2") && !text.contains("password"),
        "{text}"
    );
    assert!(!text.contains("token") && !text.contains("csrf"), "{text}");
    let export: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(export["format"], "companion-hub-export/1");
    assert_eq!(export["account"]["email"], "alice@example.com");
    assert_eq!(export["account"]["username"], "alice");
    assert_eq!(export["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(export["companions"][0]["profile"]["name"], "Mira");
    assert_eq!(
        export["companions"][0]["live_state"]["location"],
        "living room"
    );
}

async fn deleting_the_account_needs_the_password_and_removes_what_it_owned(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("alice").await;
    let phone = app.visitor();
    assert_eq!(phone.login("alice", PASSWORD).await.status(), 303);
    let bob = app.signed_in("bob").await;
    let companion = alice
        .create_companion(serde_json::json!({"name": "Mira", "age": 24}))
        .await;
    let (status, _) = alice
        .upload_portrait(
            companion["id"].as_str().unwrap(),
            crate::support::images::encoded(image::ImageFormat::Png, 64, 64),
            "p.png",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let media_files = || {
        std::fs::read_dir(app.data_dir().join("media"))
            .map(|entries| entries.count())
            .unwrap_or(0)
    };
    assert_eq!(media_files(), 1, "alice's folder of images");

    let wrong = alice
        .submit(
            "/settings",
            "/settings/delete",
            &[("password", "Not-The-Password-1")],
        )
        .await;
    assert_eq!(wrong.status(), StatusCode::UNPROCESSABLE_ENTITY);
    assert!(wrong.text().await.unwrap().contains("nothing was deleted"));

    let deleted = alice
        .submit("/settings", "/settings/delete", &[("password", PASSWORD)])
        .await;
    assert_eq!(deleted.status(), StatusCode::SEE_OTHER);
    assert_eq!(deleted.headers()[header::LOCATION], "/login?deleted=1");

    let count = |sql: &'static str| {
        let db = app.db.clone();
        async move {
            db_dispatch!(&db, pool => sqlx::query_scalar::<_, i64>(sql).fetch_one(pool).await)
                .unwrap()
        }
    };
    assert_eq!(
        count("SELECT COUNT(*) FROM users WHERE username = 'alice'").await,
        0
    );
    assert_eq!(
        count("SELECT COUNT(*) FROM sessions s JOIN users u ON u.id = s.user_id").await,
        1,
        "only bob's session is left"
    );
    assert_eq!(phone.get("/settings").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        app.visitor().login("alice", PASSWORD).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(bob.get("/settings").await.status(), StatusCode::OK);
    assert!(
        app.visitor()
            .page("/login?deleted=1")
            .await
            .contains("have been deleted")
    );
}

async fn settings_changes_are_rate_limited(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("RATE_LIMIT_SETTINGS", "2/1h")]).await;
    let alice = app.signed_in("alice").await;
    for name in ["One", "Two"] {
        let response = alice
            .submit("/settings", "/settings/display-name", &[("name", name)])
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
    }
    let token = alice.csrf_token("/settings").await;
    let limited = alice
        .client
        .post(alice.url("/settings/display-name"))
        .header(header::ACCEPT, "application/json")
        .form(&[("name", "Three"), ("csrf_token", token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(limited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(limited.headers().contains_key(header::RETRY_AFTER));
    let body: serde_json::Value = limited.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("try again in")
    );
}

async fn the_rate_limiter_fails_closed_and_purges_ended_windows(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let limiter = RateLimiter::new(
        app.db.clone(),
        RateLimits {
            chat: Some(companion_hub::config::RateLimit {
                max: 1,
                window: std::time::Duration::from_secs(1),
            }),
            ..app_limits()
        },
        std::sync::Arc::new(companion_hub::web::keys::ServerKeys::new(app.db.clone())),
    );
    limiter.hit(Action::Chat, "user-1").await.unwrap();
    let purged = limiter
        .purge_expired(companion_hub::db::Timestamp::now() + std::time::Duration::from_secs(2))
        .await
        .unwrap();
    assert_eq!(purged, 1);
    limiter
        .hit(Action::Chat, "user-1")
        .await
        .expect("a new window after the purge");

    app.db.close().await;
    let error = limiter.hit(Action::Chat, "user-1").await.unwrap_err();
    assert_eq!(error.report().status, StatusCode::SERVICE_UNAVAILABLE);
}

fn app_limits() -> RateLimits {
    companion_hub::Config::from_vars(Vec::<(String, String)>::new())
        .unwrap()
        .rate_limits
}

on_both_backends!(
    the_display_name_can_be_changed,
    changing_the_password_needs_the_current_one_and_ends_other_sessions,
    the_export_holds_the_account_but_no_secrets,
    deleting_the_account_needs_the_password_and_removes_what_it_owned,
    settings_changes_are_rate_limited,
    the_rate_limiter_fails_closed_and_purges_ended_windows,
);
