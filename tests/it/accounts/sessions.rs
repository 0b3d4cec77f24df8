//! Sessions: rotation at sign-in, sign-out, revocation, expiry, and what anonymous visitors get.

use reqwest::StatusCode;
use reqwest::header;

use companion_hub::db::Timestamp;
use companion_hub::db_dispatch;
use companion_hub::web::session::store as sessions;

use crate::on_both_backends;
use crate::support::visitor::PASSWORD;
use crate::support::{Backend, TestApp};

async fn signing_in_replaces_the_session_and_its_csrf_secret(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    app.signed_in("alice").await;
    let visitor = app.visitor();
    let anonymous_token = visitor.csrf_token("/login").await;
    let before = visitor.cookie("presession").expect("a pre-session cookie");
    assert!(
        visitor.session_cookie().is_none(),
        "no session before sign-in"
    );
    assert_eq!(visitor.login("alice", PASSWORD).await.status(), 303);
    assert!(visitor.session_cookie().is_some(), "a session cookie");
    assert!(
        visitor.cookie("presession").is_none(),
        "the pre-session is cleared"
    );

    // The old token from before sign-in is worthless now.
    let response = visitor
        .post_form(
            "/settings/display-name",
            &anonymous_token,
            &[("name", "Mallory")],
        )
        .await;
    assert_eq!(response.status(), StatusCode::FORBIDDEN);

    // A fixated (pre-sign-in) cookie does not lead into the account.
    let attacker = app.visitor();
    attacker.set_cookie("presession", &before);
    attacker.set_session_cookie(&before);
    let response = attacker.get("/settings").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert!(
        response.headers()[header::LOCATION]
            .to_str()
            .unwrap()
            .starts_with("/login")
    );
}

async fn signing_out_ends_the_session(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let visitor = app.signed_in("alice").await;
    let cookie = visitor.session_cookie().unwrap();
    let response = visitor.submit("/settings", "/logout", &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(response.headers()[header::LOCATION], "/login");
    assert!(
        response.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );

    let replay = app.visitor();
    replay.set_session_cookie(&cookie);
    assert_eq!(
        replay.get("/settings").await.status(),
        StatusCode::SEE_OTHER
    );
}

async fn signing_out_everywhere_ends_every_session_of_the_user(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let laptop = app.signed_in("alice").await;
    let phone = app.visitor();
    assert_eq!(phone.login("alice", PASSWORD).await.status(), 303);
    let bob = app.signed_in("bob").await;

    let response = laptop.submit("/settings", "/logout-everywhere", &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        laptop.get("/settings").await.status(),
        StatusCode::SEE_OTHER
    );
    assert_eq!(phone.get("/settings").await.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        bob.get("/settings").await.status(),
        StatusCode::OK,
        "other users keep theirs"
    );
}

async fn a_session_can_be_revoked_from_the_settings_page(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let laptop = app.signed_in("alice").await;
    let phone = app.visitor();
    assert_eq!(phone.login("alice", PASSWORD).await.status(), 303);
    let bob = app.signed_in("bob").await;

    let html = laptop.page("/settings").await;
    let revoke_actions: Vec<&str> = html
        .match_indices(r#"action="/settings/sessions/"#)
        .map(|(i, _)| {
            let start = i + r#"action=""#.len();
            &html[start..start + html[start..].find('"').unwrap()]
        })
        .collect();
    assert_eq!(revoke_actions.len(), 2, "both sessions are listed");
    assert!(html.contains("this browser"));

    // The phone's session is the row not marked as this browser.
    let other = revoke_actions
        .iter()
        .copied()
        .find(|action| {
            let at = html.find(action).unwrap();
            let row_start = html[..at].rfind("<tr").unwrap();
            !html[row_start..at].contains("sessions__current")
        })
        .expect("the other session");
    let response = laptop.submit("/settings", other, &[]).await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        phone.get("/settings").await.status(),
        StatusCode::SEE_OTHER,
        "phone signed out"
    );
    assert_eq!(
        laptop.get("/settings").await.status(),
        StatusCode::OK,
        "laptop still in"
    );

    // Somebody else's session id is not found, and does not end it.
    let bob_html = bob.page("/settings").await;
    let bob_action_start =
        bob_html.find(r#"action="/settings/sessions/"#).unwrap() + r#"action=""#.len();
    let bob_action = &bob_html
        [bob_action_start..bob_action_start + bob_html[bob_action_start..].find('"').unwrap()];
    let response = laptop.submit("/settings", bob_action, &[]).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(bob.get("/settings").await.status(), StatusCode::OK);
}

async fn anonymous_visitors_are_sent_to_sign_in_and_apis_get_401(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let response = app.get("/settings?tab=sessions").await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    assert_eq!(
        response.headers()[header::LOCATION],
        "/login?next=%2Fsettings%3Ftab%3Dsessions"
    );
    let (status, body) = app.get_json("/settings").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(body["error"]["correlation_id"].is_string());
}

async fn expired_sessions_are_refused_and_purged(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let visitor = app.signed_in("alice").await;
    assert_eq!(visitor.get("/settings").await.status(), StatusCode::OK);
    let past = Timestamp::now() - std::time::Duration::from_secs(1);
    db_dispatch!(&app.db, pool => sqlx::query("UPDATE sessions SET expires_at = $1")
        .bind(past)
        .execute(pool)
        .await
        .map(|_| ()))
    .unwrap();
    assert_eq!(
        visitor.get("/settings").await.status(),
        StatusCode::SEE_OTHER
    );
    let purged = sessions::purge_expired(
        &app.db,
        Timestamp::now(),
        std::time::Duration::from_secs(7 * 86_400),
    )
    .await
    .unwrap();
    assert!(purged >= 1);
    let left: i64 =
        db_dispatch!(&app.db, pool => sqlx::query_scalar("SELECT COUNT(*) FROM sessions")
        .fetch_one(pool)
        .await)
        .unwrap();
    assert_eq!(left, 0);
}

async fn an_idle_session_ends_before_its_lifetime(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("SESSION_IDLE_MINUTES", "60")]).await;
    let visitor = app.signed_in("alice").await;
    let active = app.signed_in("bob").await;
    let set_last_seen = |minutes_ago: u64, username: &'static str| {
        let db = app.db.clone();
        async move {
            let at = Timestamp::now() - std::time::Duration::from_secs(minutes_ago * 60);
            db_dispatch!(&db, pool => sqlx::query(
                "UPDATE sessions SET last_seen_at = $1 \
                 WHERE user_id = (SELECT id FROM users WHERE username = $2)",
            )
            .bind(at)
            .bind(username)
            .execute(pool)
            .await
            .map(|_| ()))
            .unwrap();
        }
    };
    set_last_seen(59, "bob").await;
    assert_eq!(
        active.get("/settings").await.status(),
        StatusCode::OK,
        "59 idle minutes are within the hour"
    );
    set_last_seen(61, "alice").await;
    assert_eq!(
        visitor.get("/settings").await.status(),
        StatusCode::SEE_OTHER,
        "61 idle minutes end the session although its lifetime has days left"
    );
    let purged = sessions::purge_expired(
        &app.db,
        Timestamp::now(),
        std::time::Duration::from_secs(3600),
    )
    .await
    .unwrap();
    assert_eq!(purged, 1, "only the idle session is purged");
}

async fn anonymous_visits_store_nothing_until_a_form_is_posted(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let count = || async {
        db_dispatch!(&app.db, pool => sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM sessions")
            .fetch_one(pool)
            .await)
        .unwrap()
    };
    for _ in 0..20 {
        assert_eq!(app.visitor().get("/login").await.status(), StatusCode::OK);
        assert_eq!(
            app.visitor().get("/register").await.status(),
            StatusCode::OK
        );
    }
    assert_eq!(count().await, 0, "looking at a form writes no row");

    // The signed pre-session cookie is what makes the form's token valid; a forged one is not accepted.
    let visitor = app.visitor();
    let token = visitor.csrf_token("/register").await;
    let cookie = visitor.cookie("presession").expect("a pre-session cookie");
    let mut forged = cookie.clone().into_bytes();
    let middle = forged.len() / 2;
    forged[middle] = if forged[middle] == b'A' { b'B' } else { b'A' };
    let forger = app.visitor();
    forger.set_cookie("presession", std::str::from_utf8(&forged).unwrap());
    let refused = forger
        .post_form(
            "/register",
            &token,
            &[
                ("name", "Mallory"),
                ("email", "mallory@example.com"),
                ("username", "mallory"),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let accepted = visitor
        .post_form(
            "/register",
            &token,
            &[
                ("name", "Alice"),
                ("email", "alice@example.com"),
                ("username", "alice"),
                ("password", PASSWORD),
                ("password_confirm", PASSWORD),
            ],
        )
        .await;
    assert_eq!(accepted.status(), StatusCode::SEE_OTHER);
    assert_eq!(count().await, 1, "one row, for the account's session");
}

async fn sessions_last_as_configured(backend: Backend) {
    let app = TestApp::spawn_with(backend, &[("SESSION_DAYS", "7")]).await;
    let visitor = app.visitor();
    let response = visitor
        .register("Alice", "alice@example.com", "alice", PASSWORD)
        .await;
    let cookie = response.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        cookie.contains(&format!("Max-Age={}", 7 * 86_400)),
        "{cookie}"
    );
    assert!(cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"));
}

on_both_backends!(
    signing_in_replaces_the_session_and_its_csrf_secret,
    signing_out_ends_the_session,
    signing_out_everywhere_ends_every_session_of_the_user,
    a_session_can_be_revoked_from_the_settings_page,
    anonymous_visitors_are_sent_to_sign_in_and_apis_get_401,
    expired_sessions_are_refused_and_purged,
    sessions_last_as_configured,
    an_idle_session_ends_before_its_lifetime,
    anonymous_visits_store_nothing_until_a_form_is_posted,
);
