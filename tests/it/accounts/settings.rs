//! Settings: display name, password change, the zip export, account deletion, their rate limit.

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

/// Every entry of a zip archive, by name (read with the `zip` crate: another implementation than ours).
fn unzip(bytes: Vec<u8>) -> std::collections::BTreeMap<String, Vec<u8>> {
    use std::io::Read;
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(bytes)).expect("a valid zip");
    (0..archive.len())
        .map(|index| {
            let mut entry = archive.by_index(index).unwrap();
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            (entry.name().to_owned(), content)
        })
        .collect()
}

fn json_lines(bytes: &[u8]) -> Vec<serde_json::Value> {
    std::str::from_utf8(bytes)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

async fn the_export_is_a_zip_of_everything_but_secrets(backend: Backend) {
    use crate::images::{send_with_picture, setup};
    use crate::support::fake_images::FakeImages;
    use crate::support::sse::read_all;

    let images = FakeImages::start().await;
    let (app, _llm, alice, companion) = setup(backend, images.sdapi_env(), &[]).await;
    let (status, _) = alice
        .upload_portrait(
            &companion,
            crate::support::images::encoded(image::ImageFormat::Png, 64, 64),
            "p.png",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, started) = send_with_picture(&alice, &companion, "Show me where you are").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{started}");
    read_all(&alice, started["stream_url"].as_str().unwrap()).await;
    // More than one page of older messages (the export reads 500 at a time).
    crate::support::fill_history(&app, &companion, 1_100, "older words").await;
    // Someone else's things stay out.
    let bob = app.signed_in("bob").await;
    let bobs = bob
        .create_companion(serde_json::json!({"name": "Bobs Secret", "age": 30}))
        .await;

    let response = alice.get("/settings/export").await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/zip");
    let disposition = response.headers()[header::CONTENT_DISPOSITION]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        disposition.starts_with("attachment; filename=\"companion-hub-alice-")
            && disposition.ends_with(".zip\""),
        "{disposition}"
    );
    let files = unzip(response.bytes().await.unwrap().to_vec());
    let names: Vec<&String> = files.keys().collect();

    assert!(files.contains_key("README.txt"), "{names:?}");
    let account: serde_json::Value = serde_json::from_slice(&files["account.json"]).unwrap();
    assert_eq!(account["format"], "companion-hub-export/2");
    assert_eq!(account["account"]["email"], "alice@example.com");
    assert_eq!(account["sessions"].as_array().unwrap().len(), 1);
    let everything: String = files
        .iter()
        .filter(|(name, _)| name.ends_with(".json") || name.ends_with(".jsonl"))
        .map(|(_, bytes)| String::from_utf8_lossy(bytes).into_owned())
        .collect();
    assert!(!everything.contains("argon2") && !everything.contains("password_hash"));
    assert!(!everything.contains("csrf") && !everything.contains("token_hash"));
    assert!(
        !everything.contains("Bobs Secret"),
        "another user's companion"
    );
    assert!(
        !names
            .iter()
            .any(|name| name.contains(bobs["id"].as_str().unwrap()))
    );

    let card: serde_json::Value =
        serde_json::from_slice(&files[&format!("companions/{companion}.json")]).unwrap();
    assert_eq!(card["profile"]["name"], "Mira");
    let portrait = card["portrait"].as_str().expect("the portrait's file");
    assert!(files.contains_key(portrait), "{portrait} in {names:?}");

    let messages = json_lines(&files[&format!("conversations/{companion}.jsonl")]);
    assert_eq!(messages.len(), 1_100 + 2, "every message, across pages");
    assert_eq!(messages[0]["content"], "0: older words", "oldest first");
    assert_eq!(messages[1_099]["content"], "1099: older words");
    assert_eq!(messages[1_100]["role"], "user");
    assert_eq!(messages[1_100]["content"], "Show me where you are");
    let reply = &messages[1_101];
    assert_eq!(reply["role"], "assistant");
    assert!(
        reply["scene"].is_object(),
        "the scene the reply left: {reply}"
    );
    let picture = reply["picture"].as_str().expect("the reply's picture");
    assert!(files.contains_key(picture), "{picture} in {names:?}");

    let pictures = json_lines(&files["pictures.jsonl"]);
    assert_eq!(pictures.len(), 2, "the portrait and the chat picture");
    for entry in &pictures {
        let file = entry["file"].as_str().unwrap();
        let served = alice
            .get(&format!("/media/{}", entry["id"].as_str().unwrap()))
            .await
            .bytes()
            .await
            .unwrap();
        assert_eq!(files[file], served.to_vec(), "{file} is the stored picture");
    }
    let sources: std::collections::BTreeSet<&str> = pictures
        .iter()
        .map(|p| p["source"].as_str().unwrap())
        .collect();
    assert_eq!(sources, ["chat", "portrait"].into_iter().collect());
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
    the_export_is_a_zip_of_everything_but_secrets,
    deleting_the_account_needs_the_password_and_removes_what_it_owned,
    settings_changes_are_rate_limited,
    the_rate_limiter_fails_closed_and_purges_ended_windows,
);
