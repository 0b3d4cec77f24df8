//! Portrait intake: every accepted format, content sniffing, size and pixel limits, crops, private serving.

use std::time::{Duration, Instant};

use image::ImageFormat;
use reqwest::multipart::{Form, Part};
use reqwest::{Method, StatusCode, header};
use serde_json::{Value, json};

use crate::support::images::{encoded, png_claiming};
use crate::support::visitor::Visitor;
use crate::support::{Backend, TestApp};
use crate::{on_both_backends, on_every_store};

async fn upload(
    visitor: &Visitor,
    id: &str,
    bytes: Vec<u8>,
    filename: &str,
    crop: Option<(u32, u32, u32)>,
) -> (StatusCode, Value) {
    visitor.upload_portrait(id, bytes, filename, crop).await
}

async fn every_accepted_format_becomes_a_bounded_private_jpeg(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("alice").await;
    let created = alice
        .create_companion(json!({"name": "Mira", "age": 24}))
        .await;
    let id = created["id"].as_str().unwrap();
    for (format, name) in [
        (ImageFormat::Png, "portrait.png"),
        (ImageFormat::Jpeg, "portrait.jpg"),
        (ImageFormat::WebP, "portrait.webp"),
        (ImageFormat::Gif, "portrait.gif"),
    ] {
        let (status, body) = upload(&alice, id, encoded(format, 1000, 900), name, None).await;
        assert_eq!(status, StatusCode::OK, "{name}: {body}");
        let url = body["portrait_url"].as_str().expect("portrait url");
        let response = alice.get(url).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(response.headers()[header::CONTENT_TYPE], "image/jpeg");
        assert_eq!(
            response.headers()[header::CACHE_CONTROL],
            "private, max-age=31536000, immutable"
        );
        assert_eq!(
            response.headers()[header::X_CONTENT_TYPE_OPTIONS],
            "nosniff"
        );
        let etag = response.headers()[header::ETAG].clone();
        let bytes = response.bytes().await.unwrap();
        let decoded = image::load_from_memory(&bytes).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (800, 800), "{name}");

        let revalidated = alice
            .client
            .get(alice.url(url))
            .header(header::IF_NONE_MATCH, etag)
            .send()
            .await
            .unwrap();
        assert_eq!(revalidated.status(), StatusCode::NOT_MODIFIED);
    }
    let page = alice.page("/companions").await;
    assert!(page.contains(r#"<img class="portrait" src="/media/"#));
}

async fn the_type_is_decided_by_content_not_name(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("alice").await;
    let created = alice
        .create_companion(json!({"name": "Mira", "age": 24}))
        .await;
    let id = created["id"].as_str().unwrap();
    let (status, body) = upload(
        &alice,
        id,
        b"just some text, honest".to_vec(),
        "photo.png",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"]["fields"]["portrait"][0]
            .as_str()
            .unwrap()
            .contains("JPEG, PNG, WebP or GIF")
    );
    // A real PNG with a misleading name is fine.
    let (status, _) = upload(
        &alice,
        id,
        encoded(ImageFormat::Png, 64, 64),
        "notes.txt",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let mut truncated = encoded(ImageFormat::Png, 300, 300);
    truncated.truncate(truncated.len() / 2);
    let (status, body) = upload(&alice, id, truncated, "half.png", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
}

async fn oversized_uploads_answer_413(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("alice").await;
    let created = alice
        .create_companion(json!({"name": "Mira", "age": 24}))
        .await;
    let id = created["id"].as_str().unwrap();
    let (status, body) = upload(&alice, id, vec![0_u8; 6 * 1024 * 1024], "big.png", None).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"]["code"], "payload_too_large");
    let (status, _) = upload(
        &alice,
        id,
        vec![0_u8; 5 * 1024 * 1024 + 10],
        "big.png",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

async fn a_decompression_bomb_is_refused_quickly(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("alice").await;
    let created = alice
        .create_companion(json!({"name": "Mira", "age": 24}))
        .await;
    let id = created["id"].as_str().unwrap();
    let started = Instant::now();
    let (status, body) = upload(&alice, id, png_claiming(20_000, 20_000), "bomb.png", None).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["fields"]["portrait"][0]
            .as_str()
            .unwrap()
            .contains("40 megapixels")
    );
    // Not a timing assertion of speed, only a guard against decoding 400 megapixels (minutes, gigabytes).
    assert!(started.elapsed() < Duration::from_secs(20));
}

async fn crops_choose_the_square_and_must_fit(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("alice").await;
    let created = alice
        .create_companion(json!({"name": "Mira", "age": 24}))
        .await;
    let id = created["id"].as_str().unwrap();
    let (status, body) = upload(
        &alice,
        id,
        encoded(ImageFormat::Png, 600, 400),
        "p.png",
        Some((100, 50, 300)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let bytes = alice
        .get(body["portrait_url"].as_str().unwrap())
        .await
        .bytes()
        .await
        .unwrap();
    let decoded = image::load_from_memory(&bytes).unwrap();
    assert_eq!((decoded.width(), decoded.height()), (300, 300));
    let (status, body) = upload(
        &alice,
        id,
        encoded(ImageFormat::Png, 600, 400),
        "p.png",
        Some((400, 0, 300)),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"]["fields"]["portrait"][0]
            .as_str()
            .unwrap()
            .contains("crop")
    );
}

async fn a_replaced_portrait_leaves_its_file_for_the_cleanup(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("alice").await;
    let created = alice
        .create_companion(json!({"name": "Mira", "age": 24}))
        .await;
    let id = created["id"].as_str().unwrap();
    let (_, first) = upload(
        &alice,
        id,
        encoded(ImageFormat::Png, 200, 200),
        "a.png",
        None,
    )
    .await;
    let (_, second) = upload(
        &alice,
        id,
        encoded(ImageFormat::Png, 300, 300),
        "b.png",
        None,
    )
    .await;
    assert_ne!(first["portrait_url"], second["portrait_url"]);
    let files = app.stored_files().await;
    assert_eq!(
        files.len(),
        2,
        "the old file stays until the orphan cleanup: {files:?}"
    );
    let (status, _) = alice
        .api(Method::DELETE, &format!("/api/v1/companions/{id}"), None)
        .await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert!(
        app.stored_files().await.is_empty(),
        "deleting the companion removes its files"
    );
}

async fn a_portrait_can_come_with_the_wizard_form(backend: Backend) {
    let app = TestApp::spawn(backend).await;
    let alice = app.signed_in("alice").await;
    let html = alice.page("/companions/new").await;
    let fields = crate::support::html_form::fields(&html, "companion-form");
    let form = |form: Form| {
        fields
            .iter()
            .filter(|(name, _)| name != "csrf_token")
            .fold(form, |form, (name, value)| {
                let value = if name == "name" {
                    "Pia".to_owned()
                } else {
                    value.clone()
                };
                form.text(name.clone(), value)
            })
            .part(
                "portrait",
                Part::bytes(encoded(ImageFormat::Jpeg, 640, 480)).file_name("me.jpg"),
            )
    };
    let response = alice
        .post_multipart("/companions/new", "/companions/new", form)
        .await;
    assert_eq!(response.status(), StatusCode::SEE_OTHER);
    let (_, list) = alice.api(Method::GET, "/api/v1/companions", None).await;
    assert!(list["companions"][0]["portrait_url"].is_string());
}

on_both_backends!(
    the_type_is_decided_by_content_not_name,
    oversized_uploads_answer_413,
    a_decompression_bomb_is_refused_quickly,
    crops_choose_the_square_and_must_fit,
    a_portrait_can_come_with_the_wizard_form,
);

// Also with the media in an S3 bucket.
on_every_store!(
    every_accepted_format_becomes_a_bounded_private_jpeg,
    a_replaced_portrait_leaves_its_file_for_the_cleanup,
);
