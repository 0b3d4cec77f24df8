//! Strict ownership: every route of another user's companion answers 404, exactly like a missing one.

use reqwest::multipart::Form;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::on_both_backends;
use crate::support::images::encoded;
use crate::support::{Backend, TestApp};

async fn another_user_finds_nothing_on_any_route(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("alice").await;
    let mallory = app.signed_in("mallory").await;
    let created = alice
        .create_companion(json!({"name": "Mira", "age": 24}))
        .await;
    let id = created["id"].as_str().unwrap().to_owned();

    let (status, _) = alice
        .upload_portrait(
            &id,
            encoded(image::ImageFormat::Png, 100, 100),
            "p.png",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, before) = alice
        .api(Method::GET, &format!("/api/v1/companions/{id}"), None)
        .await;
    let media = before["portrait_url"].as_str().unwrap().to_owned();

    for path in [
        format!("/companions/{id}/edit"),
        format!("/companions/{id}/delete"),
        format!("/companions/{id}/reset"),
        media.clone(),
    ] {
        assert_eq!(
            mallory.get(&path).await.status(),
            StatusCode::NOT_FOUND,
            "GET {path}"
        );
    }
    for path in [
        format!("/companions/{id}/delete"),
        format!("/companions/{id}/reset"),
    ] {
        let response = mallory.submit("/settings", &path, &[]).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "POST {path}");
    }
    let edit = mallory
        .post_multipart(
            &format!("/companions/{id}/edit"),
            "/settings",
            |form: Form| form.text("name", "Stolen").text("age", "30"),
        )
        .await;
    assert_eq!(edit.status(), StatusCode::NOT_FOUND, "POST edit");
    for (method, path, body) in [
        (Method::GET, format!("/api/v1/companions/{id}"), None),
        (
            Method::PATCH,
            format!("/api/v1/companions/{id}"),
            Some(json!({"name": "Stolen"})),
        ),
        (Method::DELETE, format!("/api/v1/companions/{id}"), None),
    ] {
        let (status, body) = mallory.api(method.clone(), &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}");
        assert_eq!(body["error"]["code"], "not_found");
    }
    let (status, _) = mallory
        .upload_portrait(
            &id,
            encoded(image::ImageFormat::Png, 100, 100),
            "p.png",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (_, list) = mallory.api(Method::GET, "/api/v1/companions", None).await;
    assert_eq!(list["total"], 0);
    assert!(!mallory.page("/companions").await.contains("Mira"));

    let (status, after) = alice
        .api(Method::GET, &format!("/api/v1/companions/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(after["profile"], before["profile"], "nothing changed");
    assert_eq!(after["portrait_url"], before["portrait_url"]);
    assert_eq!(alice.get(&media).await.status(), StatusCode::OK);
}

on_both_backends!(another_user_finds_nothing_on_any_route);
